"""Patch matrices for conv2d: im2col/col2im, batched matmuls and the stride-1 backward.

Layout (chosen by measurement, see ``docs/performance.md``): the patch matrix is
``cols[n, (c, p, q), t]`` of shape ``(N, C*KH*KW, L)``, so ``w2 @ cols`` yields NCHW
directly and every copy has the long spatial axis innermost. With stride 1 the patches
are taken on the *flattened* padded image ("wide" rows of pitch ``Wp``): kernel offset
``(p, q)`` is then one contiguous slice starting at ``p*dh*Wp + q*dw``. Private to
:mod:`functional_cnn.layers.conv`, which re-exports ``im2col`` and ``col2im``.
"""
from __future__ import annotations

import math
import threading
from typing import Optional, Tuple

import numpy as np

from .. import _parallel
from .._parallel import for_chunks, get_num_threads
from ..layer import Array

Pad = Tuple[Tuple[int, int], Tuple[int, int]]


def _pad(x: Array, pads: Pad) -> Array:
    """``x`` zero-padded on H and W, C-contiguous (``np.pad`` costs ~15 us of Python at batch 1)."""
    (pt, pb), (pl, pr) = pads
    if pt == pb == pl == pr == 0:
        return np.ascontiguousarray(x)
    n, c, h, w = x.shape
    xp = np.zeros((n, c, h + pt + pb, w + pl + pr), dtype=x.dtype)
    xp[:, :, pt : pt + h, pl : pl + w] = x
    return xp


def im2col(xp: Array, k: Tuple[int, int], s: Tuple[int, int], d: Tuple[int, int], out_hw: Tuple[int, int],
           pitch: int, out: Optional[Array] = None) -> Array:
    """Patches of a C-contiguous padded NCHW batch: ``(N, C*KH*KW, L)``, one copy (into ``out`` if given).

    ``pitch == Wp`` with stride 1 takes each kernel offset as one contiguous run of
    ``L = (OH-1)*Wp + OW`` elements of the flattened image; ``pitch == OW`` takes the
    ``OH*OW`` output positions exactly.
    """
    n, c, hp, wp = xp.shape
    oh, ow = out_hw
    it = xp.itemsize
    sn, sc = c * hp * wp * it, hp * wp * it
    if pitch == wp and s == (1, 1):
        length = (oh - 1) * wp + ow
        view = np.ndarray((n, c, k[0], k[1], length), xp.dtype, xp, 0, (sn, sc, d[0] * wp * it, d[1] * it, it))
    else:
        length = oh * ow
        view = np.ndarray((n, c, k[0], k[1], oh, ow), xp.dtype, xp, 0,
                          (sn, sc, d[0] * wp * it, d[1] * it, s[0] * wp * it, s[1] * it))
    if out is not None:
        np.copyto(out.reshape(view.shape), view)
        return out
    return view.reshape(n, c * k[0] * k[1], length)  # the reshape is the copy


def col2im(dcols: Array, xp_shape: Tuple[int, ...], k: Tuple[int, int], s: Tuple[int, int], d: Tuple[int, int],
           out_hw: Tuple[int, int], pitch: int) -> Array:
    """Adjoint of :func:`im2col`: add the rows of ``dcols`` back into a padded NCHW array.

    One add per kernel offset (``KH*KW`` in all); with stride 1 and ``pitch == Wp`` each is a
    contiguous run, which needs the wrapped-around columns of ``dcols`` to be zero.
    """
    n, c, hp, wp = xp_shape
    oh, ow = out_hw
    dxp = np.zeros((n, c, hp * wp), dtype=dcols.dtype)
    length = dcols.shape[-1]
    d5 = dcols.reshape(n, c, k[0], k[1], length)
    if pitch == wp and s == (1, 1):
        for p in range(k[0]):
            for q in range(k[1]):
                off = p * d[0] * wp + q * d[1]
                dxp[:, :, off : off + length] += d5[:, :, p, q]
        return dxp.reshape(xp_shape)
    dxp = dxp.reshape(xp_shape)
    d6 = d5.reshape(n, c, k[0], k[1], oh, ow)
    for p in range(k[0]):
        r0 = p * d[0]
        for q in range(k[1]):
            c0 = q * d[1]
            dxp[:, :, r0 : r0 + (oh - 1) * s[0] + 1 : s[0], c0 : c0 + (ow - 1) * s[1] + 1 : s[1]] += d6[:, :, p, q]
    return dxp


_SCRATCH = threading.local()


def _scratch(slot: str, shape: Tuple[int, ...], dtype: np.dtype, zero: bool = False) -> Array:
    """A per-thread reusable buffer for a temporary that never leaves the layer call.

    Holds no information between calls (it is overwritten, or zeroed, before use); it only
    spares the allocator: a fresh multi-MB temporary per step is page-faulted in again
    whenever glibc has trimmed the heap. Never used for outputs, caches or gradients.
    """
    size = math.prod(shape) * np.dtype(dtype).itemsize
    buf = getattr(_SCRATCH, slot, None)
    if buf is None or buf.size < size:
        buf = np.empty(max(size, 1), dtype=np.uint8)
        setattr(_SCRATCH, slot, buf)
    out = buf[:size].view(dtype).reshape(shape)
    if zero:
        out.fill(0)
    return out


def _rows(a: Array, out_hw: Tuple[int, int], pitch: int) -> Array:
    """View ``(N, C, L)`` with row pitch ``pitch`` as ``(N, C, OH, OW)`` (drops wrapped columns)."""
    n, c, length = a.shape
    it = a.itemsize
    return np.ndarray((n, c) + tuple(out_hw), a.dtype, a, 0, (c * length * it, length * it, pitch * it, it))


def _grouped_matmul(w2: Array, cols: Array, groups: int, transpose: bool = False) -> Array:
    """``(C_out, K) x (N, G*K, L) -> (N, C_out, L)`` per group; with ``transpose``,
    ``(C_out, K)^T x (N, C_out, L) -> (N, G*K, L)`` (the patch gradient)."""
    if groups == 1:
        return np.matmul(w2.T if transpose else w2, cols)
    n, length = cols.shape[0], cols.shape[2]
    wg = w2.reshape(groups, w2.shape[0] // groups, w2.shape[1])
    if transpose:
        wg = wg.transpose(0, 2, 1)
    # Explicit channel count, not -1: an empty batch (n == 0) cannot infer it.
    return np.matmul(wg, cols.reshape(n, groups, wg.shape[2], length)).reshape(n, groups * wg.shape[1], length)


def _weight_products(dyw: Array, cols: Array, groups: int, out: Array) -> None:
    """Per-image ``dyw[n] @ cols[n].T`` into ``out`` (see :func:`_products_shape`), for one range of images."""
    n, c_o, length = dyw.shape
    if groups > 1:
        dyg = dyw.reshape(n, groups, c_o // groups, length)
        colsg = cols.reshape(n, groups, cols.shape[1] // groups, length)
        np.matmul(dyg, colsg.transpose(0, 1, 3, 2), out=out)
    elif out.shape[1] != c_o:  # the taller operand first (measured faster for wide patches)
        np.matmul(cols, dyw.transpose(0, 2, 1), out=out)
    else:
        np.matmul(dyw, cols.transpose(0, 2, 1), out=out)


def _products_shape(n: int, c_o: int, rows: int, groups: int) -> Tuple[int, ...]:
    """Shape of the per-image weight-gradient products: ``(N, G, C_out/G, rows/G)`` grouped,
    ``(N, rows, C_out)`` when the patches are at least 8 times taller, else ``(N, C_out, rows)``."""
    if groups > 1:
        return (n, groups, c_o // groups, rows // groups)
    return (n, rows, c_o) if rows >= 8 * c_o else (n, c_o, rows)


def _sum_products(prods: Array, c_o: int, groups: int) -> Array:
    """``sum_n`` of the per-image products, as ``(C_out, C_in/G*KH*KW)``: one reduction over the
    whole batch, in image order, however the products were split across threads."""
    total = prods.sum(axis=0)
    if groups > 1:
        return total.reshape(c_o, -1)
    return total.T if total.shape[0] != c_o else total


def _weight_grad(dyw: Array, cols: Array, groups: int) -> Array:
    """``sum_n dyw[n] @ cols[n].T`` as ``(C_out, C_in/G*KH*KW)``; dyw ``(N, C_out, L)``, cols ``(N, C_in*KH*KW, L)``.

    The per-image products are split across threads; their sum is one reduction (see
    :func:`_sum_products`).
    """
    n, c_o, _ = dyw.shape
    if n == 1 and groups == 1:
        return np.dot(dyw[0], cols[0].T)
    prods = np.empty(_products_shape(n, c_o, cols.shape[1], groups), dtype=cols.dtype)
    for_chunks(lambda lo, hi: _weight_products(dyw[lo:hi], cols[lo:hi], groups, prods[lo:hi]), n, cols.nbytes)
    return _sum_products(prods, c_o, groups)


def backward_wide(w: Array, cols: Array, dy: Array, xp_shape: Tuple[int, ...], out_hw: Tuple[int, int],
                  pads: Tuple[Tuple[int, int], Tuple[int, int]], d: Tuple[int, int], groups: int,
                  need_dx: bool) -> Tuple[Array, Optional[Array]]:
    """Stride-1 backward on wide rows: ``(dw2, dx)``, ``dx`` unpadded NCHW (None without ``need_dx``).

    ``dy`` is laid out channel-major on the padded grid, one row per output channel holding
    ``N*Hp*Wp`` positions, zeros off the output positions, after ``max_off`` leading zeros
    (``max_off`` is the largest kernel offset ``p*dh*Wp + q*dw``). Then the input gradient is
    ``KH*KW`` shifted matrix products, with no patch matrix:

    ``dxp[c, t] = sum_{p,q} sum_o w[o, c, p, q] * dyg[o, t - (p*dh*Wp + q*dw)]``

    where ``t`` runs over the flattened padded grid of all images (channel-major) and ``dyg``
    is that zero-led row. Reaching back past an image's start reads the previous image's last
    positions, which are off the output, hence zeros. The ``KW`` offsets of one kernel row are
    one gemm, ``(C_in, KW*C_out) x (KW*C_out, positions)``, on ``KW`` shifted copies of ``dyg``
    stacked (measured: 13% faster than ``KH*KW`` gemms with ``C_out`` terms each, and a fifth of
    the calls); the ``KH`` rows' products are summed in row order. Every element of ``dx`` is
    computed in one place, so threads never share one.

    Threads take ranges of fixed blocks of images (:func:`~functional_cnn._parallel.for_chunks`),
    each doing all of its images' work: placing ``dy`` on the grid, the weight-gradient
    products, the shifted products (one set per block) and the copy into ``dx``. The weight
    gradient is then one sum over the whole batch.
    """
    n, c_in, hp, wp = xp_shape
    (oh, ow), hw = out_hw, hp * wp
    c_o, it, dtype = w.shape[0], dy.itemsize, dy.dtype
    kh, kw = w.shape[2], w.shape[3]
    lead = (kh - 1) * d[0] * wp + (kw - 1) * d[1]  # the largest kernel offset
    row = lead + n * hw
    dyg = _scratch("dyt", (c_o, row), dtype, zero=True)  # the calling thread's; filled per thread range
    grid = np.ndarray((c_o, n, oh, ow), dtype, dyg, lead * it, (row * it, hw * it, wp * it, it))
    dyn = np.ndarray((n, c_o, hw), dtype, dyg, lead * it, (hw * it, row * it, it))  # per-image view
    length = cols.shape[-1]
    prods = np.empty(_products_shape(n, c_o, cols.shape[1], groups), dtype=dtype) if n != 1 or groups > 1 else None
    c_og, c_ig = c_o // groups, c_in // groups
    dxt = dx = None
    if need_dx:
        # w[o, c, p, :] as one (C_in/G, KW*C_out/G) matrix per group and kernel row p: [c, q*C_out/G + o]
        wrow = [[np.ascontiguousarray(w[g * c_og : (g + 1) * c_og, :, p, :].transpose(1, 2, 0).reshape(c_ig, -1))
                 for p in range(kh)] for g in range(groups)]
        dxt = np.empty((c_in, n * hw), dtype=dtype)
        (pt, pb), (pl, pr) = pads
        dx = np.empty((n, c_in, hp - pt - pb, wp - pl - pr), dtype=dtype)
        inner = dxt.reshape(c_in, n, hp, wp)[:, :, pt : hp - pb, pl : wp - pr]

    # The images go in fixed blocks, a function of the sizes only: each block's products are the
    # same calls, on the same operands, whichever thread runs them, so the bits cannot depend
    # on the thread count (a gemm's rounding may depend on its shape). At least 8 blocks, so
    # that threads share the work evenly; about 1 MiB of shifted dy each.
    blocks = min(n, max(8, -(-kw * c_o * n * hw * it // (1 << 20)))) if n else 1
    starts = [n * i // blocks for i in range(blocks + 1)]
    rise = (kh - 1) * d[0] * wp  # the kernel rows' extra reach

    def products(lo: int, hi: int) -> None:  # the weight-gradient products of blocks lo..hi-1
        if prods is not None:
            a, b = starts[lo], starts[hi]
            _weight_products(dyn[a:b, :, :length], cols[a:b], groups, prods[a:b])

    def input_grad(lo: int, hi: int) -> None:  # dx of blocks lo..hi-1 (dy is on the grid)
        for i in range(lo, hi):
            t0, span = starts[i] * hw, (starts[i + 1] - starts[i]) * hw
            if span == 0:
                continue
            rows = _scratch("dx_rows", (kw * c_og, span + rise), dtype)  # dy shifted by each column offset q
            term = _scratch("dx_term", (c_ig, span), dtype)
            for g in range(groups):
                for q in range(kw):
                    start = t0 + (kw - 1 - q) * d[1]
                    np.copyto(rows[q * c_og : (q + 1) * c_og],
                              dyg[g * c_og : (g + 1) * c_og, start : start + span + rise])
                target = dxt[g * c_ig : (g + 1) * c_ig, t0 : t0 + span]
                for p in range(kh):  # row p's KW offsets in one product, rows summed in order
                    shifted = rows[:, (kh - 1 - p) * d[0] * wp :][:, :span]
                    if p == 0:
                        np.matmul(wrow[g][p], shifted, out=target)
                    else:
                        np.matmul(wrow[g][p], shifted, out=term)
                        target += term
        np.copyto(dx[starts[lo] : starts[hi]], inner[:, starts[lo] : starts[hi]].transpose(1, 0, 2, 3))

    def part(lo: int, hi: int) -> None:  # blocks lo..hi-1, on one thread
        np.copyto(grid[:, starts[lo] : starts[hi]], dy[starts[lo] : starts[hi]].transpose(1, 0, 2, 3))
        products(lo, hi)
        if dxt is not None:
            input_grad(lo, hi)

    # Every row is zero before the threads start: a block's first image reads back into the
    # previous block's last positions (zeros off the output), which no thread writes.
    work = cols.nbytes + (c_o * n * hw * it * kh * kw if need_dx else 0)
    if dxt is not None and prods is not None and get_num_threads() == 2 and work >= _parallel.MIN_PARALLEL_BYTES:
        # Two threads: one does the products, the other the input gradient, each over the
        # whole batch (measured: 15% faster than both doing half the batch, whose threads wait
        # on each other's many short calls). The calls are the same either way: same bits.
        np.copyto(grid, dy.transpose(1, 0, 2, 3))
        tasks = (lambda: input_grad(0, blocks), lambda: products(0, blocks))
        for_chunks(lambda lo, hi: [tasks[i]() for i in range(lo, hi)], 2, work)
    else:
        for_chunks(part, blocks, work)
    if prods is None:
        dw2 = np.dot(dyn[0, :, :length], cols[0].T)
    else:
        dw2 = _sum_products(prods, c_o, groups)
    return dw2, dx

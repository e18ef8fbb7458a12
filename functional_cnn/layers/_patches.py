"""Patch matrices for conv2d: im2col/col2im, batched matmuls and the wide-row backward.

Layout (chosen by measurement, see ``docs/performance.md``): the patch matrix is
``cols[n, (c, p, q), t]`` of shape ``(N, C*KH*KW, L)``, so ``w2 @ cols`` yields NCHW
directly and every copy has the long spatial axis innermost. With stride 1 the patches
are taken on the *flattened* padded image ("wide" rows of pitch ``Wp``): kernel offset
``(p, q)`` is then one contiguous slice starting at ``p*dh*Wp + q*dw``. Private to
:mod:`functional_cnn.layers.conv`, which re-exports ``im2col`` and ``col2im``.
"""
from __future__ import annotations

import threading
from typing import Any, Optional, Tuple

import numpy as np

from .._parallel import for_chunks
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
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
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


def _weight_grad(dyw: Array, cols: Array, groups: int) -> Array:
    """``sum_n dyw[n] @ cols[n].T`` as ``(C_out, C_in/G*KH*KW)``; dyw ``(N, C_out, L)``, cols ``(N, C_in*KH*KW, L)``.

    The per-image products are split across threads (:func:`~functional_cnn._parallel.for_chunks`);
    their sum over the batch is one reduction over the whole stack, in the same order for any
    thread count.
    """
    n, c_o, length = dyw.shape
    if groups > 1:
        dyg = dyw.reshape(n, groups, c_o // groups, length)
        colsg = cols.reshape(n, groups, cols.shape[1] // groups, length)
        return np.matmul(dyg, colsg.transpose(0, 1, 3, 2)).sum(axis=0).reshape(c_o, -1)
    if n == 1:
        return np.dot(dyw[0], cols[0].T)
    tall = cols.shape[1] >= 8 * c_o  # measured: the taller operand first is faster for wide patches
    prods = np.empty((n, cols.shape[1], c_o) if tall else (n, c_o, cols.shape[1]), dtype=cols.dtype)

    def part(lo: int, hi: int) -> None:
        if tall:
            np.matmul(cols[lo:hi], dyw[lo:hi].transpose(0, 2, 1), out=prods[lo:hi])
        else:
            np.matmul(dyw[lo:hi], cols[lo:hi].transpose(0, 2, 1), out=prods[lo:hi])

    for_chunks(part, n, cols.nbytes)
    total = prods.sum(axis=0)
    return total.T if tall else total


def _wide_grid(dy: Array, xp_shape: Tuple[int, ...], out_hw: Tuple[int, int]) -> Array:
    """``dy`` copied onto the padded grid, channel-major: ``(C_out, N, Hp*Wp)``, zeros off the
    output positions (a per-thread scratch buffer, filled a range of images per thread)."""
    n, _, hp, wp = xp_shape
    c_o, (oh, ow), hw, it = dy.shape[1], out_hw, hp * wp, dy.itemsize
    dyt = _scratch("dyt", (c_o, n, hw), dy.dtype)
    grid = np.ndarray((c_o, n, oh, ow), dy.dtype, dyt, 0, (n * hw * it, hw * it, wp * it, it))

    def part(lo: int, hi: int) -> None:
        dyt[:, lo:hi] = 0
        np.copyto(grid[:, lo:hi], dy[lo:hi].transpose(1, 0, 2, 3))

    for_chunks(part, n, dyt.nbytes)
    return dyt


def _backward_wide(w2: Array, cols: Array, dy: Array, cache: Any, k: Tuple[int, int],
                   d: Tuple[int, int], groups: int, chunk_bytes: int) -> Tuple[Array, Array]:
    """Stride-1 backward on wide rows: ``(dw2, dxp)``.

    ``dy`` is laid out channel-major on the padded grid, ``(C_out, N, Hp*Wp)``, zeros off
    the output positions. The input gradient is accumulated channel-major too, where each
    kernel offset's contribution lands on one contiguous run of ``C*N*Hp*Wp`` (measured:
    numpy adds into contiguous targets ~2x faster than into row-strided ones).
    """
    n, c_in, hp, wp = cache.xp_shape
    hw = hp * wp
    dyn = _wide_grid(dy, cache.xp_shape, cache.out_hw).transpose(1, 0, 2)  # (N, C_out, Hp*Wp) view
    dw2 = _weight_grad(dyn[:, :, : cols.shape[-1]], cols, groups)
    # One flat channel-major buffer: offset (p, q) adds onto one contiguous run. Runs spill
    # past a channel's end only from wrapped positions, whose gradient is exactly zero.
    size, kk = c_in * n * hw, k[0] * k[1]
    dxt = np.zeros(size + (k[0] - 1) * d[0] * wp + (k[1] - 1) * d[1], dtype=dy.dtype)
    offsets = [p * d[0] * wp + q * d[1] for p in range(k[0]) for q in range(k[1])]
    # Chunks must keep each add's target contiguous: whole channels, or a run of images of
    # one channel when a whole channel's patch gradient would not fit in ``chunk_bytes``
    # (measured: LeNet's second conv at batch 256, 5 MB a channel, 1.3x faster in 1 MB
    # image runs). Grouped convs go in one piece.
    w2t = w2.T if groups == 1 else None
    per_image = kk * hw * dy.itemsize
    per_channel = n * per_image
    if groups > 1 or per_channel * c_in <= chunk_bytes:
        chunks = [(0, c_in, 0, n)]
    elif per_channel <= chunk_bytes:
        cs = chunk_bytes // per_channel
        chunks = [(c0, min(c0 + cs, c_in), 0, n) for c0 in range(0, c_in, cs)]
    else:  # equal runs of images of about chunk_bytes each (at least one image)
        parts = -(-per_channel // max(chunk_bytes, per_image))
        ns = -(-n // parts)
        chunks = [(c, c + 1, n0, min(n0 + ns, n)) for c in range(c_in) for n0 in range(0, n, ns)]

    def run(lo: int, hi: int) -> None:  # chunks lo..hi-1, in order, on one thread
        for i in range(lo, hi):
            c0, c1, n0, n1 = chunks[i]
            if w2t is None:
                d4 = _grouped_matmul(w2, dyn, groups, transpose=True)
            else:
                d4 = np.matmul(w2t[c0 * kk : c1 * kk], dyn[n0:n1])
            d4 = d4.reshape(n1 - n0, c1 - c0, kk, hw).transpose(2, 1, 0, 3)  # (KH*KW, channels, images, Hp*Wp)
            start = c0 * n * hw + n0 * hw
            # The last chunk of a thread's range stops at its own end: its runs' last ``off``
            # elements (wrapped positions: zeros) would land on the next chunk, which another
            # thread may be adding into. Added before that chunk's own adds, as one thread
            # does, those zeros change nothing, so leaving them out gives the same bits.
            cut = i == hi - 1 and hi < len(chunks)
            for j, off in enumerate(offsets):
                # contiguous: whole channels (all images), or a run of images of one channel
                target = dxt[start + off : start + off + (c1 - c0) * (n1 - n0) * hw].reshape(c1 - c0, n1 - n0, hw)
                if not cut:
                    target += d4[j]
                    continue
                if c1 - c0 > 1:
                    target[:-1] += d4[j, :-1]
                target[-1, :-1] += d4[j, -1, :-1]
                target[-1, -1, : hw - off] += d4[j, -1, -1, : hw - off]

    for_chunks(run, len(chunks), size * kk * dy.itemsize)
    return dw2, dxt[:size].reshape(c_in, n, hp, wp).transpose(1, 0, 2, 3)

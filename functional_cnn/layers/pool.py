"""Max and average pooling over NCHW batches, and global average pooling.

Windows of ``size`` move by ``stride`` (default: ``size``); positions that do not
fill a whole window at the bottom/right edge are dropped (floor), as in PyTorch.
Max pooling sends the gradient to the first maximum of each window (row-major),
so ties (common after ReLU: an all-zero window) get exactly one gradient.
"""
from __future__ import annotations

import functools
import itertools
from typing import Any, Iterator, Optional, Sequence, Tuple

import attrs
import numpy as np

from .._checks import int_pair, shape_tuple
from .._parallel import for_chunks
from ..boundary import Spec
from ..layer import Array, Layer, Shape

__all__ = ["MaxPoolCache", "AvgPoolCache", "max_pool2d", "avg_pool2d", "global_avg_pool2d"]


@attrs.frozen(eq=False)
class MaxPoolCache:
    """Index of the maximum inside each window, and the input's shape."""

    argmax: Array  # (N, C, OH, OW), values in [0, KH*KW)
    x_shape: Tuple[int, ...]
    dtype: np.dtype  # the input's (and the output's)


@attrs.frozen(eq=False)
class AvgPoolCache:
    """Only the input's shape and dtype: the average's gradient needs nothing else."""

    x_shape: Tuple[int, ...]
    dtype: np.dtype


def _out_hw(where: str, arg: str, in_shape: Shape, k: Tuple[int, int], s: Tuple[int, int]) -> Tuple[int, int]:
    if len(in_shape) != 3:
        raise ValueError(f"{where}: {arg} must be (C, H, W) per example, got {tuple(in_shape)}")
    h, w = in_shape[1], in_shape[2]
    if h < k[0] or w < k[1]:
        raise ValueError(f"{where}: window {k} is larger than the input's spatial size {(h, w)} "
                         f"({arg} {tuple(in_shape)})")
    return (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1


def _offsets(k: Tuple[int, int]) -> Iterator[Tuple[int, int]]:
    """Kernel offsets ``(p, q)`` in row-major order (``j = p*KW + q``), made as they are used.

    Never built at construction: ``max_pool2d(10**6)`` costs nothing until a forward pass,
    and ``init``/forward refuse a window larger than the input, so the loop is bounded by it.
    """
    return itertools.product(range(k[0]), range(k[1]))


def _view(x: Array, p: int, q: int, s: Tuple[int, int], out_hw: Tuple[int, int]) -> Array:
    """``x[n, c, i*SH + p, j*SW + q]`` for every output ``(i, j)``: a strided view."""
    return x[:, :, p : p + (out_hw[0] - 1) * s[0] + 1 : s[0], q : q + (out_hw[1] - 1) * s[1] + 1 : s[1]]


def _first_max(views: Sequence[Array], out: Optional[Array] = None) -> Tuple[Array, Array]:
    """Element-wise maximum of ``views`` (into ``out`` if given) and the index of the first view
    attaining it (uint8).

    Strict ``>`` keeps the earlier index on ties; every step writes into our own buffers.
    """
    if len(views) == 1:
        if out is None:
            out = np.empty(views[0].shape, dtype=views[0].dtype)
        np.copyto(out, views[0])
        return out, np.zeros(views[0].shape, dtype=np.uint8)
    small = len(views) <= 256
    best = np.maximum(views[0], views[1], out=out)
    idx = np.greater(views[1], views[0]).view(np.uint8)
    if not small:
        idx = idx.astype(np.intp)
    for j in range(2, len(views)):
        gt = np.greater(views[j], best)
        np.maximum(best, views[j], out=best)
        if small:  # idx += gt * (j - idx), modulo 256: idx becomes j where gt
            step = np.subtract(np.uint8(j), idx)
            step *= gt.view(np.uint8)
            idx += step
        else:
            idx[gt] = j
    return best, idx


def _sum(views: Sequence[Array]) -> Array:
    """Element-wise sum of equally shaped views into a new array."""
    total = np.array(views[0]) if len(views) == 1 else np.add(views[0], views[1])
    for v in views[2:]:
        total += v
    return total


def _max_pool_blocks(x: Array, k: Tuple[int, int], out_hw: Tuple[int, int], y: Array, idx: Array) -> None:
    """Max pooling when stride == size into ``y`` and ``idx``, in two stages with long inner loops.

    Columns first: ``x[..., q::KW]`` over whole rows is one long strided run per
    offset. Then rows, on the ``KH`` times smaller result. Picking, inside the row
    chosen, the column chosen for that row gives the row-major first maximum.
    """
    n, c = x.shape[:2]
    oh, ow = out_hw
    xc = x[:, :, : oh * k[0], : ow * k[1]]
    cmax, cidx = _first_max([xc[:, :, :, q :: k[1]] for q in range(k[1])])  # (N, C, OH*KH, OW)
    r5 = cmax.reshape(n, c, oh, k[0], ow)
    _, ridx = _first_max([r5[:, :, :, p] for p in range(k[0])], out=y)
    c5 = cidx.reshape(n, c, oh, k[0], ow)
    if k[0] == 1:
        np.copyto(idx, c5[:, :, :, 0])
        return
    if k[0] == 2:  # column of the chosen row: c0 + r * (c1 - c0), in uint8
        col = np.subtract(c5[:, :, :, 1], c5[:, :, :, 0])
        col *= ridx
        col += c5[:, :, :, 0]
    else:
        col = np.take_along_axis(c5, ridx[:, :, :, None, :], axis=3)[:, :, :, 0]
    if k[1] > 1:
        np.multiply(ridx, np.uint8(k[1]), out=idx)
    else:
        np.copyto(idx, ridx)
    idx += col


#: Images per block of :func:`_max_pool_2x2`: about this many bytes of input (measured: larger
#: blocks lose the cache, smaller ones pay numpy's per-call cost).
POOL_BLOCK_BYTES = 1 << 20


def _max_pool_2x2(x: Array, y: Array, idx: Array) -> None:
    """2x2 max pooling with stride 2 into ``y`` and ``idx``, on contiguous runs of the flat input.

    Same values and indices as :func:`_max_pool_blocks`, from the same comparisons, but every
    comparison runs over the flattened batch shifted by one position (columns) or one row
    (rows): contiguous operands that numpy vectorizes, where the strided window views are not.
    Each window's results sit at its top-left position ``t``; one strided copy gathers them:

    * ``m[t] = max(x[t], x[t+1])``, ``cg[t] = x[t+1] > x[t]`` (the column chosen in a row);
    * ``y = max(m[t], m[t+W])``, ``r = m[t+W] > m[t]`` (the row chosen, ties to the top);
    * ``idx = 2r + cg[t + r*W]``, the row-major first maximum.
    """
    n, c, h, w = x.shape
    per = max(1, POOL_BLOCK_BYTES // max(1, x[:1].nbytes))
    shape = (c, h // 2, w // 2)
    steps = (c * h * w, h * w, 2 * w, 2)
    it = x.itemsize
    for lo in range(0, n, per):
        hi = min(n, lo + per)
        f = x[lo:hi].reshape(-1)
        m = np.maximum(f[:-1], f[1:])
        cg = np.greater(f[1:], f[:-1]).view(np.uint8)
        top = np.maximum(m[:-w], m[w:])
        r = np.greater(m[w:], m[:-w]).view(np.uint8)
        col = np.subtract(cg[w:], cg[:-w])  # cg of the row chosen: cg[t] + r * (cg[t+W] - cg[t]), in uint8
        col *= r
        col += cg[:-w]
        col += r
        col += r
        at = (hi - lo,) + shape
        np.copyto(y[lo:hi], np.ndarray(at, x.dtype, top, 0, tuple(s * it for s in steps)))
        np.copyto(idx[lo:hi], np.ndarray(at, np.uint8, col, 0, steps))


@functools.lru_cache(maxsize=16)
def _scatter_table(c: int, h: int, w: int, out_hw: Tuple[int, int], s: Tuple[int, int],
                   k: Tuple[int, int]) -> Tuple[Array, Array]:
    """``(starts, offsets)``, read-only: the flat index, inside one image, of each window's top-left input
    ``(C, OH, OW)``, and for each window index ``j = p*KW + q`` the offset ``p*W + q`` from there."""
    oh, ow = out_hw
    starts = (np.arange(c, dtype=np.intp)[:, None, None] * (h * w) + np.arange(oh, dtype=np.intp)[:, None] * (s[0] * w)
              + np.arange(ow, dtype=np.intp) * s[1])
    offsets = np.array([p * w + q for p, q in _offsets(k)], dtype=np.intp)
    starts.flags.writeable = offsets.flags.writeable = False
    return starts, offsets


def _route_to_max(dy: Array, idx: Array, x_shape: Tuple[int, ...], k: Tuple[int, int], s: Tuple[int, int]) -> Array:
    """Max pooling's input gradient for windows that do not overlap: each ``dy`` goes to its
    window's chosen position, every other position is 0. One scatter: ``dx.flat[at] = dy`` with
    ``at = image * C*H*W + window start + p*W + q`` for the window's index ``j = p*KW + q``.
    """
    n, c, h, w = x_shape
    dx = np.zeros(x_shape, dtype=dy.dtype)
    starts, offsets = _scatter_table(c, h, w, tuple(idx.shape[2:]), s, k)
    chw = c * h * w

    def part(lo: int, hi: int) -> None:  # images lo..hi-1 write only their own part of dx
        at = offsets.take(idx[lo:hi])
        at += starts
        at += (np.arange(hi - lo, dtype=np.intp) * chw)[:, None, None, None]
        dx[lo:hi].reshape(-1)[at.reshape(-1)] = dy[lo:hi].reshape(-1)

    for_chunks(part, n, dx.nbytes)
    return dx


def _pool_init(where: str, k: Tuple[int, int], s: Tuple[int, int]) -> Any:
    """The shared ``init`` of the 2-D poolings: no params, output ``(C, OH, OW)``."""

    def init(rng: Any, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, None]:
        in_shape = shape_tuple(in_shape, where)
        return (in_shape[0],) + _out_hw(where, "in_shape", in_shape, k, s), None

    return init


def _pool_spec(where: str, k: Tuple[int, int], s: Tuple[int, int], cache: type) -> Spec:
    """What the 2-D poolings accept: ``(N, C, H, W)`` with windows that fit; no params."""

    def out_of_cache(params: None, c: Any) -> Tuple[Shape, np.dtype]:
        return c.x_shape[:2] + _out_hw(where, "x.shape[1:]", c.x_shape[1:], k, s), c.dtype

    return Spec(lambda in_shape, arg: (in_shape[0],) + _out_hw(where, arg, in_shape, k, s), rank=4,
                layout="(N, C, H, W)", cache=cache, out_of_cache=out_of_cache, draws=False)


def _pool_args(where: str, size: Any, stride: Any) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    k = int_pair(size, where, "size")
    s = k if stride is None else int_pair(stride, where, "stride")
    return k, s


def max_pool2d(size: Any, stride: Optional[Any] = None) -> Layer:
    """Max pooling over ``size`` windows of an NCHW batch.

    ``y[n, c, i, j] = max_{p, q} x[n, c, i*SH + p, j*SW + q]``; backward sends
    ``dy[n, c, i, j]`` to the window's first maximum (row-major), the rest get 0.

    Args:
        size: ``k`` or ``(KH, KW)``, each >= 1.
        stride: ``s`` or ``(SH, SW)``; defaults to ``size``.

    Returns:
        A Layer mapping ``(N, C, H, W)`` to ``(N, C, OH, OW)`` with
        ``OH = (H - KH) // SH + 1``; no params.
    """
    where = "max_pool2d"
    k, s = _pool_args(where, size, stride)
    kk = k[0] * k[1]
    idx_dtype = np.uint8 if kk <= 256 else np.intp

    init = _pool_init(where, k, s)

    def forward(params: None, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, MaxPoolCache]:
        out_hw = _out_hw(where, "x.shape[1:]", x.shape[1:], k, s)
        if s == k == (2, 2) and x.dtype.isnative:  # (a byte-swapped x gets here only with validation off)
            x = np.ascontiguousarray(x)
            y = np.empty(x.shape[:2] + out_hw, dtype=x.dtype)
            idx = np.empty(y.shape, dtype=np.uint8)
            if x.size:
                for_chunks(lambda lo, hi: _max_pool_2x2(x[lo:hi], y[lo:hi], idx[lo:hi]), x.shape[0], 2 * x.nbytes)
        elif s == k and kk <= 255:
            y = np.empty(x.shape[:2] + out_hw, dtype=x.dtype)
            idx = np.empty(y.shape, dtype=np.uint8)
            for_chunks(lambda lo, hi: _max_pool_blocks(x[lo:hi], k, out_hw, y[lo:hi], idx[lo:hi]), x.shape[0],
                       3 * x.nbytes)
        else:
            y, idx = _first_max([_view(x, p, q, s, out_hw) for p, q in _offsets(k)])
        return y, MaxPoolCache(idx, x.shape, x.dtype)

    def backward(params: None, cache: MaxPoolCache, dy: Array, *, need_dx: bool = True) -> Tuple[None, Optional[Array]]:
        if not need_dx:
            return None, None
        idx = cache.argmax
        if s[0] >= k[0] and s[1] >= k[1]:  # windows do not overlap: one write per window
            return None, _route_to_max(dy, idx, cache.x_shape, k, s)
        out_hw = idx.shape[2:]
        dx = np.zeros(cache.x_shape, dtype=dy.dtype)
        for j, (p, q) in enumerate(_offsets(k)):  # overlapping windows: adds, in offset order
            target = _view(dx, p, q, s, out_hw)
            target += np.where(idx == j, dy, dy.dtype.type(0))
        return None, dx

    def cache_bytes(in_shape: Shape, itemsize: int) -> int:
        oh, ow = _out_hw(where, "in_shape", tuple(in_shape), k, s)
        return in_shape[0] * oh * ow * np.dtype(idx_dtype).itemsize

    return Layer("max_pool2d", init, forward, backward, cache_bytes=cache_bytes,
                 config=dict(size=k, **({} if s == k else {"stride": s})), spec=_pool_spec(where, k, s, MaxPoolCache))


def avg_pool2d(size: Any, stride: Optional[Any] = None) -> Layer:
    """Average pooling over ``size`` windows of an NCHW batch (same geometry as :func:`max_pool2d`).

    ``y[n, c, i, j] = mean_{p, q} x[n, c, i*SH + p, j*SW + q]``; backward spreads
    ``dy[n, c, i, j] / (KH*KW)`` over the window.
    """
    where = "avg_pool2d"
    k, s = _pool_args(where, size, stride)
    kk = k[0] * k[1]

    init = _pool_init(where, k, s)

    def forward(params: None, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, AvgPoolCache]:
        out_hw = _out_hw(where, "x.shape[1:]", x.shape[1:], k, s)
        if s == k:  # columns, then rows: long inner loops (see _max_pool_blocks)
            n, c = x.shape[:2]
            xc = x[:, :, : out_hw[0] * k[0], : out_hw[1] * k[1]]
            rows = _sum([xc[:, :, :, q :: k[1]] for q in range(k[1])]).reshape(n, c, out_hw[0], k[0], out_hw[1])
            y = _sum([rows[:, :, :, p] for p in range(k[0])])
        else:
            y = _sum([_view(x, p, q, s, out_hw) for p, q in _offsets(k)])
        y *= x.dtype.type(1.0 / kk)
        return y, AvgPoolCache(x.shape, x.dtype)

    def backward(params: None, cache: AvgPoolCache, dy: Array, *, need_dx: bool = True) -> Tuple[None, Optional[Array]]:
        if not need_dx:
            return None, None
        out_hw = dy.shape[2:]
        share = dy * dy.dtype.type(1.0 / kk)
        dx = np.zeros(cache.x_shape, dtype=dy.dtype)
        for p, q in _offsets(k):
            target = _view(dx, p, q, s, out_hw)
            target += share
        return None, dx

    def cache_bytes(in_shape: Shape, itemsize: int) -> int:
        return 0

    return Layer("avg_pool2d", init, forward, backward, cache_bytes=cache_bytes,
                 config=dict(size=k, **({} if s == k else {"stride": s})), spec=_pool_spec(where, k, s, AvgPoolCache))


def global_avg_pool2d() -> Layer:
    """Mean over the spatial axes: ``y[n, c] = mean_{h, w} x[n, c, h, w]``, ``(N, C, H, W) -> (N, C)``."""
    where = "global_avg_pool2d"

    def out_shape(in_shape: Shape, arg: str) -> Shape:
        if len(in_shape) != 3:
            raise ValueError(f"{where}: {arg} must be (C, H, W) with H, W >= 1, got {tuple(in_shape)}")
        return (in_shape[0],)

    def init(rng: Any, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, None]:
        return out_shape(shape_tuple(in_shape, where), "in_shape"), None

    def forward(params: None, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, AvgPoolCache]:
        return x.mean(axis=(2, 3), dtype=x.dtype), AvgPoolCache(x.shape, x.dtype)

    def backward(params: None, cache: AvgPoolCache, dy: Array, *, need_dx: bool = True) -> Tuple[None, Optional[Array]]:
        if not need_dx:
            return None, None
        n, c, h, w = cache.x_shape
        share = dy * dy.dtype.type(1.0 / (h * w))
        return None, np.ascontiguousarray(np.broadcast_to(share[:, :, None, None], cache.x_shape))

    spec = Spec(out_shape, rank=4, layout="(N, C, H, W)", cache=AvgPoolCache,
                out_of_cache=lambda p, c: (c.x_shape[:2], c.dtype), draws=False)
    return Layer(where, init, forward, backward, cache_bytes=lambda in_shape, itemsize: 0, spec=spec)

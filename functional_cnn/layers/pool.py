"""Max and average pooling over NCHW batches, and global average pooling.

Windows of ``size`` move by ``stride`` (default: ``size``); positions that do not
fill a whole window at the bottom/right edge are dropped (floor), as in PyTorch.
Max pooling sends the gradient to the first maximum of each window (row-major),
so ties (common after ReLU: an all-zero window) get exactly one gradient.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import attrs
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._checks import float_array, int_pair, shape_tuple
from ..layer import Array, Layer, Shape

__all__ = ["MaxPoolCache", "AvgPoolCache", "max_pool2d", "avg_pool2d", "global_avg_pool2d"]


@attrs.frozen(eq=False)
class MaxPoolCache:
    """Index of the maximum inside each window, and the input's shape."""

    argmax: Array  # (N, C, OH, OW), values in [0, KH*KW)
    x_shape: Tuple[int, ...]


@attrs.frozen(eq=False)
class AvgPoolCache:
    """Only the input's shape: the average's gradient needs nothing else."""

    x_shape: Tuple[int, ...]


def _out_hw(where: str, arg: str, in_shape: Shape, k: Tuple[int, int], s: Tuple[int, int]) -> Tuple[int, int]:
    if len(in_shape) != 3:
        raise ValueError(f"{where}: {arg} must be (C, H, W) per example, got {tuple(in_shape)}")
    h, w = in_shape[1], in_shape[2]
    if h < k[0] or w < k[1]:
        raise ValueError(f"{where}: window {k} is larger than the input's spatial size {(h, w)}")
    return (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1


def _windows(x: Array, k: Tuple[int, int], s: Tuple[int, int], out_hw: Tuple[int, int]) -> Array:
    """A view ``(N, C, OH, OW, KH, KW)`` of the pooling windows (no copy)."""
    oh, ow = out_hw
    if s == k:
        n, c = x.shape[:2]
        xc = x[:, :, : oh * k[0], : ow * k[1]].reshape(n, c, oh, k[0], ow, k[1])
        return xc.transpose(0, 1, 2, 4, 3, 5)
    win = sliding_window_view(x, k, axis=(2, 3))
    return win[:, :, : (oh - 1) * s[0] + 1 : s[0], : (ow - 1) * s[1] + 1 : s[1]]


def _scatter(vals: Array, x_shape: Tuple[int, ...], k: Tuple[int, int], s: Tuple[int, int]) -> Array:
    """Adjoint of :func:`_windows`: add ``vals`` ``(N, C, OH, OW, KH, KW)`` into an array of ``x_shape``."""
    n, c, h, w = x_shape
    _, _, oh, ow = vals.shape[:4]
    if s == k:
        block = vals.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, oh * k[0], ow * k[1])
        if block.shape[2:] == (h, w):
            return np.ascontiguousarray(block)
        dx = np.zeros(x_shape, dtype=vals.dtype)
        dx[:, :, : oh * k[0], : ow * k[1]] = block
        return dx
    dx = np.zeros(x_shape, dtype=vals.dtype)
    for p in range(k[0]):
        for q in range(k[1]):
            dx[:, :, p : p + (oh - 1) * s[0] + 1 : s[0], q : q + (ow - 1) * s[1] + 1 : s[1]] += vals[..., p, q]
    return dx


def _pool_args(where: str, size: Any, stride: Any) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    k = int_pair(size, where, "size")
    s = k if stride is None else int_pair(stride, where, "stride")
    return k, s


def max_pool2d(size: Any, stride: Optional[Any] = None) -> Layer:
    """Max pooling over ``size`` windows of an NCHW batch.

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
    idx_dtype = np.uint8 if kk <= 255 else np.intp

    def init(rng: Any, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, None]:
        in_shape = shape_tuple(in_shape, where)
        oh, ow = _out_hw(where, "in_shape", in_shape, k, s)
        return (in_shape[0], oh, ow), None

    def forward(params: Any, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, MaxPoolCache]:
        x = float_array(x, where, "x", ndim=4, layout="(N, C, H, W)")
        out_hw = _out_hw(where, "x.shape[1:]", x.shape[1:], k, s)
        win = _windows(x, k, s, out_hw).reshape(x.shape[:2] + out_hw + (kk,))  # one copy
        idx = win.argmax(axis=-1)
        y = np.take_along_axis(win, idx[..., None], axis=-1)[..., 0]
        return y, MaxPoolCache(idx.astype(idx_dtype), tuple(x.shape))

    def backward(params: Any, cache: MaxPoolCache, dy: Array) -> Tuple[None, Array]:
        if tuple(np.shape(dy)) != cache.argmax.shape:
            raise ValueError(f"{where}: dy must have shape {cache.argmax.shape}, got {np.shape(dy)}")
        hit = cache.argmax[..., None] == np.arange(kk, dtype=cache.argmax.dtype)
        vals = (hit * dy[..., None]).reshape(dy.shape + k)
        return None, _scatter(vals, cache.x_shape, k, s)

    def cache_bytes(in_shape: Shape, itemsize: int) -> int:
        oh, ow = _out_hw(where, "in_shape", tuple(in_shape), k, s)
        return in_shape[0] * oh * ow * np.dtype(idx_dtype).itemsize

    return Layer("max_pool2d", init, forward, backward, cache_bytes=cache_bytes, config=dict(size=k, **({} if s == k else {"stride": s})))


def avg_pool2d(size: Any, stride: Optional[Any] = None) -> Layer:
    """Average pooling over ``size`` windows of an NCHW batch (same geometry as :func:`max_pool2d`)."""
    where = "avg_pool2d"
    k, s = _pool_args(where, size, stride)
    kk = k[0] * k[1]

    def init(rng: Any, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, None]:
        in_shape = shape_tuple(in_shape, where)
        oh, ow = _out_hw(where, "in_shape", in_shape, k, s)
        return (in_shape[0], oh, ow), None

    def forward(params: Any, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, AvgPoolCache]:
        x = float_array(x, where, "x", ndim=4, layout="(N, C, H, W)")
        out_hw = _out_hw(where, "x.shape[1:]", x.shape[1:], k, s)
        y = _windows(x, k, s, out_hw).sum(axis=(4, 5))
        y *= x.dtype.type(1.0 / kk)
        return y, AvgPoolCache(tuple(x.shape))

    def backward(params: Any, cache: AvgPoolCache, dy: Array) -> Tuple[None, Array]:
        n, c, h, w = cache.x_shape
        expected = (n, c) + _out_hw(where, "x.shape[1:]", (c, h, w), k, s)
        if tuple(np.shape(dy)) != expected:
            raise ValueError(f"{where}: dy must have shape {expected}, got {np.shape(dy)}")
        share = dy * dy.dtype.type(1.0 / kk)
        vals = np.broadcast_to(share[..., None, None], dy.shape + k)
        return None, _scatter(vals, cache.x_shape, k, s)

    def cache_bytes(in_shape: Shape, itemsize: int) -> int:
        return 0

    return Layer("avg_pool2d", init, forward, backward, cache_bytes=cache_bytes, config=dict(size=k, **({} if s == k else {"stride": s})))


def global_avg_pool2d() -> Layer:
    """Mean over the spatial axes: ``(N, C, H, W) -> (N, C)``."""
    where = "global_avg_pool2d"

    def init(rng: Any, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, None]:
        in_shape = shape_tuple(in_shape, where)
        if len(in_shape) != 3 or in_shape[1] * in_shape[2] == 0:
            raise ValueError(f"{where}: in_shape must be (C, H, W) with H, W >= 1, got {in_shape}")
        return (in_shape[0],), None

    def forward(params: Any, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, AvgPoolCache]:
        x = float_array(x, where, "x", ndim=4, layout="(N, C, H, W)")
        if x.shape[2] * x.shape[3] == 0:
            raise ValueError(f"{where}: x must have H, W >= 1, got shape {x.shape}")
        return x.mean(axis=(2, 3), dtype=x.dtype), AvgPoolCache(tuple(x.shape))

    def backward(params: Any, cache: AvgPoolCache, dy: Array) -> Tuple[None, Array]:
        n, c, h, w = cache.x_shape
        if tuple(np.shape(dy)) != (n, c):
            raise ValueError(f"{where}: dy must have shape {(n, c)}, got {np.shape(dy)}")
        share = dy * dy.dtype.type(1.0 / (h * w))
        return None, np.ascontiguousarray(np.broadcast_to(share[:, :, None, None], cache.x_shape))

    return Layer("global_avg_pool2d", init, forward, backward, cache_bytes=lambda in_shape, itemsize: 0)

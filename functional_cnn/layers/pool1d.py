"""Max and average pooling along ``L`` of ``(N, C, L)`` batches, by the 2-D poolings on ``(N, C, 1, L)``.

``y[n, c, i] = max_k x[n, c, i*stride + k]`` (or the mean), over windows of ``size``
that fit whole; the gradient goes to the first maximum of each window.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import numpy as np

from .._checks import positive_int
from ..boundary import Spec
from ..layer import Array, Layer, Shape
from ._oned import OneDCache, shape_cl
from .pool import avg_pool2d, max_pool2d

__all__ = ["max_pool1d", "avg_pool1d"]


def _pool1d(where: str, make: Callable[..., Layer], size: int, stride: Optional[int]) -> Layer:
    k = positive_int(size, where, "size")
    s = k if stride is None else positive_int(stride, where, "stride")
    inner = make((1, k), (1, s))

    def out_shape(in_shape: Shape, arg: str) -> Shape:
        c, length = in_shape
        if length < k:
            raise ValueError(f"{where}: window {k} is longer than the input length {length} ({arg} {tuple(in_shape)})")
        return c, (length - k) // s + 1

    def init(rng: Any, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, None]:
        return out_shape(shape_cl(where, in_shape), "in_shape"), None

    def forward(params: None, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, OneDCache]:
        y, cache = inner.forward_unchecked(None, x[:, :, None, :], rng=rng, train=train)
        y_shape = (x.shape[0],) + out_shape(x.shape[1:], "x.shape[1:]")
        return y.reshape(y_shape), OneDCache(cache, x.shape, y_shape, x.dtype)

    def backward(params: None, cache: OneDCache, dy: Array, *, need_dx: bool = True) -> Tuple[None, Optional[Array]]:
        if not need_dx:
            return None, None
        _, dx = inner.backward_unchecked(None, cache.inner, dy[:, :, None, :])
        return None, dx.reshape(cache.x_shape)

    def cache_bytes(in_shape: Shape, itemsize: int) -> int:
        c, length = in_shape
        return inner.cache_bytes((c, 1, length), itemsize)

    spec = Spec(out_shape, rank=3, layout="(N, C, L)", cache=OneDCache, out_of_cache=lambda p, c: (c.y_shape, c.dtype),
                draws=False)
    return Layer(where, init, forward, backward, cache_bytes=cache_bytes,
                 config=dict(size=k, **({} if s == k else {"stride": s})), spec=spec)


def max_pool1d(size: int, stride: Optional[int] = None) -> Layer:
    """Max pooling over windows of ``size`` along ``L`` of ``(N, C, L)`` batches.

    Args:
        size: window length ``K >= 1``.
        stride: step ``>= 1``; defaults to ``size``. Incomplete windows at the end are dropped.

    Returns:
        A Layer mapping ``(N, C, L)`` to ``(N, C, (L - K) // stride + 1)``; no params.
    """
    return _pool1d("max_pool1d", max_pool2d, size, stride)


def avg_pool1d(size: int, stride: Optional[int] = None) -> Layer:
    """Average pooling along ``L`` of ``(N, C, L)`` batches (geometry as :func:`max_pool1d`)."""
    return _pool1d("avg_pool1d", avg_pool2d, size, stride)

"""Layers that only change the per-example shape: ``flatten`` and ``reshape``."""
from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import numpy as np

from .._checks import shape_tuple
from ..boundary import Spec
from ..layer import Array, Layer, Shape, ShapeCache

__all__ = ["flatten", "reshape"]


def _reshape_layer(where: str, target_of: Any, config: dict) -> Layer:
    """A layer reshaping each example to ``target_of(in_shape)``; backward undoes it."""

    def init(rng: Any, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, None]:
        in_shape = shape_tuple(in_shape, where)
        return target_of(in_shape, "in_shape"), None

    def forward(params: None, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, ShapeCache]:
        return x.reshape((x.shape[0],) + target_of(x.shape[1:], "x.shape[1:]")), ShapeCache(x.shape, x.dtype)

    def backward(params: None, cache: ShapeCache, dy: Array, *, need_dx: bool = True) -> Tuple[None, Optional[Array]]:
        return None, dy.reshape(cache.x_shape) if need_dx else None

    def out_of_cache(params: None, cache: ShapeCache) -> Tuple[Shape, np.dtype]:
        return cache.x_shape[:1] + target_of(cache.x_shape[1:], "x.shape[1:]"), cache.dtype

    spec = Spec(target_of, cache=ShapeCache, out_of_cache=out_of_cache, draws=False)
    return Layer(where, init, forward, backward, cache_bytes=lambda s, i: 0, config=config, spec=spec)


def flatten() -> Layer:
    """``(N, d1, d2, ...) -> (N, d1*d2*...)``."""

    def target(in_shape: Shape, arg: str) -> Shape:
        return (int(math.prod(in_shape)),)  # math.prod: no array made per call

    return _reshape_layer("flatten", target, {})


def reshape(shape: Any) -> Layer:
    """Reshape each example to ``shape`` (batch axis excluded); one entry may be -1.

    >>> reshape((4, -1)).init(None, (2, 8))[0]
    (4, 4)
    """
    where = "reshape"
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in shape
    ):
        raise TypeError(f"{where}: shape must be a tuple of ints, got {shape!r}")
    spec = tuple(int(d) for d in shape)
    if spec.count(-1) > 1 or any(d < -1 or d == 0 for d in spec):
        raise ValueError(f"{where}: shape may hold one -1 and otherwise sizes >= 1, got {spec}")

    def target(in_shape: Shape, arg: str) -> Shape:
        total = int(math.prod(in_shape))
        known = int(math.prod(d for d in spec if d != -1))
        if -1 in spec:
            if known == 0 or total % known:
                raise ValueError(f"{where}: cannot reshape {arg} {tuple(in_shape)} ({total} values) to {spec}")
            return tuple(total // known if d == -1 else d for d in spec)
        if known != total:
            raise ValueError(f"{where}: cannot reshape {arg} {tuple(in_shape)} ({total} values) to {spec}")
        return spec

    return _reshape_layer(where, target, dict(shape=spec))

"""``bias``: add a learned array of the full per-example shape (one bias per output position)."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from .._checks import float_dtype, shape_tuple
from ..boundary import Spec
from ..initializers import get_initializer
from ..layer import Array, Layer, Shape, ShapeCache, param_field
from ..params import params_record

__all__ = ["BiasParams", "bias"]


@params_record
class BiasParams:
    """Parameters of :func:`bias`."""

    b: Array = param_field()  # the per-example shape


def bias(b_init: Any = "zeros") -> Layer:
    """``y = x + b`` with ``b`` of the per-example shape (seed 002's convolution bias).

    Backward: ``db = sum_n dy``, ``dx = dy``.

    >>> bias().init(np.random.default_rng(0), (5, 26, 26))[1].b.shape
    (5, 26, 26)
    """
    where = "bias"
    init_fn = get_initializer(b_init, where, "b_init")

    def init(rng: np.random.Generator, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, BiasParams]:
        in_shape = shape_tuple(in_shape, where)
        size = max(int(np.prod(in_shape)), 1)
        return in_shape, BiasParams(init_fn(rng, in_shape, size, size, float_dtype(dtype, where)))

    def forward(params: BiasParams, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, ShapeCache]:
        return x + params.b, ShapeCache(x.shape, x.dtype)

    def backward(params: BiasParams, cache: ShapeCache, dy: Array, *, need_dx: bool = True
                 ) -> Tuple[BiasParams, Optional[Array]]:
        return BiasParams(dy.sum(axis=0)), dy if need_dx else None

    spec = Spec(lambda s, arg: tuple(s), params=BiasParams, param_shapes=lambda s: dict(b=tuple(s)),
                in_size=(None, "shape", lambda p: p.b.shape), cache=ShapeCache,
                out_of_cache=lambda p, c: (c.x_shape, c.dtype), draws=False)
    return Layer(where, init, forward, backward, cache_bytes=lambda s, i: 0, spec=spec)

"""``bias``: add a learned array of the full per-example shape (one bias per output position)."""
from __future__ import annotations

from typing import Any, Tuple

import attrs
import numpy as np

from .._checks import check_params_type, cotangent, float_array, float_dtype, same_dtype, shape_tuple
from ..initializers import get_initializer
from ..layer import Array, Layer, Shape, param_field

__all__ = ["BiasParams", "bias"]


@attrs.frozen(eq=False)
class BiasParams:
    """Parameters of :func:`bias`."""

    b: Array = param_field()  # the per-example shape


def bias(b_init: Any = "zeros") -> Layer:
    """``y = x + b`` with ``b`` of the per-example shape (seed 002's convolution bias).

    >>> bias().init(np.random.default_rng(0), (5, 26, 26))[1].b.shape
    (5, 26, 26)
    """
    where = "bias"
    init_fn = get_initializer(b_init, where, "b_init")

    def init(rng: np.random.Generator, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, BiasParams]:
        in_shape = shape_tuple(in_shape, where)
        size = max(int(np.prod(in_shape)), 1)
        return in_shape, BiasParams(init_fn(rng, in_shape, size, size, float_dtype(dtype, where)))

    def forward(params: BiasParams, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, Tuple[int, ...]]:
        check_params_type(params, BiasParams, where)
        x = float_array(x, where, "x")
        same_dtype(x, params.b, where)
        if x.shape[1:] != params.b.shape:
            raise ValueError(f"{where}: x must have per-example shape {params.b.shape}, got {x.shape[1:]}")
        return x + params.b, tuple(x.shape)

    def backward(params: BiasParams, cache: Tuple[int, ...], dy: Array) -> Tuple[BiasParams, Array]:
        check_params_type(params, BiasParams, where)
        dy = cotangent(dy, cache, where)
        return BiasParams(dy.sum(axis=0)), dy

    return Layer(where, init, forward, backward, cache_bytes=lambda s, i: 0)

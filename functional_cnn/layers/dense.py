"""Fully connected layer: ``y = x @ w + b`` on ``(N, F_in)`` batches."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import attrs
import numpy as np

from .._checks import cotangent, check_params_type, float_array, float_dtype, positive_int, same_dtype, shape_tuple
from ..initializers import get_initializer
from ..layer import Array, Layer, Shape, param_field

__all__ = ["DenseParams", "DenseCache", "dense"]


@attrs.frozen(eq=False)
class DenseParams:
    """Parameters of :func:`dense`."""

    w: Array = param_field()  # (F_in, F_out)
    b: Optional[Array] = param_field(default=None)  # (F_out,) or None when use_bias=False


@attrs.frozen(eq=False)
class DenseCache:
    """The layer's input, kept for the weight gradient."""

    x: Array  # (N, F_in)


def dense(out_features: int, use_bias: bool = True, *, w_init: Any = "he_normal", b_init: Any = "zeros") -> Layer:
    """Fully connected layer.

    Args:
        out_features: ``F_out``.
        use_bias: add a bias ``b`` of shape ``(F_out,)``.
        w_init, b_init: initializer names or callables.

    Returns:
        A Layer mapping ``(N, F_in)`` to ``(N, F_out)``; params are
        :class:`DenseParams` with ``w`` of shape ``(F_in, F_out)``. Put
        ``flatten()`` before it for image inputs.
    """
    where = "dense"
    f_out = positive_int(out_features, where, "out_features")
    if not isinstance(use_bias, bool):
        raise TypeError(f"{where}: use_bias must be a bool, got {use_bias!r}")
    w_init_fn = get_initializer(w_init, where, "w_init")
    b_init_fn = get_initializer(b_init, where, "b_init")

    def init(rng: np.random.Generator, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, DenseParams]:
        in_shape = shape_tuple(in_shape, where)
        dt = float_dtype(dtype, where)
        if len(in_shape) != 1 or in_shape[0] < 1:
            raise ValueError(
                f"{where}: in_shape must be (F_in,) with F_in >= 1, got {in_shape}; put flatten() before dense "
                f"for image inputs"
            )
        f_in = in_shape[0]
        w = w_init_fn(rng, (f_in, f_out), f_in, f_out, dt)
        b = b_init_fn(rng, (f_out,), f_in, f_out, dt) if use_bias else None
        return (f_out,), DenseParams(w, b)

    def forward(params: DenseParams, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, DenseCache]:
        check_params_type(params, DenseParams, where)
        x = float_array(x, where, "x", ndim=2, layout="(N, F_in); put flatten() before dense for images")
        same_dtype(x, params.w, where)
        if x.shape[1] != params.w.shape[0]:
            raise ValueError(
                f"{where}: x has {x.shape[1]} features (shape {x.shape}), params expect {params.w.shape[0]} "
                f"(w shape {params.w.shape})"
            )
        y = np.dot(x, params.w)  # np.dot: BLAS for every 2-D shape (matmul is 5x slower when K == 1)
        if params.b is not None:
            y += params.b
        return y, DenseCache(x)

    def backward(params: DenseParams, cache: DenseCache, dy: Array) -> Tuple[DenseParams, Array]:
        expected = (cache.x.shape[0], params.w.shape[1])
        dy = cotangent(dy, expected, where, dtype=params.w.dtype)
        dw = np.dot(cache.x.T, dy)
        dw.flags.writeable = False  # fresh arrays: the record takes them without a copy
        db = None
        if params.b is not None:
            db = dy.sum(axis=0)
            db.flags.writeable = False
        return DenseParams(dw, db), np.dot(dy, params.w.T)

    def cache_bytes(in_shape: Shape, itemsize: int) -> int:
        return int(np.prod(in_shape)) * itemsize

    return Layer("dense", init, forward, backward, cache_bytes=cache_bytes,
                 config=dict(out_features=f_out, **({} if use_bias else {"use_bias": False})))

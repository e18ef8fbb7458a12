"""Fully connected layer: ``y = x @ w + b`` on ``(N, F_in)`` batches."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import attrs
import numpy as np

from .._checks import float_dtype, positive_int, shape_tuple
from ..boundary import Spec
from ..initializers import get_initializer
from ..layer import Array, Layer, Shape, param_field
from ..params import freeze, params_record

__all__ = ["DenseParams", "DenseCache", "dense"]


@params_record
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

    ``y = x @ w + b``; backward: ``dw = x.T @ dy``, ``db = sum_n dy``, ``dx = dy @ w.T``.

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

    def out_shape(in_shape: Shape, arg: str) -> Shape:
        if len(in_shape) != 1:
            raise ValueError(f"{where}: {arg} must be (F_in,), got {tuple(in_shape)}; put flatten() before dense "
                             f"for image inputs")
        return (f_out,)

    def init(rng: np.random.Generator, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, DenseParams]:
        in_shape, dt = shape_tuple(in_shape, where), float_dtype(dtype, where)
        out = out_shape(in_shape, "in_shape")
        f_in = in_shape[0]
        w = w_init_fn(rng, (f_in, f_out), f_in, f_out, dt)
        b = b_init_fn(rng, (f_out,), f_in, f_out, dt) if use_bias else None
        return out, DenseParams(w, b)

    def forward(params: DenseParams, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, DenseCache]:
        y = np.dot(x, params.w)  # np.dot: BLAS for every 2-D shape (matmul is 5x slower when K == 1)
        if params.b is not None:
            y += params.b
        return y, DenseCache(x)

    def backward(params: DenseParams, cache: DenseCache, dy: Array, *, need_dx: bool = True
                 ) -> Tuple[DenseParams, Optional[Array]]:
        dw = freeze(np.dot(cache.x.T, dy))
        db = None if params.b is None else freeze(np.add.reduce(dy, axis=0))  # dy.sum(axis=0) without its wrapper
        return DenseParams(dw, db), np.dot(dy, params.w.T) if need_dx else None

    spec = Spec(
        out_shape, rank=2, layout="(N, F_in); put flatten() before dense for images",
        params=DenseParams, param_shapes=lambda s: dict(w=(s[0], f_out), b=(f_out,) if use_bias else None),
        in_size=(0, "features", lambda p: p.w.shape[0]),
        cache=DenseCache, out_of_cache=lambda p, c: ((c.x.shape[0], f_out), c.x.dtype), draws=False)
    return Layer(where, init, forward, backward, cache_bytes=lambda in_shape, itemsize: in_shape[0] * itemsize,
                 config=dict(out_features=f_out, **({} if use_bias else {"use_bias": False})), spec=spec)

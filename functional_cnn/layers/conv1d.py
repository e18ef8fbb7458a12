"""1-D convolution and pooling over ``(N, C, L)`` batches, as thin wrappers of the 2-D layers.

Each wrapper views ``(N, C, L)`` as ``(N, C, 1, L)`` and delegates to ``conv2d``,
``max_pool2d`` or ``avg_pool2d`` with a ``(1, K)`` window, so the numerics (im2col and
one matmul; first-maximum gradient routing) are exactly those of the 2-D layers.
Hyperparameters and shapes are validated here, so errors speak in 1-D terms.

``y[n, o, i] = b[o] + sum_{c, k} w[o, c, k] * xpad[n, c, i*stride + k*dilation]``
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import attrs
import numpy as np

from .._checks import (
    check_cache_type, check_params_type, check_rng, cotangent, float_array, float_dtype, positive_int, same_dtype,
    shape_tuple,
)
from ..initializers import get_initializer
from ..layer import Array, Layer, Shape, param_field
from .conv import Conv2DParams, conv2d, conv_output_size
from .pool import avg_pool2d, max_pool2d

__all__ = ["Conv1DParams", "OneDCache", "conv1d", "max_pool1d", "avg_pool1d"]


@attrs.frozen(eq=False)
class Conv1DParams:
    """Parameters of :func:`conv1d`."""

    w: Array = param_field()  # (C_out, C_in / groups, K)
    b: Optional[Array] = param_field(default=None)  # (C_out,) or None when use_bias=False


@attrs.frozen(eq=False)
class OneDCache:
    """Cache of the 1-D layers: the 2-D layer's cache and the 1-D shapes, so errors speak in 1-D terms."""

    inner: Any  # the cache of the wrapped conv2d / pooling layer
    x_shape: Tuple[int, ...]  # (N, C, L)
    y_shape: Tuple[int, ...]  # (N, C_out, OL)


def _inner_call(where: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call the wrapped 2-D layer; an error it raises (not foreseen here) gets ``where`` prefixed."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError) as err:
        if type(err) not in (ValueError, TypeError):
            raise
        raise type(err)(f"{where}: {err}") from err


def _backward_1d(where: str, inner: Layer, params: Any, cache: Any, dy: Any) -> Tuple[Any, Array]:
    check_cache_type(cache, OneDCache, where)
    dy = cotangent(dy, cache.y_shape, where)
    grads, dx = _inner_call(where, inner.backward, params, cache.inner, dy[:, :, None, :])
    return grads, dx.reshape(cache.x_shape)


def _padding_1d(padding: Any, where: str) -> Any:
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise ValueError(f"{where}: padding must be an int >= 0, 'valid' or 'same', got {padding!r}")
        return padding
    return positive_int(padding, where, "padding", minimum=0)


def _pads_1d(padding: Any, length: int, k: int, s: int, d: int) -> Tuple[int, int]:
    if padding == "valid":
        return 0, 0
    if padding == "same":
        total = max((-(-length // s) - 1) * s + d * (k - 1) + 1 - length, 0)
        return total // 2, total - total // 2
    return padding, padding


def _rank3(where: str, x: Any) -> Array:
    return float_array(x, where, "x", ndim=3, layout="(N, C, L)")


def _shape_cl(where: str, in_shape: Any, arg: str = "in_shape") -> Shape:
    in_shape = shape_tuple(in_shape, where, arg)
    if len(in_shape) != 2:
        raise ValueError(f"{where}: {arg} must be (C, L) per example, got {in_shape}")
    return in_shape


def conv1d(out_channels: int, kernel_size: int, *, stride: int = 1, padding: Any = 0, dilation: int = 1,
           groups: int = 1, use_bias: bool = True, w_init: Any = "he_normal", b_init: Any = "zeros") -> Layer:
    """1-D cross-correlation over ``(N, C, L)`` batches.

    Args:
        out_channels: number of filters ``C_out``.
        kernel_size: ``K``.
        stride: ``>= 1``.
        padding: ``p`` zeros on both ends, ``"valid"`` (none) or ``"same"``
            (output length ``ceil(L / stride)``; the odd zero goes at the end).
        dilation: ``>= 1``.
        groups: channel groups; ``C_in`` and ``C_out`` must be divisible by it.
        use_bias: add a per-channel bias of shape ``(C_out,)``.
        w_init, b_init: initializer names or callables.

    Returns:
        A Layer mapping ``(N, C_in, L)`` to ``(N, C_out, OL)``; params
        :class:`Conv1DParams` with ``w`` of shape ``(C_out, C_in / groups, K)``.
    """
    where = "conv1d"
    c_out = positive_int(out_channels, where, "out_channels")
    k = positive_int(kernel_size, where, "kernel_size")
    s = positive_int(stride, where, "stride")
    d = positive_int(dilation, where, "dilation")
    pad = _padding_1d(padding, where)
    g = positive_int(groups, where, "groups")
    if c_out % g:
        raise ValueError(f"{where}: out_channels (={c_out}) must be divisible by groups (={g})")
    if not isinstance(use_bias, bool):
        raise TypeError(f"{where}: use_bias must be a bool, got {use_bias!r}")
    get_initializer(w_init, where, "w_init")
    get_initializer(b_init, where, "b_init")
    inner = conv2d(c_out, (1, k), stride=(1, s), padding=pad if isinstance(pad, str) else (0, pad),
                   dilation=(1, d), groups=g, use_bias=use_bias, w_init=w_init, b_init=b_init)

    def check_shape(in_shape: Shape, arg: str) -> Shape:
        c, length = in_shape
        if c < 1 or c % g:
            raise ValueError(f"{where}: input channels (={c}) must be a positive multiple of groups (={g})")
        pads = _pads_1d(pad, length, k, s, d)
        ol = conv_output_size(length, k, s, d, pads)
        if ol < 1:
            raise ValueError(f"{where}: kernel (effective size {d * (k - 1) + 1} with dilation {d}) is longer than "
                             f"the padded input ({length} + padding {pads}) of {arg} {tuple(in_shape)}")
        return c_out, ol

    def init(rng: np.random.Generator, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, Conv1DParams]:
        in_shape = _shape_cl(where, in_shape)
        float_dtype(dtype, where)
        check_rng(rng, where, required=False)
        out = check_shape(in_shape, "in_shape")
        _, p = _inner_call(where, inner.init, rng, (in_shape[0], 1, in_shape[1]), dtype)
        return out, Conv1DParams(p.w.reshape(p.w.shape[0], p.w.shape[1], k), p.b)

    def forward(params: Conv1DParams, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, Any]:
        check_params_type(params, Conv1DParams, where)
        x = _rank3(where, x)
        _check_param_shapes(params)
        same_dtype(x, params.w, where)
        if x.shape[1] != params.w.shape[1] * g:
            raise ValueError(f"{where}: x has {x.shape[1]} channels (shape {x.shape}), params expect "
                             f"{params.w.shape[1] * g} (w shape {params.w.shape}, groups {g})")
        _, ol = check_shape(x.shape[1:], "x.shape[1:]")
        w4 = params.w.reshape(params.w.shape[:2] + (1, k))
        y, cache = _inner_call(where, inner.forward, Conv2DParams(w4, params.b), x[:, :, None, :], rng=rng, train=train)
        y_shape = (x.shape[0], params.w.shape[0], ol)
        return y.reshape(y_shape), OneDCache(cache, tuple(x.shape), y_shape)

    def _check_param_shapes(params: Conv1DParams) -> None:
        w, b = params.w, params.b
        if w.ndim != 3 or w.shape[0] != c_out or w.shape[2] != k:
            raise ValueError(f"{where}: params.w must have shape ({c_out}, C_in / groups, {k}), got {w.shape}")
        if (b is None) == use_bias or (b is not None and b.shape != (c_out,)):
            want = f"shape ({c_out},)" if use_bias else "None (use_bias=False)"
            raise ValueError(f"{where}: params.b must be {want}, got {None if b is None else b.shape}")
        if b is not None and b.dtype != w.dtype:
            raise TypeError(f"{where}: params.b has dtype {b.dtype} but params.w has {w.dtype}")

    def backward(params: Conv1DParams, cache: Any, dy: Array) -> Tuple[Conv1DParams, Array]:
        check_params_type(params, Conv1DParams, where)
        w4 = params.w.reshape(params.w.shape[:2] + (1, k))
        grads, dx = _backward_1d(where, inner, Conv2DParams(w4, params.b), cache, dy)
        return Conv1DParams(grads.w.reshape(params.w.shape), grads.b), dx

    def cache_bytes(in_shape: Shape, itemsize: int) -> int:
        c, length = in_shape
        return inner.cache_bytes((c, 1, length), itemsize)

    config = dict(out_channels=c_out, kernel_size=k)
    config.update({key: v for key, v, default in (("stride", s, 1), ("padding", pad, 0), ("dilation", d, 1),
                                                 ("groups", g, 1), ("use_bias", use_bias, True)) if v != default})
    return Layer(where, init, forward, backward, cache_bytes=cache_bytes, config=config)


def _pool1d(where: str, make: Callable[..., Layer], size: int, stride: Optional[int]) -> Layer:
    k = positive_int(size, where, "size")
    s = k if stride is None else positive_int(stride, where, "stride")
    inner = make((1, k), (1, s))

    def out_len(in_shape: Shape, arg: str) -> Shape:
        c, length = in_shape
        if length < k:
            raise ValueError(f"{where}: window {k} is longer than the input length {length} ({arg} {tuple(in_shape)})")
        return c, (length - k) // s + 1

    def init(rng: Any, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, None]:
        return out_len(_shape_cl(where, in_shape), "in_shape"), None

    def forward(params: Any, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, Any]:
        x = _rank3(where, x)
        c, ol = out_len(x.shape[1:], "x.shape[1:]")
        y, cache = _inner_call(where, inner.forward, None, x[:, :, None, :], rng=rng, train=train)
        y_shape = (x.shape[0], c, ol)
        return y.reshape(y_shape), OneDCache(cache, tuple(x.shape), y_shape)

    def backward(params: Any, cache: Any, dy: Array) -> Tuple[None, Array]:
        _, dx = _backward_1d(where, inner, None, cache, dy)
        return None, dx

    def cache_bytes(in_shape: Shape, itemsize: int) -> int:
        c, length = in_shape
        return inner.cache_bytes((c, 1, length), itemsize)

    return Layer(where, init, forward, backward, cache_bytes=cache_bytes,
                 config=dict(size=k, **({} if s == k else {"stride": s})))


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

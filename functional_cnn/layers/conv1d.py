"""1-D convolution over ``(N, C, L)`` batches, as a thin wrapper of ``conv2d``.

``y[n, o, i] = b[o] + sum_{c, k} w[o, c, k] * xpad[n, c, i*stride + k*dilation]``

The wrapper views ``(N, C, L)`` as ``(N, C, 1, L)`` and runs ``conv2d``'s math with a
``(1, K)`` kernel, so the numerics (im2col and one matmul) are exactly the 2-D layer's.
Hyperparameters and shapes are declared here, so errors speak in 1-D terms.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from .._checks import check_rng, float_dtype, positive_int
from ..boundary import Spec
from ..initializers import get_initializer
from ..layer import Array, Layer, Shape, param_field
from ..params import params_record
from ._oned import OneDCache, shape_cl
from .conv import Conv2DParams, conv2d, conv_output_size

__all__ = ["Conv1DParams", "OneDCache", "conv1d"]


@params_record
class Conv1DParams:
    """Parameters of :func:`conv1d`."""

    w: Array = param_field()  # (C_out, C_in / groups, K)
    b: Optional[Array] = param_field(default=None)  # (C_out,) or None when use_bias=False


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

    def out_shape(in_shape: Shape, arg: str) -> Shape:
        c, length = in_shape
        if c % g:
            raise ValueError(f"{where}: input channels (={c}) must be a positive multiple of groups (={g})")
        pads = _pads_1d(pad, length, k, s, d)
        ol = conv_output_size(length, k, s, d, pads)
        if ol < 1:
            raise ValueError(f"{where}: kernel (effective size {d * (k - 1) + 1} with dilation {d}) is longer than "
                             f"the padded input ({length} + padding {pads}) of {arg} {tuple(in_shape)}")
        return c_out, ol

    def init(rng: np.random.Generator, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, Conv1DParams]:
        in_shape = shape_cl(where, in_shape)
        float_dtype(dtype, where)
        check_rng(rng, where, required=False)
        out = out_shape(in_shape, "in_shape")
        _, p = inner.init(rng, (in_shape[0], 1, in_shape[1]), dtype)
        return out, Conv1DParams(p.w.reshape(p.w.shape[0], p.w.shape[1], k), p.b)

    def as_2d(params: Conv1DParams) -> Conv2DParams:
        return Conv2DParams(params.w[:, :, None, :], params.b)

    def forward(params: Conv1DParams, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, OneDCache]:
        y, cache = inner.forward_unchecked(as_2d(params), x[:, :, None, :], rng=rng, train=train)
        y = y.reshape(y.shape[:2] + y.shape[3:])
        return y, OneDCache(cache, x.shape, y.shape, x.dtype)

    def backward(params: Conv1DParams, cache: OneDCache, dy: Array, *, need_dx: bool = True
                 ) -> Tuple[Conv1DParams, Optional[Array]]:
        grads, dx = inner.backward_unchecked(as_2d(params), cache.inner, dy[:, :, None, :], need_dx=need_dx)
        return Conv1DParams(grads.w[:, :, 0, :], grads.b), None if dx is None else dx.reshape(cache.x_shape)

    def cache_bytes(in_shape: Shape, itemsize: int) -> int:
        c, length = in_shape
        return inner.cache_bytes((c, 1, length), itemsize)

    spec = Spec(out_shape, rank=3, layout="(N, C, L)", params=Conv1DParams,
                param_shapes=lambda sh: dict(w=(c_out, sh[0] // g, k), b=(c_out,) if use_bias else None),
                in_size=(0, "channels", lambda p: p.w.shape[1] * g), cache=OneDCache,
                out_of_cache=lambda p, c: (c.y_shape, c.dtype), draws=False)
    config = dict(out_channels=c_out, kernel_size=k)
    config.update({key: v for key, v, default in (("stride", s, 1), ("padding", pad, 0), ("dilation", d, 1),
                                                 ("groups", g, 1), ("use_bias", use_bias, True)) if v != default})
    return Layer(where, init, forward, backward, cache_bytes=cache_bytes, config=config, spec=spec)

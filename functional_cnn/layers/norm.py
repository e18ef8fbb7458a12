"""Normalization layers: ``batch_norm`` (with running statistics as state) and ``layer_norm``.

Batch norm normalizes each channel (axis 1) over the batch and every axis after
the channel one: features of ``(N, F)``, channels of ``(N, C, L)`` and ``(N, C, H, W)``.
Its running mean and variance are *state fields* of :class:`BatchNormParams`
(see ``docs/state.md``): a training-mode forward pass puts the updated statistics
in its cache, ``layer.update_state(params, cache)`` returns params holding them,
and their gradient is always ``None`` so optimizers never touch them.

Layer norm normalizes each example over all of its (non-batch) axes, with an
elementwise ``gamma`` and ``beta`` of the per-example shape; it has no state and
behaves the same in training and inference.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import attrs
import numpy as np

from .._checks import check_params_type, float_dtype, real_number, shape_tuple
from ..boundary import Spec
from ..layer import Array, Layer, Shape, param_field, state_field
from ..params import params_record

__all__ = ["BatchNormParams", "BatchNormCache", "batch_norm", "LayerNormParams", "LayerNormCache", "layer_norm"]


@params_record
class BatchNormParams:
    """Scale and shift (trainable) and running statistics (state) of :func:`batch_norm`."""

    gamma: Array = param_field()  # (C,) scale
    beta: Array = param_field()  # (C,) shift
    mean: Optional[Array] = state_field(default=None)  # (C,) running mean; gradient always None
    var: Optional[Array] = state_field(default=None)  # (C,) running unbiased variance; gradient always None


@attrs.frozen(eq=False)
class BatchNormCache:
    """What backward and update_state need from a forward pass."""

    xhat: Array  # (N, C, ...) the normalized input
    inv_std: Array  # (C,) 1 / sqrt(var + eps) of the statistics used
    train: bool  # batch statistics were used (their gradient flows through mean and var)
    mean: Optional[Array] = None  # (C,) updated running mean; None after an inference pass
    var: Optional[Array] = None  # (C,) updated running variance; None after an inference pass


def _bshape(x: Array) -> Tuple[int, ...]:
    """Shape that broadcasts a (C,) vector along axis 1 of ``x``."""
    return (1, -1) + (1,) * (x.ndim - 2)


def batch_norm(momentum: float = 0.9, eps: float = 1e-5) -> Layer:
    """Batch normalization over axis 1, with running statistics for inference.

    ``y = gamma * (x - mu) / sqrt(var + eps) + beta`` per channel. With
    ``train=True`` ``mu`` and ``var`` are the batch's (biased) statistics over every
    axis but 1, and the cache carries the updated running statistics::

        running_mean <- momentum * running_mean + (1 - momentum) * batch_mean
        running_var  <- momentum * running_var  + (1 - momentum) * batch_var * m / (m - 1)

    where ``m`` is the number of values per channel: the running variance uses the
    unbiased estimate, as PyTorch does. ``momentum`` is the fraction of the *old*
    value kept (the Keras/Flax convention; PyTorch's ``momentum=0.1`` is this
    layer's ``momentum=0.9``). With ``train=False`` the running statistics are
    used and the cache carries no new ones, so ``update_state`` leaves params as they are.

    Args:
        momentum: in ``[0, 1)``; 0 replaces the running statistics by each batch's.
        eps: added to the variance, ``> 0``.

    Returns:
        A Layer on ``(N, F)``, ``(N, C, L)`` or ``(N, C, H, W)`` batches, output shape
        equal to input shape; params :class:`BatchNormParams` with ``gamma`` ones,
        ``beta`` zeros, running ``mean`` zeros and ``var`` ones, each ``(C,)``.
        ``cache_bytes`` counts the per-example part (``xhat``); the cache also holds
        three ``(C,)`` vectors whatever the batch size.

    Raises:
        ValueError: at forward, when ``x``'s channel count differs from the params',
            or when training with fewer than two values per channel.

    >>> layer = batch_norm()
    >>> _, p = layer.init(None, (2,))
    >>> x = np.array([[1.0, 10.0], [3.0, 30.0]], dtype=np.float32)
    >>> y, cache = layer.forward(p, x, train=True)
    >>> np.round(y, 3).tolist(), layer.update_state(p, cache).mean.tolist()
    ([[-1.0, -1.0], [1.0, 1.0]], [0.20000000298023224, 2.0])
    """
    where = "batch_norm"
    mom = real_number(momentum, where, "momentum", low=0.0, high=1.0, high_open=True)
    eps_v = real_number(eps, where, "eps", low=0.0, low_open=True)

    def out_shape(in_shape: Shape, arg: str) -> Shape:
        if len(in_shape) not in (1, 2, 3):
            raise ValueError(f"{where}: {arg} must be (F,), (C, L) or (C, H, W), got {tuple(in_shape)}")
        return tuple(in_shape)

    def init(rng: Any, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, BatchNormParams]:
        in_shape = out_shape(shape_tuple(in_shape, where), "in_shape")
        dt = float_dtype(dtype, where)
        c = in_shape[0]
        return in_shape, BatchNormParams(np.ones(c, dt), np.zeros(c, dt), np.zeros(c, dt), np.ones(c, dt))

    def forward(params: BatchNormParams, x: Array, *, rng: Any = None, train: bool = False
                ) -> Tuple[Array, BatchNormCache]:
        c = params.gamma.shape[0]
        if not train and (params.var < 0).any():
            raise ValueError(f"{where}: params.var (running variance) must be >= 0, got {params.var.min()}")
        axes = (0,) + tuple(range(2, x.ndim))
        bs = _bshape(x)
        eps_t = x.dtype.type(eps_v)
        if train:
            m = x.size // c
            if m < 2:
                raise ValueError(f"{where}: training needs at least 2 values per channel to estimate a "
                                 f"variance, got x of shape {x.shape}; use train=False or a larger batch")
            mu = x.mean(axis=axes)
            xc = x - mu.reshape(bs)
            var = np.mean(xc * xc, axis=axes)
            inv_std = 1.0 / np.sqrt(var + eps_t)
            new_mean = mom * params.mean + (1.0 - mom) * mu
            new_var = mom * params.var + (1.0 - mom) * (var * x.dtype.type(m / (m - 1)))
            xhat = xc
            xhat *= inv_std.reshape(bs)
        else:
            inv_std = 1.0 / np.sqrt(params.var + eps_t)
            xhat = (x - params.mean.reshape(bs)) * inv_std.reshape(bs)
            new_mean = new_var = None
        y = xhat * params.gamma.reshape(bs) + params.beta.reshape(bs)
        return y, BatchNormCache(xhat, inv_std, bool(train), new_mean, new_var)

    def backward(params: BatchNormParams, cache: BatchNormCache, dy: Array, *, need_dx: bool = True
                 ) -> Tuple[BatchNormParams, Optional[Array]]:
        xhat = cache.xhat
        axes = (0,) + tuple(range(2, xhat.ndim))
        bs = _bshape(xhat)
        dbeta = dy.sum(axis=axes)
        dgamma = (dy * xhat).sum(axis=axes)
        if not need_dx:
            return BatchNormParams(dgamma, dbeta, None, None), None
        scale = (params.gamma * cache.inv_std).reshape(bs)
        if cache.train:
            # The batch mean and variance depend on x: subtract their share of the gradient.
            inv_m = xhat.dtype.type(xhat.shape[1] / xhat.size)
            dx = dy - (dbeta.reshape(bs) + xhat * dgamma.reshape(bs)) * inv_m
            dx *= scale
        else:
            dx = dy * scale
        return BatchNormParams(dgamma, dbeta, None, None), dx

    def update_state(params: BatchNormParams, cache: BatchNormCache) -> BatchNormParams:
        check_params_type(params, BatchNormParams, f"{where}.update_state")
        if not isinstance(cache, BatchNormCache):
            raise TypeError(f"{where}.update_state: cache must be BatchNormCache, got {type(cache).__name__}")
        if cache.mean is None:
            return params
        return attrs.evolve(params, mean=cache.mean, var=cache.var)

    def cache_bytes(in_shape: Shape, itemsize: int) -> int:
        return int(np.prod(in_shape)) * itemsize

    spec = Spec(out_shape, rank=(2, 3, 4), layout="(N, F), (N, C, L) or (N, C, H, W)", params=BatchNormParams,
                param_shapes=lambda s: dict(gamma=s[:1], beta=s[:1], mean=s[:1], var=s[:1]),
                in_size=(0, "channels", lambda p: p.gamma.shape[0]), cache=BatchNormCache,
                out_of_cache=lambda p, c: (c.xhat.shape, c.xhat.dtype), draws=False)
    return Layer(where, init, forward, backward, update_state=update_state, cache_bytes=cache_bytes,
                 config=dict(momentum=mom, eps=eps_v), spec=spec)


@params_record
class LayerNormParams:
    """Elementwise scale and shift of :func:`layer_norm`, each of the per-example shape."""

    gamma: Array = param_field()  # in_shape
    beta: Array = param_field()  # in_shape


@attrs.frozen(eq=False)
class LayerNormCache:
    """The normalized input and each example's inverse standard deviation."""

    xhat: Array  # (N, ...) normalized input
    inv_std: Array  # (N,)


def layer_norm(eps: float = 1e-5) -> Layer:
    """Layer normalization: each example standardized over all its axes.

    ``y[n] = gamma * (x[n] - mean(x[n])) / sqrt(var(x[n]) + eps) + beta``, where the
    mean and the (biased) variance run over every non-batch axis (for images
    ``(C, H, W)`` together) and ``gamma``, ``beta`` have the per-example shape.
    Training and inference behave the same; there is no state.

    Args:
        eps: added to the variance, ``> 0``.

    Returns:
        A Layer on any ``(N, ...)`` batch (at least one non-batch axis); params
        :class:`LayerNormParams` with ``gamma`` ones and ``beta`` zeros.
    """
    where = "layer_norm"
    eps_v = real_number(eps, where, "eps", low=0.0, low_open=True)

    def out_shape(in_shape: Shape, arg: str) -> Shape:
        if len(in_shape) < 1:
            raise ValueError(f"{where}: {arg} must have at least one axis, got {tuple(in_shape)}")
        return tuple(in_shape)

    def init(rng: Any, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, LayerNormParams]:
        in_shape = out_shape(shape_tuple(in_shape, where), "in_shape")
        dt = float_dtype(dtype, where)
        return in_shape, LayerNormParams(np.ones(in_shape, dt), np.zeros(in_shape, dt))

    def forward(params: LayerNormParams, x: Array, *, rng: Any = None, train: bool = False
                ) -> Tuple[Array, LayerNormCache]:
        axes = tuple(range(1, x.ndim))
        bs = (-1,) + (1,) * (x.ndim - 1)
        xc = x - x.mean(axis=axes).reshape(bs)
        inv_std = 1.0 / np.sqrt(np.mean(xc * xc, axis=axes) + x.dtype.type(eps_v))
        xhat = xc
        xhat *= inv_std.reshape(bs)
        return xhat * params.gamma + params.beta, LayerNormCache(xhat, inv_std)

    def backward(params: LayerNormParams, cache: LayerNormCache, dy: Array, *, need_dx: bool = True
                 ) -> Tuple[LayerNormParams, Optional[Array]]:
        xhat = cache.xhat
        axes = tuple(range(1, xhat.ndim))
        bs = (-1,) + (1,) * (xhat.ndim - 1)
        dgamma = (dy * xhat).sum(axis=0)
        dbeta = dy.sum(axis=0)
        if not need_dx:
            return LayerNormParams(dgamma, dbeta), None
        g = dy * params.gamma  # gradient with respect to xhat
        inv_d = xhat.dtype.type(1.0 / params.gamma.size)
        dx = g - (g.sum(axis=axes).reshape(bs) + xhat * (g * xhat).sum(axis=axes).reshape(bs)) * inv_d
        dx *= cache.inv_std.reshape(bs)
        return LayerNormParams(dgamma, dbeta), dx

    def cache_bytes(in_shape: Shape, itemsize: int) -> int:
        return (int(np.prod(in_shape)) + 1) * itemsize

    spec = Spec(out_shape, params=LayerNormParams, param_shapes=lambda s: dict(gamma=tuple(s), beta=tuple(s)),
                in_size=(None, "shape", lambda p: p.gamma.shape), cache=LayerNormCache,
                out_of_cache=lambda p, c: (c.xhat.shape, c.xhat.dtype), draws=False)
    return Layer(where, init, forward, backward, cache_bytes=cache_bytes, config=dict(eps=eps_v), spec=spec)

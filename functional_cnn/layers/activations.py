"""Element-wise activations and (log-)softmax; any input rank, batch axis first.

Each keeps in its cache only what its derivative needs (usually its output), and
works in the input's dtype.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import attrs
import numpy as np

from .._checks import real_number, shape_tuple
from .._parallel import for_chunks
from ..boundary import Spec
from ..layer import Array, Layer, Shape, ShapeCache

__all__ = ["ActivationCache", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax", "identity"]


@attrs.frozen(eq=False)
class ActivationCache:
    """The array the derivative is computed from (the input, the output or a mask, per activation)."""

    saved: Array  # (N, ...) like the input
    dtype: np.dtype  # the output's


def _same_shape(in_shape: Shape, arg: str) -> Shape:
    return tuple(in_shape)


def _shape_init(where: str, out_shape: Callable[[Shape, str], Shape] = _same_shape) -> Callable:
    def init(rng: Any, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, None]:
        return out_shape(shape_tuple(in_shape, where), "in_shape"), None

    return init


def _elementwise(where: str, fwd: Callable[[Array], Tuple[Array, Array]],
                 bwd: Callable[[Array, Array], Array], config: dict | None = None, saved_itemsize: int = 0,
                 out_shape: Callable[[Shape, str], Shape] = _same_shape) -> Layer:
    """A Layer from ``fwd(x) -> (y, saved)`` and ``bwd(saved, dy) -> dx``.

    ``saved_itemsize`` is the bytes per element of ``saved`` when it is not the input's
    dtype (1 for a boolean mask); ``out_shape`` checks the input's shape (softmax's axis).
    """

    def forward(params: None, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, ActivationCache]:
        y, saved = fwd(x)
        return y, ActivationCache(saved, x.dtype)

    def backward(params: None, cache: ActivationCache, dy: Array, *, need_dx: bool = True
                 ) -> Tuple[None, Optional[Array]]:
        return None, bwd(cache.saved, dy) if need_dx else None

    def cache_bytes(in_shape: Shape, itemsize: int) -> int:
        return int(np.prod(in_shape)) * (saved_itemsize or itemsize)

    spec = Spec(out_shape, cache=ActivationCache, out_of_cache=lambda p, c: (c.saved.shape, c.dtype), draws=False)
    return Layer(where, _shape_init(where, out_shape), forward, backward, cache_bytes=cache_bytes,
                 config=config or {}, spec=spec)


_ZEROS: dict = {}


def _zeros(dtype: np.dtype) -> Array:
    """A read-only run of zeros of ``dtype`` (64 Ki elements), shared by every call.

    Measured (numpy 2.4): ``np.maximum(x, zeros)`` runs ~3x faster than ``np.maximum(x, 0)``,
    whose broadcast scalar operand misses the vectorized loop; the values are the same.
    """
    z = _ZEROS.get(dtype)
    if z is None:
        z = np.zeros(1 << 16, dtype=dtype)
        z.flags.writeable = False
        z = _ZEROS.setdefault(dtype, z)
    return z


def relu() -> Layer:
    """``max(x, 0)``; derivative 0 at 0 (the seed notebook used 1).

    The cache is the boolean mask ``x > 0`` (1 byte an element): measured, ``dy * mask``
    with the mask made in forward costs half of ``dy * (y > 0)`` made in backward.
    """

    def fwd(x: Array) -> Tuple[Array, Array]:
        x = np.ascontiguousarray(x)
        y, mask = np.empty(x.shape, dtype=x.dtype), np.empty(x.shape, dtype=bool)
        zeros = _zeros(x.dtype)

        def part(lo: int, hi: int) -> None:  # in runs of len(zeros): max against an array, not the scalar 0
            xf, yf, mf = x[lo:hi].reshape(-1), y[lo:hi].reshape(-1), mask[lo:hi].reshape(-1)
            for a in range(0, xf.size, zeros.size):
                b = min(a + zeros.size, xf.size)
                np.maximum(xf[a:b], zeros[: b - a], out=yf[a:b])
                np.greater(xf[a:b], 0, out=mf[a:b])

        for_chunks(part, x.shape[0], x.nbytes // 2)  # streaming: ~2x cheaper per byte than the unit
        return y, mask

    def bwd(mask: Array, dy: Array) -> Array:
        dx = np.empty(dy.shape, dtype=dy.dtype)
        for_chunks(lambda lo, hi: np.multiply(dy[lo:hi], mask[lo:hi], out=dx[lo:hi]), dy.shape[0], dy.nbytes // 2)
        return dx

    return _elementwise("relu", fwd, bwd, saved_itemsize=1)


def leaky_relu(negative_slope: float = 0.01) -> Layer:
    """``x`` where ``x > 0`` else ``negative_slope * x``."""
    a = real_number(negative_slope, "leaky_relu", "negative_slope", low=0.0)

    # np.where is ~10x slower than plain arithmetic here: scale by a + (1 - a) * [x > 0].
    def fwd(x: Array) -> Tuple[Array, Array]:
        mask = np.greater(x, 0)
        return x * _slope(mask, a, x.dtype), mask

    def bwd(mask: Array, dy: Array) -> Array:
        return dy * _slope(mask, a, dy.dtype)

    return _elementwise("leaky_relu", fwd, bwd, dict(negative_slope=a), saved_itemsize=1)


def _slope(mask: Array, a: float, dtype: np.dtype) -> Array:
    """``1`` where ``mask`` else ``a``, in ``dtype``."""
    t = dtype.type
    out = np.full(mask.shape, t(1.0 - a), dtype=dtype)
    out *= mask
    out += t(a)
    return out


def _sigmoid(x: Array) -> Array:
    # exp of a non-positive number only: no overflow for any input, and full relative
    # accuracy for tiny outputs. num is 1 for x >= 0 and e for x < 0, without np.where.
    e = np.exp(-np.abs(x))
    num = np.multiply(e, np.less(x, 0))
    num += np.greater_equal(x, 0)
    e += 1
    num /= e
    return num


def sigmoid() -> Layer:
    """``1 / (1 + exp(-x))``, evaluated without overflow."""

    def fwd(x: Array) -> Tuple[Array, Array]:
        y = _sigmoid(x)
        return y, y

    return _elementwise("sigmoid", fwd, lambda y, dy: dy * y * (1 - y))


def tanh() -> Layer:
    """Hyperbolic tangent."""

    def fwd(x: Array) -> Tuple[Array, Array]:
        y = np.tanh(x)
        return y, y

    return _elementwise("tanh", fwd, lambda y, dy: dy * (1 - y * y))


_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)
# Past |x| = 10 the tanh form is flat in float64: u(10) = 43.6 and tanh(u) is exactly +-1 for
# |u| > 19.1, so y is x or -0 and dy/dx is 1 or 0. Clipping x there before the cubic changes no
# value and keeps x**3 from overflowing (float16 past 40, float32 past 7e12), which made 0 * inf.
_GELU_TANH_FLAT = 10.0
# Likewise exp(-x*x/2) is exactly 0 in float64 past |x| = 40 (exp(-800)); clipped there, x*x
# cannot overflow.
_GELU_EXP_ZERO = 40.0


def _tanh_arg(x: Array) -> Array:
    """``sqrt(2/pi) * (x + 0.044715 x**3)`` with ``x`` clipped where ``tanh`` of it is already +-1."""
    xc = np.clip(x, -_GELU_TANH_FLAT, _GELU_TANH_FLAT)
    return _SQRT_2_OVER_PI * (xc + 0.044715 * xc**3)


def gelu(approximate: bool = False) -> Layer:
    """Gaussian error linear unit ``x * Phi(x)``; ``approximate=True`` uses the tanh form."""
    if not isinstance(approximate, bool):
        raise TypeError(f"gelu: approximate must be a bool, got {approximate!r}")

    def fwd(x: Array) -> Tuple[Array, Array]:
        if approximate:
            t = np.tanh(_tanh_arg(x))
            return (0.5 * x * (1 + t)).astype(x.dtype, copy=False), x
        from scipy.special import erf  # lazy: keeps `import functional_cnn` fast

        return (0.5 * x * (1 + erf(x / np.sqrt(2.0)))).astype(x.dtype, copy=False), x

    def bwd(x: Array, dy: Array) -> Array:
        if approximate:
            t = np.tanh(_tanh_arg(x))
            xc = np.clip(x, -_GELU_TANH_FLAT, _GELU_TANH_FLAT)
            du = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * xc**2)
            d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du
        else:
            from scipy.special import erf

            xc = np.clip(x, -_GELU_EXP_ZERO, _GELU_EXP_ZERO)
            d = 0.5 * (1 + erf(x / np.sqrt(2.0))) + x * np.exp(-0.5 * xc * xc) / np.sqrt(2 * np.pi)
        return (dy * d).astype(dy.dtype, copy=False)

    return _elementwise("gelu", fwd, bwd, dict(approximate=approximate))


def identity() -> Layer:
    """Returns its input unchanged (a view-free pass-through): ``y = x``, ``dx = dy``."""

    def forward(params: None, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, ShapeCache]:
        return x, ShapeCache(x.shape, x.dtype)

    def backward(params: None, cache: ShapeCache, dy: Array, *, need_dx: bool = True) -> Tuple[None, Optional[Array]]:
        return None, dy if need_dx else None

    spec = Spec(_same_shape, cache=ShapeCache, out_of_cache=lambda p, c: (c.x_shape, c.dtype), draws=False)
    return Layer("identity", _shape_init("identity"), forward, backward, cache_bytes=lambda s, i: 0, spec=spec)


def _softmax_layer(where: str, axis: int, log: bool) -> Layer:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{where}: axis must be an int, got {axis!r}")
    if axis == 0:
        raise ValueError(f"{where}: axis 0 is the batch axis; use a feature axis such as -1 or 1")

    def out_shape(in_shape: Shape, arg: str) -> Shape:
        ndim = len(in_shape) + 1
        if not -ndim <= axis < ndim:
            raise ValueError(f"{where}: axis {axis} is out of range for input rank {ndim}")
        return tuple(in_shape)

    def fwd(x: Array) -> Tuple[Array, Array]:
        ax = axis % x.ndim
        z = x - x.max(axis=ax, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=ax, keepdims=True))
        logp = z - lse
        return (logp if log else np.exp(logp)), np.exp(logp)

    def bwd(p: Array, dy: Array) -> Array:
        ax = axis % p.ndim
        if log:
            return dy - p * dy.sum(axis=ax, keepdims=True)
        return p * (dy - (dy * p).sum(axis=ax, keepdims=True))

    return _elementwise(where, fwd, bwd, dict(axis=axis), out_shape=out_shape)


def softmax(axis: int = -1) -> Layer:
    """``exp(x) / sum(exp(x))`` along ``axis`` (max subtracted first: no overflow)."""
    return _softmax_layer("softmax", axis, log=False)


def log_softmax(axis: int = -1) -> Layer:
    """``x - logsumexp(x)`` along ``axis``, computed stably."""
    return _softmax_layer("log_softmax", axis, log=True)


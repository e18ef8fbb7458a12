"""Weight initializers that draw only from an explicit ``numpy.random.Generator``.

Each initializer is ``init(rng, shape, fan_in, fan_out, dtype=np.float32) -> array``.
Fans are passed explicitly by the layer (for a conv kernel ``(C_out, C_in, KH, KW)``:
``fan_in = C_in*KH*KW``, ``fan_out = C_out*KH*KW``), so the same initializer serves
dense and convolutional weights.

>>> rng = np.random.default_rng(0)
>>> w = he_normal(rng, (3, 4), fan_in=4, fan_out=3)
>>> w.dtype, w.shape
(dtype('float32'), (3, 4))
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import numpy as np

from ._checks import check_rng, float_dtype

Initializer = Callable[..., np.ndarray]

__all__ = [
    "Initializer",
    "he_normal",
    "he_uniform",
    "glorot_normal",
    "glorot_uniform",
    "lecun_normal",
    "zeros",
    "scaled_normal",
    "get_initializer",
]


def _prepare(rng: Any, fan_in: int, fan_out: int, dtype: Any, where: str) -> np.dtype:
    check_rng(rng, where, required=False)
    if rng is None:
        raise ValueError(f"{where}: rng must be a numpy.random.Generator, got None")
    if fan_in < 1 or fan_out < 1:
        raise ValueError(f"{where}: fan_in and fan_out must be >= 1, got {fan_in} and {fan_out}")
    return float_dtype(dtype, where)


def _normal(rng: np.random.Generator, shape: Tuple[int, ...], std: float, dt: np.dtype) -> np.ndarray:
    # Draw in float64 so the stream (and so the values) do not depend on dtype.
    return (rng.standard_normal(shape) * std).astype(dt)


def _uniform(rng: np.random.Generator, shape: Tuple[int, ...], limit: float, dt: np.dtype) -> np.ndarray:
    return rng.uniform(-limit, limit, size=shape).astype(dt)


def he_normal(rng, shape, fan_in, fan_out, dtype=np.float32):
    """Normal with std ``sqrt(2 / fan_in)`` (for ReLU networks)."""
    dt = _prepare(rng, fan_in, fan_out, dtype, "he_normal")
    return _normal(rng, tuple(shape), np.sqrt(2.0 / fan_in), dt)


def he_uniform(rng, shape, fan_in, fan_out, dtype=np.float32):
    """Uniform on ``±sqrt(6 / fan_in)``."""
    dt = _prepare(rng, fan_in, fan_out, dtype, "he_uniform")
    return _uniform(rng, tuple(shape), np.sqrt(6.0 / fan_in), dt)


def glorot_normal(rng, shape, fan_in, fan_out, dtype=np.float32):
    """Normal with std ``sqrt(2 / (fan_in + fan_out))``."""
    dt = _prepare(rng, fan_in, fan_out, dtype, "glorot_normal")
    return _normal(rng, tuple(shape), np.sqrt(2.0 / (fan_in + fan_out)), dt)


def glorot_uniform(rng, shape, fan_in, fan_out, dtype=np.float32):
    """Uniform on ``±sqrt(6 / (fan_in + fan_out))``."""
    dt = _prepare(rng, fan_in, fan_out, dtype, "glorot_uniform")
    return _uniform(rng, tuple(shape), np.sqrt(6.0 / (fan_in + fan_out)), dt)


def lecun_normal(rng, shape, fan_in, fan_out, dtype=np.float32):
    """Normal with std ``sqrt(1 / fan_in)``."""
    dt = _prepare(rng, fan_in, fan_out, dtype, "lecun_normal")
    return _normal(rng, tuple(shape), np.sqrt(1.0 / fan_in), dt)


def zeros(rng, shape, fan_in, fan_out, dtype=np.float32):
    """All zeros (draws nothing from ``rng``)."""
    return np.zeros(tuple(shape), dtype=float_dtype(dtype, "zeros"))


def scaled_normal(std: float) -> Initializer:
    """Normal with a fixed std, as the seed notebooks used (``randn * 0.1``)."""

    def init(rng, shape, fan_in, fan_out, dtype=np.float32):
        dt = _prepare(rng, fan_in, fan_out, dtype, "scaled_normal")
        return _normal(rng, tuple(shape), float(std), dt)

    init.__name__ = f"scaled_normal({std:g})"
    return init


_BY_NAME: Dict[str, Initializer] = {
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "lecun_normal": lecun_normal,
    "zeros": zeros,
}


def get_initializer(init: Any, where: str, arg: str) -> Initializer:
    """An initializer given by name or as a callable."""
    if callable(init):
        return init
    if isinstance(init, str) and init in _BY_NAME:
        return _BY_NAME[init]
    raise ValueError(f"{where}: {arg} must be a callable or one of {sorted(_BY_NAME)}, got {init!r}")

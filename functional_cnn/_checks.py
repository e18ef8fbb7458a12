"""Argument validation shared by layers, losses and optimizers.

Every error names where it happened (``where``, e.g. ``"conv2d"``), the argument,
what it got and what was expected.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence, Tuple

import attrs
import numpy as np

from ._dtypes import FLOAT_DTYPES, float_dtype  # noqa: F401  (float_dtype: re-exported for the layers)

#: Largest size, count or step accepted by :func:`positive_int`: beyond it numpy's index
#: arithmetic overflows deep inside (``Maximum allowed dimension exceeded``).
MAX_INT = 2**31 - 1


def positive_int(value: Any, where: str, arg: str, *, minimum: int = 1, maximum: int = MAX_INT) -> int:
    """``value`` as an int in ``[minimum, maximum]``; bools and non-integral floats are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: {arg} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{where}: {arg} must be an integer >= {minimum}, got {value!r}")
    if value > maximum:
        raise ValueError(f"{where}: {arg} must be an integer <= {maximum}, got {value!r}")
    return int(value)


def int_pair(value: Any, where: str, arg: str, *, minimum: int = 1) -> Tuple[int, int]:
    """An int or a pair of ints, each >= ``minimum``, as a pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{where}: {arg} must be an int or a pair of ints, got {value!r}")
        return (
            positive_int(value[0], where, f"{arg}[0]", minimum=minimum),
            positive_int(value[1], where, f"{arg}[1]", minimum=minimum),
        )
    v = positive_int(value, where, arg, minimum=minimum)
    return v, v


def real_number(value: Any, where: str, arg: str, *, low: Optional[float] = None, high: Optional[float] = None,
                low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number within the given bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {arg} must be a real number, got {value!r} ({type(value).__name__})")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{where}: {arg} must be finite, got {value!r}")
    if (low is not None and (v < low or (low_open and v == low))) or (
            high is not None and (v > high or (high_open and v == high))):
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        bounds = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
        raise ValueError(f"{where}: {arg} must be in {bounds}, got {value!r}")
    return v


def shape_tuple(value: Any, where: str, arg: str = "in_shape") -> Tuple[int, ...]:
    """A per-example shape: a tuple of positive ints (``()`` for one value per example).

    A zero-length axis is refused: an example must hold at least one value (the batch
    axis, which is not part of the shape, may be 0).
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{where}: {arg} must be a tuple of ints, got {value!r}")
    out = []
    for i, d in enumerate(value):
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(f"{where}: {arg}[{i}] must be an int, got {d!r}")
        if d < 1 or d > MAX_INT:
            raise ValueError(f"{where}: {arg}[{i}] must be in [1, {MAX_INT}], got {d} (shape {tuple(value)})")
        out.append(int(d))
    return tuple(out)


def float_array(x: Any, where: str, arg: str = "x", *, ndim: Optional[int | Sequence[int]] = None,
                layout: str = "") -> np.ndarray:
    """``x`` as a floating ndarray with a batch axis, of the expected rank if given.

    Integer, bool, complex, object and non-native-byte-order inputs raise
    ``TypeError``: a layer never guesses a dtype. A 0-d input, a rank mismatch or a
    zero-length axis after the batch axis raises ``ValueError``; an empty batch
    (``x.shape[0] == 0``) is allowed.
    """
    if not isinstance(x, np.ndarray):
        if isinstance(x, (list, tuple)) or (np.isscalar(x) and not isinstance(x, (str, bytes))):
            try:
                x = np.asarray(x)
            except ValueError as err:  # ragged nested lists
                raise ValueError(f"{where}: {arg} must be an array of one shape, got a ragged {type(x).__name__}: "
                                 f"{err}") from None
        else:
            raise TypeError(f"{where}: {arg} must be a numpy array, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        native = f"; it is {x.dtype.newbyteorder('=')} in non-native byte order" if x.dtype.kind == "f" else ""
        raise TypeError(
            f"{where}: {arg} must have a floating dtype (float16/32/64), got {x.dtype}{native}; "
            f"convert it first, e.g. x.astype(np.float32)"
        )
    if x.ndim == 0:
        raise ValueError(f"{where}: {arg} must have a batch axis (rank >= 1), got a scalar of shape ()")
    if 0 in x.shape[1:]:
        raise ValueError(f"{where}: {arg} must hold at least one value per example (every axis after the batch "
                         f"axis >= 1), got shape {x.shape}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            expect = " or ".join(str(a) for a in allowed)
            lay = f" {layout}" if layout else ""
            raise ValueError(f"{where}: {arg} must have rank {expect}{lay}, got shape {x.shape} (rank {x.ndim})")
    return x


def cotangent(dy: Any, shape: Tuple[int, ...], where: str, arg: str = "dy", *,
              dtype: Optional[np.dtype] = None) -> np.ndarray:
    """``dy`` for ``backward``: a floating array of exactly ``shape`` (and ``dtype`` if given).

    A layer does not cast ``dy``: pass it in the forward output's dtype (losses do).
    """
    if not isinstance(dy, np.ndarray):
        raise TypeError(f"{where}: {arg} must be a numpy array of shape {tuple(shape)}, got {type(dy).__name__}")
    if dy.dtype not in FLOAT_DTYPES or (dtype is not None and dy.dtype != dtype):
        want = dtype if dtype is not None else "a floating dtype (float16/32/64)"
        raise TypeError(f"{where}: {arg} must have dtype {want} (the forward output's), got {dy.dtype}")
    if dy.shape != tuple(shape):
        raise ValueError(f"{where}: {arg} must have shape {tuple(shape)}, got {dy.shape}")
    return dy


def check_rng(rng: Any, where: str, *, required: bool) -> Optional[np.random.Generator]:
    """``rng`` must be a ``numpy.random.Generator`` (or ``None`` when not required)."""
    if rng is None:
        if required:
            raise ValueError(
                f"{where}: needs rng=np.random.Generator when train=True, got None; "
                f"pass rng=np.random.default_rng(seed)"
            )
        return None
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{where}: rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def check_params_type(params: Any, cls: type, where: str) -> None:
    """``params`` must be an instance of ``cls``; the error shows what was passed, by path."""
    if not isinstance(params, cls):
        from .tree import tree_describe  # lazy: tree imports layer, which must not import us back

        fields = ", ".join(f.name for f in attrs.fields(cls)) if attrs.has(cls) else ""
        raise TypeError(
            f"{where}: params must be {cls.__name__}, got {type(params).__name__}; expected a {cls.__name__} "
            f"record (fields: {fields}), as made by this layer's init; got:\n{tree_describe(params)}"
        )


def check_cache_type(cache: Any, cls: type, where: str) -> None:
    """``cache`` must be an instance of ``cls`` (the record this layer's forward returns)."""
    if not isinstance(cache, cls):
        raise TypeError(f"{where}: cache must be the {cls.__name__} returned by this layer's forward, "
                        f"got {type(cache).__name__}")

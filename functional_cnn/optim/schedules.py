"""Schedules: pure functions from the step count (0, 1, 2, ...) to a number.

A schedule is a :class:`Schedule` value: call it with a non-negative integer step
and it returns a Python float. Pass one as the ``learning_rate`` of any optimizer;
it is evaluated at the number of updates already applied (0 for the first).

>>> s = warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=10, decay_steps=110)
>>> [round(s(k), 4) for k in (0, 5, 10, 60, 110, 500)]
[0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
"""
from __future__ import annotations

import bisect
import math
import numbers
from typing import Any, Callable, Sequence

import attrs
import numpy as np

from .._checks import positive_int, real_number

__all__ = [
    "Schedule",
    "constant_schedule",
    "piecewise_constant_schedule",
    "exponential_decay",
    "cosine_decay_schedule",
    "linear_schedule",
    "join_schedules",
    "warmup_cosine_decay_schedule",
]


def _step(step: Any, where: str) -> int:
    if isinstance(step, np.ndarray) and step.ndim == 0:
        step = step[()]
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral):
        raise TypeError(f"{where}: step must be an integer >= 0, got {step!r} ({type(step).__name__})")
    if step < 0:
        raise ValueError(f"{where}: step must be an integer >= 0, got {step}")
    return int(step)


def _sequence(value: Any, where: str, arg: str) -> list:
    """A list or tuple (or 1-D array) argument, as a list."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return list(value)
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{where}: {arg} must be a list or tuple, got {value!r} ({type(value).__name__})")
    return list(value)


def _flag(value: Any, where: str, arg: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {arg} must be a bool, got {value!r} ({type(value).__name__})")
    return bool(value)


@attrs.frozen(eq=False)
class Schedule:
    """A named pure function ``step -> value``; ``repr`` shows how it was built."""

    fn: Callable[[int], float]
    description: str

    def __call__(self, step: int) -> float:
        return float(self.fn(_step(step, self.description)))

    def __repr__(self) -> str:
        return self.description


def constant_schedule(value: float) -> Schedule:
    """``value`` at every step.

    >>> constant_schedule(0.1)(1000)
    0.1
    """
    v = real_number(value, "constant_schedule", "value")
    return Schedule(lambda step: v, f"constant_schedule({v:g})")


def piecewise_constant_schedule(boundaries: Sequence[int], values: Sequence[float]) -> Schedule:
    """``values[i]`` on ``boundaries[i-1] <= step < boundaries[i]``: a step decay.

    Args:
        boundaries: strictly increasing steps >= 1 where the value changes.
        values: one more value than boundaries.

    >>> s = piecewise_constant_schedule([10, 20], [1.0, 0.1, 0.01])
    >>> s(9), s(10), s(25)
    (1.0, 0.1, 0.01)
    """
    where = "piecewise_constant_schedule"
    bounds = [positive_int(b, where, f"boundaries[{i}]")
              for i, b in enumerate(_sequence(boundaries, where, "boundaries"))]
    vals = [real_number(v, where, f"values[{i}]") for i, v in enumerate(_sequence(values, where, "values"))]
    if len(vals) != len(bounds) + 1:
        raise ValueError(
            f"{where}: values must have len(boundaries) + 1 = {len(bounds) + 1} entries, got {len(vals)}"
        )
    if any(b >= c for b, c in zip(bounds, bounds[1:])):
        raise ValueError(f"{where}: boundaries must be strictly increasing, got {bounds}")
    return Schedule(lambda step: vals[bisect.bisect_right(bounds, step)], f"{where}({bounds}, {vals})")


def exponential_decay(init_value: float, transition_steps: int, decay_rate: float, *,
                      transition_begin: int = 0, staircase: bool = False,
                      end_value: float | None = None) -> Schedule:
    """``init_value * decay_rate ** ((step - transition_begin) / transition_steps)``.

    Constant at ``init_value`` before ``transition_begin``. With ``staircase`` the
    exponent is floored, so the value drops by ``decay_rate`` every
    ``transition_steps`` (classic step decay). ``end_value`` bounds the value (from
    below when decaying, from above when ``decay_rate > 1``).

    >>> exponential_decay(1.0, 10, 0.5, staircase=True)(25)
    0.25
    """
    where = "exponential_decay"
    v0 = real_number(init_value, where, "init_value")
    n = positive_int(transition_steps, where, "transition_steps")
    rate = real_number(decay_rate, where, "decay_rate", low=0.0, low_open=True)
    begin = positive_int(transition_begin, where, "transition_begin", minimum=0)
    end = None if end_value is None else real_number(end_value, where, "end_value")
    staircase = _flag(staircase, where, "staircase")

    def fn(step: int) -> float:
        k = max(step - begin, 0) / n
        try:
            value = v0 * rate ** (math.floor(k) if staircase else k)
        except OverflowError:  # rate > 1 for many steps: the value is infinite (end_value may cap it)
            value = math.copysign(math.inf, v0) if v0 else 0.0
        if end is not None:
            value = max(value, end) if rate < 1 else min(value, end)
        return value

    return Schedule(fn, f"{where}({v0:g}, {n}, {rate:g}, staircase={bool(staircase)})")


def cosine_decay_schedule(init_value: float, decay_steps: int, alpha: float = 0.0) -> Schedule:
    """Cosine from ``init_value`` down to ``alpha * init_value`` over ``decay_steps``, then flat.

    ``value = init_value * ((1 - alpha) * (1 + cos(pi * min(step, decay_steps) / decay_steps)) / 2 + alpha)``

    >>> cosine_decay_schedule(2.0, 100)(50)
    1.0
    """
    where = "cosine_decay_schedule"
    v0 = real_number(init_value, where, "init_value")
    n = positive_int(decay_steps, where, "decay_steps")
    a = real_number(alpha, where, "alpha", low=0.0, high=1.0)

    def fn(step: int) -> float:
        cos = 0.5 * (1.0 + math.cos(math.pi * min(step, n) / n))
        return v0 * ((1.0 - a) * cos + a)

    return Schedule(fn, f"{where}({v0:g}, {n}, alpha={a:g})")


def linear_schedule(init_value: float, end_value: float, transition_steps: int,
                    transition_begin: int = 0) -> Schedule:
    """Linear from ``init_value`` (until ``transition_begin``) to ``end_value`` over
    ``transition_steps`` steps, then flat at ``end_value``: a linear warm-up or decay.

    >>> linear_schedule(0.0, 1.0, 4)(1)
    0.25
    """
    where = "linear_schedule"
    v0 = real_number(init_value, where, "init_value")
    v1 = real_number(end_value, where, "end_value")
    n = positive_int(transition_steps, where, "transition_steps")
    begin = positive_int(transition_begin, where, "transition_begin", minimum=0)

    def fn(step: int) -> float:
        frac = min(max(step - begin, 0), n) / n
        return v0 + (v1 - v0) * frac

    return Schedule(fn, f"{where}({v0:g}, {v1:g}, {n}, transition_begin={begin})")


def join_schedules(schedules: Sequence[Callable[[int], float]], boundaries: Sequence[int]) -> Schedule:
    """Run ``schedules[i]`` from ``boundaries[i-1]`` on, restarting its step count at 0.

    Args:
        schedules: ``len(boundaries) + 1`` schedules (any callables ``step -> value``).
        boundaries: strictly increasing steps >= 1.

    >>> s = join_schedules([constant_schedule(1.0), linear_schedule(1.0, 0.0, 10)], [5])
    >>> s(4), s(5), s(10)
    (1.0, 1.0, 0.5)
    """
    where = "join_schedules"
    parts = _sequence(schedules, where, "schedules")
    bounds = [positive_int(b, where, f"boundaries[{i}]")
              for i, b in enumerate(_sequence(boundaries, where, "boundaries"))]
    for i, s in enumerate(parts):
        if not callable(s):
            raise TypeError(f"{where}: schedules[{i}] must be callable step -> value, got {type(s).__name__}")
    if len(parts) != len(bounds) + 1:
        raise ValueError(
            f"{where}: needs len(boundaries) + 1 = {len(bounds) + 1} schedules, got {len(parts)}"
        )
    if any(b >= c for b, c in zip(bounds, bounds[1:])):
        raise ValueError(f"{where}: boundaries must be strictly increasing, got {bounds}")
    starts = [0] + bounds

    def fn(step: int) -> float:
        i = bisect.bisect_right(bounds, step)
        return float(parts[i](step - starts[i]))

    return Schedule(fn, f"{where}([{', '.join(repr(p) for p in parts)}], {bounds})")


def warmup_cosine_decay_schedule(init_value: float, peak_value: float, warmup_steps: int,
                                 decay_steps: int, end_value: float = 0.0) -> Schedule:
    """Linear warm-up from ``init_value`` to ``peak_value`` over ``warmup_steps``,
    then cosine decay to ``end_value``, reached at step ``decay_steps`` (which
    counts the warm-up) and kept after.

    Args:
        warmup_steps: >= 0 (0 for no warm-up).
        decay_steps: > ``warmup_steps``.
    """
    where = "warmup_cosine_decay_schedule"
    v0 = real_number(init_value, where, "init_value")
    peak = real_number(peak_value, where, "peak_value")
    end = real_number(end_value, where, "end_value")
    warm = positive_int(warmup_steps, where, "warmup_steps", minimum=0)
    total = positive_int(decay_steps, where, "decay_steps")
    if total <= warm:
        raise ValueError(f"{where}: decay_steps must be > warmup_steps (={warm}), got {total}")
    n = total - warm

    def fn(step: int) -> float:
        if step < warm:
            return v0 + (peak - v0) * step / warm
        cos = 0.5 * (1.0 + math.cos(math.pi * min(step - warm, n) / n))
        return end + (peak - end) * cos

    return Schedule(fn, f"{where}({v0:g}, {peak:g}, {warm}, {total}, end_value={end:g})")

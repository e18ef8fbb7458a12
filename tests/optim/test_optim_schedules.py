"""Schedules at hand-computed steps, and their argument checks."""
from __future__ import annotations

import math

import numpy as np
import pytest

from functional_cnn.optim import (
    constant_schedule,
    cosine_decay_schedule,
    exponential_decay,
    join_schedules,
    linear_schedule,
    piecewise_constant_schedule,
    warmup_cosine_decay_schedule,
)

CASES = [
    (constant_schedule(0.3), {0: 0.3, 7: 0.3, 10**6: 0.3}),
    (piecewise_constant_schedule([10, 20], [1.0, 0.1, 0.01]),
     {0: 1.0, 9: 1.0, 10: 0.1, 19: 0.1, 20: 0.01, 1000: 0.01}),
    (exponential_decay(2.0, 10, 0.5), {0: 2.0, 5: math.sqrt(2.0), 10: 1.0, 20: 0.5, 25: 0.5 / math.sqrt(2.0)}),
    (exponential_decay(2.0, 10, 0.5, staircase=True), {0: 2.0, 9: 2.0, 10: 1.0, 19: 1.0, 20: 0.5}),
    (exponential_decay(2.0, 10, 0.5, transition_begin=5), {0: 2.0, 5: 2.0, 15: 1.0}),
    (exponential_decay(2.0, 10, 0.5, end_value=0.3), {10: 1.0, 100: 0.3}),
    (exponential_decay(1.0, 1, 2.0, end_value=5.0), {2: 4.0, 3: 5.0, 50: 5.0}),
    (cosine_decay_schedule(1.0, 100), {0: 1.0, 50: 0.5, 100: 0.0, 200: 0.0}),
    (cosine_decay_schedule(1.0, 100, alpha=0.1),
     {0: 1.0, 25: 0.9 * 0.5 * (1 + math.sqrt(0.5)) + 0.1, 50: 0.55, 100: 0.1, 300: 0.1}),
    (linear_schedule(0.0, 1.0, 4), {0: 0.0, 1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0, 10: 1.0}),
    (linear_schedule(1.0, 0.5, 10, transition_begin=2), {0: 1.0, 2: 1.0, 7: 0.75, 12: 0.5, 99: 0.5}),
    (join_schedules([constant_schedule(1.0), linear_schedule(1.0, 0.0, 10)], [5]),
     {0: 1.0, 4: 1.0, 5: 1.0, 10: 0.5, 15: 0.0, 100: 0.0}),
    (join_schedules([lambda k: 3.0, lambda k: float(k), constant_schedule(9.0)], [2, 6]),
     {1: 3.0, 2: 0.0, 5: 3.0, 6: 9.0}),
    (warmup_cosine_decay_schedule(0.0, 1.0, 10, 110, end_value=0.1),
     {0: 0.0, 5: 0.5, 10: 1.0, 60: 0.55, 110: 0.1, 1000: 0.1}),
    (warmup_cosine_decay_schedule(0.5, 1.0, 0, 100), {0: 1.0, 50: 0.5, 100: 0.0}),
]


@pytest.mark.parametrize("schedule, expected", CASES, ids=[repr(c[0])[:60] for c in CASES])
def test_schedule_values(schedule, expected):
    for step, value in expected.items():
        got = schedule(step)
        assert type(got) is float
        assert math.isclose(got, value, rel_tol=4 * np.finfo(float).eps, abs_tol=1e-15), (step, got, value)


def test_schedule_accepts_numpy_counts():
    s = linear_schedule(0.0, 1.0, 4)
    assert s(np.int64(2)) == 0.5
    assert s(np.array(3, dtype=np.int64)) == 0.75


@pytest.mark.parametrize("step, err, match", [
    (-1, ValueError, "step must be an integer >= 0, got -1"),
    (1.5, TypeError, "step must be an integer"),
    (True, TypeError, "step must be an integer"),
])
def test_bad_steps(step, err, match):
    with pytest.raises(err, match=match):
        constant_schedule(1.0)(step)


@pytest.mark.parametrize("make, err, match", [
    (lambda: constant_schedule("a"), TypeError, "constant_schedule: value must be a real number"),
    (lambda: piecewise_constant_schedule([10], [1.0]), ValueError, "values must have len\\(boundaries\\) \\+ 1 = 2"),
    (lambda: piecewise_constant_schedule([10, 10], [1.0, 2.0, 3.0]), ValueError, "strictly increasing"),
    (lambda: piecewise_constant_schedule([0], [1.0, 2.0]), ValueError, "boundaries\\[0\\] must be an integer >= 1"),
    (lambda: exponential_decay(1.0, 0, 0.5), ValueError, "exponential_decay: transition_steps"),
    (lambda: exponential_decay(1.0, 10, 0.0), ValueError, "exponential_decay: decay_rate"),
    (lambda: exponential_decay(1.0, 10, 0.5, transition_begin=-1), ValueError, "transition_begin"),
    (lambda: cosine_decay_schedule(1.0, 100, alpha=1.5), ValueError, "cosine_decay_schedule: alpha"),
    (lambda: cosine_decay_schedule(1.0, 0), ValueError, "cosine_decay_schedule: decay_steps"),
    (lambda: linear_schedule(0.0, 1.0, -3), ValueError, "linear_schedule: transition_steps"),
    (lambda: join_schedules([constant_schedule(1.0)], [5]), ValueError, "join_schedules: needs len"),
    (lambda: join_schedules([1.0, constant_schedule(1.0)], [5]), TypeError, "schedules\\[0\\] must be callable"),
    (lambda: join_schedules([abs, abs, abs], [5, 3]), ValueError, "strictly increasing"),
    (lambda: warmup_cosine_decay_schedule(0.0, 1.0, 10, 10), ValueError, "decay_steps must be > warmup_steps"),
    (lambda: warmup_cosine_decay_schedule(0.0, 1.0, -1, 10), ValueError, "warmup_steps"),
])
def test_bad_schedule_arguments(make, err, match):
    with pytest.raises(err, match=match):
        make()

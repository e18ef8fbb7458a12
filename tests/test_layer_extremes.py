"""Layers at the edges of their domain: pooling windows of any size, gelu over every finite float."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import functional_cnn as fc

MB = 2**20
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- pooling windows
# id: (factory name, constructor, per-example input shape, the start of init's message after "name: ")
HUGE_POOLS = {
    "max_pool2d-3000": ("max_pool2d", "fc.max_pool2d(3000)", (1, 8, 8),
                        "window (3000, 3000) is larger than the input's spatial size (8, 8) (in_shape (1, 8, 8))"),
    "avg_pool2d-1e6": ("avg_pool2d", "fc.avg_pool2d(10**6)", (2, 5, 9),
                       "window (1000000, 1000000) is larger than the input's spatial size (5, 9)"),
    "max_pool2d-1x1e6": ("max_pool2d", "fc.max_pool2d((1, 10**6), stride=2)", (1, 4, 4), "window (1, 1000000)"),
    "max_pool1d-1e8": ("max_pool1d", "fc.max_pool1d(10**8)", (2, 7),
                       "window 100000000 is longer than the input length 7"),
    "avg_pool1d-1e8": ("avg_pool1d", "fc.avg_pool1d(10**8, 3)", (2, 7),
                       "window 100000000 is longer than the input length 7"),
}

# Run in a child whose heap is capped at 1 GiB: should construction regress to size**2 offsets,
# the child fails with MemoryError instead of exhausting the machine.
CHILD = """
import json, sys, tracemalloc
import numpy as np
import functional_cnn as fc

def error_of(call):
    try:
        call()
    except ValueError as err:
        return str(err)
    return None

out = {}
for key, make, in_shape in json.loads(sys.argv[1]):
    tracemalloc.start()
    layer = eval(make)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    init = error_of(lambda: layer.init(np.random.default_rng(0), tuple(in_shape), np.float32))
    forward = error_of(lambda: layer.forward(None, np.zeros((1,) + tuple(in_shape), np.float32)))
    out[key] = dict(peak=peak, init=init, forward=forward)
print(json.dumps(out))
"""


def _cap_heap():
    resource.setrlimit(resource.RLIMIT_DATA, (1 << 30, 1 << 30))


@pytest.fixture(scope="module")
def huge_pools():
    cases = json.dumps([(key, make, shape) for key, (_, make, shape, _) in HUGE_POOLS.items()])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", CHILD, cases], preexec_fn=_cap_heap, env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


@pytest.mark.parametrize("key", list(HUGE_POOLS))
def test_a_huge_window_costs_nothing_to_build_and_is_refused_at_init(huge_pools, key):
    name, _, _, message = HUGE_POOLS[key]
    got = huge_pools[key]
    assert got["peak"] < 1 * MB, got  # tracemalloc: Python objects and numpy buffers made by the constructor
    assert got["init"] is not None and got["init"].startswith(f"{name}: {message}"), got
    window = message.split(" is ")[0]
    assert got["forward"] is not None and got["forward"].startswith(f"{name}: {window}"), got


def test_a_window_as_large_as_the_input_is_accepted():
    layer = fc.max_pool2d((5, 9))
    out_shape, _ = layer.init(None, (2, 5, 9))
    x = np.random.default_rng(0).standard_normal((3, 2, 5, 9))
    y, _ = layer.forward(None, x)
    assert out_shape == (2, 1, 1)
    np.testing.assert_array_equal(y[:, :, 0, 0], x.max(axis=(2, 3)))


def naive_pool(x, k, s, op):
    """Forward and backward (dy = ``dy``) by loops over output positions; max routes to the first maximum."""
    n, c, h, w = x.shape
    oh, ow = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
    y = np.empty((n, c, oh, ow))
    dy = np.arange(1.0, y.size + 1).reshape(y.shape)
    dx = np.zeros_like(x)
    for i in range(oh):
        for j in range(ow):
            rows, cols = slice(i * s[0], i * s[0] + k[0]), slice(j * s[1], j * s[1] + k[1])
            win = x[:, :, rows, cols].reshape(n, c, -1)
            if op == "max":
                first = win.argmax(axis=2)  # numpy returns the first maximum in row-major order
                y[:, :, i, j] = win.max(axis=2)
                grad = np.zeros_like(win)
                np.put_along_axis(grad, first[:, :, None], dy[:, :, i, j, None], axis=2)
                dx[:, :, rows, cols] += grad.reshape(n, c, k[0], k[1])
            else:
                y[:, :, i, j] = win.mean(axis=2)
                dx[:, :, rows, cols] += dy[:, :, i, j, None, None] / (k[0] * k[1])
    return y, dy, dx


@st.composite
def pool_geometry(draw):
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    s = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    hw = (k[0] + draw(st.integers(0, 6)), k[1] + draw(st.integers(0, 6)))
    return k, s, hw


@given(geometry=pool_geometry(), op=st.sampled_from(["max", "avg"]), seed=st.integers(0, 2**32 - 1))
def test_pools_match_their_loop_references(geometry, op, seed):
    """Small integer values make ties, so the first-maximum routing is exercised."""
    k, s, hw = geometry
    x = np.random.default_rng(seed).integers(-2, 3, (2, 3) + hw).astype(np.float64)
    layer = (fc.max_pool2d if op == "max" else fc.avg_pool2d)(k, s)
    y, cache = layer.forward(None, x)
    y_ref, dy, dx_ref = naive_pool(x, k, s, op)
    np.testing.assert_allclose(y, y_ref, rtol=1e-14, atol=1e-14)
    _, dx = layer.backward(None, cache, dy)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("op", ["max", "avg"])
@pytest.mark.parametrize("k, s, hw", [((17, 16), (17, 16), (20, 33)), ((16, 17), (3, 5), (18, 20))],
                         ids=["blocks", "overlap"])
def test_pools_with_more_than_256_offsets_match_the_loop_reference(op, k, s, hw):
    """More than 256 offsets: max pooling keeps the argmax in intp instead of uint8."""
    x = np.random.default_rng(1).integers(-3, 4, (2, 2) + hw).astype(np.float64)
    layer = (fc.max_pool2d if op == "max" else fc.avg_pool2d)(k, s)
    y, cache = layer.forward(None, x)
    y_ref, dy, dx_ref = naive_pool(x, k, s, op)
    np.testing.assert_allclose(y, y_ref, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(layer.backward(None, cache, dy)[1], dx_ref, rtol=1e-13, atol=1e-13)


# ----------------------------------------------------------------------------- gelu
FLOATS = {np.float16: 16, np.float32: 32, np.float64: 64}
GELU_DTYPES = [(dtype, approximate) for dtype in FLOATS for approximate in (True, False)]
GELU_IDS = [f"{d.__name__}-{'tanh' if a else 'erf'}" for d, a in GELU_DTYPES]


def gelu_values(x, approximate):
    """Forward and backward (dy = 1) with overflow, 0/0 and division by zero turned into errors."""
    layer = fc.gelu(approximate=approximate)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y, cache = layer.forward(None, x)
        _, dx = layer.backward(None, cache, np.ones_like(y))
    assert y.dtype == x.dtype and dx.dtype == x.dtype
    return y, dx


def check_gelu_everywhere(x, approximate):
    y, dx = gelu_values(x, approximate)
    assert np.isfinite(y).all() and np.isfinite(dx).all(), (x, y, dx)
    # GELU(x) = x * Phi(x): between its minimum (about -0.17) and max(x, 0); slope in [-0.17, 1.13].
    assert (y >= -0.2).all() and (y <= np.maximum(x, 0)).all(), (x, y)
    assert (dx >= -0.2).all() and (dx <= 1.2).all(), (x, dx)
    big, small = x > 10, x < -10  # flat in every dtype: the asymptotes x and 0
    np.testing.assert_array_equal(y[big], x[big])
    np.testing.assert_array_equal(dx[big], 1)
    np.testing.assert_array_equal(y[small], 0)
    np.testing.assert_allclose(dx[small], 0, atol=1e-20)


@pytest.mark.parametrize("dtype, approximate", GELU_DTYPES, ids=GELU_IDS)
@given(data=st.data())
def test_gelu_is_finite_for_every_finite_input(dtype, approximate, data):
    values = data.draw(st.lists(st.floats(width=FLOATS[dtype], allow_nan=False, allow_infinity=False),
                                min_size=1, max_size=16), label="x")
    check_gelu_everywhere(np.array([values], dtype=dtype), approximate)


@pytest.mark.parametrize("dtype, approximate", GELU_DTYPES, ids=GELU_IDS)
def test_gelu_at_the_extremes_of_each_dtype(dtype, approximate):
    fi = np.finfo(dtype)
    candidates = [fi.max, fi.tiny, fi.smallest_subnormal, 1e20, 1e4, 40.5, 10.0, 1.0]
    values = [v for c in candidates for v in (c, -c) if c <= float(fi.max)] + [0.0]
    assert len(values) >= 15  # float16 has no 1e20: every other extreme is still there
    x = np.array([values], dtype=dtype)
    check_gelu_everywhere(x, approximate)
    y, dx = gelu_values(x, approximate)
    np.testing.assert_array_equal(y[0, :2], [fi.max, 0])
    np.testing.assert_array_equal(dx[0, :2], [1, 0])


@given(x=st.lists(st.floats(-10, 10), min_size=1, max_size=16))
def test_gelu_tanh_form_keeps_its_values_for_ordinary_inputs(x):
    """Up to |x| = 10 the robust form is the textbook formula, to rounding (float64)."""
    x = np.array([x])
    y, dx = gelu_values(x, approximate=True)
    u = np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)
    eps = np.finfo(np.float64).eps
    np.testing.assert_allclose(y, 0.5 * x * (1 + np.tanh(u)), rtol=4 * eps, atol=4 * eps)
    slope = 0.5 * (1 + np.tanh(u)) + 0.5 * x * (1 - np.tanh(u) ** 2) * np.sqrt(2 / np.pi) * (1 + 0.134145 * x**2)
    np.testing.assert_allclose(dx, slope, rtol=16 * eps, atol=16 * eps)

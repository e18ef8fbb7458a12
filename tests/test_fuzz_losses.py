"""Fuzzing every loss: random shapes, dtypes, extreme and non-finite values, malformed targets.

A loss returns a finite Python float and a gradient of ``pred``'s shape and dtype for
finite input (logits of any size, probabilities at exactly 0 and 1), propagates NaN in
``pred`` to the value, and refuses malformed input with a message naming the loss.
"""
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import functional_cnn as fc
from errors_doc import Case, assert_named

FLOATS = (np.float16, np.float32, np.float64)
SEEDS = st.integers(0, 2**32 - 1)


def _labels(rng, n, k):
    return rng.integers(0, k, n)


def _probs_target(rng, n, k):
    t = rng.random((n, k)) + 1e-3
    return t / t.sum(axis=1, keepdims=True)


def _bits(rng, n, k):
    return (rng.random((n, k)) > 0.5).astype(rng.choice([np.float64, np.int64, bool]))


# name: (function, its name in messages, pred kind, target maker)
LOSSES = {
    "sce_labels": (fc.softmax_cross_entropy, "softmax_cross_entropy", "logits", _labels),
    "sce_probabilities": (fc.softmax_cross_entropy, "softmax_cross_entropy", "logits", _probs_target),
    "bce": (fc.binary_cross_entropy, "binary_cross_entropy", "probs", _bits),
    "bce_logits": (fc.binary_cross_entropy_with_logits, "binary_cross_entropy_with_logits", "logits",
                   lambda rng, n, k: rng.random((n, k))),
    "one_hot_bce": (fc.one_hot_binary_cross_entropy, "one_hot_binary_cross_entropy", "probs", _labels),
    "mse": (fc.mean_squared_error, "mean_squared_error", "any", lambda rng, n, k: rng.standard_normal((n, k)) * 10),
    "accuracy": (fc.accuracy, "accuracy", "any", _labels),
}
by_loss = pytest.mark.parametrize("key", list(LOSSES))


def make_pred(kind, rng, n, k, dtype, scale):
    if kind == "probs":  # exact 0 and 1 included: the clipping must keep the value finite
        p = rng.random((n, k))
        p[rng.random((n, k)) < 0.2] = 0.0
        p[rng.random((n, k)) < 0.2] = 1.0
        return p.astype(dtype)
    top = float(np.finfo(dtype).max) / 4 if kind == "logits" else 30.0  # mse squares: keep the square finite
    return np.clip(rng.standard_normal((n, k)) * scale, -top, top).astype(dtype)


@by_loss
@settings()
@given(n=st.integers(1, 5), k=st.integers(1, 5), dtype=st.sampled_from(FLOATS), seed=SEEDS,
       scale=st.sampled_from([1.0, 30.0, 1e4, 1e30]))
def test_finite_value_and_gradient(key, n, k, dtype, seed, scale):
    fn, name, kind, target = LOSSES[key]
    if key == "sce_probabilities" and dtype == np.float16 and k > 1:
        dtype = np.float32  # rows summing to 1 within sqrt(eps16) are hard to make: covered with float32
    rng = np.random.default_rng(seed)
    pred = make_pred(kind, rng, n, k, dtype, scale if kind == "logits" else min(scale, 30.0))
    t = target(rng, n, k)
    before = (pred.copy(), t.copy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow, no log(0), no 0/0
        out = fn(pred, t)
    assert np.array_equal(pred, before[0]) and np.array_equal(t, before[1]), "a loss changed its input"
    if key == "accuracy":
        assert isinstance(out, float) and 0.0 <= out <= 1.0
        return
    value, grad = out
    assert isinstance(value, float) and np.isfinite(value)
    assert grad.shape == pred.shape and grad.dtype == pred.dtype and np.isfinite(grad).all()
    if scale == 1.0 and kind != "probs":  # and agrees with float64 on the same numbers
        v64, g64 = fn(pred.astype(np.float64), t)
        tol = 64 * np.finfo(dtype).eps
        assert abs(value - v64) <= tol * (1 + abs(v64))
        np.testing.assert_allclose(grad.astype(np.float64), g64, rtol=tol, atol=tol * (1 + np.abs(g64).max()))


@by_loss
@settings()
@given(n=st.integers(1, 4), k=st.integers(2, 4), seed=SEEDS, value=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_non_finite_pred_propagates_or_is_refused(key, n, k, seed, value):
    """NaN in pred shows in the value (nothing hides it); Inf probabilities are out of [0, 1]: refused."""
    fn, name, kind, target = LOSSES[key]
    rng = np.random.default_rng(seed)
    pred = make_pred(kind, rng, n, k, np.float32, 1.0)
    pred[int(rng.integers(n)), int(rng.integers(k))] = value
    t = target(rng, n, k)
    if kind == "probs" and np.isinf(value):
        with pytest.raises(ValueError) as info:
            fn(pred, t)
        assert_named(info.value, name, "probs")
        return
    with np.errstate(all="ignore"):
        out = fn(pred, t)
    if key == "accuracy":
        assert 0.0 <= out <= 1.0
    elif value != value:
        assert np.isnan(out[0])


@by_loss
@settings()
@given(seed=SEEDS, bad=st.sampled_from([np.int64, np.uint8, bool, np.complex64, object, "U3"]))
def test_non_float_pred_is_refused(key, seed, bad):
    fn, name, kind, target = LOSSES[key]
    rng = np.random.default_rng(seed)
    pred = make_pred(kind, rng, 3, 2, np.float32, 1.0)
    with pytest.raises(TypeError) as info:
        fn(pred.astype(bad), target(rng, 3, 2))
    assert_named(info.value, name)


@by_loss
@settings()
@given(seed=SEEDS, bad=st.sampled_from([np.complex64, object, "U3", None, "labels", {"a": 1}]))
def test_non_real_target_is_refused(key, seed, bad):
    fn, name, kind, target = LOSSES[key]
    rng = np.random.default_rng(seed)
    t = target(rng, 3, 2)
    t = bad if bad is None or isinstance(bad, (dict,)) or bad == "labels" else t.astype(bad)
    with pytest.raises((TypeError, ValueError)) as info:
        fn(make_pred(kind, rng, 3, 2, np.float32, 1.0), t)
    assert_named(info.value, name)


@by_loss
@settings()
@given(seed=SEEDS, change=st.sampled_from(["empty batch", "no classes", "batch", "rank", "scalar pred"]))
def test_malformed_shapes_are_refused(key, seed, change):
    fn, name, kind, target = LOSSES[key]
    rng = np.random.default_rng(seed)
    pred, t = make_pred(kind, rng, 3, 2, np.float32, 1.0), target(rng, 3, 2)
    if change == "empty batch":
        pred, t = pred[:0], t[:0]
    elif change == "no classes":
        pred = pred[:, :0]
    elif change == "batch":
        t = t[:2]
    elif change == "rank":
        t = t[..., None, None]
    else:
        pred = pred[0, 0]
    with pytest.raises(ValueError) as info:
        fn(pred, t)
    assert_named(info.value, name)


@by_loss
@settings()
@given(seed=SEEDS, value=st.sampled_from([np.nan, np.inf, -1.0, 2.0]))
def test_bad_target_values_are_refused(key, seed, value):
    """Targets are data the model learns from: non-finite ones (and out-of-range ones) are refused."""
    fn, name, kind, target = LOSSES[key]
    rng = np.random.default_rng(seed)
    pred = make_pred(kind, rng, 3, 2, np.float32, 1.0)
    t = target(rng, 3, 2)
    # labels: -1 and 2 are out of range for 2 classes; NaN/Inf cannot be integer labels
    assume(t.ndim > 1 or np.isfinite(value))
    assume(key != "mse" or not np.isfinite(value))  # any finite regression target is fine
    if t.ndim == 1:
        t[0] = int(value)
    else:
        t = t.astype(np.float64)
        t[0, 0] = value
    with pytest.raises(ValueError) as info:
        fn(pred, t)
    assert_named(info.value, name)


@settings()
@given(ls=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([None, "0.1", True, 1, -1])))
def test_label_smoothing_is_checked(ls):
    logits, labels = np.zeros((2, 3)), np.array([0, 2])
    try:
        value, grad = fc.softmax_cross_entropy(logits, labels, label_smoothing=ls)
    except (TypeError, ValueError) as err:
        assert_named(err, "softmax_cross_entropy", "label_smoothing")
        return
    assert 0.0 <= ls < 1.0 and np.isfinite(value) and np.isfinite(grad).all()


Z = np.zeros((3, 4), np.float32)
Y = np.array([0, 1, 3])
P = np.full((3, 4), 0.25, np.float32)

ERROR_CASES = [
    Case("losses", "softmax_cross_entropy(int logits, labels)", lambda: fc.softmax_cross_entropy(Z.astype(int), Y),
         TypeError, "softmax_cross_entropy: logits must have a floating dtype"),
    Case("losses", "softmax_cross_entropy(logits (0, 4), labels (0,))",
         lambda: fc.softmax_cross_entropy(Z[:0], Y[:0]), ValueError,
         "softmax_cross_entropy: logits must hold at least one example and element"),
    Case("losses", "softmax_cross_entropy(logits (3, 4), float labels)",
         lambda: fc.softmax_cross_entropy(Z, Y.astype(float)), TypeError,
         "softmax_cross_entropy: 1-D target holds class labels and must have an integer dtype"),
    Case("losses", "softmax_cross_entropy(logits (3, 4), label 4)",
         lambda: fc.softmax_cross_entropy(Z, np.array([0, 1, 4])), ValueError,
         "softmax_cross_entropy: labels must be in [0, 4) for 4 classes, got 4 at index 2"),
    Case("losses", "softmax_cross_entropy(logits (3, 4), labels (2,))", lambda: fc.softmax_cross_entropy(Z, Y[:2]),
         ValueError, "softmax_cross_entropy: batch sizes differ"),
    Case("losses", "softmax_cross_entropy(probability rows with NaN)",
         lambda: fc.softmax_cross_entropy(Z, np.where(P > 0, np.nan, P)), ValueError,
         "softmax_cross_entropy: probability targets must be finite"),
    Case("losses", "softmax_cross_entropy(..., label_smoothing=1.0)",
         lambda: fc.softmax_cross_entropy(Z, Y, label_smoothing=1.0), ValueError,
         "softmax_cross_entropy: label_smoothing must be in [0.0, 1.0)"),
    Case("losses", "softmax_cross_entropy(complex target)", lambda: fc.softmax_cross_entropy(Z, P.astype(complex)),
         TypeError, "softmax_cross_entropy: target must have a real (bool, integer or float) dtype"),
    Case("losses", "binary_cross_entropy(probs 1.2)", lambda: fc.binary_cross_entropy(P + 1, P), ValueError,
         "binary_cross_entropy: probs must lie in [0, 1], got 1.25"),
    Case("losses", "binary_cross_entropy(NaN target)", lambda: fc.binary_cross_entropy(P, P * np.nan), ValueError,
         "binary_cross_entropy: target must lie in [0, 1], got nan"),
    Case("losses", "binary_cross_entropy_with_logits(target of another shape)",
         lambda: fc.binary_cross_entropy_with_logits(Z, P[:, :2]), ValueError,
         "binary_cross_entropy_with_logits: target must have the same shape as logits"),
    Case("losses", "one_hot_binary_cross_entropy(inf probs)",
         lambda: fc.one_hot_binary_cross_entropy(P * np.inf, Y), ValueError,
         "one_hot_binary_cross_entropy: probs must lie in [0, 1], got inf"),
    Case("losses", "mean_squared_error(pred, inf target)", lambda: fc.mean_squared_error(Z, P * np.inf), ValueError,
         "mean_squared_error: target must be finite"),
    Case("losses", "mean_squared_error(scalar pred)", lambda: fc.mean_squared_error(np.float64(1), np.float64(1)),
         ValueError, "mean_squared_error: pred must have a batch axis (rank >= 1)"),
    Case("losses", "accuracy(pred, NaN one-hot target)", lambda: fc.accuracy(Z, P * np.nan), ValueError,
         "accuracy: target must be finite"),
    Case("losses", "accuracy(pred (3, 4), target (3, 4, 1))", lambda: fc.accuracy(Z, P[..., None]), ValueError,
         "accuracy: target must be (N,) labels or (N, K) one-hot"),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.what)
def test_documented_bad_inputs(case):
    case.check()

"""Tests for functional_cnn.losses: naive references, central differences, extremes, errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit, logsumexp

from functional_cnn.losses import (
    accuracy,
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    mean_squared_error,
    softmax_cross_entropy,
)

EPS64 = np.finfo(np.float64).eps
FLOATS = (np.float16, np.float32, np.float64)


def numgrad(f, x, h=1e-6):
    """Central differences of scalar f at float64 x (x is copied, never changed)."""
    x = np.array(x, dtype=np.float64, copy=True)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        g[i] = (f(xp) - f(xm)) / (2 * h)
    return g


def onehot(y, k):
    return np.eye(k)[y]


def ce_ref(z, t):
    """Naive cross entropy: -mean_i sum_k t_ik log(exp(z_ik) / sum_j exp(z_ij))."""
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return -np.sum(t * np.log(p)) / z.shape[0]


def data(rng, n=4, k=5, scale=2.0):
    z = rng.normal(scale=scale, size=(n, k))
    y = rng.integers(0, k, size=n)
    t = rng.random((n, k))
    return z, y, t / t.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- values
def test_softmax_ce_matches_naive_reference_labels_and_probabilities():
    z, y, t = data(np.random.default_rng(0))
    v, _ = softmax_cross_entropy(z, y)
    assert isinstance(v, float)
    np.testing.assert_allclose(v, ce_ref(z, onehot(y, 5)), rtol=1e-13)
    np.testing.assert_allclose(softmax_cross_entropy(z, t)[0], ce_ref(z, t), rtol=1e-13)
    lse = logsumexp(z, axis=1)
    np.testing.assert_allclose(v, np.mean(lse - z[np.arange(4), y]), rtol=1e-13)


@pytest.mark.parametrize("ls", [0.0, 0.1, 0.5, 0.99])
def test_labels_agree_with_onehot_and_smoothing_equals_smoothed_targets(ls):
    z, y, _ = data(np.random.default_rng(1), n=6, k=4)
    v1, g1 = softmax_cross_entropy(z, y, label_smoothing=ls)
    v2, g2 = softmax_cross_entropy(z, onehot(y, 4), label_smoothing=ls)
    smoothed = (1 - ls) * onehot(y, 4) + ls / 4
    v3, g3 = softmax_cross_entropy(z, smoothed)
    for v, g in ((v2, g2), (v3, g3)):
        np.testing.assert_allclose(v, v1, rtol=1e-12)
        np.testing.assert_allclose(g, g1, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(v1, ce_ref(z, smoothed), rtol=1e-12)


def test_bce_matches_seed_002_formula_and_gradient():
    # seed 002: -np.mean(y*log(p) + (1-y)*log(1-p)) and ((1-y)/(1-p) - y/p) / np.size(y), shape (2, 1)
    rng = np.random.default_rng(2)
    p = rng.uniform(0.05, 0.95, size=(2, 1))
    t = np.array([[1.0], [0.0]])
    v, g = binary_cross_entropy(p, t)
    np.testing.assert_allclose(v, -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)), rtol=1e-13)
    np.testing.assert_allclose(g, ((1 - t) / (1 - p) - t / p) / np.size(t), rtol=1e-13)


def test_bce_with_logits_and_mse_match_naive():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(3, 2, 2))
    t = rng.random((3, 2, 2))
    ref = -np.mean(t * np.log(expit(z)) + (1 - t) * np.log(1 - expit(z)))
    np.testing.assert_allclose(binary_cross_entropy_with_logits(z, t)[0], ref, rtol=1e-13)
    np.testing.assert_allclose(binary_cross_entropy(expit(z), t)[0], ref, rtol=1e-12)
    v, g = mean_squared_error(z, t)
    np.testing.assert_allclose(v, np.mean((z - t) ** 2), rtol=1e-13)
    np.testing.assert_allclose(g, 2 * (z - t) / z.size, rtol=1e-13)


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("case", ["labels", "probs", "smooth"])
def test_softmax_ce_gradient_central_differences(case):
    z, y, t = data(np.random.default_rng(4), n=3, k=4)
    target, kw = {"labels": (y, {}), "probs": (t, {}), "smooth": (y, {"label_smoothing": 0.2})}[case]
    _, g = softmax_cross_entropy(z, target, **kw)
    num = numgrad(lambda zz: softmax_cross_entropy(zz, target, **kw)[0], z)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("loss", [binary_cross_entropy, binary_cross_entropy_with_logits, mean_squared_error])
def test_elementwise_loss_gradient_central_differences(loss):
    rng = np.random.default_rng(5)
    x = rng.uniform(0.1, 0.9, size=(3, 2)) if loss is binary_cross_entropy else rng.normal(size=(3, 2))
    t = rng.random((3, 2))
    _, g = loss(x, t)
    np.testing.assert_allclose(g, numgrad(lambda xx: loss(xx, t)[0], x), rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------- extremes
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_ce_extreme_logits(dtype):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], dtype=dtype)
    y = np.array([0, 0])                                   # row 0 confidently right, row 1 wrong
    v, g = softmax_cross_entropy(z, y)
    assert np.isfinite(v) and g.dtype == dtype and np.isfinite(g).all()
    np.testing.assert_allclose(v, (0 + 2e4) / 2, rtol=1e-6)
    # p = onehot(argmax) exactly in both dtypes, so (p - onehot(y)) / N is exact
    np.testing.assert_array_equal(g, np.array([[0, 0, 0], [-0.5, 0.5, 0]], dtype=dtype))
    assert softmax_cross_entropy(z[:1], y[:1])[0] == 0.0
    vp, gp = softmax_cross_entropy(-z, onehot(np.array([0, 2]), 3))   # wrong by 2e4, wrong by 1e4
    assert np.isfinite(vp) and np.isfinite(gp).all()
    np.testing.assert_allclose(vp, (2e4 + 1e4) / 2, rtol=1e-6)
    np.testing.assert_array_equal(gp, np.array([[-0.5, 0.5, 0], [0.5, 0, -0.5]], dtype=dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_extreme(dtype):
    z = np.array([[1e4, -1e4], [-1e4, 1e4]], dtype=dtype)
    t = np.array([[1, 0], [1, 0]], dtype=dtype)             # row 0 right, row 1 wrong
    v, g = binary_cross_entropy_with_logits(z, t)
    assert np.isfinite(v) and g.dtype == dtype
    np.testing.assert_allclose(v, 2e4 / 4, rtol=1e-6)
    np.testing.assert_array_equal(g, np.array([[0, 0], [-0.25, 0.25]], dtype=dtype))


@pytest.mark.parametrize("dtype", FLOATS)
def test_bce_safe_at_exactly_zero_and_one(dtype):
    eps = np.finfo(dtype).eps
    p = np.array([[0.0, 1.0, 0.0, 1.0]], dtype=dtype)
    t = np.array([[0, 1, 1, 0]])                             # two right, two maximally wrong
    v, g = binary_cross_entropy(p, t)
    assert np.isfinite(v) and np.isfinite(g).all() and g.dtype == dtype
    np.testing.assert_allclose(v, -2 * np.log(float(eps)) / 4, rtol=1e-3)
    # gradient at the clip boundary is the derivative at the clipped point: +-1/(1-eps)/4 and +-1/eps/4
    expect = np.array([[1 / (1 - eps), -1 / (1 - eps), -1 / eps, 1 / eps]], dtype=np.float64) / 4
    np.testing.assert_allclose(g.astype(np.float64), expect, rtol=1e-3)


def test_float32_agrees_with_float64():
    z, y, t = data(np.random.default_rng(6), n=8, k=10, scale=5.0)
    tol = 50 * np.finfo(np.float32).eps
    for target in (y, t):
        v64, g64 = softmax_cross_entropy(z, target)
        v32, g32 = softmax_cross_entropy(z.astype(np.float32), target)
        np.testing.assert_allclose(v32, v64, rtol=tol)
        np.testing.assert_allclose(g32, g64, rtol=tol, atol=tol / 8)


# ----------------------------------------------------------------------------- dtype, purity
@pytest.mark.parametrize("dtype", FLOATS)
def test_dtype_preserved_and_value_is_float(dtype):
    z, y, t = data(np.random.default_rng(7))
    z = z.astype(dtype)
    p = expit(z).astype(dtype)
    for v, g in (softmax_cross_entropy(z, y), softmax_cross_entropy(z, t, label_smoothing=0.1),
                 binary_cross_entropy(p, t), binary_cross_entropy_with_logits(z, t), mean_squared_error(z, t)):
        assert type(v) is float and np.isfinite(v)
        assert g.dtype == dtype and g.shape == z.shape and g.flags.writeable


def test_purity_inputs_unchanged_and_readonly_inputs_accepted():
    z, y, t = data(np.random.default_rng(8))
    p = expit(z)
    ins = [z, y, t, p]
    copies = [a.copy() for a in ins]
    for a in ins:
        a.flags.writeable = False
    first = [softmax_cross_entropy(z, y, label_smoothing=0.1), softmax_cross_entropy(z, t),
             binary_cross_entropy(p, t), binary_cross_entropy_with_logits(z, t), mean_squared_error(z, t)]
    again = softmax_cross_entropy(z, y, label_smoothing=0.1)
    for a, c in zip(ins, copies, strict=True):
        np.testing.assert_array_equal(a, c)
    assert again[0] == first[0][0] and np.array_equal(again[1], first[0][1])
    for _, g in first:
        assert not any(np.shares_memory(g, a) for a in ins)


def test_non_finite_pred_propagates():
    z, y, t = data(np.random.default_rng(9))
    z[1, 2] = np.nan
    assert np.isnan(softmax_cross_entropy(z, y)[0])
    assert np.isnan(mean_squared_error(z, t)[0])
    assert np.isnan(binary_cross_entropy_with_logits(z, t)[0])


# ----------------------------------------------------------------------------- properties
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5), k=st.integers(1, 6), seed=st.integers(0, 2**32 - 1),
       ls=st.sampled_from([0.0, 0.3]), probs=st.booleans())
def test_softmax_ce_properties(n, k, seed, ls, probs):
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=3, size=(n, k))
    y = rng.integers(0, k, size=n)
    t = rng.dirichlet(np.ones(k), size=n) if probs else onehot(y, k)
    v, g = softmax_cross_entropy(z, t if probs else y, label_smoothing=ls)
    smoothed = (1 - ls) * t + ls / k
    np.testing.assert_allclose(v, ce_ref(z, smoothed), rtol=1e-12, atol=1e-14)
    assert v >= 0
    np.testing.assert_allclose(g.sum(axis=1), 0, atol=16 * EPS64)     # softmax - t sums to 0 per row
    soft = np.exp(z - logsumexp(z, axis=1, keepdims=True))
    np.testing.assert_allclose(g, (soft - smoothed) / n, rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------- accuracy
def test_accuracy_labels_and_onehot():
    pred = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    y = np.array([1, 1, 1, 0])
    assert accuracy(pred, y) == 0.75 and isinstance(accuracy(pred, y), float)
    assert accuracy(pred, onehot(y, 2)) == 0.75
    with pytest.raises(ValueError, match=r"accuracy: pred must hold at least one example"):
        accuracy(np.zeros((0, 2)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match=r"accuracy: labels must be in \[0, 2\)"):
        accuracy(pred, np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"accuracy: batch sizes differ"):
        accuracy(pred, y[:3])
    with pytest.raises(TypeError, match=r"accuracy: 1-D target .* integer dtype, got float64"):
        accuracy(pred, y.astype(float))


# ----------------------------------------------------------------------------- bad input
Z = np.zeros((3, 4))
Y = np.array([0, 1, 3])

BAD = [
    (softmax_cross_entropy, (Z, np.array([0, 4, 1])), {}, ValueError, r"softmax_cross_entropy: labels must be in \[0, 4\) .* got 4 at index 1"),
    (softmax_cross_entropy, (Z, np.array([0, -1, 1])), {}, ValueError, r"labels must be in \[0, 4\).* got -1"),
    (softmax_cross_entropy, (Z, np.array([0.0, 1.0, 2.0])), {}, TypeError, r"softmax_cross_entropy: 1-D target .* integer dtype, got float64"),
    (softmax_cross_entropy, (Z, np.array([True, False, True])), {}, TypeError, r"integer dtype, got bool"),
    (softmax_cross_entropy, (Z, Y[:2]), {}, ValueError, r"softmax_cross_entropy: batch sizes differ: pred has 3 examples, target has 2"),
    (softmax_cross_entropy, (Z, np.full((2, 4), 0.25)), {}, ValueError, r"batch sizes differ: logits has 3 .* target has 2"),
    (softmax_cross_entropy, (Z, np.full((3, 5), 0.2)), {}, ValueError, r"probability targets must have the logits' shape \(3, 4\), got \(3, 5\)"),
    (softmax_cross_entropy, (Z, np.full((3, 4), 0.3)), {}, ValueError, r"each row of probability targets must sum to 1 .* row 0 summing to 1.2"),
    (softmax_cross_entropy, (Z, np.array([[1.5, -0.5, 0, 0]] * 3)), {}, ValueError, r"probability targets must be >= 0, got -0.5 at \[0, 1\]"),
    (softmax_cross_entropy, (Z, np.full((3, 4), np.nan)), {}, ValueError, r"probability targets must be finite"),
    (softmax_cross_entropy, (Z, np.zeros((3, 4, 1))), {}, ValueError, r"target must be \(N,\) integer labels or \(N, K\) probabilities, got shape \(3, 4, 1\)"),
    (softmax_cross_entropy, (np.zeros(4), Y), {}, ValueError, r"softmax_cross_entropy: logits must have rank 2 \(N, K\), got shape \(4,\)"),
    (softmax_cross_entropy, (np.zeros((0, 4)), np.zeros(0, int)), {}, ValueError, r"logits must hold at least one example and element, got shape \(0, 4\)"),
    (softmax_cross_entropy, (np.zeros((3, 0)), Y), {}, ValueError, r"at least one example and element, got shape \(3, 0\)"),
    (softmax_cross_entropy, (Z.astype(int), Y), {}, TypeError, r"softmax_cross_entropy: logits must have a floating dtype .* got int64"),
    (softmax_cross_entropy, (Z.astype(complex), Y), {}, TypeError, r"logits must have a floating dtype .* got complex128"),
    (softmax_cross_entropy, (Z.astype(object), Y), {}, TypeError, r"logits must have a floating dtype .* got object"),
    (softmax_cross_entropy, (Z, Y.astype(complex)), {}, TypeError, r"target must have a real .* dtype, got complex128"),
    (softmax_cross_entropy, (Z, {"y": 1}), {}, TypeError, r"target must be a numpy array, got dict"),
    (softmax_cross_entropy, (Z, Y), {"label_smoothing": 1.0}, ValueError, r"label_smoothing must be in \[0.0, 1.0\), got 1.0"),
    (softmax_cross_entropy, (Z, Y), {"label_smoothing": -0.1}, ValueError, r"label_smoothing must be in \[0.0, 1.0\), got -0.1"),
    (softmax_cross_entropy, (Z, Y), {"label_smoothing": "0.1"}, TypeError, r"label_smoothing must be a real number, got '0.1'"),
    (binary_cross_entropy, (np.array([[0.5, 1.2]]), np.array([[0, 1]])), {}, ValueError, r"binary_cross_entropy: probs must lie in \[0, 1\], got 1.2 at index \(0, 1\); for raw scores use binary_cross_entropy_with_logits"),
    (binary_cross_entropy, (np.array([[0.5, 0.2]]), np.array([[0, 2]])), {}, ValueError, r"binary_cross_entropy: target must lie in \[0, 1\], got 2"),
    (binary_cross_entropy, (np.full((2, 1), 0.5), np.zeros((3, 1))), {}, ValueError, r"binary_cross_entropy: batch sizes differ: probs has 2 examples .* target has 3"),
    (binary_cross_entropy, (np.full((2, 1), 0.5), np.zeros(2)), {}, ValueError, r"target must have the same shape as probs, \(2, 1\), got \(2,\)"),
    (binary_cross_entropy, (np.zeros((0, 1)), np.zeros((0, 1))), {}, ValueError, r"binary_cross_entropy: probs must hold at least one example"),
    (binary_cross_entropy, (np.float64(0.5), np.float64(1.0)), {}, ValueError, r"probs must have a batch axis \(rank >= 1\), got a scalar"),
    (binary_cross_entropy, (np.array([[0, 1]]), np.array([[0, 1]])), {}, TypeError, r"binary_cross_entropy: probs must have a floating dtype .* got int64"),
    (binary_cross_entropy_with_logits, (Z, np.full((3, 4), -0.5)), {}, ValueError, r"binary_cross_entropy_with_logits: target must lie in \[0, 1\], got -0.5"),
    (binary_cross_entropy_with_logits, (Z, np.zeros((3, 3))), {}, ValueError, r"binary_cross_entropy_with_logits: target must have the same shape as logits"),
    (binary_cross_entropy_with_logits, (np.zeros((0, 2)), np.zeros((0, 2))), {}, ValueError, r"logits must hold at least one example"),
    (binary_cross_entropy_with_logits, (Z.astype(np.complex64), Z), {}, TypeError, r"logits must have a floating dtype .* got complex64"),
    (mean_squared_error, (Z, np.zeros((4, 4))), {}, ValueError, r"mean_squared_error: batch sizes differ: pred has 3 examples .* target has 4"),
    (mean_squared_error, (Z, np.full((3, 4), np.inf)), {}, ValueError, r"mean_squared_error: target must be finite"),
    (mean_squared_error, (np.zeros((0, 3)), np.zeros((0, 3))), {}, ValueError, r"mean_squared_error: pred must hold at least one example"),
    (mean_squared_error, (Z.astype(np.int32), Z), {}, TypeError, r"mean_squared_error: pred must have a floating dtype .* got int32"),
    (mean_squared_error, (Z, Z.astype(object)), {}, TypeError, r"mean_squared_error: target must have a real .* dtype, got object"),
]


@pytest.mark.parametrize("loss, args, kw, exc, match", BAD, ids=[f"{b[0].__name__}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_raises_with_clear_message(loss, args, kw, exc, match):
    with pytest.raises(exc, match=match):
        loss(*args, **kw)


def test_accepted_target_forms():
    # integer one-hot probability targets, bool BCE targets and int MSE targets are cast, not refused
    z, y, _ = data(np.random.default_rng(10))
    np.testing.assert_allclose(softmax_cross_entropy(z, onehot(y, 5).astype(np.int8))[0], softmax_cross_entropy(z, y)[0])
    p = np.array([[0.25, 0.75]])
    assert binary_cross_entropy(p, np.array([[False, True]]))[0] == binary_cross_entropy(p, np.array([[0.0, 1.0]]))[0]
    assert mean_squared_error(p, np.array([[0, 1]]))[0] == pytest.approx((0.25**2 + 0.25**2) / 2)

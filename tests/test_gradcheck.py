"""The public gradient checker: it passes correct layers and catches seed 000's flipped filter gradient."""
import attrs
import numpy as np
import pytest
from scipy import signal

import functional_cnn as fc
from functional_cnn.gradcheck import GradCheckError, numeric_gradient
from functional_cnn.layers import Conv2DParams


def flipped_filter_conv(out_channels, kernel_size):
    """conv2d whose filter gradient is spatially flipped, the bug of seed notebook 000."""
    good = fc.conv2d(out_channels, kernel_size)

    def backward(params, cache, dy):
        grads, dx = good.backward(params, cache, dy)
        return Conv2DParams(grads.w[:, :, ::-1, ::-1], grads.b), dx

    return attrs.evolve(good, backward=backward)


def seed000_style_conv():
    """Seed 000's own scheme: forward with convolve, filter gradient with correlate(X, dY)."""

    def init(rng, in_shape, dtype=np.float32):
        c, h, w = in_shape
        return (2, h - 2, w - 2), Conv2DParams(rng.standard_normal((2, c, 3, 3)).astype(dtype), np.zeros(2, dtype))

    def forward(params, x, *, rng=None, train=False):
        y = np.stack([[sum(signal.convolve(xn[j], params.w[f, j], mode="valid") for j in range(x.shape[1]))
                       + params.b[f] for f in range(2)] for xn in x])
        return y, x

    def backward(params, x, dy):
        dw = np.zeros_like(params.w)
        dx = np.zeros_like(x)
        for n in range(x.shape[0]):
            for f in range(2):
                for j in range(x.shape[1]):
                    dw[f, j] += signal.correlate(x[n, j], dy[n, f], mode="valid")
                    dx[n, j] += signal.convolve(dy[n, f], params.w[f, j][::-1, ::-1], mode="full")
        return Conv2DParams(dw, dy.sum(axis=(0, 2, 3))), dx

    return fc.Layer("seed000_conv", init, forward, backward)


def test_flipped_filter_gradient_fails_the_check_on_w_only():
    with pytest.raises(GradCheckError) as info:
        fc.check_layer(flipped_filter_conv(2, 3), np.random.default_rng(0), (1, 5, 5))
    report = info.value.report
    failed = {r.name for r in report.failures}
    assert failed == {"w"}
    assert "FAIL" in str(info.value) and "w" in str(info.value)


def test_the_notebook_layer_itself_fails_the_check():
    with pytest.raises(GradCheckError) as info:
        fc.check_layer(seed000_style_conv(), np.random.default_rng(1), (1, 5, 5))
    assert "w" in {r.name for r in info.value.report.failures}


def test_correct_conv_passes_and_report_has_a_row_per_tensor():
    report = fc.check_layer(fc.conv2d(2, 3), np.random.default_rng(0), (1, 5, 5))
    assert report.ok
    assert [r.name for r in report.rows] == ["output shape", "x", "w", "b", "purity: inputs", "purity: repeat"]
    assert all(r.rel_err < 1e-6 for r in report.rows)
    table = report.table()
    assert "rel err" in table and table.count("ok") >= 6


def test_paths_name_nested_params():
    net = fc.serial(fc.conv2d(2, 3), fc.relu(), fc.flatten(), fc.dense(3))
    report = fc.check_layer(net, np.random.default_rng(0), (1, 5, 5))
    assert {"0.w", "0.b", "3.w", "3.b"} <= {r.name for r in report.rows}


def test_wrong_dx_fails_and_raise_on_fail_false_returns_report():
    good = fc.dense(3)
    bad = attrs.evolve(good, backward=lambda p, c, dy: (good.backward(p, c, dy)[0], 2 * good.backward(p, c, dy)[1]))
    report = fc.check_layer(bad, np.random.default_rng(0), (4,), raise_on_fail=False)
    assert not report.ok and {r.name for r in report.failures} == {"x"}


def test_impure_layer_is_reported():
    good = fc.dense(2)

    def forward(params, x, *, rng=None, train=False):
        y, cache = good.forward(params, x)
        x[...] = 0.0  # writes into its input
        return y, cache

    report = fc.check_layer(attrs.evolve(good, forward=forward), np.random.default_rng(0), (3,), raise_on_fail=False)
    assert "purity: inputs" in {r.name for r in report.failures}


def test_wrong_declared_shape_is_reported():
    good = fc.dense(2)
    lying = attrs.evolve(good, init=lambda rng, s, dtype=np.float32: ((3,), good.init(rng, s, dtype)[1]))
    report = fc.check_layer(lying, np.random.default_rng(0), (3,), raise_on_fail=False)
    assert {r.name for r in report.failures} == {"output shape"}


def test_check_loss_passes_and_catches_a_wrong_gradient():
    rng = np.random.default_rng(0)
    pred = rng.standard_normal((4, 3))
    labels = np.array([0, 2, 1, 2])
    assert fc.check_loss(fc.softmax_cross_entropy, rng, pred, labels).ok

    def wrong(p, t):
        v, d = fc.softmax_cross_entropy(p, t)
        return v, d * 2

    wrong.__name__ = "wrong"
    with pytest.raises(GradCheckError, match="pred"):
        fc.check_loss(wrong, rng, pred, labels)


def test_numeric_gradient_does_not_modify_x():
    x = np.arange(4.0)
    before = x.copy()
    g = numeric_gradient(lambda v: float(np.sum(v**2)), x, [0, 1, 2, 3], 1e-6)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(g, 2 * x, atol=1e-6)


def test_check_layer_rejects_bad_arguments():
    with pytest.raises(TypeError, match="check_layer: layer must be a Layer"):
        fc.check_layer(fc.relu, np.random.default_rng(0), (3,))
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        fc.check_layer(fc.relu(), 0, (3,))

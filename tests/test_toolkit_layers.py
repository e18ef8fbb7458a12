"""The toolkit layers (dropout, normalization, 1-D conv/pooling, branching): formulas, randomness, bad input."""
from __future__ import annotations

import numpy as np
import pytest

import functional_cnn as fc
from functional_cnn.layers import (
    Conv1DParams,
    conv1d,
    fan_in_concat,
    fan_in_sum,
    fan_out,
    max_pool1d,
    parallel,
    residual,
)
from functional_cnn.layers.dropout import dropout
from functional_cnn.layers.norm import batch_norm, layer_norm
from layer_references import batch_norm_eval_reference, batch_norm_train_reference

# These layers go through the common checks in the one layer table, test_layers.py::CASES.


def random_bn_params(rng, c):
    return fc.layers.norm.BatchNormParams(rng.uniform(0.5, 2, c), rng.standard_normal(c),
                                          rng.standard_normal(c), rng.uniform(0.5, 2, c))


@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_gradcheck_and_formula_with_random_params(train):
    rng = np.random.default_rng(10)
    layer, params = batch_norm(), random_bn_params(rng, 3)
    x = rng.standard_normal((4, 3, 2, 3)) * 2 + 1
    fc.check_layer(layer, rng, (3, 2, 3), batch_size=4, x=x, params=params, train=train)
    y, _ = layer.forward(params, x, train=train)
    expected = (batch_norm_train_reference if train else batch_norm_eval_reference)(params, x)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_layer_norm_gradcheck_with_random_params():
    rng = np.random.default_rng(11)
    p = fc.layers.norm.LayerNormParams(rng.uniform(0.5, 2, (2, 5)), rng.standard_normal((2, 5)))
    fc.check_layer(layer_norm(), rng, (2, 5), batch_size=3, params=p)


def test_conv1d_matches_conv2d_on_a_height_one_image():
    rng = np.random.default_rng(12)
    layer1, layer2 = conv1d(3, 3, stride=2, padding=1), fc.conv2d(3, (1, 3), stride=(1, 2), padding=(0, 1))
    _, p = layer1.init(rng, (2, 10))
    x = rng.standard_normal((2, 2, 10)).astype(np.float32)
    y1, _ = layer1.forward(p, x)
    y2, _ = layer2.forward(fc.layers.Conv2DParams(p.w[:, :, None, :], p.b), x[:, :, None, :])
    np.testing.assert_array_equal(y1, y2[:, :, 0, :])
    assert layer1.init(rng, (2, 10))[1].w.shape == (3, 2, 3)


# --- dropout ------------------------------------------------------------------------------

def test_dropout_mask_comes_only_from_the_given_rng():
    layer, x = dropout(0.5), np.ones((4, 50), dtype=np.float32)
    a, _ = layer.forward(None, x, rng=np.random.default_rng(3), train=True)
    b, _ = layer.forward(None, x, rng=np.random.default_rng(3), train=True)
    c, _ = layer.forward(None, x, rng=np.random.default_rng(4), train=True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_dropout_preserves_the_expected_value_and_drops_the_stated_fraction():
    p, n = 0.3, 200_000
    y, cache = dropout(p).forward(None, np.ones((1, n)), rng=np.random.default_rng(0), train=True)
    # Each unit is 0 or 1/(1-p): mean 1, variance p/(1-p). Allow 5 standard errors.
    assert abs(y.mean() - 1.0) < 5 * np.sqrt(p / (1 - p) / n)
    assert abs((y == 0).mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / (1 - p)], rtol=np.finfo(np.float64).eps * 4)


def test_dropout_backward_uses_the_forward_mask():
    layer, rng = dropout(0.4), np.random.default_rng(1)
    x = rng.uniform(1, 2, (3, 20)).astype(np.float32)
    y, cache = layer.forward(None, x, rng=np.random.default_rng(5), train=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    _, dx = layer.backward(None, cache, dy)
    kept = y != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(dx, np.where(kept, dy / np.float32(0.6), 0), rtol=np.finfo(np.float32).eps * 2)
    assert dx.dtype == np.float32


def test_dropout_is_identity_at_rate_zero_and_in_inference():
    x = np.random.default_rng(2).standard_normal((5, 7)).astype(np.float32)
    y0, _ = dropout(0.0).forward(None, x, rng=np.random.default_rng(0), train=True)
    y1, _ = dropout(0.9).forward(None, x, train=False)
    np.testing.assert_array_equal(y0, x)
    np.testing.assert_array_equal(y1, x)


# --- bad inputs ---------------------------------------------------------------------------

@pytest.mark.parametrize("rate,err,match", [(1, ValueError, r"drop_rate must be in \[0.0, 1.0\), got 1"),
                                            (-0.1, ValueError, r"drop_rate must be in .* got -0.1"),
                                            ("a", TypeError, "drop_rate must be a real number, got 'a'")])
def test_dropout_rejects_bad_rates(rate, err, match):
    with pytest.raises(err, match=match):
        dropout(rate)


def test_dropout_in_training_without_rng_says_so():
    with pytest.raises(ValueError, match="dropout: needs rng=np.random.Generator when train=True"):
        dropout(0.5).forward(None, np.ones((2, 3)), train=True)
    with pytest.raises(TypeError, match="dropout: rng must be a numpy.random.Generator, got int"):
        dropout(0.5).forward(None, np.ones((2, 3)), rng=0, train=True)


def test_batch_norm_bad_inputs():
    layer = batch_norm()
    _, p = layer.init(None, (3, 4, 4))
    with pytest.raises(ValueError, match=r"batch_norm: x has 4 channels \(shape \(2, 4, 4, 4\)\), params expect 3"):
        layer.forward(p, np.zeros((2, 4, 4, 4), np.float32), train=True)
    with pytest.raises(ValueError, match="at least 2 values per channel"):
        batch_norm().forward(batch_norm().init(None, (3,))[1], np.zeros((1, 3), np.float32), train=True)
    with pytest.raises(ValueError, match=r"batch_norm: x must have rank 2 or 3 or 4"):
        layer.forward(p, np.zeros((2, 3, 4, 4, 1), np.float32))
    with pytest.raises(ValueError, match=r"momentum must be in \[0.0, 1.0\), got 1"):
        batch_norm(momentum=1)
    with pytest.raises(ValueError, match=r"eps must be in \(0.0, inf\]"):
        batch_norm(eps=0)
    with pytest.raises(TypeError, match="x has dtype float64 but params have dtype float32"):
        layer.forward(p, np.zeros((2, 3, 4, 4)))


def test_layer_norm_rejects_a_shape_other_than_its_params():
    layer = layer_norm()
    _, p = layer.init(None, (2, 3))
    with pytest.raises(ValueError, match=r"layer_norm: x must have shape \(N,\) \+ \(2, 3\).*got \(4, 3, 2\)"):
        layer.forward(p, np.zeros((4, 3, 2), np.float32))


def test_residual_refuses_mismatched_shapes_naming_both():
    with pytest.raises(ValueError, match=r"residual: the block's output shape \(4, 5, 5\) differs from the identity "
                                         r"shortcut's \(the input\) shape \(3, 5, 5\); pass projection"):
        residual(fc.conv2d(4, 3, padding=1)).init(np.random.default_rng(0), (3, 5, 5))
    with pytest.raises(ValueError, match=r"block's output shape \(4, 3, 3\) differs from the projection's output"):
        residual(fc.conv2d(4, 3), projection=fc.conv2d(4, 1)).init(np.random.default_rng(0), (3, 5, 5))
    with pytest.raises(TypeError, match="residual: argument 0 must be a Layer, got function"):
        residual(fc.relu)


def test_fan_in_sum_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"fan_in_sum: all inputs must have the same shape, got in_shape"):
        fan_in_sum().init(None, ((3, 4), (3, 5)))
    with pytest.raises(ValueError, match=r"fan_in_sum: all inputs must have the same shape, got x shapes"):
        fan_in_sum().forward(None, (np.zeros((2, 3)), np.zeros((2, 4))))
    with pytest.raises(TypeError, match="fan_in_sum: x must be a non-empty tuple of arrays"):
        fan_in_sum().forward(None, np.zeros((2, 3)))


def test_fan_in_concat_bad_axes_and_shapes():
    with pytest.raises(ValueError, match="fan_in_concat: axis must not be 0, the batch axis"):
        fan_in_concat(0)
    with pytest.raises(TypeError, match="fan_in_concat: axis must be an int, got '1'"):
        fan_in_concat("1")
    with pytest.raises(ValueError, match="axis 3 is not a non-batch axis of rank-3 batches"):
        fan_in_concat(3).init(None, ((2, 3), (2, 3)))
    with pytest.raises(ValueError, match="inputs must agree on every axis but 1"):
        fan_in_concat(1).init(None, ((2, 3, 3), (2, 4, 3)))


def test_parallel_and_fan_out_count_their_inputs():
    net = parallel(fc.dense(2), fc.dense(3))
    _, p = net.init(np.random.default_rng(0), ((4,), (4,)))
    with pytest.raises(ValueError, match=r"parallel: x must be a tuple of 2 arrays \(one per layer\), got 3"):
        net.forward(p, (np.zeros((1, 4), np.float32),) * 3)
    with pytest.raises(ValueError, match=r"parallel: in_shape must hold 2 shapes \(one per layer\), got 1"):
        net.init(np.random.default_rng(0), ((4,),))
    with pytest.raises(ValueError, match=r"parallel\[1\] \(dense\) -> dense: x has 5 features"):
        net.forward(p, (np.zeros((1, 4), np.float32), np.zeros((1, 5), np.float32)))
    _, fan_cache = fan_out(2).forward(None, np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"fan_out: dy must be a tuple of 2 arrays"):
        fan_out(2).backward(None, fan_cache, (np.zeros((1, 4)),))
    with pytest.raises(ValueError, match="fan_out: n must be an integer >= 1, got 0"):
        fan_out(0)


def test_conv1d_and_pool1d_bad_inputs():
    layer = conv1d(2, 3)
    _, p = layer.init(np.random.default_rng(0), (2, 8))
    with pytest.raises(ValueError, match=r"conv1d: x must have rank 3 \(N, C, L\), got shape \(2, 2, 8, 1\)"):
        layer.forward(p, np.zeros((2, 2, 8, 1), np.float32))
    with pytest.raises(ValueError, match=r"conv1d: in_shape must be \(C, L\) per example, got \(2, 8, 8\)"):
        layer.init(np.random.default_rng(0), (2, 8, 8))
    with pytest.raises(ValueError, match=r"conv1d: x has 3 channels"):
        layer.forward(p, np.zeros((1, 3, 8), np.float32))
    with pytest.raises(ValueError, match=r"kernel \(effective size 5 with dilation 2\) is longer"):
        conv1d(2, 3, dilation=2).init(np.random.default_rng(0), (2, 4))
    with pytest.raises(ValueError, match="padding must be an int >= 0, 'valid' or 'same', got 'full'"):
        conv1d(2, 3, padding="full")
    with pytest.raises(ValueError, match=r"input channels \(=3\) must be a positive multiple of groups \(=2\)"):
        conv1d(2, 3, groups=2).init(np.random.default_rng(0), (3, 8))
    with pytest.raises(ValueError, match="max_pool1d: window 4 is longer than the input length 3"):
        max_pool1d(4).init(None, (2, 3))
    assert isinstance(p, Conv1DParams)

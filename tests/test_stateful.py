"""Non-trainable state (batch-norm running statistics): update_state, inference, composition, training."""
from __future__ import annotations

import numpy as np
import pytest

import functional_cnn as fc
from functional_cnn.layers import conv1d, fan_in_concat, fan_out, max_pool1d, parallel, residual
from functional_cnn.layers.dropout import dropout
from functional_cnn.layers.norm import BatchNormParams, batch_norm, layer_norm
from functional_cnn.losses import softmax_cross_entropy
from functional_cnn.tree import state_paths, trainable, tree_leaves_with_paths, tree_map_with_path, tree_structure


def test_running_stats_converge_and_inference_uses_them():
    rng = np.random.default_rng(0)
    layer = batch_norm(momentum=0.9)
    _, params = layer.init(None, (4,))
    for _ in range(80):
        x = (3.0 + 2.0 * rng.standard_normal((64, 4))).astype(np.float32)
        _, cache = layer.forward(params, x, train=True)
        params = layer.update_state(params, cache)
    # Effective sample of the exponential average: 64 * (1 + m) / (1 - m) values; allow 5 standard errors
    # (plus the 0.9**80 share still held by the initial values).
    n_eff = 64 * 1.9 / 0.1
    np.testing.assert_allclose(params.mean, 3.0, atol=5 * 2 / np.sqrt(n_eff) + 3 * 0.9**80)
    np.testing.assert_allclose(params.var, 4.0, atol=5 * 4 * np.sqrt(2 / n_eff) + 3 * 0.9**80)
    test = (3.0 + 2.0 * rng.standard_normal((4000, 4))).astype(np.float32)
    y, _ = layer.forward(params, test, train=False)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=0.15)
    np.testing.assert_allclose(y.std(axis=0), 1.0, atol=0.15)
    # Inference treats examples independently: a single example gets the same output as in a batch.
    y1, _ = layer.forward(params, test[:1], train=False)
    np.testing.assert_array_equal(y1, y[:1])


def test_running_variance_is_the_unbiased_estimate():
    layer = batch_norm(momentum=0.0)
    _, params = layer.init(None, (2, 3))
    x = np.random.default_rng(1).standard_normal((3, 2, 3))
    params = fc.tree_cast(params, np.float64)
    _, cache = layer.forward(params, x, train=True)
    new = layer.update_state(params, cache)
    per_channel = x.transpose(1, 0, 2).reshape(2, -1)
    np.testing.assert_allclose(new.mean, per_channel.mean(axis=1), rtol=1e-13)
    np.testing.assert_allclose(new.var, per_channel.var(axis=1, ddof=1), rtol=1e-13)


def test_momentum_is_the_fraction_of_the_old_statistics_kept():
    layer = batch_norm(momentum=0.75)
    _, params = layer.init(None, (1,))
    _, cache = layer.forward(params, np.array([[2.0], [6.0]], np.float32), train=True)
    new = layer.update_state(params, cache)
    assert new.mean[0] == pytest.approx(0.75 * 0 + 0.25 * 4.0)
    assert new.var[0] == pytest.approx(0.75 * 1 + 0.25 * 8.0)  # unbiased variance of (2, 6) is 8


def test_inference_caches_leave_state_unchanged_and_params_are_never_mutated():
    layer = batch_norm()
    _, params = layer.init(None, (3, 2, 2))
    x = np.random.default_rng(2).standard_normal((4, 3, 2, 2)).astype(np.float32)
    _, cache = layer.forward(params, x, train=False)
    assert cache.mean is None and layer.update_state(params, cache) is params
    _, cache = layer.forward(params, x, train=True)
    new = layer.update_state(params, cache)
    np.testing.assert_array_equal(params.mean, 0.0)  # the old record is untouched
    np.testing.assert_array_equal(params.var, 1.0)
    assert not np.array_equal(new.mean, params.mean)
    assert new.gamma is params.gamma and not new.mean.flags.writeable
    with pytest.raises(TypeError, match="batch_norm.update_state: cache must be BatchNormCache, got tuple"):
        layer.update_state(params, ())


def test_state_gradients_are_none_and_grads_match_trainable_structure():
    net = fc.serial(fc.conv2d(2, 3), batch_norm(), fc.relu(), fc.flatten(), fc.dense(3))
    _, params = net.init(np.random.default_rng(0), (1, 5, 5))
    y, cache = net.forward(params, np.arange(50, dtype=np.float32).reshape(2, 1, 5, 5), train=True)
    grads, _ = net.backward(params, cache, np.ones_like(y))
    assert grads[1].mean is None and grads[1].var is None
    assert tree_structure(grads) == tree_structure(trainable(params))
    assert state_paths(params) == ["1.mean", "1.var"]
    assert "1.mean" not in dict(tree_leaves_with_paths(grads))


def test_summary_counts_batch_norm_state_separately():
    net = fc.serial(fc.conv2d(4, 3), batch_norm(), fc.relu(), fc.flatten(), fc.dense(2))
    s = fc.summary(net, (1, 6, 6), batch_size=8)
    bn = [r for r in s.rows if r.name.startswith("batch_norm")][0]
    assert (bn.params, bn.state) == (8, 8)
    assert s.total_state == 8
    assert s.total_params == 4 * 9 + 4 + 8 + 4 * 16 * 2 + 2
    line = [ln for ln in str(s).splitlines() if ln.strip().startswith("batch_norm")][0]
    assert line.split()[-4:-2] == ["8", "8"]


def test_update_state_composes_through_branching_combinators():
    net = fc.serial(fan_out(2), parallel(batch_norm(), fc.serial(fc.dense(3), batch_norm())), fan_in_concat(1),
                    residual(fc.serial(fc.dense(6), batch_norm())))
    _, params = net.init(np.random.default_rng(0), (3,))
    assert state_paths(params) == ["1.0.mean", "1.0.var", "1.1.1.mean", "1.1.1.var", "3.0.1.mean", "3.0.1.var"]
    x = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32) + 2
    _, cache = net.forward(params, x, train=True)
    new = net.update_state(params, cache)
    np.testing.assert_allclose(new[1][0].mean, 0.1 * x.mean(axis=0), rtol=1e-6)
    for path in state_paths(params):
        old, upd = dict(tree_leaves_with_paths(params))[path], dict(tree_leaves_with_paths(new))[path]
        assert not np.array_equal(old, upd), path
    for path, leaf in tree_leaves_with_paths(trainable(params)):
        assert dict(tree_leaves_with_paths(new))[path] is leaf  # trainable leaves pass through untouched
    _, cache = net.forward(new, x, train=False)
    assert all(a is b for a, b in zip(fc.tree_leaves(net.update_state(new, cache)), fc.tree_leaves(new), strict=True))


# --- a network mixing every toolkit layer, trained by a hand-written SGD loop ---------------

def make_data(rng, n):
    """Three classes of 8x8 two-channel images: a horizontal bar, a vertical bar, a centred blob."""
    labels = rng.integers(0, 3, n)
    x = 0.5 * rng.standard_normal((n, 2, 8, 8))
    pos = rng.integers(1, 7, n)
    for i, (k, p) in enumerate(zip(labels, pos, strict=True)):
        if k == 0:
            x[i, :, p, :] += 1.5
        elif k == 1:
            x[i, :, :, p] += 1.5
        else:
            x[i, :, 3:5, 3:5] += 2.0
    return x.astype(np.float32), labels


def mixed_net():
    return fc.serial(
        fc.conv2d(4, 3, padding=1), batch_norm(), fc.relu(),
        residual(fc.serial(fc.conv2d(4, 3, padding=1, groups=2), batch_norm(), fc.relu())),
        fan_out(2), parallel(fc.conv2d(2, 1), fc.conv2d(2, 3, padding=1)), fan_in_concat(1),
        fc.max_pool2d(2), fc.reshape((4, 16)), conv1d(4, 3, padding="same"), fc.relu(), max_pool1d(2),
        fc.flatten(), layer_norm(), dropout(0.2), fc.dense(3),
    )


def sgd(params, grads, lr):
    """Plain SGD on the trainable leaves; state leaves (grad None) are carried over as they are."""
    g = dict(tree_leaves_with_paths(grads))
    return tree_map_with_path(lambda path, p: p - lr * g[path] if path in g else p, params)


def test_mixed_network_trains_updates_state_and_runs_inference():
    net = mixed_net()
    _, params = net.init(np.random.default_rng(0), (2, 8, 8))
    assert len(state_paths(params)) == 4
    data_rng, drop_rng = np.random.default_rng(1), np.random.default_rng(2)
    losses = []
    for _ in range(40):
        x, labels = make_data(data_rng, 32)
        logits, cache = net.forward(params, x, rng=drop_rng, train=True)
        loss, dlogits = softmax_cross_entropy(logits, labels)
        grads, _ = net.backward(params, cache, dlogits)
        params = net.update_state(sgd(params, grads, 0.1), cache)
        losses.append(loss)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
    bn = params[1]
    assert isinstance(bn, BatchNormParams) and not np.allclose(bn.mean, 0) and not np.allclose(bn.var, 1)
    x, labels = make_data(np.random.default_rng(3), 200)
    logits, _ = net.forward(params, x, train=False)  # no rng needed: dropout is off
    assert logits.dtype == np.float32
    assert (logits.argmax(axis=1) == labels).mean() > 0.8
    again, _ = net.forward(params, x, train=False)
    np.testing.assert_array_equal(logits, again)


def test_serial_update_state_keeps_the_params_object_when_no_layer_has_state():
    net = fc.serial(fc.conv2d(2, 3), fc.relu(), fc.flatten(), fc.dense(3))
    _, params = net.init(np.random.default_rng(0), (1, 5, 5))
    _, cache = net.forward(params, np.ones((2, 1, 5, 5), np.float32), train=True)
    assert net.update_state(params, cache) is params
    with_bn = fc.serial(fc.conv2d(2, 3), fc.batch_norm(), fc.flatten())
    _, params = with_bn.init(np.random.default_rng(0), (1, 5, 5))
    _, cache = with_bn.forward(params, np.ones((2, 1, 5, 5), np.float32), train=True)
    new = with_bn.update_state(params, cache)
    assert new is not params and new[1].mean is not params[1].mean

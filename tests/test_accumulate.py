"""Gradient accumulation: make_step / fit with accumulate=K, and train --accumulate K."""
import io
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import functional_cnn as fc
from functional_cnn.accumulate import micro_rngs, split_sizes
from functional_cnn.checkpoint import load_checkpoint
from functional_cnn.cli import main
from functional_cnn.datasets import load_dataset
from functional_cnn.train import StepRecord

DIGITS = load_dataset("digits", seed=0)
X, Y = DIGITS.x_train[:200], DIGITS.y_train[:200]


def small_net():
    return fc.serial(fc.conv2d(3, 3, padding=1), fc.relu(), fc.max_pool2d(2), fc.flatten(), fc.dense(10))


def bn_net(drop=0.0):
    layers = [fc.conv2d(3, 3, padding=1), fc.batch_norm(momentum=0.7), fc.relu(), fc.flatten()]
    layers += [fc.dropout(drop)] if drop else []
    return fc.serial(*layers, fc.dense(10))


def init(net, seed=0):
    return net.init(np.random.default_rng(seed), (1, 8, 8))[1]


def max_diff(a, b):
    return max(float(np.abs(np.asarray(u, np.float64) - v).max()) for u, v in zip(fc.tree_leaves(a), fc.tree_leaves(b)))


@given(st.integers(0, 300), st.integers(1, 40))
def test_split_sizes_are_in_order_and_as_equal_as_possible(n, k):
    sizes = split_sizes(n, k)
    assert len(sizes) == k and sum(sizes) == n
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert sizes == [len(c) for c in np.array_split(np.arange(n), k)]


def test_accumulate_1_is_the_plain_step_bit_for_bit():
    net, opt = bn_net(drop=0.2), fc.adam(1e-2)
    params = init(net)
    state = opt.init(params)
    rng = lambda: np.random.default_rng(5)  # noqa: E731
    plain = fc.make_step(net, fc.softmax_cross_entropy, opt)(params, state, (X[:32], Y[:32]), rng())
    one = fc.make_step(net, fc.softmax_cross_entropy, opt, accumulate=1)(params, state, (X[:32], Y[:32]), rng())
    assert fc.fingerprint(plain[:2]) == fc.fingerprint(one[:2]) and plain[2] == one[2]


def test_fit_accumulate_1_equals_fit_bit_for_bit():
    net, opt = bn_net(drop=0.2), fc.adam(1e-2)
    runs = [list(fc.fit(net, init(net), fc.softmax_cross_entropy, opt, (X, Y), epochs=1, batch_size=50, seed=3,
                        max_steps=3, **kw)) for kw in ({}, {"accumulate": 1})]
    assert fc.fingerprint(runs[0][-1].params) == fc.fingerprint(runs[1][-1].params)
    assert [r.loss for r in runs[0]] == [r.loss for r in runs[1]]


@pytest.mark.parametrize("n, k", [(64, 2), (64, 4), (10, 4), (10, 3), (3, 5), (7, 7)])
@pytest.mark.parametrize("loss_name", ["softmax_cross_entropy", "one_hot_binary_cross_entropy",
                                       "mean_squared_error"])
def test_accumulated_gradient_is_the_whole_batch_gradient(n, k, loss_name):
    """SGD makes params - lr * g visible: with K micro-batches (equal or not, some empty when n < K) the update
    equals the plain step's within float32 rounding, for the batch-mean and the element-mean losses."""
    loss = getattr(fc, loss_name)
    net = fc.serial(small_net(), fc.sigmoid()) if loss_name != "softmax_cross_entropy" else small_net()
    target = Y[:n] if loss_name != "mean_squared_error" else np.eye(10, dtype=np.float32)[Y[:n]]
    params, opt = init(net), fc.sgd(1.0)
    state = opt.init(params)
    p1, _, m1 = fc.make_step(net, loss, opt)(params, state, (X[:n], target))
    pk, _, mk = fc.make_step(net, loss, opt, accumulate=k)(params, state, (X[:n], target))
    moved = max_diff(p1, params)
    assert moved > 1e-4  # the step did something
    assert max_diff(p1, pk) < 1e-5 * max(1.0, moved)
    assert mk.loss == pytest.approx(m1.loss, rel=1e-5)
    if loss_name == "softmax_cross_entropy":
        assert mk.accuracy == pytest.approx(m1.accuracy, abs=1e-12)


def test_batch_norm_statistics_fold_as_the_size_weighted_mean_of_micro_batch_statistics():
    net, opt = bn_net(), fc.sgd(0.0)
    params = init(net)
    new, _, _ = fc.make_step(net, fc.softmax_cross_entropy, opt, accumulate=3)(params, opt.init(params),
                                                                               (X[:10], Y[:10]))
    conv = net.children[0]
    sizes, mean, var = split_sizes(10, 3), 0.0, 0.0
    for lo, n in zip(np.cumsum([0] + sizes[:-1]), sizes):  # independent reference, in float64
        h = conv.forward(params[0], X[lo:lo + n])[0].astype(np.float64)
        mean += n / 10 * h.mean(axis=(0, 2, 3))
        var += n / 10 * h.var(axis=(0, 2, 3)) * (h[:, 0].size / (h[:, 0].size - 1))
    assert np.allclose(new[1].mean, 0.7 * params[1].mean + 0.3 * mean, rtol=1e-5, atol=1e-6)
    assert np.allclose(new[1].var, 0.7 * params[1].var + 0.3 * var, rtol=1e-5, atol=1e-6)
    assert not np.allclose(new[1].mean, params[1].mean)


def test_dropout_draws_from_the_step_and_the_micro_batch_index():
    """The step's loss is the size-weighted mean of each micro-batch's loss under SeedSequence([seed, 1, t, m])."""
    net, seed, t, k, n = bn_net(drop=0.5), 7, 4, 3, 20
    params, opt = init(net), fc.sgd(0.1)
    _, _, metrics = fc.make_step(net, fc.softmax_cross_entropy, opt, accumulate=k)(
        params, opt.init(params), (X[:n], Y[:n]), micro_rngs(seed, t, k), t=t + 1)
    expected, lo = 0.0, 0
    for m, size in enumerate(split_sizes(n, k)):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1, t, m]))
        out = net.forward(params, X[lo:lo + size], rng=rng, train=True)[0]
        expected += size / n * fc.softmax_cross_entropy(out, Y[lo:lo + size])[0]
        lo += size
    assert metrics.loss == pytest.approx(expected, rel=1e-6)
    other = micro_rngs(seed + 1, t, k)
    _, _, elsewhere = fc.make_step(net, fc.softmax_cross_entropy, opt, accumulate=k)(
        params, opt.init(params), (X[:n], Y[:n]), other)
    assert elsewhere.loss != metrics.loss  # the draws matter, so the check above could fail


def test_fit_with_accumulate_uses_micro_rngs_and_stays_close_to_plain():
    net, opt = small_net(), fc.sgd(0.5)
    params = init(net)
    recs = {k: [r for r in fc.fit(net, params, fc.softmax_cross_entropy, opt, (X, Y), epochs=1, batch_size=40,
                                  seed=0, max_steps=3, accumulate=k)] for k in (1, 4)}
    assert len([r for r in recs[4] if isinstance(r, StepRecord)]) == 3
    assert max_diff(recs[1][-1].params, recs[4][-1].params) < 1e-5
    assert fc.fingerprint(recs[1][-1].params) != fc.fingerprint(params)


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(accumulate=0), ValueError, r"make_step: accumulate must be an integer >= 1, got 0"),
    (dict(accumulate=-2), ValueError, r"make_step: accumulate must be an integer >= 1, got -2"),
    (dict(accumulate=2.5), TypeError, r"make_step: accumulate must be an integer >= 1, got 2.5 \(float\)"),
    (dict(accumulate=True), TypeError, r"make_step: accumulate must be an integer >= 1, got True"),
])
def test_bad_accumulate_is_refused_by_make_step(kwargs, err, match):
    with pytest.raises(err, match=match):
        fc.make_step(small_net(), fc.softmax_cross_entropy, fc.sgd(0.1), **kwargs)


def test_bad_accumulate_is_refused_by_fit_before_any_step():
    net = small_net()
    with pytest.raises(ValueError, match=r"fit: accumulate must be an integer >= 1, got 0"):
        next(fc.fit(net, init(net), fc.softmax_cross_entropy, fc.sgd(0.1), (X, Y), epochs=1, batch_size=8,
                    seed=0, accumulate=0))


def test_wrong_rngs_and_empty_batches_are_refused():
    net, opt = small_net(), fc.sgd(0.1)
    params = init(net)
    step = fc.make_step(net, fc.softmax_cross_entropy, opt, accumulate=3)
    with pytest.raises(TypeError, match=r"make_step: rng must be None, a numpy Generator or a sequence of "
                                        r"accumulate=3 Generators .* got a list of length 2"):
        step(params, opt.init(params), (X[:6], Y[:6]), micro_rngs(0, 0, 2))
    with pytest.raises(ValueError, match=r"make_step: batch must hold at least one example .* \(0, 1, 8, 8\)"):
        step(params, opt.init(params), (X[:0], Y[:0]))


def cli(argv):
    out = io.StringIO()
    return main(argv, out=out), out.getvalue()


LENET = ["train", "--quiet", "--no-plot", "--epochs", "1", "--batch-size", "64"]


def test_cli_accumulate_is_recorded_and_resume_keeps_it(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(LENET + ["--accumulate", "2", "--max-steps", "3", "--out", str(a)])[0] == 0
    assert json.loads((a / "config.json").read_text())["accumulate"] == 2
    assert cli(LENET + ["--accumulate", "2", "--max-steps", "1", "--out", str(b)])[0] == 0
    code, err = main(["train", "--resume", str(b), "--accumulate", "3"], out=io.StringIO()), capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--accumulate 3 would change the run" in err
    assert cli(["train", "--resume", str(b), "--max-steps", "3", "--quiet", "--no-plot"])[0] == 0
    ca, cb = load_checkpoint(a / "checkpoint.npz"), load_checkpoint(b / "checkpoint.npz")
    assert ca.step == cb.step == 3 and fc.fingerprint((ca.params, ca.opt_state)) == fc.fingerprint(
        (cb.params, cb.opt_state))


def test_cli_bad_accumulate_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    code = main(LENET + ["--accumulate", "0", "--out", str(tmp_path / "r")], out=io.StringIO())
    err = capsys.readouterr().err
    assert code == 2 and err == "functional-cnn train: error: --accumulate must be >= 1, got 0\n"
    assert not (tmp_path / "r").exists()


def test_non_float_state_cannot_be_folded():
    from functional_cnn.accumulate import MicroResult, combine

    counter = MicroResult(2, 1.0, None, [np.ones(3, np.float32)], [np.array([5], np.int64)])
    with pytest.raises(TypeError, match=r"make_step: with accumulate > 1 .* floating-point state, got a state leaf "
                                        r"of dtype int64"):
        combine([counter, counter])


def test_layer_tracking_with_accumulation_uses_the_summed_gradient_and_the_one_update():
    """Plain SGD makes update = -lr * grad, so each layer's grad norm is its update norm / lr; tracking
    leaves the params bit-identical."""
    lr = 0.05
    runs = {}
    for track in (False, True):
        records = list(fc.fit(small_net(), init(small_net()), fc.softmax_cross_entropy, fc.sgd(lr), (X, Y),
                              epochs=1, batch_size=32, seed=0, max_steps=3, accumulate=2, track_layers=track))
        runs[track] = records
    steps = [r for r in runs[True] if isinstance(r, StepRecord)]
    assert len(steps) == 3 and all(r.layer_norms is None for r in runs[False] if isinstance(r, StepRecord))
    for rec in steps:
        assert [n.layer for n in rec.layer_norms] == ["0", "4"]
        for n in rec.layer_norms:
            assert n.grad_norm > 0
            assert n.update_norm == pytest.approx(lr * n.grad_norm, rel=1e-5)
    assert fc.fingerprint(runs[True][-1].params) == fc.fingerprint(runs[False][-1].params)


@pytest.mark.parametrize("y", [5, np.int64(3), np.zeros((0,), np.int64)])
def test_a_target_without_a_matching_batch_axis_is_a_named_error(y):
    step = fc.make_step(small_net(), fc.softmax_cross_entropy, fc.sgd(0.1), accumulate=2)
    params = init(small_net())
    with pytest.raises(ValueError, match="make_step: batch must hold at least one example with as many targets"):
        step(params, fc.sgd(0.1).init(params), (X[:4], y))

"""A network mixing every toolkit layer trains, checkpoints, resumes bit-exactly, and evaluates
with its running statistics."""
import attrs
import numpy as np

import functional_cnn as fc
from functional_cnn.checkpoint import load_checkpoint, save_checkpoint
from functional_cnn.optim import adamw, exclude_paths
from functional_cnn.train import EpochRecord, evaluate, fingerprint, fit
from functional_cnn.tree import state_paths, tree_leaves_with_paths


def mixed_net():
    branch = fc.serial(fc.conv2d(4, 3, padding=1, groups=2), fc.batch_norm(), fc.relu())
    return fc.serial(
        fc.conv2d(4, 3, padding=1), fc.batch_norm(), fc.relu(),
        fc.residual(branch),
        fc.fan_out(2), fc.parallel(fc.max_pool2d(2), fc.avg_pool2d(2)), fc.fan_in_concat(1),  # (8, 4, 4)
        fc.reshape((8, 16)), fc.conv1d(4, 3, padding="same"), fc.max_pool1d(2),           # (4, 8)
        fc.layer_norm(), fc.flatten(), fc.dropout(0.2), fc.dense(4),
    )


def task(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.normal(3.0, 2.0, (n, 1, 8, 8)).astype(np.float32)  # far from zero mean: running stats matter
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, 0, r * 4 : r * 4 + 4, q * 4 : q * 4 + 4] += 4.0
    return x, y


def last_epoch(records):
    return [r for r in records if isinstance(r, EpochRecord)][-1]


def test_mixed_network_trains_checkpoints_resumes_and_evaluates(tmp_path):
    net = mixed_net()
    _, params0 = net.init(np.random.default_rng(0), (1, 8, 8))
    assert state_paths(params0) == ['1.mean', '1.var', '3.0.1.mean', '3.0.1.var']  # two batch norms
    data, test = task(192, 1), task(96, 2)
    opt = adamw(3e-3, weight_decay=1e-2, mask=exclude_paths("*.b"))
    kw = dict(epochs=4, batch_size=32, seed=3, test_data=test)

    full = last_epoch(fit(net, params0, fc.softmax_cross_entropy, opt, data, max_steps=20, **kw))
    half = last_epoch(fit(net, params0, fc.softmax_cross_entropy, opt, data, max_steps=10, **kw))
    path = tmp_path / "ck.npz"
    save_checkpoint(path, params=half.params, opt_state=half.opt_state, step=half.step)
    ck = load_checkpoint(path, params_like=params0, opt_state_like=opt.init(params0))
    assert fingerprint((ck.params, ck.opt_state)) == fingerprint((half.params, half.opt_state))
    resumed = last_epoch(fit(net, ck.params, fc.softmax_cross_entropy, opt, data, opt_state=ck.opt_state,
                             start_step=ck.step, max_steps=20, **kw))
    assert fingerprint((resumed.params, resumed.opt_state)) == fingerprint((full.params, full.opt_state))

    # Training moved the running statistics (optimizers never touch them: they moved through update_state).
    before = dict(tree_leaves_with_paths(params0))
    after = dict(tree_leaves_with_paths(full.params))
    for p in state_paths(params0):
        assert not np.array_equal(before[p], after[p]), p
    assert after["1.mean"].mean() > 1.0  # the inputs have mean ~3

    # Inference uses them: with the initial statistics (mean 0, var 1) the same weights do worse.
    trained = evaluate(net, full.params, test)
    bn = attrs.evolve(full.params[1], mean=params0[1].mean, var=params0[1].var)  # trained gamma/beta, initial stats
    stale_params = full.params[:1] + (bn,) + full.params[2:]
    assert trained.accuracy >= 0.6
    assert evaluate(net, stale_params, test).loss > trained.loss

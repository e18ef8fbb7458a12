"""The pure step, the fit loop, evaluation, fingerprints and reproducibility."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import functional_cnn as fc
from functional_cnn.optim import adam, learning_rate, sgd
from functional_cnn.train import (
    EpochRecord,
    NonFiniteLossError,
    StepRecord,
    evaluate,
    fingerprint,
    fit,
    make_step,
    predict,
)


def quadrant_task(n=240, seed=0):
    """4 classes: which quadrant of an 8x8 image holds a bright blob. Learnable by a small CNN."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.random((n, 1, 8, 8), dtype=np.float32) * 0.3
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, 0, r * 4 : r * 4 + 4, q * 4 : q * 4 + 4] += 0.7
    return x, y


def small_net():
    return fc.serial(fc.conv2d(4, 3, padding=1), fc.relu(), fc.max_pool2d(2), fc.flatten(), fc.dense(4))


def init_small(seed=0):
    return small_net().init(np.random.default_rng(seed), (1, 8, 8))[1]


def test_small_cnn_loss_falls_on_a_learnable_task():
    x, y = quadrant_task()
    net, params = small_net(), init_small()
    records = list(fit(net, params, fc.softmax_cross_entropy, sgd(0.1, momentum=0.9), (x, y), epochs=6,
                       batch_size=32, seed=1, test_data=quadrant_task(80, seed=9)))
    epochs = [r for r in records if isinstance(r, EpochRecord)]
    assert len(epochs) == 6 and len([r for r in records if isinstance(r, StepRecord)]) == 6 * 8
    assert epochs[-1].loss < 0.5 * epochs[0].loss
    assert epochs[-1].test_accuracy >= 0.9


def test_step_is_pure_and_deterministic():
    x, y = quadrant_task(16)
    net, params = small_net(), init_small()
    opt = adam(1e-2)
    state = opt.init(params)
    before = fingerprint((params, state))
    step = make_step(net, fc.softmax_cross_entropy, opt)
    p1, s1, m1 = step(params, state, (x, y), np.random.default_rng(0))
    p2, s2, m2 = step(params, state, (x, y), np.random.default_rng(0))
    assert fingerprint((params, state)) == before
    assert fingerprint((p1, s1)) == fingerprint((p2, s2)) != before
    assert m1 == m2 and m1.learning_rate == 1e-2 and 0 <= m1.accuracy <= 1


def test_swapping_the_optimizer_is_one_argument():
    x, y = quadrant_task(64)
    finals = {}
    for name, opt in [("sgd", sgd(0.1)), ("momentum", sgd(0.05, momentum=0.9)), ("adam", adam(1e-2))]:
        *_, last = fit(small_net(), init_small(), fc.softmax_cross_entropy, opt, (x, y), epochs=3, batch_size=16,
                       seed=0)
        finals[name] = last.loss
    assert len(set(finals.values())) == 3 and all(np.isfinite(v) for v in finals.values())


def test_resume_after_k_steps_equals_2k_uninterrupted_steps_bit_for_bit():
    x, y = quadrant_task(100)  # 100 / 32 -> 4 batches per epoch; k = 6 crosses an epoch boundary mid-epoch
    net, opt = small_net(), sgd(0.05, momentum=0.9)
    args = dict(epochs=3, batch_size=32, seed=7)
    full = [r for r in fit(net, init_small(), fc.softmax_cross_entropy, opt, (x, y), max_steps=12, **args)
            if isinstance(r, EpochRecord)][-1]
    half = [r for r in fit(net, init_small(), fc.softmax_cross_entropy, opt, (x, y), max_steps=6, **args)
            if isinstance(r, EpochRecord)][-1]
    assert half.step == 6 and not half.complete
    rest = [r for r in fit(net, half.params, fc.softmax_cross_entropy, opt, (x, y), opt_state=half.opt_state,
                           start_step=6, max_steps=12, **args) if isinstance(r, EpochRecord)][-1]
    assert full.step == rest.step == 12
    assert fingerprint((full.params, full.opt_state)) == fingerprint((rest.params, rest.opt_state))
    assert learning_rate(rest.opt_state) == learning_rate(full.opt_state)


SCRIPT = textwrap.dedent("""
    import numpy as np, functional_cnn as fc
    from functional_cnn.optim import adam
    from functional_cnn.train import fit, fingerprint
    rng = np.random.default_rng(3)
    x = rng.random((64, 1, 8, 8), dtype=np.float32); y = rng.integers(0, 4, 64)
    net = fc.serial(fc.conv2d(4, 3, padding=1), fc.relu(), fc.max_pool2d(2), fc.flatten(), fc.dense(4))
    _, params = net.init(np.random.default_rng(11), (1, 8, 8))
    *_, last = fit(net, params, fc.softmax_cross_entropy, adam(1e-2), (x, y), epochs=2, batch_size=16, seed=5)
    print(fingerprint((last.params, last.opt_state)), repr(last.loss))
""")


def test_same_config_and_seed_give_identical_results_in_two_processes():
    outs = [subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert outs[0] == outs[1] and len(outs[0].split()[0]) == 64


def test_different_seeds_differ():
    x, y = quadrant_task(64)
    fps = {fingerprint(list(fit(small_net(), init_small(), fc.softmax_cross_entropy, sgd(0.1), (x, y), epochs=1,
                                batch_size=16, seed=s))[-1].params) for s in (0, 1)}
    assert len(fps) == 2


def test_non_finite_loss_stops_fit_naming_the_step():
    x, y = quadrant_task(64)
    x = x.copy()
    x[40] = np.nan  # lands in some batch of epoch 1
    with pytest.raises(NonFiniteLossError, match=r"fit: loss is nan at step \d+ \(epoch 1, batch \d of 4\)"):
        list(fit(small_net(), init_small(), fc.softmax_cross_entropy, sgd(0.1), (x, y), epochs=1, batch_size=16,
                 seed=0, shuffle=False))


def test_evaluate_and_predict_work_in_batches():
    x, y = quadrant_task(50)
    net, params = small_net(), init_small()
    whole = evaluate(net, params, (x, y), batch_size=50)
    chunked = evaluate(net, params, (x, y), batch_size=7)
    assert chunked.n == 50
    assert chunked.loss == pytest.approx(whole.loss, rel=1e-5)
    assert chunked.accuracy == pytest.approx(whole.accuracy)
    np.testing.assert_allclose(predict(net, params, x, batch_size=7), predict(net, params, x, batch_size=50),
                               rtol=1e-5, atol=1e-6)


def test_fingerprint_sees_paths_dtypes_and_bits():
    a = (np.zeros(3, np.float32), None)
    assert fingerprint(a) == fingerprint((np.zeros(3, np.float32), None))
    assert fingerprint(a) != fingerprint((np.zeros(3, np.float64), None))
    assert fingerprint(a) != fingerprint(([np.zeros(3, np.float32)], None))
    b = np.zeros(3, np.float32)
    b[1] = np.float32(1e-45)
    assert fingerprint(a) != fingerprint((b, None))


def test_bad_arguments():
    x, y = quadrant_task(8)
    net, params = small_net(), init_small()
    with pytest.raises(ValueError, match=r"fit: x and y must have the same number of examples"):
        next(fit(net, params, fc.softmax_cross_entropy, sgd(0.1), (x, y[:5]), epochs=1, batch_size=4, seed=0))
    with pytest.raises(ValueError, match=r"fit: batch_size must be an integer >= 1, got 0"):
        next(fit(net, params, fc.softmax_cross_entropy, sgd(0.1), (x, y), epochs=1, batch_size=0, seed=0))
    with pytest.raises(ValueError, match="evaluate: the dataset is empty"):
        evaluate(net, params, (x[:0], y[:0]))
    with pytest.raises(TypeError, match="make_step: optimizer must be a GradientTransformation, got function"):
        make_step(net, fc.softmax_cross_entropy, sgd)
    with pytest.raises(TypeError, match="make_step: net must be a Layer"):
        make_step(params, fc.softmax_cross_entropy, sgd(0.1))


# ----------------------------------------------------------------------------- generators only where a layer draws
def _spawned(rng):
    return rng.bit_generator.seed_seq.n_children_spawned


def test_a_serial_spawns_child_generators_only_when_a_child_draws():
    x = np.random.default_rng(0).random((4, 1, 6, 6), dtype=np.float32)
    plain = fc.serial(fc.conv2d(2, 3), fc.relu(), fc.flatten(), fc.dense(3))
    _, params = plain.init(np.random.default_rng(0), (1, 6, 6))
    rng = np.random.default_rng(1)
    y, _ = plain.forward(params, x, rng=rng, train=True)
    assert _spawned(rng) == 0  # nobody would read them
    np.testing.assert_array_equal(y, plain.forward(params, x, train=True)[0])

    noisy = fc.serial(fc.conv2d(2, 3), fc.relu(), fc.flatten(), fc.dropout(0.5), fc.dense(3))
    _, params = noisy.init(np.random.default_rng(0), (1, 6, 6))
    rng = np.random.default_rng(1)
    y, _ = noisy.forward(params, x, rng=rng, train=True)
    assert _spawned(rng) == 5
    # the dropout drew from the 4th of the five children, exactly as rng.spawn(5) makes them
    kids = np.random.default_rng(1).spawn(5)
    h = x
    for i, (layer, p) in enumerate(zip(noisy.children, params)):
        h, _ = layer.forward(p, h, rng=kids[i], train=True)
    np.testing.assert_array_equal(y, h)


def test_a_layer_without_a_spec_still_gets_a_generator():
    seen = []

    def forward(params, x, *, rng=None, train=False):
        seen.append(rng)
        return x, None

    mine = fc.Layer("mine", lambda rng, s, dtype=np.float32: (s, None), forward,
                    lambda params, cache, dy, need_dx=True: (None, dy))
    net = fc.serial(fc.dense(3), mine)
    _, params = net.init(np.random.default_rng(0), (2,))
    net.forward(params, np.ones((1, 2), np.float32), rng=np.random.default_rng(0), train=True)
    assert isinstance(seen[-1], np.random.Generator)


@pytest.mark.parametrize("with_dropout", [False, True])
def test_fit_makes_step_generators_only_for_networks_that_draw(monkeypatch, with_dropout):
    from functional_cnn import train as train_mod

    layers = [fc.flatten(), fc.dense(8), fc.relu()] + ([fc.dropout(0.3)] if with_dropout else []) + [fc.dense(3)]
    net = fc.serial(*layers)
    rng = np.random.default_rng(0)
    x = rng.random((20, 1, 3, 3), dtype=np.float32)
    y = rng.integers(0, 3, 20)
    _, params = net.init(np.random.default_rng(1), (1, 3, 3))
    made = []
    real = train_mod.step_rng
    monkeypatch.setattr(train_mod, "step_rng", lambda seed, step: made.append(step) or real(seed, step))
    records = [r for r in fc.fit(net, params, fc.softmax_cross_entropy, fc.sgd(0.1), (x, y), epochs=2,
                                 batch_size=6, seed=3) if isinstance(r, fc.EpochRecord)]
    assert len(made) == (8 if with_dropout else 0)
    # the same steps by hand, each given its step's generator, give the same bits
    step = fc.make_step(net, fc.softmax_cross_entropy, fc.sgd(0.1))
    p, s = params, fc.sgd(0.1).init(params)
    t = 0
    for epoch in range(2):
        for idx in train_mod.batches(train_mod.epoch_order(3, epoch, 20, True), 6):
            p, s, _ = step(p, s, (x[idx], y[idx]), real(3, t))
            t += 1
    assert fc.fingerprint(records[-1].params) == fc.fingerprint(p)


def test_batches_are_fresh_integer_arrays_in_order():
    from functional_cnn.train import batches

    order = np.array([5, 4, 3, 2, 1, 0], dtype=np.int32)
    got = list(batches(order, 4))
    order[:] = 9  # the caller's array may change afterwards
    assert [b.tolist() for b in got] == [[5, 4, 3, 2], [1, 0]]
    assert all(b.dtype == np.int_ and b.flags.writeable for b in got)

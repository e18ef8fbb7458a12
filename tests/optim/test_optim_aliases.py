"""Aliases: full training loops against plain-numpy references, convergence, purity."""
from __future__ import annotations

from typing import Dict

import attrs
import numpy as np
import pytest

from functional_cnn.layer import param_field, state_field
from functional_cnn.optim import (
    adagrad,
    adam,
    adamw,
    apply_updates,
    cosine_decay_schedule,
    exclude_paths,
    exponential_decay,
    learning_rate,
    rmsprop,
    sgd,
)
from functional_cnn.tree import trainable, tree_leaves_with_paths, tree_map
from optim_testlib import STATE, TRAINABLE, as_dict, assert_unchanged, make_params, mixed

STEPS = 25
PULL = 0.5  # grads = noise + PULL * params, so the loop depends on the params it produces


def loss_grads(params, rng):
    return tree_map(lambda p: mixed(rng, p.shape, p.dtype) + PULL * p, trainable(params))


# ----------------------------------------------------------------------------- references
def ref_sgd(lr, momentum=0.0, nesterov=False, wd=0.0, decayed=TRAINABLE):
    lr_at = lr if callable(lr) else (lambda t: lr)

    def make():
        buf: Dict[str, np.ndarray] = {}

        def step(t, p, g):
            new = {}
            for k in g:
                d = g[k] + wd * p[k] if k in decayed else g[k]
                if momentum:
                    buf[k] = momentum * buf.get(k, 0.0) + d
                    d = d + momentum * buf[k] if nesterov else buf[k]
                new[k] = p[k] - lr_at(t) * d
            return new
        return step
    return make


def ref_adam(lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, decayed=()):
    def make():
        m: Dict[str, np.ndarray] = {}
        v: Dict[str, np.ndarray] = {}

        def step(t, p, g):
            new = {}
            for k in g:
                m[k] = b1 * m.get(k, 0.0) + (1 - b1) * g[k]
                v[k] = b2 * v.get(k, 0.0) + (1 - b2) * g[k] ** 2
                d = (m[k] / (1 - b1 ** (t + 1))) / (np.sqrt(v[k] / (1 - b2 ** (t + 1))) + eps)
                if k in decayed:
                    d = d + wd * p[k]
                new[k] = p[k] - lr * d
            return new
        return step
    return make


def ref_rmsprop(lr, decay=0.9, eps=1e-8, momentum=0.0):
    def make():
        v: Dict[str, np.ndarray] = {}
        buf: Dict[str, np.ndarray] = {}

        def step(t, p, g):
            new = {}
            for k in g:
                v[k] = decay * v.get(k, 0.0) + (1 - decay) * g[k] ** 2
                d = g[k] / (np.sqrt(v[k]) + eps)
                if momentum:
                    buf[k] = momentum * buf.get(k, 0.0) + d
                    d = buf[k]
                new[k] = p[k] - lr * d
            return new
        return step
    return make


def ref_adagrad(lr, acc0=0.1, eps=1e-7):
    def make():
        s: Dict[str, np.ndarray] = {}

        def step(t, p, g):
            new = {}
            for k in g:
                s[k] = s.get(k, acc0) + g[k] ** 2
                new[k] = p[k] - lr * g[k] / (np.sqrt(s[k]) + eps)
            return new
        return step
    return make


WEIGHTS = [k for k in TRAINABLE if not k.endswith(".b")]
ALIASES: Dict[str, tuple] = {
    "sgd": (lambda: sgd(0.01), ref_sgd(0.01)),
    "sgd_momentum": (lambda: sgd(0.01, momentum=0.9), ref_sgd(0.01, 0.9)),
    "sgd_nesterov": (lambda: sgd(0.01, momentum=0.9, nesterov=True), ref_sgd(0.01, 0.9, True)),
    "sgd_decay_masked": (lambda: sgd(0.01, momentum=0.5, weight_decay=0.1, mask=exclude_paths("*.b")),
                         ref_sgd(0.01, 0.5, False, 0.1, WEIGHTS)),
    "sgd_schedule": (lambda: sgd(exponential_decay(0.02, 5, 0.5)), ref_sgd(lambda t: 0.02 * 0.5 ** (t / 5))),
    "adam": (lambda: adam(0.01), ref_adam(0.01)),
    "adam_betas": (lambda: adam(0.003, b1=0.5, b2=0.9, eps=1e-6), ref_adam(0.003, 0.5, 0.9, 1e-6)),
    "adamw": (lambda: adamw(0.01, weight_decay=0.1, mask=exclude_paths("*.b")),
              ref_adam(0.01, wd=0.1, decayed=WEIGHTS)),
    "adamw_all": (lambda: adamw(0.01), ref_adam(0.01, wd=1e-4, decayed=TRAINABLE)),
    "rmsprop": (lambda: rmsprop(0.001), ref_rmsprop(0.001)),
    "rmsprop_momentum": (lambda: rmsprop(0.001, decay=0.8, momentum=0.9), ref_rmsprop(0.001, 0.8, 1e-8, 0.9)),
    "adagrad": (lambda: adagrad(0.1), ref_adagrad(0.1)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(ALIASES))
def test_alias_matches_reference_loop(name, dtype):
    make_opt, make_ref = ALIASES[name]
    opt, ref_step = make_opt(), make_ref()
    params = make_params(0, dtype)
    state_before = {k: v for k, v in as_dict(params).items() if k in STATE}
    state = opt.init(params)
    ref = {k: v.astype(np.float64) for k, v in as_dict(trainable(params)).items()}
    rng = np.random.default_rng(7)
    eps = np.finfo(dtype).eps
    for t in range(STEPS):
        grads = loss_grads(params, rng)
        ref = ref_step(t, ref, {k: v.astype(np.float64) for k, v in as_dict(grads).items()})
        updates, state = opt.update(grads, state, params)
        params = apply_updates(params, updates)
        got = as_dict(params)
        for k in TRAINABLE:
            assert got[k].dtype == dtype
            scale = np.max(np.abs(ref[k]))
            rtol = 64 * eps if dtype == np.float64 else 2048 * eps
            np.testing.assert_allclose(got[k], ref[k], rtol=rtol, atol=rtol * scale, err_msg=f"{name} step {t} {k}")
    for k in STATE:  # running statistics: never touched by any optimizer
        np.testing.assert_array_equal(as_dict(params)[k], state_before[k])
    for path, x in tree_leaves_with_paths(state):
        assert not x.flags.writeable, path
        if x.ndim > 0:
            assert x.dtype == dtype, path


# ----------------------------------------------------------------------------- convergence
@attrs.frozen(eq=False)
class Point:
    xy: np.ndarray = param_field()
    tag: np.ndarray = state_field()


def quadratic_grad(xy):
    return np.array([1.0, 10.0]) * (xy - np.array([1.0, -2.0]))


def rosenbrock_grad(xy):
    x, y = xy
    return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


QUAD, ROSEN = (quadratic_grad, (1.0, -2.0)), (rosenbrock_grad, (1.0, 1.0))
CONVERGENCE = [
    ("sgd", QUAD, lambda: sgd(0.1), 150),
    ("sgd_momentum", QUAD, lambda: sgd(0.05, momentum=0.9), 250),
    ("sgd_nesterov", QUAD, lambda: sgd(0.05, momentum=0.9, nesterov=True), 150),
    ("adam", QUAD, lambda: adam(0.1), 300),
    ("adamw", QUAD, lambda: adamw(0.1), 300),
    ("rmsprop", QUAD, lambda: rmsprop(0.01), 1000),
    ("rmsprop_momentum", QUAD, lambda: rmsprop(cosine_decay_schedule(0.01, 300), momentum=0.9), 300),
    ("adagrad", QUAD, lambda: adagrad(1.0), 100),
    ("sgd", ROSEN, lambda: sgd(2e-3), 10000),
    ("sgd_momentum", ROSEN, lambda: sgd(1e-3, momentum=0.9), 2000),
    ("sgd_nesterov", ROSEN, lambda: sgd(1e-3, momentum=0.9, nesterov=True), 2000),
    ("adam", ROSEN, lambda: adam(0.02), 600),
    ("adamw", ROSEN, lambda: adamw(0.02), 600),
    ("rmsprop", ROSEN, lambda: rmsprop(1e-3, decay=0.99), 10000),
    ("rmsprop_momentum", ROSEN, lambda: rmsprop(1e-3, momentum=0.9), 500),
    ("adagrad", ROSEN, lambda: adagrad(0.3), 9000),
]


@pytest.mark.parametrize(
    "make_opt, problem, steps",
    [pytest.param(m, p, n, id=f"{name}-{p[0].__name__.split('_')[0]}") for name, p, m, n in CONVERGENCE],
)
def test_alias_converges(make_opt, problem, steps):
    grad_fn, optimum = problem
    opt = make_opt()
    params = (Point(np.zeros(2), np.array([3.0])), None)
    state = opt.init(params)
    for _ in range(steps):
        grads = (Point(grad_fn(params[0].xy), None), None)
        updates, state = opt.update(grads, state, params)
        params = apply_updates(params, updates)
    np.testing.assert_allclose(params[0].xy, optimum, atol=1e-3)
    np.testing.assert_array_equal(params[0].tag, [3.0])


# ----------------------------------------------------------------------------- properties
@pytest.mark.parametrize("name", sorted(ALIASES))
def test_update_is_pure(name):
    make_opt, _ = ALIASES[name]
    opt = make_opt()
    params = make_params(0, np.float32)
    state = opt.init(params)
    grads = loss_grads(params, np.random.default_rng(3))
    _, state = opt.update(grads, state, params)  # a non-trivial state
    before = (as_dict(params), as_dict(state), as_dict(grads))
    updates, new_state = opt.update(grads, state, params)
    new_params = apply_updates(params, updates)
    assert_unchanged(params, before[0])
    assert_unchanged(state, before[1])
    for k, v in as_dict(grads).items():
        np.testing.assert_array_equal(v, before[2][k])
    for path, x in tree_leaves_with_paths(new_params) + tree_leaves_with_paths(new_state):
        assert not x.flags.writeable, path
    # same inputs, same outputs
    updates2, _ = opt.update(grads, state, params)
    for k, v in as_dict(updates).items():
        np.testing.assert_array_equal(v, as_dict(updates2)[k])


@pytest.mark.parametrize(
    "make_opt",
    [lambda: sgd(0.0, momentum=0.9, weight_decay=0.1), lambda: adam(0.0), lambda: adamw(0.0, weight_decay=0.5),
     lambda: rmsprop(0.0, momentum=0.5), lambda: adagrad(0.0)],
    ids=["sgd", "adam", "adamw", "rmsprop", "adagrad"],
)
def test_zero_learning_rate_is_a_no_op(make_opt):
    opt = make_opt()
    params = make_params()
    start = as_dict(params)
    state = opt.init(params)
    rng = np.random.default_rng(0)
    for _ in range(5):
        updates, state = opt.update(loss_grads(params, rng), state, params)
        params = apply_updates(params, updates)
    for k, v in as_dict(params).items():
        np.testing.assert_array_equal(v, start[k], err_msg=k)


@pytest.mark.parametrize("make_opt, decayed", [
    (lambda: adamw(0.1, weight_decay=0.5, mask=exclude_paths("*.b")), WEIGHTS),
    (lambda: sgd(0.1, weight_decay=0.5, mask="*.w"), ["0.w"]),
    (lambda: sgd(0.1, momentum=0.9, weight_decay=0.5), TRAINABLE),
], ids=["adamw_exclude_biases", "sgd_pattern", "sgd_all"])
def test_weight_decay_respects_mask_and_never_touches_state(make_opt, decayed):
    # With zero gradients weight decay is the only force on the params.
    opt = make_opt()
    params = make_params()
    zero = tree_map(np.zeros_like, trainable(params))
    state = opt.init(params)
    new = params
    for _ in range(3):
        updates, state = opt.update(zero, state, new)
        new = apply_updates(new, updates)
    before, after = as_dict(params), as_dict(new)
    for k in TRAINABLE:
        if k in decayed:
            assert np.all(np.abs(after[k]) < np.abs(before[k])), k
        else:
            np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    for k in STATE:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
        assert dict(tree_leaves_with_paths(new))[k] is dict(tree_leaves_with_paths(params))[k]


def test_learning_rate_is_read_from_state():
    sched = exponential_decay(1.0, 1, 0.5)
    opt = sgd(sched, momentum=0.9)
    params = make_params()
    state = opt.init(params)
    seen = []
    rng = np.random.default_rng(0)
    for _ in range(4):
        seen.append(learning_rate(state))  # the rate this step will use
        g = loss_grads(params, rng)
        updates, state = opt.update(g, state, params)
        # the step really used it: momentum buffer aside, -updates / trace == lr
        trace_now = as_dict(state[0].trace)
        np.testing.assert_allclose(as_dict(updates)["0.w"], -seen[-1] * trace_now["0.w"], rtol=1e-15)
        params = apply_updates(params, updates)
    assert seen == [1.0, 0.5, 0.25, 0.125]
    assert learning_rate(state) == 0.0625
    assert learning_rate(adam(3e-4).init(params)) == 3e-4

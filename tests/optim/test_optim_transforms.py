"""Every transformation against an independent plain-numpy reference loop."""
from __future__ import annotations

import math

import numpy as np
import pytest

from functional_cnn.optim import (
    EmptyState,
    ScaleByAdamState,
    add_decayed_weights,
    chain,
    clip_by_global_norm,
    clip_by_value,
    exclude_paths,
    global_norm,
    masked,
    scale,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
    trace,
)
from functional_cnn.optim.schedules import linear_schedule
from functional_cnn.tree import trainable, tree_leaves, tree_leaves_with_paths
from optim_testlib import TRAINABLE, as_dict, grad_stream, make_params

STEPS = 25


# ----------------------------------------------------------------------------- references
def ref_scale(c):
    return lambda gs, p: [{k: c * g[k] for k in g} for g in gs]


def ref_lr(lr_of_step):
    return lambda gs, p: [{k: -lr_of_step(t) * g[k] for k in g} for t, g in enumerate(gs)]


def ref_trace(decay, nesterov):
    def run(gs, p):
        buf = {k: np.zeros_like(p[k]) for k in p}
        out = []
        for g in gs:
            step = {}
            for k in g:
                buf[k] = decay * buf[k] + g[k]
                step[k] = g[k] + decay * buf[k] if nesterov else buf[k].copy()
            out.append(step)
        return out
    return run


def ref_adam(b1, b2, eps, eps_root, keys=None):
    def run(gs, p):
        use = keys if keys is not None else list(p)
        m = {k: np.zeros_like(p[k]) for k in use}
        v = {k: np.zeros_like(p[k]) for k in use}
        out = []
        for t, g in enumerate(gs, start=1):
            step = {}
            for k in g:
                if k not in use:
                    step[k] = g[k]
                    continue
                m[k] = b1 * m[k] + (1 - b1) * g[k]
                v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
                m_hat = m[k] / (1 - b1**t)
                v_hat = v[k] / (1 - b2**t)
                step[k] = m_hat / (np.sqrt(v_hat + eps_root) + eps)
            out.append(step)
        return out
    return run


def ref_rms(decay, eps):
    def run(gs, p):
        v = {k: np.zeros_like(p[k]) for k in p}
        out = []
        for g in gs:
            for k in g:
                v[k] = decay * v[k] + (1 - decay) * g[k] ** 2
            out.append({k: g[k] / (np.sqrt(v[k]) + eps) for k in g})
        return out
    return run


def ref_adagrad(acc0, eps):
    def run(gs, p):
        s = {k: np.full_like(p[k], acc0) for k in p}
        out = []
        for g in gs:
            for k in g:
                s[k] = s[k] + g[k] ** 2
            out.append({k: g[k] / (np.sqrt(s[k]) + eps) for k in g})
        return out
    return run


def ref_decay(wd, decayed):
    return lambda gs, p: [{k: g[k] + wd * p[k] if k in decayed else g[k] for k in g} for g in gs]


def ref_clip_norm(max_norm):
    def run(gs, p):
        out = []
        for g in gs:
            norm = math.sqrt(sum(float(np.sum(x**2)) for x in g.values()))
            factor = max_norm / norm if norm > max_norm else 1.0
            out.append({k: g[k] * factor for k in g})
        return out
    return run


def ref_clip_value(lo, hi):
    return lambda gs, p: [{k: np.minimum(np.maximum(g[k], lo), hi) for k in g} for g in gs]


def ref_chain(*refs):
    def run(gs, p):
        for r in refs:
            gs = r(gs, p)
        return gs
    return run


WEIGHTS = [k for k in TRAINABLE if not k.endswith(".b")]
SCHED = linear_schedule(0.5, 0.05, 10, transition_begin=3)

CASES = {
    "scale": (lambda: scale(-0.37), ref_scale(-0.37)),
    "lr_constant": (lambda: scale_by_learning_rate(0.03), ref_lr(lambda t: 0.03)),
    "lr_schedule": (lambda: scale_by_learning_rate(SCHED),
                    ref_lr(lambda t: 0.5 + (0.05 - 0.5) * min(max(t - 3, 0), 10) / 10)),
    "trace": (lambda: trace(0.9), ref_trace(0.9, False)),
    "trace_nesterov": (lambda: trace(0.8, nesterov=True), ref_trace(0.8, True)),
    "adam": (lambda: scale_by_adam(), ref_adam(0.9, 0.999, 1e-8, 0.0)),
    "adam_eps_root": (lambda: scale_by_adam(0.5, 0.9, 1e-3, 1e-6), ref_adam(0.5, 0.9, 1e-3, 1e-6)),
    "rms": (lambda: scale_by_rms(0.9, 1e-8), ref_rms(0.9, 1e-8)),
    "adagrad": (lambda: scale_by_adagrad(0.1, 1e-7), ref_adagrad(0.1, 1e-7)),
    "decay_all": (lambda: add_decayed_weights(0.3), ref_decay(0.3, TRAINABLE)),
    "decay_no_bias": (lambda: add_decayed_weights(0.3, mask=exclude_paths("*.b")), ref_decay(0.3, WEIGHTS)),
    "decay_pattern": (lambda: add_decayed_weights(0.3, mask="*.w"), ref_decay(0.3, ["0.w"])),
    "clip_norm": (lambda: clip_by_global_norm(800.0), ref_clip_norm(800.0)),
    "clip_value": (lambda: clip_by_value(-1.5, 2.0), ref_clip_value(-1.5, 2.0)),
    "masked_adam": (lambda: masked(scale_by_adam(), "2.*"),
                    ref_adam(0.9, 0.999, 1e-8, 0.0, keys=["2.0.beta", "2.0.gamma"])),
    "chain": (lambda: chain(clip_by_value(-100.0, 100.0), trace(0.5), scale(2.0)),
              ref_chain(ref_clip_value(-100.0, 100.0), ref_trace(0.5, False), ref_scale(2.0))),
}


def run(tx, params, grads):
    state = tx.init(params)
    outs = []
    for g in grads:
        updates, state = tx.update(g, state, params)
        outs.append(updates)
    return outs, state


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference_float64(name):
    make, ref = CASES[name]
    params = make_params(0, np.float64)
    grads = grad_stream(params, STEPS)
    outs, _ = run(make(), params, grads)
    expected = ref([as_dict(g) for g in grads], as_dict(trainable(params)))
    tol = 64 * np.finfo(np.float64).eps
    for t, (got, want) in enumerate(zip(outs, expected, strict=True)):
        got = as_dict(got)
        assert sorted(got) == TRAINABLE
        for k in TRAINABLE:
            np.testing.assert_allclose(got[k], want[k], rtol=tol, atol=1e-300, err_msg=f"{name} step {t} leaf {k}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_stays_float32(name):
    make, ref = CASES[name]
    params = make_params(0, np.float32)
    grads = grad_stream(params, STEPS)
    outs, state = run(make(), params, grads)
    for u in outs:
        assert all(x.dtype == np.float32 for x in tree_leaves(u))
    for path, x in tree_leaves_with_paths(state):
        if x.ndim > 0:
            assert x.dtype == np.float32, path
    # same numbers as the float64 reference run on the same (float32) inputs
    p64 = as_dict(trainable(params))
    expected = ref([{k: v.astype(np.float64) for k, v in as_dict(g).items()} for g in grads],
                   {k: v.astype(np.float64) for k, v in p64.items()})
    rtol = 256 * np.finfo(np.float32).eps
    for got, want in zip(outs, expected, strict=True):
        got = as_dict(got)
        for k in TRAINABLE:
            scale_k = np.max(np.abs(want[k]))
            np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=rtol * scale_k, err_msg=f"{name} {k}")


def test_state_only_for_trainable_leaves():
    params = make_params()
    state = scale_by_adam().init(params)
    assert isinstance(state, ScaleByAdamState)
    assert sorted(p for p, _ in tree_leaves_with_paths(state.mu)) == TRAINABLE
    assert state.count.dtype == np.int64 and state.count.shape == ()
    _, state = scale_by_adam().update(grad_stream(params, 1)[0], state)
    assert int(state.count) == 1
    assert all(not x.flags.writeable for x in tree_leaves(state))
    assert state.mu[2][0].mean is None and state.nu[2][0].var is None and state.mu[1] is None


def test_clip_by_global_norm_bounds_norm_and_passes_small_updates():
    params = make_params()
    g = grad_stream(params, 1)[0]
    n = global_norm(g)
    clipped, _ = clip_by_global_norm(n / 10).update(g, EmptyState())
    assert math.isclose(global_norm(clipped), n / 10, rel_tol=1e-12)
    same, _ = clip_by_global_norm(2 * n).update(g, EmptyState())
    assert same is g

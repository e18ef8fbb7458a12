"""Bad input: every error names the function, the argument, what it got and what was expected."""
from __future__ import annotations

import numpy as np
import pytest

from functional_cnn.optim import (
    adagrad,
    adam,
    adamw,
    add_decayed_weights,
    apply_updates,
    chain,
    clip_by_global_norm,
    clip_by_value,
    exclude_paths,
    learning_rate,
    masked,
    path_mask,
    rmsprop,
    scale,
    scale_by_adam,
    scale_by_learning_rate,
    sgd,
    trace,
)
from optim_testlib import Dense, Norm, grads_like, make_params

BAD_HYPERPARAMETERS = [
    (lambda: sgd(-0.1), ValueError, "sgd: scale_by_learning_rate: learning_rate must be in \\[0.0, inf\\], got -0.1"),
    (lambda: sgd("0.1"), TypeError, "sgd: scale_by_learning_rate: learning_rate must be a real number"),
    (lambda: sgd(0.1, momentum=1.0), ValueError, "sgd: momentum must be in \\[0.0, 1.0\\), got 1.0"),
    (lambda: sgd(0.1, momentum=-0.1), ValueError, "sgd: momentum"),
    (lambda: sgd(0.1, nesterov=True), ValueError, "sgd: nesterov=True needs momentum > 0"),
    (lambda: sgd(0.1, mask="*.w"), ValueError, "sgd: mask selects the leaves that decay, but weight_decay=0"),
    (lambda: rmsprop(0.1, nesterov=True), ValueError, "rmsprop: nesterov=True needs momentum > 0"),
    (lambda: sgd(0.1, weight_decay=-1.0), ValueError, "sgd: weight_decay must be in \\[0.0, inf\\]"),
    (lambda: adam(0.1, b1=1.0), ValueError, "adam: scale_by_adam: b1 must be in \\[0.0, 1.0\\), got 1.0"),
    (lambda: adam(0.1, b2=-0.5), ValueError, "adam: scale_by_adam: b2"),
    (lambda: adam(0.1, eps=0.0), ValueError, "adam: scale_by_adam: eps must be in \\(0.0, inf\\]"),
    (lambda: adam(0.1, eps_root=-1e-8), ValueError, "adam: scale_by_adam: eps_root"),
    (lambda: adamw(0.1, weight_decay=-1e-4), ValueError, "adamw: add_decayed_weights: weight_decay"),
    (lambda: adamw(-1.0), ValueError, "adamw: scale_by_learning_rate: learning_rate"),
    (lambda: rmsprop(0.1, decay=1.0), ValueError, "rmsprop: scale_by_rms: decay"),
    (lambda: rmsprop(0.1, eps=-1.0), ValueError, "rmsprop: scale_by_rms: eps"),
    (lambda: rmsprop(0.1, momentum=1.5), ValueError, "rmsprop: momentum"),
    (lambda: adagrad(0.1, eps=0.0), ValueError, "adagrad: scale_by_adagrad: eps"),
    (lambda: adagrad(0.1, initial_accumulator=-1.0), ValueError, "adagrad: scale_by_adagrad: initial_accumulator"),
    (lambda: trace(1.0), ValueError, "trace: decay must be in \\[0.0, 1.0\\)"),
    (lambda: trace(0.5, nesterov="yes"), TypeError, "trace: nesterov must be a bool"),
    (lambda: scale(np.inf), ValueError, "scale: step_size must be finite"),
    (lambda: clip_by_global_norm(0.0), ValueError, "clip_by_global_norm: max_norm must be in \\(0.0, inf\\]"),
    (lambda: clip_by_value(1.0, -1.0), ValueError, "clip_by_value: low must be <= high, got low=1.0 > high=-1.0"),
    (lambda: clip_by_value(np.nan, 1.0), ValueError, "clip_by_value: low must not be NaN"),
    (lambda: clip_by_value(None, 1.0), TypeError, "clip_by_value: low must be a real number"),
    (lambda: scale_by_learning_rate(lambda k: -0.1), ValueError,
     "scale_by_learning_rate: the learning-rate schedule gave -0.1 at step 0"),
    (lambda: scale_by_learning_rate(lambda k: "fast"), ValueError, "schedule gave 'fast' at step 0"),
    (lambda: add_decayed_weights(0.1, mask=3), TypeError, "add_decayed_weights: mask must be None, a glob pattern"),
    (lambda: path_mask(), ValueError, "path_mask: needs at least one glob pattern"),
    (lambda: exclude_paths(3), TypeError, "exclude_paths: patterns must be strings"),
    (lambda: chain(sgd(0.1), "adam"), TypeError, "chain: transforms\\[1\\] must be a GradientTransformation, got str"),
    (lambda: masked("adam", "*.w"), TypeError, "masked: inner must be a GradientTransformation"),
]


@pytest.mark.parametrize("make, err, match", BAD_HYPERPARAMETERS)
def test_bad_hyperparameters(make, err, match):
    with pytest.raises(err, match=match):
        make()


def test_schedule_turning_negative_fails_at_that_step():
    opt = sgd(lambda k: 0.1 - 0.05 * k)
    params = make_params()
    state = opt.init(params)
    grads = grads_like(params, np.random.default_rng(0))
    for _ in range(3):
        _, state = opt.update(grads, state, params)
    assert np.isnan(learning_rate(state))  # shown as NaN, refused when used:
    with pytest.raises(ValueError, match="schedule gave -0.05\\d* at step 3; learning rates must be finite numbers >= 0"):
        opt.update(grads, state, params)


# ----------------------------------------------------------------------------- grads vs params
def _grads(params):
    return grads_like(params, np.random.default_rng(0))


def test_grads_with_a_missing_subtree_show_both_structures():
    params = make_params()
    g = _grads(params)
    bad = (None, g[1], g[2])
    with pytest.raises(TypeError, match="adam.*grads and params \\(trainable\\) have different structures; "
                                        "first difference at '0'") as info:
        adam(0.1).update(bad, adam(0.1).init(params), params)
    text = str(info.value)
    assert "0.w: array(3, 4) float64" in text and "  0: None" in text  # both trees shown by path


def test_grads_with_an_extra_leaf():
    params = make_params()
    g = _grads(params)
    with pytest.raises(TypeError, match="different structures"):
        sgd(0.1).update(g + (np.zeros(2),), sgd(0.1).init(params), params)


def test_grads_at_a_state_field_are_refused():
    params = make_params()
    g = _grads(params)
    norm = g[2][0]
    bad = (g[0], None, (Norm(norm.gamma, norm.beta, np.zeros(5), None),))
    with pytest.raises(TypeError, match="first difference at '2.0.mean': leaf vs None"):
        adamw(0.1).update(bad, adamw(0.1).init(params), params)


def test_grads_of_the_wrong_shape():
    params = make_params()
    g = _grads(params)
    bad = (Dense(np.zeros((4, 3)), g[0].b), None, g[2])
    with pytest.raises(ValueError, match="grads leaf '0.w' has shape \\(4, 3\\) but the params leaf there has shape \\(3, 4\\)"):
        sgd(0.1).update(bad, sgd(0.1).init(params), params)


# ----------------------------------------------------------------------------- foreign states
def test_state_from_another_optimizer():
    params = make_params()
    g = _grads(params)
    with pytest.raises(TypeError, match="trace.update: state must be a TraceState made by trace.init, got "
                                        "ScaleByAdamState; was this state made by another optimizer's init"):
        sgd(0.1, momentum=0.9).update(g, adam(0.1).init(params), params)
    with pytest.raises(TypeError, match="state must be the tuple of 2 states made by this optimizer's init, got tuple of 1"):
        adam(0.1).update(g, sgd(0.1).init(params), params)
    with pytest.raises(TypeError, match="got dict"):
        adam(0.1).update(g, {}, params)


def test_state_from_another_model():
    params = make_params()
    other = (Dense(np.zeros((3, 6)), np.zeros(6)),) + params[1:]
    state = adam(0.1).init(other)
    with pytest.raises(ValueError, match="scale_by_adam.update: grads leaf '0.w' has shape \\(3, 4\\) but the state "
                                         "leaf there has shape \\(3, 6\\); the state was built by init for another model"):
        adam(0.1).update(_grads(params), state)
    smaller = adam(0.1).init(params[:1])
    with pytest.raises(TypeError, match="grads and state have different structures(.|\n)*another model"):
        adam(0.1).update(_grads(params), smaller)


def test_weight_decay_needs_params():
    params = make_params()
    with pytest.raises(TypeError, match="add_decayed_weights.update: params is required"):
        adamw(0.1).update(_grads(params), adamw(0.1).init(params))


def test_mask_matching_nothing_is_a_typo():
    with pytest.raises(ValueError, match="add_decayed_weights: mask exclude_paths\\('\\*.bias'\\) matches no trainable "
                                         "parameter path; the paths are: 0.w, 0.b, 2.0.gamma"):
        adamw(0.1, mask=exclude_paths("*.bias")).init(make_params())


def test_mask_must_return_a_bool():
    opt = add_decayed_weights(0.1, mask=lambda path, leaf: leaf > 0)
    params = make_params()
    with pytest.raises(TypeError, match="add_decayed_weights: mask\\('0.w', leaf\\) must return a bool, got array of shape \\(3, 4\\)"):
        opt.update(_grads(params), opt.init(params), params)


def test_init_refuses_non_float_params():
    with pytest.raises(TypeError, match="scale_by_adam.init: params leaf '0' must be a floating numpy array, got int64"):
        scale_by_adam().init((np.arange(3),))


def test_apply_updates_errors():
    params = make_params()
    g = _grads(params)
    with pytest.raises(TypeError, match="apply_updates: updates and params have different structures"):
        apply_updates(params, g[:2])
    bad = (Dense(g[0].w, np.zeros(5)), None, g[2])
    with pytest.raises(ValueError, match="apply_updates: update '0.b' has shape \\(5,\\), its param has shape \\(4,\\)"):
        apply_updates(params, bad)


def test_learning_rate_of_a_state_without_one():
    params = make_params()
    with pytest.raises(ValueError, match="learning_rate: state must contain exactly one ScaleByLearningRateState"
                                         " \\(from scale_by_learning_rate\\), found no"):
        learning_rate(scale_by_adam().init(params))
    twice = chain(sgd(0.1), sgd(0.2))
    with pytest.raises(ValueError, match="found 2"):
        learning_rate(twice.init(params))
    assert learning_rate(sgd(0.2).init(params)) == 0.2

"""The algebra itself: apply_updates, chain, masks, masked, state records."""
from __future__ import annotations

import attrs
import numpy as np
import pytest

from functional_cnn.optim import (
    EmptyState,
    GradientTransformation,
    adam,
    adamw,
    apply_updates,
    chain,
    exclude_paths,
    learning_rate,
    masked,
    path_mask,
    scale,
    scale_by_adam,
    sgd,
    trace,
)
from functional_cnn.tree import trainable, tree_flatten, tree_leaves, tree_map, tree_paths, tree_unflatten
from optim_testlib import TRAINABLE, as_dict, assert_unchanged, grads_like, make_params


def test_apply_updates_keeps_none_and_state_fields():
    params = make_params()
    updates = tree_map(np.ones_like, trainable(params))
    new = apply_updates(params, updates)
    before, after = as_dict(params), as_dict(new)
    for k in TRAINABLE:
        np.testing.assert_array_equal(after[k], before[k] + 1)
    assert new[1] is None
    assert new[2][0].mean is params[2][0].mean and new[2][0].var is params[2][0].var
    assert type(new[0]) is type(params[0])
    assert all(not x.flags.writeable for x in tree_leaves(new))


def test_apply_updates_with_none_subtree_keeps_that_subtree():
    params = make_params()
    updates = (None, None, tree_map(np.ones_like, trainable(params))[2])
    new = apply_updates(params, updates)
    assert new[0].w is params[0].w


@pytest.mark.parametrize("p_dtype, u_dtype",
                         [(np.float32, np.float64), (np.float64, np.float32), (np.float32, np.float32)])
def test_apply_updates_casts_to_param_dtype(p_dtype, u_dtype):
    params = make_params(0, p_dtype)
    updates = tree_map(lambda p: np.full(p.shape, 0.5, dtype=u_dtype), trainable(params))
    snap = as_dict(params)
    new = apply_updates(params, updates)
    for x in tree_leaves(new):
        assert x.dtype == p_dtype
    assert_unchanged(params, snap)


def test_gradient_transformation_is_a_frozen_record():
    opt = adam(1e-3)
    assert isinstance(opt, GradientTransformation)
    with pytest.raises(attrs.exceptions.FrozenInstanceError, match="can't set attribute"):
        opt.init = None
    assert repr(opt) == "adam(0.001, b1=0.9, b2=0.999, eps=1e-08)"
    assert repr(sgd(0.1, momentum=0.9)) == "sgd(0.1, momentum=0.9)"


def test_chain_composes_left_to_right():
    params = make_params()
    g = grads_like(params, np.random.default_rng(0))
    composed = chain(scale(2.0), scale(3.0))
    updates, state = composed.update(g, composed.init(params), params)
    assert len(state) == 2 and all(isinstance(s, EmptyState) for s in state)
    for k, v in as_dict(updates).items():
        np.testing.assert_allclose(v, 6.0 * as_dict(g)[k], rtol=1e-15)
    identity = chain()
    same, empty = identity.update(g, identity.init(params), params)
    assert same is g and empty == ()
    # a chain is a transformation, so chains nest
    nested = chain(chain(trace(0.5)), sgd(0.1))
    u1, _ = nested.update(g, nested.init(params), params)
    u2, _ = sgd(0.1, momentum=0.5).update(g, sgd(0.1, momentum=0.5).init(params), params)
    for k, v in as_dict(u1).items():
        np.testing.assert_allclose(v, as_dict(u2)[k], rtol=1e-15)


def test_state_round_trips_through_flatten_like_a_checkpoint():
    params = make_params()
    opt = adamw(0.01, mask=exclude_paths("*.b"))
    state = opt.init(params)
    rng = np.random.default_rng(1)
    g1 = grads_like(params, rng)
    _, state = opt.update(g1, state, params)
    leaves, treedef = tree_flatten(state)
    restored = tree_unflatten(treedef, [np.array(x) for x in leaves])  # writeable copies, as from disk
    assert all(not x.flags.writeable for x in tree_leaves(restored))  # records re-freeze them
    g2 = grads_like(params, rng)
    u_a, s_a = opt.update(g2, state, params)
    u_b, s_b = opt.update(g2, restored, params)
    for k, v in as_dict(u_a).items():
        np.testing.assert_array_equal(v, as_dict(u_b)[k])
    assert learning_rate(s_a) == learning_rate(s_b) == 0.01


def test_masks_by_path():
    m = path_mask("*.b")
    assert [m(p) for p in ["0.b", "0.w", "2.0.beta", "3.1.b"]] == [True, False, False, True]
    e = exclude_paths(["*.b", "2.*"])
    assert [e(p) for p in ["0.b", "0.w", "2.0.beta", "3.1.w"]] == [False, True, False, True]
    assert repr(e) == "exclude_paths('*.b', '2.*')"


def test_masked_restricts_the_inner_transformation():
    params = make_params()
    g = grads_like(params, np.random.default_rng(0))
    opt = masked(scale(10.0), path_mask("0.*"))
    state = opt.init(params)
    for p in (params, None):  # the mask sees the params, or the grads when params are absent
        updates, _ = opt.update(g, state, p)
        got, raw = as_dict(updates), as_dict(g)
        for k in TRAINABLE:
            factor = 10.0 if k.startswith("0.") else 1.0
            np.testing.assert_allclose(got[k], factor * raw[k], rtol=1e-15)


def test_masked_state_holds_only_selected_leaves():
    params = make_params()
    opt = masked(scale_by_adam(), lambda path, leaf: leaf.ndim > 1)  # matrices only
    state = opt.init(params)
    assert [x.shape for x in tree_leaves(state.inner.mu)] == [(3, 4)]


def test_every_state_leaf_is_read_only_and_no_state_for_state_fields():
    params = make_params()
    for opt in [sgd(0.1, momentum=0.9, weight_decay=0.1), adam(0.1), adamw(0.1), masked(trace(0.5), "*.w")]:
        state = opt.init(params)
        _, state = opt.update(grads_like(params, np.random.default_rng(0)), state, params)
        for x in tree_leaves(state):
            assert isinstance(x, np.ndarray) and not x.flags.writeable
        paths = tree_paths(state)
        assert any(p.endswith(".0.w") for p in paths), opt
        assert not any(p.endswith((".mean", ".var")) for p in paths), opt

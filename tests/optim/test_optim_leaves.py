"""Updates on flat lists of leaves: the shared moment arithmetic, and chain's take-apart-once.

The numbers themselves are pinned by test_optim_fingerprint.py; these tests check the
pieces: the moment recurrence against its formula for each dtype, the gradients of a
chain flattened once, tree-only parts still served, and trees passed through untouched
when no part changes them.
"""
from __future__ import annotations

import numpy as np
import pytest

import functional_cnn.optim.base as base_module
import functional_cnn.optim.leaves as leaves_module
from functional_cnn.optim import (
    EmptyState,
    GradientTransformation,
    adam,
    chain,
    clip_by_global_norm,
    masked,
    scale,
    scale_by_adam,
    sgd,
)
from functional_cnn.optim.moments import bias_corrected, bias_correction, root_scaled, update_moments, widen
from functional_cnn.tree import tree_leaves, tree_map
from optim_testlib import as_dict, grads_like, make_params


@pytest.mark.parametrize("g_dtype, m_dtype", [(np.float16, np.float32), (np.float32, np.float32),
                                              (np.float64, np.float32), (np.float64, np.float64)])
@pytest.mark.parametrize("decay, order, weight", [(0.9, 1, None), (0.999, 2, None), (0.5, 1, 1.0), (1.0, 2, 1.0),
                                                  (0.0, 2, None)])
def test_update_moments_is_the_recurrence_in_the_moments_dtype(g_dtype, m_dtype, decay, order, weight):
    rng = np.random.default_rng(0)
    g = (rng.standard_normal(7) * 300).astype(g_dtype)  # float16 g*g would overflow above 256
    m = rng.uniform(0, 2, 7).astype(m_dtype)
    (new,) = update_moments([g], [m], decay, order, weight)
    wide = np.promote_types(g_dtype, m_dtype)
    gw = g.astype(wide)
    w = 1.0 - decay if weight is None else weight
    want = (decay * m.astype(wide) + w * gw**order).astype(m_dtype)
    assert new.dtype == m_dtype and np.all(np.isfinite(new))
    np.testing.assert_allclose(new, want, rtol=4 * np.finfo(m_dtype).eps)


def test_bias_correction_and_root_scaling():
    assert bias_correction(0.9, 1) == pytest.approx(0.1) and bias_correction(0.9, 2) == pytest.approx(0.19)
    m = np.array([0.1, -0.2])
    np.testing.assert_allclose(bias_corrected([m], 0.9, 1)[0], m / 0.1, rtol=1e-15)
    g16 = np.array([1.0, -2.0], np.float16)
    v = np.array([4.0, 16.0], np.float32)
    (u,) = root_scaled([widen(g16, v)], [v], eps=1e-8, like=[g16])
    assert u.dtype == np.float16
    np.testing.assert_allclose(u, [0.5, -0.5], rtol=1e-3)
    (u,) = root_scaled([np.array([1.0])], [np.array([0.0])], eps=1.0, eps_root=3.0)
    np.testing.assert_allclose(u, [1.0 / (np.sqrt(3.0) + 1.0)], rtol=1e-15)


def _count_flattens(monkeypatch, watched):
    """Patch the optimizers' tree_flatten to count the calls made on ``watched``."""
    seen = []
    for module in (base_module, leaves_module):
        real = module.tree_flatten

        def counting(tree, real=real):
            if tree is watched:
                seen.append(tree)
            return real(tree)

        monkeypatch.setattr(module, "tree_flatten", counting)
    return seen


@pytest.mark.parametrize("make", [lambda: sgd(0.1, momentum=0.9, weight_decay=1e-3), lambda: adam(1e-3),
                                  lambda: chain(clip_by_global_norm(1.0), chain(scale(2.0), scale_by_adam()))])
def test_a_chain_flattens_the_gradients_once(monkeypatch, make):
    params = make_params()
    grads = grads_like(params, np.random.default_rng(0))
    opt = make()
    state = opt.init(params)
    want, _ = opt.update(grads, state, params)
    seen = _count_flattens(monkeypatch, grads)
    updates, _ = opt.update(grads, state, params)
    assert len(seen) == 1
    for path, u in as_dict(updates).items():
        np.testing.assert_array_equal(u, as_dict(want)[path], err_msg=path)


def test_tree_only_parts_get_trees_and_the_chain_goes_back_to_leaves():
    params = make_params()
    grads = grads_like(params, np.random.default_rng(0))
    seen = []

    def update(g, state, p=None):
        seen.append(type(g))
        return tree_map(lambda x: x * 2.0, g), state

    doubling = GradientTransformation(lambda p: EmptyState(), update, "doubling")
    assert doubling.update_leaves is None
    opt = chain(scale(3.0), doubling, scale(0.5))
    assert opt.update_leaves is None  # a chain is leaf-level only when all its parts are
    updates, _ = opt.update(grads, opt.init(params), params)
    assert seen == [type(grads)]
    for path, u in as_dict(updates).items():
        np.testing.assert_allclose(u, 3.0 * as_dict(grads)[path], rtol=1e-15)
    inner = masked(scale(2.0), "*.w")
    updates, _ = chain(inner, scale(1.0)).update(grads, chain(inner, scale(1.0)).init(params), params)
    assert as_dict(updates)["0.b"] is not None


def test_a_tree_only_part_that_breaks_the_leaves_is_reported_by_the_next_part():
    params = make_params()
    grads = grads_like(params, np.random.default_rng(0))
    to_int = GradientTransformation(lambda p: EmptyState(),
                                    lambda g, s, p=None: (tree_map(lambda x: x.astype(int), g), s), "to_int")
    opt = chain(to_int, scale(2.0), name="mine")
    with pytest.raises(TypeError, match=r"^mine.update -> scale.update: grads leaf '0.w' must be a floating numpy"):
        opt.update(grads, opt.init(params), params)


def test_parts_that_change_nothing_return_the_gradients_themselves():
    params = make_params()
    grads = grads_like(params, np.random.default_rng(0))
    for opt in (chain(), chain(clip_by_global_norm(1e30)), clip_by_global_norm(1e30)):
        updates, _ = opt.update(grads, opt.init(params), params)
        assert updates is grads
    assert all(not x.flags.writeable for x in tree_leaves(sgd(0.1).update(grads, sgd(0.1).init(params))[0]))

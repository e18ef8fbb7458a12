"""update_and_apply (the training step's optimizer path) equals update + apply_updates bit for bit, and the
learning-rate reader make_step uses reads what learning_rate reads."""
import numpy as np
import pytest

from functional_cnn.optim import GradientTransformation, apply_updates, learning_rate, scale
from functional_cnn.optim.base import EmptyState, update_and_apply
from functional_cnn.optim.transforms import learning_rate_reader
from functional_cnn.train import fingerprint
from functional_cnn.tree import trainable, tree_leaves, tree_map_with_path
from test_optim_fingerprint import NETS, OPTIMIZERS


def _grads(params, rng):
    return tree_map_with_path(lambda path, p: (rng.standard_normal(p.shape) * 0.5).astype(p.dtype),
                              trainable(params))


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_equals_update_then_apply_updates(net, name):
    opt = OPTIMIZERS[name]()
    p_tree = p_flat = NETS[net]()
    s_tree = s_flat = opt.init(p_tree)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(3):
        updates, s_tree = opt.update(_grads(p_tree, rng_a), s_tree, p_tree)
        p_tree = apply_updates(p_tree, updates)
        p_flat, s_flat, lazy = update_and_apply(opt, _grads(p_flat, rng_b), s_flat, p_flat)
        assert fingerprint(lazy()) == fingerprint(updates)
    assert fingerprint((p_flat, s_flat)) == fingerprint((p_tree, s_tree))
    assert all(not leaf.flags.writeable for leaf in tree_leaves(p_flat))


def test_the_aliases_take_the_flat_path():
    for name in ("sgd", "momentum", "nesterov", "sgd_weight_decay", "adam", "adamw", "rmsprop", "adagrad"):
        assert OPTIMIZERS[name]().update_leaves is not None, name


def test_a_transform_without_flat_leaves_takes_the_tree_path():
    halve = GradientTransformation(lambda p: EmptyState(), lambda g, s, p=None: (
        tree_map_with_path(lambda path, x: x * 0.5, g), s), "halve")
    assert halve.update_leaves is None
    params = NETS["seed000"]()
    grads = _grads(params, np.random.default_rng(0))
    new, _, lazy = update_and_apply(halve, grads, EmptyState(), params)
    assert fingerprint(new) == fingerprint(apply_updates(params, halve.update(grads, EmptyState())[0]))
    assert fingerprint(lazy()) == fingerprint(halve.update(grads, EmptyState())[0])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_learning_rate_reader_reads_what_learning_rate_reads(name):
    opt = OPTIMIZERS[name]()
    params = NETS["seed000"]()
    state = opt.init(params)
    read = learning_rate_reader(state)
    rng = np.random.default_rng(1)
    for _ in range(3):
        assert read(state) == learning_rate(state)
        _, state = opt.update(_grads(params, rng), state, params)
    other = OPTIMIZERS["adagrad" if name != "adagrad" else "sgd"]().init(params)  # another shape: full search
    assert read(other) == learning_rate(other)


def test_learning_rate_reader_refuses_a_state_without_a_rate():
    with pytest.raises(ValueError, match="exactly one ScaleByLearningRateState"):
        learning_rate_reader(scale(2.0).init(NETS["seed000"]()))

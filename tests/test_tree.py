"""Tree utilities over attrs records, tuples, lists, dicts and None."""
from collections import namedtuple

import attrs
import numpy as np
import pytest

from functional_cnn import param_field, state_field
from functional_cnn.tree import (
    assert_same_structure,
    state_paths,
    trainable,
    tree_cast,
    tree_describe,
    tree_flatten,
    tree_leaves,
    tree_map,
    tree_map_with_path,
    tree_paths,
    tree_structure,
    tree_unflatten,
)


@attrs.frozen(eq=False)
class P:
    w: np.ndarray = param_field()
    b: np.ndarray = param_field(default=None)


@attrs.frozen(eq=False)
class S:
    gamma: np.ndarray = param_field()
    mean: np.ndarray = state_field()


Pair = namedtuple("Pair", "left right")


def sample():
    return (P(np.ones((2, 3)), np.zeros(3)), None, [S(np.ones(2), np.zeros(2))], {"z": 1.0, "a": Pair(2.0, 3.0)})


def test_paths_are_dotted_and_ordered():
    assert tree_paths(sample()) == ["0.w", "0.b", "2.0.gamma", "2.0.mean", "3.a.0", "3.a.1", "3.z"]


def test_flatten_unflatten_round_trip_keeps_types():
    tree = sample()
    leaves, treedef = tree_flatten(tree)
    back = tree_unflatten(treedef, leaves)
    assert type(back[0]) is P and back[1] is None and isinstance(back[2], list)
    assert type(back[3]["a"]) is Pair and back[3]["z"] == 1.0
    assert tree_structure(back) == treedef
    with pytest.raises(ValueError, match="got 2 leaves"):
        tree_unflatten(treedef, leaves[:2])


def test_map_over_several_trees_and_none_is_an_empty_subtree():
    out = tree_map(lambda a, b: a + b, sample(), sample())
    np.testing.assert_array_equal(out[0].w, 2 * np.ones((2, 3)))
    assert out[1] is None and out[3]["a"].right == 6.0
    # None in the first tree wins: the other tree's subtree there is ignored.
    assert tree_map(lambda a, b: a * b, (None, 2.0), (np.ones(3), 5.0)) == (None, 10.0)


def test_map_with_path_passes_paths():
    seen = []
    tree_map_with_path(lambda p, x: seen.append(p), sample())
    assert seen == tree_paths(sample())


def test_structure_mismatch_reports_first_difference_by_path_and_both_trees():
    a = (P(np.ones(2), np.ones(2)), P(np.ones(2), None))
    b = (P(np.ones(2), np.ones(2)), S(np.ones(2), np.ones(2)))
    with pytest.raises(TypeError) as info:
        assert_same_structure(a, b, where="sgd.update", names=("params", "grads"))
    msg = str(info.value)
    assert msg.startswith("sgd.update: params and grads have different structures")
    assert "at '1': P vs S" in msg and "params:\n  0.w: array(2,) float64" in msg and "1.gamma" in msg
    with pytest.raises(TypeError, match=r"at '0.b': leaf vs None"):
        assert_same_structure((P(np.ones(2), np.ones(2)),), (P(np.ones(2), None),))
    with pytest.raises(TypeError, match=r"keys \['a'\] vs \['b'\]"):
        assert_same_structure({"a": 1}, {"b": 1})
    assert_same_structure(a, tree_map(lambda x: x, a))


def test_tree_map_structure_error_is_a_type_error():
    with pytest.raises(TypeError, match="tree_map: tree and rest\\[0\\] have different structures"):
        tree_map(lambda a, b: a, (1, 2), (1, 2, 3))


def test_trainable_drops_state_fields_only():
    t = trainable(sample())
    assert t[2][0].mean is None and t[2][0].gamma is not None
    assert state_paths(sample()) == ["2.0.mean"]


def test_cast_changes_only_floating_arrays_and_keeps_read_only():
    tree = (P(np.ones(2, np.float32)), np.arange(3))
    out = tree_cast(tree, np.float64)
    assert out[0].w.dtype == np.float64 and not out[0].w.flags.writeable
    assert out[1].dtype == np.arange(3).dtype


def test_describe_lists_leaves():
    text = tree_describe(sample())
    assert "0.w: array(2, 3) float64" in text and "1: None" in text


def test_leaves_of_none_and_scalars():
    assert tree_leaves(None) == [] and tree_leaves(3) == [3] and tree_paths(3) == [""]

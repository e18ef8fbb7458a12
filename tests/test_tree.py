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


# ----------------------------------------------------------------------------- TreeDef: computed once, compared in O(1)
def test_equal_structures_are_one_interned_treedef():
    a, b = sample(), tree_map(lambda x: x, sample())
    assert tree_structure(a) is tree_structure(b)
    assert tree_structure({"z": 1, "a": 2}) is tree_structure({"a": 0, "z": 0})  # dict keys sorted
    assert tree_structure((1, 2)) is not tree_structure([1, 2])
    assert tree_structure({1: 0}) != tree_structure({"1": 0})  # same path, other key: another structure
    assert tree_structure(Pair(1, 2)) is not tree_structure((1, 2))


def test_treedef_is_immutable_and_pickles_to_the_interned_object():
    import pickle

    treedef = tree_structure(sample())
    with pytest.raises(AttributeError, match="TreeDef is immutable"):
        treedef.num_leaves = 3
    assert pickle.loads(pickle.dumps(treedef)) is treedef
    assert treedef.paths == ("0.w", "0.b", "2.0.gamma", "2.0.mean", "3.a.0", "3.a.1", "3.z")
    assert repr(tree_structure((P(np.ones(1)), None))) == "tuple(P(w=*, b=None), None)"


def test_equality_falls_back_to_comparing_nodes_when_the_intern_table_was_emptied(monkeypatch):
    import functional_cnn._treedef as treedef_module

    before = tree_structure(sample())
    monkeypatch.setattr(treedef_module, "_TABLE", {})
    after = tree_structure(sample())
    assert after is not before and after == before and hash(after) == hash(before)
    assert after != tree_structure((1, 2)) and before != tree_structure([1])
    out = tree_map(lambda x, y: y, sample(), tree_unflatten(before, tree_flatten(sample())[0]))
    assert tree_structure(out) is after
    assert_same_structure(tree_unflatten(before, tree_flatten(sample())[0]), sample())


def test_classes_are_taken_apart_without_asking_attrs_again(monkeypatch):
    import attrs

    tree = sample()
    leaves, treedef = tree_flatten(tree)

    def boom(cls):
        raise AssertionError(f"attrs.has({cls.__name__}) called again")

    monkeypatch.setattr(attrs, "has", boom)
    monkeypatch.setattr(attrs, "fields", boom)
    again, same = tree_flatten(tree_map(lambda x: x, tree))
    assert same is treedef and all(x is y for x, y in zip(again, leaves))
    assert tree_structure(tree_unflatten(treedef, leaves)) is treedef


def test_structure_difference_and_alignment_are_cached_per_pair():
    from functional_cnn.tree import align_leaves, structure_difference

    grads = tree_structure((P(np.ones(2), None), None, [1.0]))
    params = tree_structure((P(np.ones(2), np.ones(2)), S(np.ones(2), np.ones(2)), [1.0]))
    assert structure_difference(grads, params) == "at '0.b': None vs leaf"
    assert structure_difference(grads, params, none_prefix=True) is None
    assert align_leaves(grads, params) == (0, 4)
    assert align_leaves(grads, params) is align_leaves(grads, params)
    assert structure_difference(tree_structure((1, 2)), tree_structure([1, 2])) is None  # plain sequences match
    with pytest.raises(ValueError, match="align_leaves: .* does not match"):
        align_leaves(params, grads)


def test_with_children_builds_an_interned_node():
    treedef = tree_structure((P(np.ones(1), np.ones(1)), 1.0))
    none = tree_structure(None)
    assert treedef.with_children([none, treedef.children[1]]) is tree_structure((None, 2.0))
    with pytest.raises(ValueError, match="needs 2 TreeDefs"):
        treedef.with_children([none])


def test_colliding_paths_are_refused_once_per_structure_and_every_time():
    for _ in range(2):
        with pytest.raises(TypeError, match="two leaves have the path 'a.b'"):
            tree_paths({"a.b": 1, "a": {"b": 2}})
    assert tree_leaves({"a.b": 1, "a": {"b": 2}}) == [2, 1]  # leaves alone do not need paths


@pytest.mark.parametrize("module, allowed", [("tree", ["_dtypes", "_treedef"]), ("_treedef", [])])
def test_tree_modules_import_nothing_from_the_package_but_dtypes(module, allowed):
    import ast
    import importlib
    import pathlib

    mod = importlib.import_module(f"functional_cnn.{module}")
    source = ast.parse(pathlib.Path(mod.__file__).read_text())
    top_level = [n for n in source.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    relative = [n.module for n in top_level if isinstance(n, ast.ImportFrom) and n.level]
    assert relative == allowed
    assert not any(isinstance(n, ast.Import) and "functional_cnn" in a.name for n in top_level for a in n.names)


def test_old_names_for_the_params_concept_still_work():
    import functional_cnn
    import functional_cnn.layer as layer_module
    import functional_cnn.params as params_module
    import functional_cnn.tree as tree_module

    assert tree_module.trainable is params_module.trainable and tree_module.state_paths is params_module.state_paths
    assert functional_cnn.trainable is params_module.trainable
    for name in ("readonly", "param_field", "state_field", "is_state_field"):
        assert getattr(layer_module, name) is getattr(params_module, name) is getattr(functional_cnn, name)
    for name in tree_module.__all__:
        assert getattr(tree_module, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        tree_module.nope  # noqa: B018 (the attribute access is the test)


# ----------------------------------------------------------------------------- trees unflatten just built
def _frozen(*shape):
    a = np.arange(float(np.prod(shape))).reshape(shape)
    a.flags.writeable = False
    return a


@pytest.fixture
def no_walk(monkeypatch):
    """Make walking a tree fail, so a test can tell a remembered flatten from a real one."""
    from functional_cnn import _treedef, tree

    def refuse(*args):
        raise AssertionError("the tree was walked")

    monkeypatch.setattr(tree, "_flatten", refuse)
    monkeypatch.setattr(tree, "_leaves", refuse)
    monkeypatch.setattr(_treedef, "_RECENT", ())
    return refuse


def test_a_tree_unflatten_just_built_flattens_without_a_walk(no_walk):
    from functional_cnn._treedef import _flatten as real_flatten

    leaves = [_frozen(2, 3), _frozen(3), _frozen(4)]
    d = real_flatten((P(leaves[0], leaves[1]), (P(leaves[2]),)), [])
    built = tree_unflatten(d, leaves)
    got, got_def = tree_flatten(built)
    assert got_def is d
    assert len(got) == 3 and all(a is b for a, b in zip(got, leaves))
    assert all(a is b for a, b in zip(tree_leaves(built), leaves))
    assert tree_structure(built) is d
    got.append("mine")  # a caller's list is its own
    assert len(tree_flatten(built)[0]) == 3


def test_changing_the_list_given_to_unflatten_does_not_change_what_flatten_returns(no_walk):
    from functional_cnn._treedef import _flatten as real_flatten

    leaves = [_frozen(2), _frozen(3)]
    d = real_flatten((leaves[0], leaves[1]), [])
    built = tree_unflatten(d, leaves)
    leaves[0] = _frozen(9)
    got, _ = tree_flatten(built)
    assert got[0] is built[0] and got[0].shape == (2,)


@pytest.mark.parametrize("make", [
    lambda a, b: [a, b],  # a list can be appended to
    lambda a, b: {"a": a, "b": b},  # a dict can be assigned to
    lambda a, b: (a, [b]),  # a mutable node anywhere inside
])
def test_trees_with_mutable_nodes_are_walked_every_time(make):
    a, b = _frozen(2), _frozen(3)
    leaves, d = tree_flatten(make(a, b))
    built = tree_unflatten(d, leaves)
    inner = built if not isinstance(built, tuple) else built[1]
    if isinstance(inner, dict):
        inner["c"] = _frozen(5)
    else:
        inner.append(_frozen(5))
    got, got_def = tree_flatten(built)
    assert len(got) == 3 and got_def is not d


def test_a_record_whose_converter_copied_a_leaf_is_flattened_from_its_own_leaves():
    writeable = np.ones(3)  # param_field copies a writeable array into a read-only one
    _, d = tree_flatten(P(_frozen(3), _frozen(2)))
    built = tree_unflatten(d, [writeable, _frozen(2)])
    got, _ = tree_flatten(built)
    assert got[0] is built.w and got[0] is not writeable and not got[0].flags.writeable


def test_a_mutable_attrs_record_is_walked_every_time():
    @attrs.define
    class Box:
        v: np.ndarray

    _, d = tree_flatten(Box(_frozen(2)))
    built = tree_unflatten(d, [_frozen(2)])
    built.v = _frozen(7)
    assert tree_flatten(built)[0][0].shape == (7,)


@pytest.mark.parametrize("value", [None, (1.0, 2.0), [3.0], {"k": 4.0}])
def test_a_container_or_none_given_as_a_leaf_is_flattened_as_what_it_is(value):
    b = _frozen(3)
    d = tree_structure((_frozen(2), b))
    built = tree_unflatten(d, [value, b])
    leaves, got = tree_flatten(built)
    assert (leaves, got) == tree_flatten((value, b))  # a real walk: the container's leaves, not the container
    assert got is tree_structure((value, b)) and got is not d


def test_a_named_tuple_whose_new_converts_its_values_is_flattened_from_its_own_fields():
    class Converting(namedtuple("Converting", "w")):
        def __new__(cls, w):
            return super().__new__(cls, np.asarray(w, dtype=np.float32))

    wide = np.arange(3.0)  # float64; the tuple keeps a float32 copy
    _, d = tree_flatten(Converting(wide))
    built = tree_unflatten(d, [wide])
    got, _ = tree_flatten(built)
    assert got[0] is built.w and got[0].dtype == np.float32


def test_threads_flattening_and_unflattening_at_once_get_each_trees_own_leaves():
    import sys
    import threading

    errors = []

    def work(seed):
        try:
            a = _frozen(seed + 1)
            d = tree_structure((a, (a,)))
            for _ in range(3000):
                built = tree_unflatten(d, [a, a])
                leaves, got = tree_flatten(built)
                if got is not d or leaves[0] is not built[0] or leaves[1] is not built[1][0]:
                    errors.append("wrong leaves")
        except Exception as err:  # noqa: BLE001 - any error in a thread is the failure under test
            errors.append(repr(err))

    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    finally:
        sys.setswitchinterval(before)
    assert errors == []

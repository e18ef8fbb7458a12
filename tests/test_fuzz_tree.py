"""Fuzzing the tree utilities over random nested records, tuples, lists, dicts and None.

Round trips keep structure and leaves; paths are unique and match the leaves; a tree
spoiled at one node is reported at exactly that node's path, with both trees shown; bad
arguments get errors naming the function. Also checks that docs/errors.md shows the
``ERROR_CASES`` of every ``test_fuzz_*.py`` module.
"""
from collections import namedtuple

import attrs
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import errors_doc
from errors_doc import Case, assert_named
from functional_cnn import param_field, state_field
from functional_cnn.tree import (
    TreeDef,
    assert_same_structure,
    state_paths,
    trainable,
    tree_cast,
    tree_describe,
    tree_flatten,
    tree_leaves,
    tree_leaves_with_paths,
    tree_map,
    tree_map_with_path,
    tree_nbytes,
    tree_paths,
    tree_size,
    tree_structure,
    tree_unflatten,
)


@attrs.frozen(eq=False)
class Rec:
    w: np.ndarray = param_field()
    b: np.ndarray = param_field(default=None)


@attrs.frozen(eq=False)
class Stat:
    gamma: np.ndarray = param_field()
    mean: np.ndarray = state_field(default=None)


Pair = namedtuple("Pair", "left right")
DTYPES = (np.float16, np.float32, np.float64, np.int32, np.uint8, np.bool_)


@st.composite
def arrays(draw):
    shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
    dtype = draw(st.sampled_from(DTYPES))
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal(shape).astype(dtype)


LEAVES = st.one_of(arrays(), st.integers(-5, 5), st.floats(allow_nan=False), st.sampled_from(["s", b"b", 1 + 2j]))
KEYS = st.text(alphabet="abcxyz_0123", min_size=1, max_size=3)


def _grow(children):
    return st.one_of(
        st.lists(children, max_size=3).map(tuple),
        st.lists(children, max_size=3),
        st.dictionaries(KEYS, children, max_size=3),
        st.builds(Pair, children, children),
        st.builds(Rec, arrays(), st.one_of(st.none(), arrays())),
        st.builds(Stat, arrays(), st.one_of(st.none(), arrays())),
    )


TREES = st.recursive(st.one_of(st.none(), LEAVES), _grow, max_leaves=12)


def _same_leaves(a, b):
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


@settings()
@given(tree=TREES)
def test_round_trips_keep_structure_and_leaves(tree):
    leaves, treedef = tree_flatten(tree)
    back = tree_unflatten(treedef, leaves)
    assert tree_structure(back) == treedef and hash(treedef) == hash(tree_structure(back))
    assert _same_leaves(tree_leaves(back), leaves)
    mapped = tree_map(lambda x: x, tree)
    assert tree_structure(mapped) == treedef and _same_leaves(tree_leaves(mapped), leaves)
    with_path = tree_map_with_path(lambda p, x: p, tree)
    assert tree_leaves(with_path) == tree_paths(tree)
    assert treedef.num_leaves == len(leaves)


@settings()
@given(tree=TREES)
def test_paths_are_unique_and_describe_every_leaf(tree):
    pairs = tree_leaves_with_paths(tree)
    paths = [p for p, _ in pairs]
    assert len(set(paths)) == len(paths) == len(tree_leaves(tree))
    assert all(x is y for (_, x), y in zip(pairs, tree_leaves(tree), strict=True))
    text = tree_describe(tree, limit=100)
    assert all(f"  {p or '<root>'}: " in text for p in paths)
    assert tree_size(tree) == sum(int(np.size(x)) for x in tree_leaves(tree))
    assert tree_nbytes(tree) == sum(x.nbytes for x in tree_leaves(tree) if isinstance(x, np.ndarray))


@settings()
@given(tree=TREES)
def test_trainable_drops_exactly_the_state_fields(tree):
    t = trainable(tree)
    assert tree_structure(t) == tree_structure(trainable(t))
    assert set(tree_paths(t)) | set(state_paths(tree)) == set(tree_paths(tree))
    assert not set(tree_paths(t)) & set(state_paths(tree))
    assert all(p.rsplit(".", 1)[-1] == "mean" for p in state_paths(tree))


@settings()
@given(tree=TREES, dtype=st.sampled_from([np.float16, np.float32, np.float64]))
def test_tree_cast_touches_only_float_arrays(tree, dtype):
    out = tree_cast(tree, dtype)
    assert tree_structure(out) == tree_structure(tree)
    for a, b in zip(tree_leaves(out), tree_leaves(tree), strict=True):
        if isinstance(b, np.ndarray) and np.issubdtype(b.dtype, np.floating):
            assert a.dtype == dtype and a.shape == b.shape and a.flags.writeable == b.flags.writeable
        else:
            assert a is b


# ----------------------------------------------------------------------------- spoiled copies
def _containers(tree, prefix=""):
    """``(path, node)`` of every inner node (attrs records, tuples, lists, dicts), pre-order."""
    if tree is None or not (isinstance(tree, (tuple, list, dict)) or attrs.has(type(tree))):
        return []
    out = [(prefix, tree)]
    if isinstance(tree, dict):
        items = sorted(tree.items())
    elif attrs.has(type(tree)):
        items = [(f.name, getattr(tree, f.name)) for f in attrs.fields(type(tree))]
    else:
        items = list(enumerate(tree))
    for k, v in items:
        out += _containers(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def _replace(tree, path, new):
    """``tree`` with the node at ``path`` replaced by ``new``."""
    if not path:
        return new
    head, _, rest = path.partition(".")
    if isinstance(tree, dict):
        key = next(k for k in tree if str(k) == head)
        return {**tree, key: _replace(tree[key], rest, new)}
    if attrs.has(type(tree)):
        return attrs.evolve(tree, **{head: _replace(getattr(tree, head), rest, new)})
    items = list(tree)
    items[int(head)] = _replace(items[int(head)], rest, new)
    return type(tree)(*items) if isinstance(tree, Pair) else type(tree)(items)


def _spoil(node, how):
    if how == "extra child":
        if isinstance(node, dict):
            return {**node, "zz_extra": 1}
        if isinstance(node, (tuple, list)) and not isinstance(node, Pair):
            return type(node)(list(node) + [1])
    if how == "missing child":
        if isinstance(node, dict) and node:
            return dict(list(sorted(node.items()))[1:])
        if isinstance(node, (tuple, list)) and not isinstance(node, Pair) and node:
            return type(node)(list(node)[:-1])
    if how == "other record":
        return Stat(np.ones(1)) if not isinstance(node, Stat) else Rec(np.ones(1))
    return np.ones(2)  # "leaf for a subtree"


@settings()
@given(tree=TREES.filter(lambda t: bool(_containers(t))), data=st.data(),
       how=st.sampled_from(["extra child", "missing child", "other record", "leaf for a subtree"]))
def test_spoiled_copy_is_reported_at_its_path_with_both_trees(tree, data, how):
    path, node = data.draw(st.sampled_from(_containers(tree)))
    spoiled = _replace(tree, path, _spoil(node, how))
    assume(tree_structure(spoiled) != tree_structure(tree))  # e.g. no child to drop
    with pytest.raises(TypeError) as info:
        assert_same_structure(tree, spoiled, where="fuzz", names=("mine", "theirs"))
    msg = str(info.value)
    assert_named(info.value, "fuzz")
    assert f"first difference at '{path or '<root>'}'" in msg, (path, msg)
    assert "\nmine:\n" in msg and "\ntheirs:\n" in msg
    with pytest.raises(TypeError) as info:
        tree_map(lambda a, b: a, spoiled, tree) if how != "missing child" else tree_map(lambda a, b: a, tree, spoiled)
    assert_named(info.value, "tree_map")


# ----------------------------------------------------------------------------- bad arguments
@settings()
@given(tree=TREES, leaves=st.one_of(st.integers(), st.none(), st.text(max_size=2), st.lists(st.integers(), max_size=4)))
def test_unflatten_with_wrong_leaves(tree, leaves):
    treedef = tree_structure(tree)
    assume(not (isinstance(leaves, list) and len(leaves) == treedef.num_leaves))
    with pytest.raises((TypeError, ValueError)) as info:
        tree_unflatten(treedef, leaves)
    assert_named(info.value, "tree_unflatten", "leaves")


T = (Rec(np.ones((2, 2), np.float32)), {"a": np.zeros(3)})

ERROR_CASES = [
    Case("trees", "tree_unflatten('x', [1])", lambda: tree_unflatten("x", [1]), TypeError,
         "tree_unflatten: treedef must be a TreeDef"),
    Case("trees", "tree_unflatten(treedef, 5)", lambda: tree_unflatten(tree_structure(T), 5), TypeError,
         "tree_unflatten: leaves must be a sequence of leaves"),
    Case("trees", "tree_unflatten(treedef of 3 leaves, [1])", lambda: tree_unflatten(tree_structure(T), [1]),
         ValueError, "tree_unflatten: got 1 leaves, the structure"),
    Case("trees", "tree_map('f', tree)", lambda: tree_map("f", T), TypeError, "tree_map: f must be callable"),
    Case("trees", "tree_map(f, tree, tree with a key renamed)",
         lambda: tree_map(lambda a, b: a, T, (T[0], {"b": np.zeros(3)})), TypeError,
         "tree_map: tree and rest[0] have different structures; first difference at '1': keys ['a'] vs ['b']"),
    Case("trees", "tree_cast(tree, np.int32)", lambda: tree_cast(T, np.int32), TypeError,
         "tree_cast: dtype must be float16, float32 or float64, got int32"),
    Case("trees", "tree_cast(tree, 'foo')", lambda: tree_cast(T, "foo"), TypeError,
         "tree_cast: dtype must be a floating dtype, got 'foo'"),
    Case("trees", "tree_describe(tree, limit='a')", lambda: tree_describe(T, limit="a"), TypeError,
         "tree_describe: limit must be an int >= 1"),
    Case("trees", "tree_paths({'a.b': 1, 'a': {'b': 2}})", lambda: tree_paths({"a.b": 1, "a": {"b": 2}}), TypeError,
         "tree: two leaves have the path 'a.b'"),
    Case("trees", "tree_leaves({1: 'x', '1': 'y'})", lambda: tree_leaves({1: "x", "1": "y"}), TypeError,
         "tree: dict keys must be sortable"),
    Case("trees", "assert_same_structure(record, other record)",
         lambda: assert_same_structure(Rec(np.ones(1)), Stat(np.ones(1))), TypeError,
         "tree: first and second have different structures; first difference at '<root>': Rec vs Stat"),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.what)
def test_documented_bad_inputs(case):
    case.check()


def test_user_function_errors_propagate_unchanged():
    def boom(x):
        raise ZeroDivisionError("mine")

    with pytest.raises(ZeroDivisionError, match="^mine$"):
        tree_map(boom, (1,))


def test_treedef_is_a_value():
    """Two trees of one structure (other leaves, separate objects) have equal, equally hashed TreeDefs."""
    same = (Rec(np.zeros((5,), np.float64)), {"a": np.ones(1)})
    assert isinstance(tree_structure(T), TreeDef)
    assert tree_structure(T) == tree_structure(same) and hash(tree_structure(T)) == hash(tree_structure(same))
    assert tree_structure(T) != tree_structure((Rec(np.ones(2)), {"b": np.zeros(3)}))
    assert tree_structure(T) != tree_structure((Rec(np.ones(2)),))


# ----------------------------------------------------------------------------- docs/errors.md
def test_docs_errors_table_is_in_sync():
    """Every generated table in docs/errors.md equals the ERROR_CASES rows; refresh with
    ``python tests/errors_doc.py``."""
    with open(errors_doc.DOC, encoding="utf-8") as f:
        doc = f.read()
    assert sorted(errors_doc.areas_in(doc)) == sorted(errors_doc.all_cases()), "an area has no table"
    assert errors_doc.synced(doc) == doc, "docs/errors.md is stale: run python tests/errors_doc.py"


# ----------------------------------------------------------------------------- the cached check agrees with a walk
def _kind(x):
    if x is None:
        return "None"
    return "leaf" if not (isinstance(x, (tuple, list, dict)) or attrs.has(type(x))) else type(x).__name__


def _items(node):
    if isinstance(node, dict):
        return [(str(k), node[k]) for k in sorted(node)]
    if attrs.has(type(node)) and not isinstance(node, tuple):
        return [(f.name, getattr(node, f.name)) for f in attrs.fields(type(node))]
    return [(str(i), c) for i, c in enumerate(node)]


def _walk_difference(a, b, prefix, none_prefix):
    """Reference: the first difference found by walking both trees node by node."""
    where = prefix or "<root>"
    if a is None:
        return None if none_prefix or b is None else f"at '{where}': None vs {_kind(b)}"
    if _kind(a) == "leaf":
        return None if _kind(b) == "leaf" else f"at '{where}': leaf vs {_kind(b)}"
    plain = (tuple, list)
    both_plain_seqs = (isinstance(a, plain) and isinstance(b, plain) and not isinstance(a, Pair)
                       and not isinstance(b, Pair))
    if _kind(b) in ("leaf", "None") or (type(a) is not type(b) and not both_plain_seqs):
        return f"at '{where}': {_kind(a)} vs {_kind(b)}"
    ia, ib = _items(a), _items(b)
    if [k for k, _ in ia] != [k for k, _ in ib]:
        return f"at '{where}': keys {[k for k, _ in ia]} vs {[k for k, _ in ib]}"
    for (k, x), (_, y) in zip(ia, ib):
        found = _walk_difference(x, y, f"{prefix}.{k}" if prefix else k, none_prefix)
        if found:
            return found
    return None


@settings()
@given(a=TREES, b=TREES, none_prefix=st.booleans())
def test_cached_structure_check_agrees_with_a_walk_of_both_trees(a, b, none_prefix):
    want = _walk_difference(a, b, "", none_prefix)
    if want is None:
        assert_same_structure(a, b, none_prefix=none_prefix)
    else:
        with pytest.raises(TypeError) as info:
            assert_same_structure(a, b, none_prefix=none_prefix)
        assert f"first difference {want}\n" in str(info.value)


@settings()
@given(tree=TREES)
def test_equal_structures_share_one_treedef(tree):
    copy = tree_map(lambda x: x, tree)
    assert tree_structure(copy) is tree_structure(tree)
    leaves, treedef = tree_flatten(tree)
    assert tree_structure(tree_unflatten(treedef, leaves)) is treedef
    assert list(treedef.paths) == tree_paths(tree) == tree_leaves(tree_map_with_path(lambda p, x: p, tree))

"""Trees of arrays: attrs records, tuples, lists, dicts and ``None``.

A *tree* is a nested structure whose inner nodes are attrs instances, tuples
(named tuples included), lists and dicts, and whose leaves are everything else
(arrays, numbers). ``None`` is an empty subtree: it has no leaves. Every leaf has a
dotted path: tuple/list index, attrs field name or dict key, e.g. ``"0.w"``.

When several trees are mapped together the first one sets the structure. Where
the first tree holds ``None`` the result is ``None`` whatever the others hold
there: that is how non-trainable state (whose gradient is ``None``) passes
through optimizers untouched. Everywhere else the structures must agree, or a
``TypeError`` names the first path where they differ and shows both trees.

The structure is computed once. :func:`tree_flatten` returns the leaves and a
:class:`TreeDef`; tree definitions are interned, so two trees of the same structure
share one ``TreeDef`` object and comparing them is an identity test. Everything
derived from a structure (leaf paths, how it lines up with another structure) is
computed once per ``TreeDef`` and kept on it. How a class is taken apart (an attrs
record's field names, whether it is a named tuple) is looked up once per class.

>>> t = (dict(b=1, a=2), None, [3])
>>> tree_paths(t)
['0.a', '0.b', '2.0']
>>> tree_map(lambda x: x * 10, t)
({'a': 20, 'b': 10}, None, [30])
>>> tree_structure(t) is tree_structure(({'a': 0, 'b': 0}, None, [0]))
True
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from ._dtypes import float_dtype
from ._treedef import (
    _LEAF,
    _NONE,
    _PLAIN_SEQS,
    TreeDef,
    _build,
    _children,
    _flatten,
    _leaves,
    build_exact,
    is_leaf,
    recall,
    remember,
)

__all__ = [
    "TreeDef",
    "is_leaf",
    "tree_flatten",
    "tree_unflatten",
    "tree_leaves",
    "tree_paths",
    "tree_leaves_with_paths",
    "tree_map",
    "tree_map_with_path",
    "tree_structure",
    "tree_describe",
    "assert_same_structure",
    "structure_difference",
    "align_leaves",
    "trainable",  # noqa: F822  (served by __getattr__ from functional_cnn.params)
    "state_paths",  # noqa: F822
    "tree_cast",
    "tree_size",
    "tree_nbytes",
]

def tree_structure(tree: Any) -> TreeDef:
    """The :class:`TreeDef` of ``tree`` (interned: equal structures give the same object)."""
    known = recall(tree)
    return known[1] if known is not None else _flatten(tree, [])


def tree_flatten(tree: Any) -> Tuple[List[Any], TreeDef]:
    """``(leaves, treedef)``; :func:`tree_unflatten` is its inverse."""
    known = recall(tree)
    if known is not None:  # built by tree_unflatten a moment ago: no walk
        return known
    leaves: List[Any] = []
    return leaves, _flatten(tree, leaves)


def tree_unflatten(treedef: TreeDef, leaves: Sequence[Any]) -> Any:
    """Rebuild a tree of shape ``treedef`` from ``leaves`` in flatten order."""
    if not isinstance(treedef, TreeDef):
        raise TypeError(f"tree_unflatten: treedef must be a TreeDef (from tree_flatten or tree_structure), "
                        f"got {type(treedef).__name__}")
    if isinstance(leaves, (str, bytes)) or not hasattr(leaves, "__iter__"):
        raise TypeError(f"tree_unflatten: leaves must be a sequence of leaves, got {type(leaves).__name__}")
    if not isinstance(leaves, list):
        leaves = list(leaves)
    if len(leaves) != treedef.num_leaves:
        raise ValueError(
            f"tree_unflatten: got {len(leaves)} leaves, the structure {treedef!r} "
            f"expects {treedef.num_leaves}"
        )
    leaves = list(leaves)  # ours: the caller may change their list afterwards
    tree, exact = build_exact(treedef, leaves)
    if exact:
        remember(tree, leaves, treedef)
    return tree


def tree_leaves(tree: Any) -> List[Any]:
    """The leaves of ``tree`` in a fixed order."""
    known = recall(tree)
    if known is not None:
        return known[0]
    out: List[Any] = []
    _leaves(tree, out)
    return out


def _duplicate_path(d: TreeDef) -> Optional[str]:
    paths = d.paths
    if len(set(paths)) == len(paths):
        return None
    return next(p for i, p in enumerate(paths) if p in paths[:i])


def checked_paths(treedef: TreeDef) -> Tuple[str, ...]:
    """``treedef.paths``; ``TypeError`` if two leaves share a path (checked once per structure)."""
    dup = treedef.memo("duplicate path", _duplicate_path)
    if dup is not None:
        raise TypeError(f"tree: two leaves have the path {dup!r}: a dict key containing '.' collides with a "
                        f"nested path; rename the key")
    return treedef.paths


def tree_leaves_with_paths(tree: Any) -> List[Tuple[str, Any]]:
    """``[(path, leaf), ...]`` in a fixed order; ``TypeError`` if two leaves share a path
    (``{"a.b": x, "a": {"b": y}}``: a dict key containing ``"."`` collides with a nested path)."""
    leaves, d = tree_flatten(tree)
    return list(zip(checked_paths(d), leaves))


def tree_paths(tree: Any) -> List[str]:
    """The dotted path of every leaf, e.g. ``["0.w", "0.b", "4.w", "4.b"]``."""
    return list(checked_paths(tree_structure(tree)))


# ----------------------------------------------------------------------------- describing trees
def _leaf_text(x: Any) -> str:
    if x is None:
        return "None"
    if isinstance(x, np.ndarray):
        return f"array{x.shape} {x.dtype}"
    if is_leaf(x):
        return f"{type(x).__name__} {x!r}" if np.isscalar(x) else type(x).__name__
    return f"{type(x).__name__} with {len(_children(x)[0])} children"


def tree_describe(tree: Any, limit: int = 40) -> str:
    """One line per leaf: ``path: array(shape) dtype``; ``None`` subtrees shown too."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise TypeError(f"tree_describe: limit must be an int >= 1, got {limit!r}")
    lines: List[str] = []

    def rec(t: Any, prefix: str) -> None:
        if t is None or is_leaf(t):
            lines.append(f"  {prefix or '<root>'}: {_leaf_text(t)}")
            return
        keys, kids = _children(t)
        if not keys:
            lines.append(f"  {prefix or '<root>'}: empty {type(t).__name__}")
        for key, kid in zip(keys, kids):
            rec(kid, f"{prefix}.{key}" if prefix else key)

    rec(tree, "")
    if len(lines) > limit:
        lines = lines[:limit] + [f"  ... {len(lines) - limit} more"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- comparing structures
def _kind_name(d: TreeDef) -> str:
    if d._code == _NONE:
        return "None"
    if d._code == _LEAF:
        return "leaf"
    return d.node_type.__name__


def _difference(a: TreeDef, b: TreeDef, prefix: str, none_prefix: bool) -> Optional[str]:
    if a is b:
        return None
    where = prefix or "<root>"
    if a._code == _NONE:
        return None if none_prefix or b._code == _NONE else f"at '{where}': None vs {_kind_name(b)}"
    if a._code == _LEAF:
        return None if b._code == _LEAF else f"at '{where}': leaf vs {_kind_name(b)}"
    if b._code in (_LEAF, _NONE) or a.node_type is not b.node_type:
        if not (a._code in _PLAIN_SEQS and b._code in _PLAIN_SEQS):
            return f"at '{where}': {_kind_name(a)} vs {_kind_name(b)}"
    if a.keys != b.keys:
        return f"at '{where}': keys {list(a.keys)} vs {list(b.keys)}"
    for key, x, y in zip(a.keys, a.children, b.children):
        found = _difference(x, y, f"{prefix}.{key}" if prefix else key, none_prefix)
        if found:
            return found
    return None


def structure_difference(a: TreeDef, b: TreeDef, none_prefix: bool = False) -> Optional[str]:
    """Where ``b``'s structure first differs from ``a``'s (``"at '0.w': leaf vs None"``), or ``None``.

    Tuples and lists (not named tuples) match each other; with ``none_prefix=True`` a
    ``None`` in ``a`` matches anything in ``b``. Computed once per pair of structures.
    """
    if a is b:
        return None
    found = a.memo(("difference", id(b), none_prefix), lambda _: (b, _difference(a, b, "", none_prefix)))
    if found[0] is not b:  # another TreeDef got b's id after b was released: recompute
        return _difference(a, b, "", none_prefix)
    return found[1]


def _align_into(a: TreeDef, b: TreeDef, start: int, out: List[int]) -> None:
    if a._code == _LEAF:
        out.append(start)
        return
    for x, y in zip(a.children, b.children):
        _align_into(x, y, start, out)
        start += y.num_leaves


def align_leaves(a: TreeDef, b: TreeDef) -> Tuple[int, ...]:
    """For each leaf of ``a``, the index of ``b``'s leaf at the same place.

    ``b`` must match ``a`` with ``None`` in ``a`` matching anything
    (``structure_difference(a, b, none_prefix=True) is None``); ``b``'s leaves below a
    ``None`` of ``a`` are skipped. Computed once per pair of structures.
    """
    found = a.memo(("align", id(b)), lambda _: (b, _aligned(a, b)))
    return found[1] if found[0] is b else _aligned(a, b)


def _aligned(a: TreeDef, b: TreeDef) -> Tuple[int, ...]:
    if structure_difference(a, b, True) is not None:
        raise ValueError(f"align_leaves: {b!r} does not match {a!r}")
    out: List[int] = []
    _align_into(a, b, 0, out)
    return tuple(out)


def _structure_error(where: str, names: Tuple[str, str], diff: str, a: Any, b: Any) -> TypeError:
    return TypeError(
        f"{where}: {names[0]} and {names[1]} have different structures; first difference {diff}\n"
        f"{names[0]}:\n{tree_describe(a)}\n{names[1]}:\n{tree_describe(b)}"
    )


def assert_same_structure(
    a: Any,
    b: Any,
    *,
    where: str = "tree",
    names: Tuple[str, str] = ("first", "second"),
    none_prefix: bool = False,
) -> None:
    """Raise ``TypeError`` naming the first path where ``a`` and ``b`` differ.

    With ``none_prefix=True`` a ``None`` in ``a`` matches anything in ``b``.
    The message shows both trees, one leaf per line. The check compares the two
    :class:`TreeDef` s (an identity test when they agree); only the error message walks the trees.
    """
    da, db = tree_structure(a), tree_structure(b)
    if da is db:
        return
    diff = structure_difference(da, db, none_prefix)
    if diff is not None:
        raise _structure_error(where, names, diff, a, b)


# ----------------------------------------------------------------------------- mapping
def _check_callable(f: Any, where: str) -> None:
    if not callable(f):
        raise TypeError(f"{where}: f must be callable, got {type(f).__name__}")


def _map(where: str, f: Callable[..., Any], tree: Any, rest: Sequence[Any], with_path: bool) -> Any:
    leaves, d = tree_flatten(tree)
    columns = []
    for i, other in enumerate(rest):
        theirs, od = tree_flatten(other)
        if od is not d:
            diff = structure_difference(d, od, True)
            if diff is not None:
                raise _structure_error(where, ("tree", f"rest[{i}]"), diff, tree, other)
            theirs = [theirs[j] for j in align_leaves(d, od)]
        columns.append(theirs)
    if with_path:
        out = [f(*args) for args in zip(d.paths, leaves, *columns)]
    elif columns:
        out = [f(*args) for args in zip(leaves, *columns)]
    else:
        out = [f(x) for x in leaves]
    return _build(d, iter(out))


def tree_map(f: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Apply ``f`` leaf-wise over ``tree`` and the trees in ``rest``.

    ``rest`` trees must have ``tree``'s structure, except below a ``None`` of ``tree``.

    >>> tree_map(lambda a, b: a + b, (1, None), (10, 20))
    (11, None)
    """
    _check_callable(f, "tree_map")
    return _map("tree_map", f, tree, rest, False)


def tree_map_with_path(f: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Like :func:`tree_map`, but ``f(path, leaf, *others)``."""
    _check_callable(f, "tree_map_with_path")
    return _map("tree_map_with_path", f, tree, rest, True)


# ----------------------------------------------------------------------------- leaf arithmetic
def tree_cast(tree: Any, dtype: Any) -> Any:
    """Every floating-point array leaf cast to ``dtype`` (float16/32/64); other leaves unchanged."""
    dtype = float_dtype(dtype, "tree_cast")

    def cast(x: Any) -> Any:
        if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating):
            y = x.astype(dtype)
            y.flags.writeable = x.flags.writeable
            return y
        return x

    return tree_map(cast, tree)


def tree_size(tree: Any) -> int:
    """Total number of array elements over the leaves."""
    return int(sum(np.size(x) for x in tree_leaves(tree)))


def tree_nbytes(tree: Any) -> int:
    """Total bytes of the array leaves."""
    return int(sum(x.nbytes for x in tree_leaves(tree) if isinstance(x, np.ndarray)))


def __getattr__(name: str) -> Any:
    """``trainable`` and ``state_paths`` moved to :mod:`functional_cnn.params`; old imports keep working."""
    if name in ("trainable", "state_paths"):
        from . import params  # lazy: params builds on this module

        return getattr(params, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

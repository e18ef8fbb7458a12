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

>>> t = (dict(b=1, a=2), None, [3])
>>> tree_paths(t)
['0.a', '0.b', '2.0']
>>> tree_map(lambda x: x * 10, t)
({'a': 20, 'b': 10}, None, [30])
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, List, Sequence, Tuple

import attrs
import numpy as np

from ._checks import float_dtype
from .layer import is_state_field

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
    "trainable",
    "state_paths",
    "tree_cast",
    "tree_size",
    "tree_nbytes",
]


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def is_leaf(x: Any) -> bool:
    """True for anything that is not a container node (and not ``None``)."""
    return not (
        x is None
        or isinstance(x, (tuple, list, dict))
        or attrs.has(type(x))
    )


def _children(node: Any) -> Tuple[List[str], List[Any]]:
    """Keys (as path parts) and children of an inner node, in a fixed order."""
    if isinstance(node, (tuple, list)):
        return [str(i) for i in range(len(node))], list(node)
    if isinstance(node, dict):
        try:
            keys = sorted(node)
        except TypeError as err:
            raise TypeError(f"tree: dict keys must be sortable, got {list(node)!r}") from err
        return [str(k) for k in keys], [node[k] for k in keys]
    fields = attrs.fields(type(node))
    return [f.name for f in fields], [getattr(node, f.name) for f in fields]


def _rebuild(node: Any, values: Sequence[Any]) -> Any:
    if _is_namedtuple(node):
        return type(node)(*values)
    if isinstance(node, tuple):
        return tuple(values)
    if isinstance(node, list):
        return list(values)
    if isinstance(node, dict):
        return dict(zip(sorted(node), values))
    return type(node)(*values)


@attrs.frozen
class TreeDef:
    """The shape of a tree without its leaves; comparable and hashable."""

    kind: str  # "leaf", "none", "seq", "dict", "record"
    node_type: Any = None
    keys: Tuple[str, ...] = ()
    children: Tuple["TreeDef", ...] = ()
    raw_keys: Tuple[Any, ...] = ()

    @property
    def num_leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(c.num_leaves for c in self.children)

    def __repr__(self) -> str:
        if self.kind == "leaf":
            return "*"
        if self.kind == "none":
            return "None"
        inner = ", ".join(
            f"{k}={c!r}" if self.kind != "seq" else repr(c)
            for k, c in zip(self.keys, self.children)
        )
        name = getattr(self.node_type, "__name__", str(self.node_type))
        return f"{name}({inner})"


def tree_structure(tree: Any) -> TreeDef:
    """The :class:`TreeDef` of ``tree``."""
    if tree is None:
        return TreeDef("none")
    if is_leaf(tree):
        return TreeDef("leaf")
    keys, kids = _children(tree)
    kind = "seq" if isinstance(tree, (tuple, list)) else "dict" if isinstance(tree, dict) else "record"
    raw = tuple(sorted(tree)) if isinstance(tree, dict) else ()
    return TreeDef(kind, type(tree), tuple(keys), tuple(tree_structure(k) for k in kids), raw)


def _walk(tree: Any, prefix: str) -> Iterator[Tuple[str, Any]]:
    if tree is None:
        return
    if is_leaf(tree):
        yield prefix, tree
        return
    keys, kids = _children(tree)
    for key, kid in zip(keys, kids):
        yield from _walk(kid, f"{prefix}.{key}" if prefix else key)


def tree_leaves_with_paths(tree: Any) -> List[Tuple[str, Any]]:
    """``[(path, leaf), ...]`` in a fixed order; ``TypeError`` if two leaves share a path
    (``{"a.b": x, "a": {"b": y}}``: a dict key containing ``"."`` collides with a nested path)."""
    pairs = list(_walk(tree, ""))
    paths = [p for p, _ in pairs]
    if len(set(paths)) != len(paths):
        dup = next(p for i, p in enumerate(paths) if p in paths[:i])
        raise TypeError(f"tree: two leaves have the path {dup!r}: a dict key containing '.' collides with a "
                        f"nested path; rename the key")
    return pairs


def tree_leaves(tree: Any) -> List[Any]:
    """The leaves of ``tree`` in a fixed order."""
    return [leaf for _, leaf in _walk(tree, "")]


def tree_paths(tree: Any) -> List[str]:
    """The dotted path of every leaf, e.g. ``["0.b", "0.w", "4.b", "4.w"]``."""
    return [path for path, _ in tree_leaves_with_paths(tree)]


def tree_flatten(tree: Any) -> Tuple[List[Any], TreeDef]:
    """``(leaves, treedef)``; :func:`tree_unflatten` is its inverse."""
    return tree_leaves(tree), tree_structure(tree)


def _build(treedef: TreeDef, it: Iterator[Any]) -> Any:
    if treedef.kind == "leaf":
        return next(it)
    if treedef.kind == "none":
        return None
    values = [_build(c, it) for c in treedef.children]
    t = treedef.node_type
    if treedef.kind == "seq":
        if issubclass(t, tuple) and hasattr(t, "_fields"):
            return t(*values)
        return t(values)
    if treedef.kind == "dict":
        return dict(zip(treedef.raw_keys, values))
    return t(*values)


def tree_unflatten(treedef: TreeDef, leaves: Sequence[Any]) -> Any:
    """Rebuild a tree of shape ``treedef`` from ``leaves`` in flatten order."""
    if not isinstance(treedef, TreeDef):
        raise TypeError(f"tree_unflatten: treedef must be a TreeDef (from tree_flatten or tree_structure), "
                        f"got {type(treedef).__name__}")
    if isinstance(leaves, (str, bytes)) or not hasattr(leaves, "__iter__"):
        raise TypeError(f"tree_unflatten: leaves must be a sequence of leaves, got {type(leaves).__name__}")
    leaves = list(leaves)
    if len(leaves) != treedef.num_leaves:
        raise ValueError(
            f"tree_unflatten: got {len(leaves)} leaves, the structure {treedef!r} "
            f"expects {treedef.num_leaves}"
        )
    return _build(treedef, iter(leaves))


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


def _node_kind(x: Any) -> str:
    if x is None:
        return "None"
    if is_leaf(x):
        return "leaf"
    return type(x).__name__


def _first_difference(a: Any, b: Any, prefix: str, none_prefix: bool) -> str | None:
    """Path and reason of the first structural difference, or None."""
    if a is None:
        if none_prefix or b is None:
            return None
        return f"at '{prefix or '<root>'}': None vs {_node_kind(b)}"
    if is_leaf(a):
        if is_leaf(b):
            return None
        return f"at '{prefix or '<root>'}': leaf vs {_node_kind(b)}"
    if is_leaf(b) or b is None or type(a) is not type(b):
        if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and not (
            _is_namedtuple(a) or _is_namedtuple(b)
        ):
            pass
        else:
            return f"at '{prefix or '<root>'}': {_node_kind(a)} vs {_node_kind(b)}"
    ka, ca = _children(a)
    kb, cb = _children(b)
    if ka != kb:
        return f"at '{prefix or '<root>'}': keys {ka} vs {kb}"
    for key, x, y in zip(ka, ca, cb):
        found = _first_difference(x, y, f"{prefix}.{key}" if prefix else key, none_prefix)
        if found:
            return found
    return None


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
    The message shows both trees, one leaf per line.
    """
    diff = _first_difference(a, b, "", none_prefix)
    if diff is None:
        return
    raise TypeError(
        f"{where}: {names[0]} and {names[1]} have different structures; first difference {diff}\n"
        f"{names[0]}:\n{tree_describe(a)}\n{names[1]}:\n{tree_describe(b)}"
    )


def _map(f: Callable, path: str, tree: Any, rest: Sequence[Any], with_path: bool) -> Any:
    if tree is None:
        return None
    if is_leaf(tree):
        return f(path, tree, *rest) if with_path else f(tree, *rest)
    keys, kids = _children(tree)
    rest_kids = [_children(r)[1] for r in rest]
    out = [
        _map(f, f"{path}.{k}" if path else k, kid, [rk[i] for rk in rest_kids], with_path)
        for i, (k, kid) in enumerate(zip(keys, kids))
    ]
    return _rebuild(tree, out)


def _check_callable(f: Any, where: str) -> None:
    if not callable(f):
        raise TypeError(f"{where}: f must be callable, got {type(f).__name__}")


def tree_map(f: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Apply ``f`` leaf-wise over ``tree`` and the trees in ``rest``.

    ``rest`` trees must have ``tree``'s structure, except below a ``None`` of ``tree``.

    >>> tree_map(lambda a, b: a + b, (1, None), (10, 20))
    (11, None)
    """
    _check_callable(f, "tree_map")
    for i, other in enumerate(rest):
        assert_same_structure(tree, other, where="tree_map", names=("tree", f"rest[{i}]"), none_prefix=True)
    return _map(f, "", tree, rest, False)


def tree_map_with_path(f: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Like :func:`tree_map`, but ``f(path, leaf, *others)``."""
    _check_callable(f, "tree_map_with_path")
    for i, other in enumerate(rest):
        assert_same_structure(tree, other, where="tree_map_with_path", names=("tree", f"rest[{i}]"), none_prefix=True)
    return _map(f, "", tree, rest, True)


def trainable(params: Any) -> Any:
    """``params`` with every state field (see ``state_field``) replaced by ``None``."""
    if params is None or is_leaf(params):
        return params
    if attrs.has(type(params)):
        values = [
            None if is_state_field(f) else trainable(getattr(params, f.name))
            for f in attrs.fields(type(params))
        ]
        return type(params)(*values)
    keys, kids = _children(params)
    return _rebuild(params, [trainable(k) for k in kids])


def state_paths(params: Any) -> List[str]:
    """Paths of the non-trainable state leaves of ``params``."""
    train = set(tree_paths(trainable(params)))
    return [p for p in tree_paths(params) if p not in train]


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

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

from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import attrs
import numpy as np

from ._dtypes import float_dtype

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

# ----------------------------------------------------------------------------- node kinds, per class
_LEAF, _NONE, _TUPLE, _LIST, _NAMEDTUPLE, _SEQ, _DICT, _RECORD = range(8)
_KIND_TEXT = {_LEAF: "leaf", _NONE: "none", _TUPLE: "seq", _LIST: "seq", _NAMEDTUPLE: "seq", _SEQ: "seq",
              _DICT: "dict", _RECORD: "record"}
_PLAIN_SEQS = (_TUPLE, _LIST, _SEQ)  # sequences that match each other in assert_same_structure

#: ``class -> (kind, attrs field names)``: how instances of a class are taken apart, found once per class.
_CLASS_INFO: Dict[type, Tuple[int, Tuple[str, ...]]] = {}


def _classify(cls: type) -> Tuple[int, Tuple[str, ...]]:
    if cls is type(None):
        info: Tuple[int, Tuple[str, ...]] = (_NONE, ())
    elif issubclass(cls, tuple):
        info = (_NAMEDTUPLE, ()) if hasattr(cls, "_fields") else (_TUPLE if cls is tuple else _SEQ, ())
    elif issubclass(cls, list):
        info = (_LIST if cls is list else _SEQ, ())
    elif issubclass(cls, dict):
        info = (_DICT, ())
    elif attrs.has(cls):
        info = (_RECORD, tuple(f.name for f in attrs.fields(cls)))
    else:
        info = (_LEAF, ())
    _CLASS_INFO[cls] = info
    return info


def is_leaf(x: Any) -> bool:
    """True for anything that is not a container node (and not ``None``)."""
    cls = type(x)
    return (_CLASS_INFO.get(cls) or _classify(cls))[0] == _LEAF


def _sorted_keys(node: dict) -> Tuple[Any, ...]:
    try:
        return tuple(sorted(node))
    except TypeError as err:
        raise TypeError(f"tree: dict keys must be sortable, got {list(node)!r}") from err


def _children(node: Any) -> Tuple[List[str], List[Any]]:
    """Keys (as path parts) and children of an inner node, in a fixed order."""
    kind, names = _CLASS_INFO.get(type(node)) or _classify(type(node))
    if kind == _DICT:
        keys = _sorted_keys(node)
        return [str(k) for k in keys], [node[k] for k in keys]
    if kind == _RECORD:
        return list(names), [getattr(node, n) for n in names]
    return [str(i) for i in range(len(node))], list(node)


# ----------------------------------------------------------------------------- TreeDef
class TreeDef:
    """The structure of a tree without its leaves: hashable, immutable and interned.

    Build one with :func:`tree_structure` or :func:`tree_flatten`, never directly.
    Trees of the same structure get the same object, so ``a == b`` is normally an
    identity test; equality falls back to comparing node by node (e.g. for a
    ``TreeDef`` from before the intern table was last emptied, or from a pickle).

    Attributes:
        kind: ``"leaf"``, ``"none"``, ``"seq"`` (tuple, list, named tuple), ``"dict"`` or ``"record"``.
        node_type: the container's class (``None`` for leaves and ``None`` subtrees).
        keys: path parts of the children: indices, sorted dict keys or field names, as strings.
        raw_keys: a dict node's sorted keys as they are (``()`` elsewhere).
        children: the children's ``TreeDef`` s.
        num_leaves: how many leaves the structure holds.
    """

    __slots__ = ("kind", "node_type", "keys", "raw_keys", "children", "num_leaves", "_code", "_hash", "_memo")

    kind: str
    node_type: Any
    keys: Tuple[str, ...]
    raw_keys: Tuple[Any, ...]
    children: Tuple[TreeDef, ...]
    num_leaves: int

    def __init__(self, code: int, node_type: Any, keys: Tuple[str, ...], raw_keys: Tuple[Any, ...],
                 children: Tuple[TreeDef, ...]) -> None:
        put = object.__setattr__
        put(self, "kind", _KIND_TEXT[code])
        put(self, "node_type", node_type)
        put(self, "keys", keys)
        put(self, "raw_keys", raw_keys)
        put(self, "children", children)
        put(self, "num_leaves", 1 if code == _LEAF else sum(c.num_leaves for c in children))
        put(self, "_code", code)
        key_types = tuple(type(k) for k in raw_keys)
        put(self, "_hash", hash((code, node_type, keys, raw_keys, key_types, tuple(c._hash for c in children))))
        put(self, "_memo", {})

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"TreeDef is immutable: cannot set {name!r}")

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: Any) -> bool:
        if self is other:
            return True
        if not isinstance(other, TreeDef):
            return NotImplemented
        return (self._hash == other._hash and self._code == other._code and self.node_type is other.node_type
                and self.keys == other.keys and self.raw_keys == other.raw_keys
                and [type(k) for k in self.raw_keys] == [type(k) for k in other.raw_keys]
                and all(a == b for a, b in zip(self.children, other.children)))

    def __reduce__(self) -> Tuple[Any, ...]:
        return (_intern_node, (self._code, self.node_type, self.raw_keys, self.children))

    def __repr__(self) -> str:
        if self._code == _LEAF:
            return "*"
        if self._code == _NONE:
            return "None"
        inner = ", ".join(
            f"{k}={c!r}" if self.kind != "seq" else repr(c) for k, c in zip(self.keys, self.children)
        )
        name = getattr(self.node_type, "__name__", str(self.node_type))
        return f"{name}({inner})"

    @property
    def paths(self) -> Tuple[str, ...]:
        """The dotted path of every leaf, in flatten order (computed once)."""
        found = self._memo.get("paths")
        if found is None:
            out: List[str] = []
            _collect_paths(self, "", out)
            found = self._memo["paths"] = tuple(out)
        return found

    def with_children(self, children: Sequence[TreeDef]) -> TreeDef:
        """The same node over other children (as many as it has), e.g. ``None`` for some fields."""
        children = tuple(children)
        if len(children) != len(self.children) or not all(isinstance(c, TreeDef) for c in children):
            raise ValueError(f"TreeDef.with_children: needs {len(self.children)} TreeDefs, got {children!r}")
        return _intern_node(self._code, self.node_type, self.raw_keys if self._code == _DICT else (), children)

    def memo(self, key: Any, compute: Callable[[TreeDef], Any]) -> Any:
        """``compute(self)``, computed once per ``key`` and kept on this ``TreeDef``."""
        memo = self._memo
        if key in memo:
            return memo[key]
        if len(memo) > _MEMO_LIMIT:
            paths = memo.get("paths")
            memo.clear()
            if paths is not None:
                memo["paths"] = paths
        value = memo[key] = compute(self)
        return value


def _collect_paths(d: TreeDef, prefix: str, out: List[str]) -> None:
    if d._code == _LEAF:
        out.append(prefix)
        return
    for key, child in zip(d.keys, d.children):
        _collect_paths(child, f"{prefix}.{key}" if prefix else key, out)


#: The intern table: ``(node_type, [dict keys, their types,] id of each child) -> TreeDef``. A key holds
#: children's ids, not the children: the TreeDef it maps to keeps them alive while the entry exists.
_TABLE: Dict[Tuple[Any, ...], TreeDef] = {}
#: Emptied when it grows past this (equality then falls back to comparing node by node).
_TABLE_LIMIT = 100_000
_MEMO_LIMIT = 256
_LEAF_DEF = TreeDef(_LEAF, None, (), (), ())
_NONE_DEF = TreeDef(_NONE, None, (), (), ())


def _new_node(key: Tuple[Any, ...], code: int, cls: type, raw_keys: Tuple[Any, ...],
              children: Tuple[TreeDef, ...]) -> TreeDef:
    if code == _RECORD:
        keys = _CLASS_INFO[cls][1]
    elif code == _DICT:
        keys = tuple(str(k) for k in raw_keys)
    else:
        keys = tuple(str(i) for i in range(len(children)))
    if len(_TABLE) >= _TABLE_LIMIT:
        _TABLE.clear()
    d = _TABLE[key] = TreeDef(code, cls, keys, raw_keys, children)
    return d


def _intern_node(code: int, cls: Any, raw_keys: Tuple[Any, ...], children: Tuple[TreeDef, ...]) -> TreeDef:
    """The interned TreeDef of a node (also how a pickled TreeDef comes back)."""
    if code == _LEAF:
        return _LEAF_DEF
    if code == _NONE:
        return _NONE_DEF
    children = tuple(_intern_node(c._code, c.node_type, c.raw_keys, c.children) for c in children)
    if code == _DICT:
        key: Tuple[Any, ...] = (cls, raw_keys, tuple(map(type, raw_keys)), *map(id, children))
    else:
        _CLASS_INFO.get(cls) or _classify(cls)
        key = (cls, *map(id, children))
    return _TABLE.get(key) or _new_node(key, code, cls, raw_keys, children)


def _flatten(x: Any, leaves: List[Any]) -> TreeDef:
    cls = type(x)
    code, names = _CLASS_INFO.get(cls) or _classify(cls)
    if code == _LEAF:
        leaves.append(x)
        return _LEAF_DEF
    if code == _NONE:
        return _NONE_DEF
    raw: Tuple[Any, ...] = ()
    if code == _RECORD:
        children: Any = [getattr(x, n) for n in names]
    elif code == _DICT:
        raw = _sorted_keys(x)
        children = [x[k] for k in raw]
    else:
        children = x
    kids = []
    for child in children:  # arrays and None inline: most nodes are one or the other
        if type(child) is np.ndarray:
            leaves.append(child)
            kids.append(_LEAF_DEF)
        elif child is None:
            kids.append(_NONE_DEF)
        else:
            kids.append(_flatten(child, leaves))
    if code == _DICT:
        key: Tuple[Any, ...] = (cls, raw, tuple(map(type, raw)), *map(id, kids))
    else:
        key = (cls, *map(id, kids))
    return _TABLE.get(key) or _new_node(key, code, cls, raw, tuple(kids))


def _leaves(x: Any, out: List[Any]) -> None:
    cls = type(x)
    code, names = _CLASS_INFO.get(cls) or _classify(cls)
    if code == _LEAF:
        out.append(x)
    elif code == _RECORD:
        for n in names:
            _leaves(getattr(x, n), out)
    elif code == _DICT:
        for k in _sorted_keys(x):
            _leaves(x[k], out)
    elif code != _NONE:
        for c in x:
            _leaves(c, out)


def _build(d: TreeDef, it: Iterator[Any]) -> Any:
    code = d._code
    if code == _LEAF:
        return next(it)
    if code == _NONE:
        return None
    values = []
    for child in d.children:  # leaves and None inline
        if child is _LEAF_DEF:
            values.append(next(it))
        elif child is _NONE_DEF:
            values.append(None)
        else:
            values.append(_build(child, it))
    if code == _TUPLE:
        return tuple(values)
    if code == _RECORD or code == _NAMEDTUPLE:
        return d.node_type(*values)
    if code == _DICT:
        return dict(zip(d.raw_keys, values))
    if code == _LIST:
        return values
    return d.node_type(values)


# ----------------------------------------------------------------------------- flatten / unflatten
def tree_structure(tree: Any) -> TreeDef:
    """The :class:`TreeDef` of ``tree`` (interned: equal structures give the same object)."""
    return _flatten(tree, [])


def tree_flatten(tree: Any) -> Tuple[List[Any], TreeDef]:
    """``(leaves, treedef)``; :func:`tree_unflatten` is its inverse."""
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
    return _build(treedef, iter(leaves))


def tree_leaves(tree: Any) -> List[Any]:
    """The leaves of ``tree`` in a fixed order."""
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

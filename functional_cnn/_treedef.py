"""The tree definition: how a tree's structure is taken apart, interned and rebuilt.

Private to :mod:`functional_cnn.tree`, which holds the public API. A :class:`TreeDef` is
interned: two trees of the same structure share one object, so comparing them is an
identity test. How a class is taken apart (an attrs record's field names, whether it is a
named tuple) is looked up once per class, so flattening never calls attrs on a leaf.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import attrs
import numpy as np

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


@attrs.frozen
class _FrozenProbe:
    pass


_FROZEN_SETATTR = _FrozenProbe.__setattr__  # what attrs gives every frozen class


def _is_immutable(d: TreeDef) -> bool:
    """True when no node of ``d`` can be changed in place: tuples, named tuples, frozen attrs records."""
    code = d._code
    if code in (_LEAF, _NONE):
        return True
    if code == _RECORD:
        if getattr(d.node_type, "__setattr__", None) is not _FROZEN_SETATTR:
            return False
    elif code not in (_TUPLE, _NAMEDTUPLE):
        return False
    return all(d.memo("immutable", _is_immutable) for d in d.children)


#: The trees most recently built by :func:`remember`'s callers: ``(tree, leaves, treedef)``, latest last.
#: Flattening one of them again returns its leaves without walking it (a training step flattens the
#: params and the optimizer state the previous step built). Only trees whose every node is immutable
#: and whose every leaf is a leaf are kept, and each entry holds its tree, so its ``id`` cannot be
#: reused while it is listed. Only the latest two: their builder normally still holds them, so this
#: keeps no memory alive for long. The tuple is replaced whole, never changed, so threads only ever
#: see a consistent one.
_RECENT: Tuple[Tuple[Any, List[Any], TreeDef], ...] = ()


def remember(tree: Any, leaves: List[Any], d: TreeDef) -> None:
    """Note that ``tree``, built by :func:`build_exact` from ``leaves`` (a list nobody else will
    change) holding those very leaves, has structure ``d``."""
    global _RECENT
    if d._code in (_LEAF, _NONE) or not d.memo("immutable", _is_immutable):
        return
    for x in leaves:  # a container in a leaf slot would be walked into by a real flatten
        if type(x) is not np.ndarray and (_CLASS_INFO.get(type(x)) or _classify(type(x)))[0] != _LEAF:
            return
    _RECENT = _RECENT[-1:] + ((tree, leaves, d),)


def recall(tree: Any) -> Any:
    """``(leaves, treedef)`` of a tree :func:`remember` holds (a new list each time), else ``None``."""
    for held, leaves, d in _RECENT:
        if held is tree:
            return list(leaves), d
    return None


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
        return
    if code == _NONE:
        return
    if code == _RECORD:
        children: Any = [getattr(x, n) for n in names]
    elif code == _DICT:
        children = [x[k] for k in _sorted_keys(x)]
    else:
        children = x
    for child in children:  # arrays and None inline, as in _flatten
        if type(child) is np.ndarray:
            out.append(child)
        elif child is not None:
            _leaves(child, out)


def _build(d: TreeDef, it: Iterator[Any], changed: Optional[List[bool]] = None) -> Any:
    """The tree of structure ``d`` over the leaves ``it`` yields. Given a ``changed`` list, appends to it
    when a record or named tuple does not hold the very value given (a converter replaced it)."""
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
            values.append(_build(child, it, changed))
    if code == _TUPLE:
        return tuple(values)
    if code == _RECORD or code == _NAMEDTUPLE:
        node = d.node_type(*values)
        if changed is not None and not changed:
            held = [getattr(node, name) for name in d.keys] if code == _RECORD else node
            if any(h is not v for h, v in zip(held, values)):
                changed.append(True)
        return node
    if code == _DICT:
        return dict(zip(d.raw_keys, values))
    if code == _LIST:
        return values
    return d.node_type(values)


def build_exact(d: TreeDef, leaves: List[Any]) -> Tuple[Any, bool]:
    """``(tree, exact)``: the tree :func:`_build` makes, and whether it holds exactly ``leaves``
    (False when a record's converter replaced a value, e.g. copied a writeable array)."""
    changed: List[bool] = []
    tree = _build(d, iter(leaves), changed)
    return tree, not changed


# ----------------------------------------------------------------------------- flatten / unflatten

"""Parameters: read-only arrays in attrs records, each field trainable or state.

A layer's params record declares each array with :func:`param_field` (trained by
the optimizer) or :func:`state_field` (non-trainable state, such as batch-norm
running statistics). Both store the array read-only. :func:`trainable` is the
params tree with every state field replaced by ``None``: the structure gradients
have, and the only part optimizers see.

>>> import attrs, numpy as np
>>> @attrs.frozen(eq=False)
... class Norm:
...     gamma: np.ndarray = param_field()
...     mean: np.ndarray = state_field()
>>> p = (Norm(np.ones(2), np.zeros(2)), None)
>>> trainable(p)[0].mean is None, state_paths(p)
(True, ['0.mean'])
"""
from __future__ import annotations

from typing import Any, FrozenSet, List, Optional, Tuple

import attrs
import numpy as np

from .tree import TreeDef, tree_flatten, tree_paths, tree_structure, tree_unflatten

__all__ = [
    "freeze",
    "params_record",
    "readonly",
    "param_field",
    "state_field",
    "is_state_field",
    "trainable",
    "trainable_structure",
    "state_paths",
]

Array = np.ndarray


def _record_repr(record: Any) -> str:
    from .display import tree_repr  # lazy: display is only needed when a record is shown

    return tree_repr(record)


def _record_html(record: Any) -> str:
    from .display import tree_html

    return tree_html(record)


def params_record(cls: type) -> type:
    """Declare a params record: a frozen attrs class, compared by identity, shown by shape.

    Its ``repr`` names each array by dtype and shape (``DenseParams(w=float32[784, 10],
    b=float32[10])``) instead of printing the numbers, and in a notebook it renders as a
    table of each field's shape, dtype, norm, min and max. Gradients come back in the same
    class, so they display the same way.

    >>> @params_record
    ... class ScaleParams:
    ...     s: np.ndarray = param_field()
    >>> ScaleParams(np.ones(3, np.float32))
    ScaleParams(s=float32[3])
    """
    record = attrs.frozen(eq=False, repr=False)(cls)
    record.__repr__ = _record_repr
    record._repr_html_ = _record_html
    return record


def freeze(x: Any) -> Any:
    """Mark a freshly built array read-only, without a copy, and return it (``None`` stays ``None``).

    For arrays nobody else holds: a params or grads record then takes them as they are.
    """
    if x is None:
        return None
    if type(x) is not np.ndarray:
        x = np.asarray(x)
    x.setflags(write=False)  # what flags.writeable = False does, without making a flags object
    return x


def readonly(value: Any) -> Array:
    """Return ``value`` as a NumPy array that cannot be written to.

    A writeable array is copied first, so whoever passed it in cannot change the
    record's contents afterwards through their own reference.

    >>> a = readonly([1.0, 2.0])
    >>> a.flags.writeable
    False
    """
    if isinstance(value, np.ndarray) and not value.flags.writeable:
        return value
    arr = np.array(value, copy=True)
    arr.flags.writeable = False
    return arr


def _readonly_or_none(value: Any) -> Optional[Array]:
    return None if value is None else readonly(value)


def param_field(**kwargs: Any) -> Any:
    """An attrs field holding a trainable array, stored read-only."""
    return attrs.field(converter=_readonly_or_none, **kwargs)


def state_field(**kwargs: Any) -> Any:
    """An attrs field holding non-trainable state (e.g. running statistics).

    Its gradient is always ``None``; optimizers and weight decay never touch it.
    """
    meta = dict(kwargs.pop("metadata", {}) or {})
    meta["state"] = True
    return attrs.field(converter=_readonly_or_none, metadata=meta, **kwargs)


def is_state_field(field: attrs.Attribute) -> bool:
    """True when an attrs field was declared with :func:`state_field`."""
    return bool(field.metadata.get("state", False))


# ----------------------------------------------------------------------------- trainable structure
_STATE_NAMES: dict = {}
_NONE_DEF = tree_structure(None)


def _state_names(cls: type) -> FrozenSet[str]:
    """Names of the state fields of the attrs class ``cls`` (found once per class)."""
    found = _STATE_NAMES.get(cls)
    if found is None:
        found = _STATE_NAMES[cls] = frozenset(f.name for f in attrs.fields(cls) if is_state_field(f))
    return found


def _prune(d: TreeDef, start: int, keep: List[int]) -> TreeDef:
    if d.kind == "leaf":
        keep.append(start)
        return d
    if d.kind == "none":
        return d
    state = _state_names(d.node_type) if d.kind == "record" else frozenset()
    kids = []
    for name, child in zip(d.keys, d.children):
        kids.append(_NONE_DEF if name in state else _prune(child, start, keep))
        start += child.num_leaves
    return d.with_children(kids)


def _trainable_structure(d: TreeDef) -> Tuple[TreeDef, Tuple[int, ...]]:
    keep: List[int] = []
    return _prune(d, 0, keep), tuple(keep)


def trainable_structure(treedef: TreeDef) -> Tuple[TreeDef, Tuple[int, ...]]:
    """The structure of ``trainable(params)`` for params of structure ``treedef``, and the
    indices of the trainable leaves among the params' leaves. Computed once per structure.

    >>> leaves, d = tree_flatten(((np.ones(1),), None))
    >>> trainable_structure(d)[1]
    (0,)
    """
    return treedef.memo("trainable", _trainable_structure)


def trainable(params: Any) -> Any:
    """``params`` with every state field (see :func:`state_field`) replaced by ``None``."""
    leaves, d = tree_flatten(params)
    if d.kind == "leaf":
        return params
    tdef, keep = trainable_structure(d)
    return tree_unflatten(tdef, [leaves[i] for i in keep])


def state_paths(params: Any) -> List[str]:
    """Paths of the non-trainable state leaves of ``params``."""
    paths = tree_paths(params)
    keep = set(trainable_structure(tree_structure(params))[1])
    return [p for i, p in enumerate(paths) if i not in keep]

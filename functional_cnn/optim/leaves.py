"""One update's view of the gradients: the tree taken apart once, checked once.

Every transformation's ``update`` starts here. :func:`take_apart` flattens the
gradients with their cached :class:`~functional_cnn.tree.TreeDef`, checks that every
leaf is a floating array and, given params, that the structure is that of
``trainable(params)`` (one identity test when it is) and that the shapes agree. The
parts of a :func:`~functional_cnn.optim.chain` then work on the list of leaves, and
their states' moment trees are checked against the same ``TreeDef``
(:func:`moment_leaves`). Errors name the transformation and the leaf's path.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from ..params import freeze, readonly, trainable, trainable_structure
from ..tree import (
    TreeDef,
    assert_same_structure,
    checked_paths,
    tree_flatten,
    tree_leaves,
    tree_map_with_path,
    tree_unflatten,
)

Array = np.ndarray
Leaves = List[Any]
Params = Any


# ----------------------------------------------------------------------------- helpers
def freeze_tree(tree: Any) -> Any:
    """attrs converter: read-only arrays; a tree whose arrays are all read-only already is kept as it is."""
    if all(type(x) is np.ndarray and not x.flags.writeable for x in tree_leaves(tree)):
        return tree  # the common case (a state built from frozen arrays): no structure to build
    leaves, treedef = tree_flatten(tree)
    return tree_unflatten(treedef, [readonly(x) for x in leaves])


def new_count(value: int = 0) -> Array:
    """A read-only int64 scalar array, the step count kept in states."""
    return freeze(np.array(value, dtype=np.int64))


def zeros_like_params(params: Params, where: str, fill: float = 0.0) -> Any:
    """Moments for the trainable leaves of ``params``: read-only arrays of their dtype, float32
    for float16 params (squared float16 gradients overflow above 256 and vanish below 2.4e-4)."""

    def make(path: str, p: Any) -> Array:
        if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
            got = p.dtype if isinstance(p, np.ndarray) else type(p).__name__
            raise TypeError(f"{where}.init: params leaf '{path}' must be a floating numpy array, got {got}")
        return freeze(np.full(p.shape, fill, dtype=np.float32 if p.dtype == np.float16 else p.dtype))

    return tree_map_with_path(make, trainable(params))


def check_state(where: str, state: Any, cls: type) -> None:
    """``state`` must be a ``cls``: otherwise it came from another transformation."""
    if not isinstance(state, cls):
        raise TypeError(
            f"{where}.update: state must be a {cls.__name__} made by {where}.init, got "
            f"{type(state).__name__}; was this state made by another optimizer's init?"
        )


def _is_float(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.floating)) and x.dtype.kind == "f"


# ----------------------------------------------------------------------------- one update's view of the leaves
class LeafView:
    """A gradient tree taken apart once for one update, and what its parts need to read.

    Attributes:
        treedef: the structure of the gradients (that of ``trainable(params)``).
        params: the trainable params leaves in the gradients' order, or ``None`` when
            ``update`` got no params.
        params_tree: the params as passed to ``update`` (``None`` when not given).
    """

    __slots__ = ("treedef", "params", "params_tree")

    def __init__(self, treedef: TreeDef, params: Optional[Leaves], params_tree: Any) -> None:
        self.treedef = treedef
        self.params = params
        self.params_tree = params_tree

    @property
    def paths(self) -> Tuple[str, ...]:
        """The dotted path of each leaf."""
        return self.treedef.paths

    def unflatten(self, leaves: Sequence[Any]) -> Any:
        """A tree of the gradients' structure holding ``leaves``."""
        return tree_unflatten(self.treedef, leaves)


def take_apart(where: str, grads: Any, params: Any = None) -> Tuple[Leaves, LeafView]:
    """Flatten ``grads`` once and check it: floating leaves; with ``params``, the structure and
    shapes of ``trainable(params)``. Errors name ``where`` and the leaf's path."""
    leaves, view, _, _ = take_apart_with_params(where, grads, params)
    return leaves, view


def take_apart_with_params(where: str, grads: Any, params: Any = None
                           ) -> Tuple[Leaves, LeafView, Optional[Leaves], Optional[TreeDef]]:
    """:func:`take_apart`, also returning the params' leaves and structure (``None`` without params), so
    that applying the update needs no second flatten."""
    leaves, treedef = tree_flatten(grads)
    paths = checked_paths(treedef)
    for i, g in enumerate(leaves):
        if not _is_float(g):
            got = g.dtype if isinstance(g, (np.ndarray, np.generic)) else type(g).__name__
            raise TypeError(f"{where}.update: grads leaf '{paths[i] or '<root>'}' must be a floating numpy array "
                            f"(float16/32/64), got {got}")
    if params is None:
        return leaves, LeafView(treedef, None, None), None, None
    p_leaves, p_def = tree_flatten(params)
    t_def, keep = trainable_structure(p_def)
    if t_def is not treedef:
        assert_same_structure(grads, trainable(params), where=f"{where}.update", names=("grads", "params (trainable)"))
    wanted = [p_leaves[i] for i in keep]
    _check_shapes(where, paths, leaves, wanted, "params", "")
    return leaves, LeafView(treedef, wanted, params), p_leaves, p_def


def check_grads(where: str, grads: Any, params: Any = None) -> None:
    """Every leaf of ``grads`` must be a floating array; with ``params``, the trees must match.

    Called first by every transformation's ``update``, so an integer, complex or
    object gradient (or a Python number: its dtype is a guess) is refused with its
    path instead of being silently promoted or failing deep inside. NumPy float
    scalars (``np.float32(1.0)``, what ``a.sum()`` returns) are accepted.
    """
    take_apart(where, grads, params)


def _shape(x: Any) -> Tuple[int, ...]:
    """``np.shape(x)``, read directly from an array (most leaves are)."""
    return x.shape if type(x) is np.ndarray else np.shape(x)


def _check_shapes(where: str, paths: Sequence[str], leaves: Leaves, others: Leaves, other_name: str,
                  hint: str) -> None:
    for path, g, o in zip(paths, leaves, others):
        if _shape(g) != _shape(o):
            raise ValueError(
                f"{where}.update: grads leaf '{path}' has shape {np.shape(g)} but the {other_name} "
                f"leaf there has shape {np.shape(o)}{hint}"
            )


_STATE_HINT = "; the state was built by init for another model (or the params changed shape)"


def moment_leaves(where: str, leaves: Leaves, view: LeafView, moments: Any) -> Leaves:
    """The leaves of a state's moment tree, checked against the gradients' (same model, same shapes)."""
    m_leaves, m_def = tree_flatten(moments)
    if m_def is not view.treedef:
        try:
            assert_same_structure(view.unflatten(leaves), moments, where=f"{where}.update", names=("grads", "state"))
        except TypeError as err:
            raise TypeError(f"{err}\n{_STATE_HINT[2:]}") from None
    _check_shapes(where, view.paths, leaves, m_leaves, "state", _STATE_HINT)
    return m_leaves


def check_grads_against_state(where: str, grads: Any, moments: Any) -> None:
    """Gradients must match the moment tree the state was built with (same model)."""
    leaves, view = take_apart(where, grads)
    moment_leaves(where, leaves, view, moments)



"""The optimizer algebra: a gradient transformation is a pair of pure functions.

::

    state            = opt.init(params)
    updates, state   = opt.update(grads, state, params)    # params optional for most
    params           = apply_updates(params, updates)

* ``grads`` has the structure of ``trainable(params)``: ``None`` at non-trainable
  state fields (batch-norm running statistics) and parameter-free layers. Updates
  are mapped over ``grads``, so those ``None`` subtrees pass through and neither
  the optimizer state nor the params there are ever touched.
* ``state`` is a tree of frozen attrs records whose arrays are read-only; an update
  returns a new state and never writes into the old one. Moment arrays have the
  params' dtype (float32 stays float32; float16 params get float32 moments, as
  squared float16 gradients overflow) and, being trees shaped like the
  trainable params, also record which model the state was built for: ``update``
  checks the gradients against them and names the first path that differs.
* :func:`chain` composes transformations left to right; its state is the tuple
  of the parts' states. Every alias (``sgd``, ``adam``, ...) is a chain.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

import attrs
import numpy as np

from ..params import trainable_structure
from ..tree import (
    TreeDef,
    align_leaves,
    assert_same_structure,
    checked_paths,
    structure_difference,
    tree_describe,
    tree_flatten,
    tree_unflatten,
)
from .leaves import (  # noqa: F401  (freeze_tree, new_count, ... are used by the transforms through here)
    LeafView,
    Leaves,
    _is_float,
    check_grads,
    check_grads_against_state,
    check_state,
    freeze,
    freeze_tree,
    moment_leaves,
    new_count,
    take_apart,
    take_apart_with_params,
    zeros_like_params,
)

__all__ = [
    "GradientTransformation",
    "EmptyState",
    "chain",
    "apply_updates",
    "update_and_apply",
]

Params = Any
Updates = Any
OptState = Any


@attrs.frozen
class GradientTransformation:
    """A gradient transformation: ``init`` and ``update``, two pure functions.

    Attributes:
        init: ``params -> state``.
        update: ``(grads, state, params=None) -> (updates, state)``.
        name: what ``repr`` shows and errors quote, e.g. ``"scale_by_adam(b1=0.9, ...)"``.
        update_leaves: the same update on a gradient tree already taken apart,
            ``(leaves, state, view) -> (leaves, state)`` with ``view`` a :class:`LeafView`;
            ``None`` for transformations that only work on trees. :func:`chain` uses it to
            flatten the gradients once for all its parts.
    """

    init: Callable[[Params], OptState]
    update: Callable[..., Tuple[Updates, OptState]]
    name: str = "transform"
    update_leaves: Optional[Callable[..., Tuple[Leaves, OptState]]] = attrs.field(default=None, kw_only=True)

    def __repr__(self) -> str:
        return self.name


@attrs.frozen(eq=False)
class EmptyState:
    """The state of a transformation that keeps none (``scale``, clipping, ...)."""


# ----------------------------------------------------------------------------- leaf-level transforms
def leaf_transform(where: str, name: str, init: Callable[[Params], OptState],
                   update_leaves: Callable[[Leaves, OptState, LeafView], Tuple[Leaves, OptState]],
                   state_cls: type, needs_params: Optional[Callable[[Any], None]] = None) -> GradientTransformation:
    """A transformation from its leaf-level update: ``update`` on trees checks the state,
    takes the gradients apart once, runs ``update_leaves`` and puts the result together once.

    ``needs_params(params)``, when given, runs between the state check and the gradient checks.
    """

    def update(grads: Updates, state: OptState, params: Optional[Params] = None):
        check_state(where, state, state_cls)
        if needs_params is not None:
            needs_params(params)
        leaves, view = take_apart(where, grads, params)
        out, state = update_leaves(leaves, state, view)
        return (grads if out is leaves else view.unflatten(out)), state

    return GradientTransformation(init, update, name, update_leaves=update_leaves)


# ----------------------------------------------------------------------------- chain
def part_call(label: str, method: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call a chained part; its ValueError/TypeError gets the chain's name prefixed
    (``"adam(0.001, ...).update -> scale_by_adam.update: ..."``)."""
    try:
        return fn(*args)
    except (ValueError, TypeError) as err:
        if type(err) not in (ValueError, TypeError):
            raise
        raise type(err)(f"{label}.{method} -> {err}") from err


def _back_to_leaves(tree: Any, view: LeafView, before: Leaves) -> Optional[Leaves]:
    """The leaves of a tree-only part's output, if they can go on as leaves: same structure,
    floating, same shapes. ``None`` otherwise: the next parts then check the tree themselves."""
    leaves, treedef = tree_flatten(tree)
    if treedef is not view.treedef:
        return None
    if all(_is_float(u) and np.shape(u) == np.shape(b) for u, b in zip(leaves, before)):
        return leaves
    return None


def chain(*transforms: GradientTransformation, name: Optional[str] = None) -> GradientTransformation:
    """Compose transformations: the updates of each feed the next, left to right.

    The gradients are taken apart once (and checked once) for all the parts; each part
    with an ``update_leaves`` works on the list of leaves, and the updates are put back
    together once at the end. A part that only works on trees gets a tree.

    Args:
        *transforms: the parts, applied in order.
        name: what ``repr`` shows; defaults to ``"chain(part, ...)"``.

    Returns:
        A :class:`GradientTransformation` whose state is the tuple of the parts'
        states. When ``update`` gets ``params`` it first checks that ``grads`` has
        the structure of ``trainable(params)`` (a ``TypeError`` shows both by path).

    >>> from functional_cnn.optim import scale
    >>> opt = chain(scale(2.0), scale(-0.5))
    >>> opt
    chain(scale(2), scale(-0.5))
    """
    for i, t in enumerate(transforms):
        if not isinstance(t, GradientTransformation):
            raise TypeError(
                f"chain: transforms[{i}] must be a GradientTransformation, got {type(t).__name__}"
            )
    label = name if name is not None else f"chain({', '.join(t.name for t in transforms)})"

    def init(params: Params) -> Tuple[OptState, ...]:
        return tuple(part_call(label, "init", t.init, params) for t in transforms)

    def check_chain_state(state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != len(transforms):
            got = f"tuple of {len(state)}" if isinstance(state, tuple) else type(state).__name__
            raise TypeError(
                f"{label}.update: state must be the tuple of {len(transforms)} states made by this "
                f"optimizer's init, got {got}; was it made by another optimizer?"
            )

    def run(leaves: Leaves, state: Tuple[OptState, ...], view: LeafView) -> Tuple[Any, Optional[Any], tuple]:
        """``(leaves, tree, states)``: ``tree`` is not None when the last parts worked on a tree."""
        tree = None
        new_states: List[OptState] = []
        for t, s in zip(transforms, state):
            if tree is None and t.update_leaves is not None:
                leaves, s = part_call(label, "update", t.update_leaves, leaves, s, view)
            else:
                if tree is None:
                    tree = view.unflatten(leaves)
                tree, s = part_call(label, "update", t.update, tree, s, view.params_tree)
                back = _back_to_leaves(tree, view, leaves)
                if back is not None:
                    leaves, tree = back, None
            new_states.append(s)
        return leaves, tree, tuple(new_states)

    def update(grads: Updates, state: Tuple[OptState, ...], params: Optional[Params] = None):
        check_chain_state(state)
        given, view = take_apart(label, grads, params)
        leaves, tree, states = run(given, state, view)
        if tree is not None:
            return tree, states
        return (grads if leaves is given else view.unflatten(leaves)), states

    def update_leaves(leaves: Leaves, state: Tuple[OptState, ...], view: LeafView):
        check_chain_state(state)
        leaves, _, states = run(leaves, state, view)
        return leaves, states

    flat = all(t.update_leaves is not None for t in transforms)
    return GradientTransformation(init, update, label, update_leaves=update_leaves if flat else None)


# ----------------------------------------------------------------------------- apply
def _apply_plan(u_def: TreeDef, p_def: TreeDef) -> Tuple[Optional[int], ...]:
    """For each params leaf, the index of its update, or ``None`` where updates hold ``None``."""
    plan: List[Optional[int]] = [None] * p_def.num_leaves
    for i, j in enumerate(align_leaves(u_def, p_def)):
        plan[j] = i
    return tuple(plan)


def apply_updates(params: Params, updates: Updates) -> Params:
    """``params + updates`` leaf by leaf, as a new tree of read-only arrays.

    Where ``updates`` is ``None`` (state fields, parameter-free layers) the params
    are kept as they are. Each update is cast to its param's dtype first, so float32
    params stay float32 whatever the updates' dtype.

    Raises:
        TypeError: ``updates`` does not have the structure of ``params`` (``None``
            in ``updates`` matches anything).
        ValueError: an update's shape differs from its param's.
    """
    u_leaves, u_def = tree_flatten(updates)
    p_leaves, p_def = tree_flatten(params)
    if u_def is not p_def:
        diff = structure_difference(u_def, p_def, none_prefix=True)
        if diff is not None:
            assert_same_structure(updates, params, where="apply_updates", names=("updates", "params"),
                                  none_prefix=True)
    u_paths = checked_paths(u_def)
    for path, u in zip(u_paths, u_leaves):
        if not _is_float(u):
            got = u.dtype if isinstance(u, (np.ndarray, np.generic)) else type(u).__name__
            raise TypeError(f"apply_updates: update '{path or '<root>'}' must be a floating numpy array, got {got}")
    plan = p_def.memo(("apply plan", u_def), lambda _: _apply_plan(u_def, p_def))
    out = []
    for j, p in enumerate(p_leaves):
        i = plan[j]
        if i is None:
            out.append(p)
            continue
        u = u_leaves[i]
        p = np.asarray(p)
        if p.dtype.kind != "f":
            raise TypeError(f"apply_updates: param '{u_paths[i] or '<root>'}' must be a floating numpy array, "
                            f"got {p.dtype}")
        if u.shape != p.shape:
            raise ValueError(
                f"apply_updates: update '{u_paths[i]}' has shape {u.shape}, its param has shape {p.shape}\n"
                f"updates:\n{tree_describe(updates)}"
            )
        out.append(freeze(p + u.astype(p.dtype, copy=False)))
    return tree_unflatten(p_def, out)


def update_and_apply(optimizer: GradientTransformation, grads: Updates, state: OptState,
                     params: Params) -> Tuple[Params, OptState, Callable[[], Updates]]:
    """``optimizer.update`` then :func:`apply_updates`, with each tree flattened once.

    When the optimizer works on flat lists of leaves (every built-in one does), the
    gradients and the params are flattened once, the update runs on the lists, and
    each param becomes ``p + u`` cast to ``p``'s dtype, exactly as :func:`apply_updates`
    computes it: the new params are bit-identical to the two separate calls. Otherwise
    it makes the two calls.

    Returns:
        ``(new_params, new_state, updates)``, where ``updates()`` builds the update
        tree only when asked (layer tracking reads it).
    """
    if optimizer.update_leaves is None:
        updates, new_state = optimizer.update(grads, state, params)
        return apply_updates(params, updates), new_state, lambda: updates
    leaves, view, p_leaves, p_def = take_apart_with_params(optimizer.name, grads, params)
    u_leaves, new_state = optimizer.update_leaves(leaves, state, view)
    _, keep = trainable_structure(p_def)
    out = list(p_leaves)
    for j, i in enumerate(keep):
        p, u = out[i], u_leaves[j]
        if not _is_float(u) or u.shape != p.shape:  # a transform that broke the contract: the tree API names it
            return apply_updates(params, view.unflatten(u_leaves)), new_state, lambda: view.unflatten(u_leaves)
        out[i] = freeze(p + (u if u.dtype == p.dtype else u.astype(p.dtype)))
    return tree_unflatten(p_def, out), new_state, lambda: view.unflatten(u_leaves)


"""Transformations that constrain updates: weight decay, clipping and masking.

Masks follow :mod:`functional_cnn.optim.masks`: ``True`` means the transformation
applies to that leaf; elsewhere the update passes through unchanged.
"""
from __future__ import annotations

import math
from typing import Any, Set

import attrs
import numpy as np

from .._checks import real_number
from ..params import trainable
from ..tree import tree_leaves, tree_leaves_with_paths, tree_map_with_path, tree_paths
from .base import EmptyState, GradientTransformation, leaf_transform, part_call
from .leaves import LeafView, Leaves, check_grads, check_state, freeze
from .masks import Mask, check_mask_matches, evaluate_mask, resolve_mask

__all__ = [
    "MaskedState",
    "add_decayed_weights",
    "clip_by_global_norm",
    "clip_by_value",
    "masked",
    "global_norm",
]


@attrs.frozen(eq=False)
class MaskedState:
    """State of :func:`masked`: the inner transformation's state."""

    inner: Any  # state of the inner transformation, built on the selected leaves only


def _selected(mask: Any, tree: Any, where: str) -> Set[str]:
    """Paths of the leaves of ``tree`` where ``mask`` is True (all when ``mask`` is None)."""
    pairs = tree_leaves_with_paths(tree)
    if mask is None:
        return {path for path, _ in pairs}
    return {path for path, leaf in pairs if evaluate_mask(mask, path, leaf, where)}


def _require_params(where: str, params: Any) -> None:
    if params is None:
        raise TypeError(
            f"{where}.update: params is required (this transformation reads the parameters), "
            f"got None; call opt.update(grads, state, params)"
        )


def add_decayed_weights(weight_decay: float, mask: Mask = None) -> GradientTransformation:
    """Add ``weight_decay * param`` to each selected update (L2 / decoupled decay).

    Before :func:`scale_by_learning_rate` in a chain this is decoupled weight
    decay (AdamW); before the moment estimates it is L2 regularization. Leaves
    with a ``None`` gradient (state fields) are never touched.

    Args:
        weight_decay: >= 0.
        mask: which leaves decay (see :mod:`~functional_cnn.optim.masks`); e.g.
            ``exclude_paths("*.b")`` leaves the biases alone.
    """
    where = "add_decayed_weights"
    wd = real_number(weight_decay, where, "weight_decay", low=0.0)
    m = resolve_mask(mask, where)

    def init(params: Any) -> EmptyState:
        if m is not None:
            check_mask_matches(m, tree_paths(trainable(params)), where)
        return EmptyState()

    def update_leaves(grads: Leaves, state: EmptyState, view: LeafView):
        check_state(where, state, EmptyState)
        _require_params(where, view.params)
        if wd == 0.0:
            return grads, state
        params = view.params
        if m is None:
            return [freeze(g + wd * p) for g, p in zip(grads, params)], state
        chosen = [evaluate_mask(m, path, p, where) for path, p in zip(view.paths, params)]
        return [freeze(g + wd * p) if c else g for g, p, c in zip(grads, params, chosen)], state

    shown = f", mask={mask!r}" if mask is not None else ""
    return leaf_transform(where, f"add_decayed_weights({wd:g}{shown})", init, update_leaves, EmptyState,
                          needs_params=lambda params: _require_params(where, params))


def global_norm(tree: Any) -> float:
    """The L2 norm of all the leaves of ``tree`` taken together, as a Python float."""
    return _norm(tree_leaves(tree))


def _norm(leaves: Leaves) -> float:
    return math.sqrt(sum(float(np.vdot(x, x)) for x in leaves))


def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    """Rescale all updates together so that their global L2 norm is at most ``max_norm``.

    Updates whose norm is already within the bound pass through unchanged.

    Args:
        max_norm: > 0.
    """
    where = "clip_by_global_norm"
    bound = real_number(max_norm, where, "max_norm", low=0.0, low_open=True)

    def init(params: Any) -> EmptyState:
        return EmptyState()

    def update_leaves(grads: Leaves, state: EmptyState, view: LeafView):
        check_state(where, state, EmptyState)
        norm = _norm(grads)
        if not norm > bound:
            return grads, state
        factor = bound / norm
        return [freeze(g * factor) for g in grads], state

    return leaf_transform(where, f"clip_by_global_norm({bound:g})", init, update_leaves, EmptyState)


def _bound(value: Any, where: str, arg: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where}: {arg} must be a real number, got {value!r} ({type(value).__name__})")
    if math.isnan(value):
        raise ValueError(f"{where}: {arg} must not be NaN")
    return float(value)


def clip_by_value(low: float, high: float) -> GradientTransformation:
    """Clip every update element into ``[low, high]`` (infinite bounds allowed).

    Args:
        low: lower bound.
        high: upper bound, >= ``low``.
    """
    where = "clip_by_value"
    lo = _bound(low, where, "low")
    hi = _bound(high, where, "high")
    if lo > hi:
        raise ValueError(f"{where}: low must be <= high, got low={low!r} > high={high!r}")

    def init(params: Any) -> EmptyState:
        return EmptyState()

    def update_leaves(grads: Leaves, state: EmptyState, view: LeafView):
        check_state(where, state, EmptyState)
        return [freeze(np.clip(g, lo, hi)) for g in grads], state

    return leaf_transform(where, f"clip_by_value({lo:g}, {hi:g})", init, update_leaves, EmptyState)


def masked(inner: GradientTransformation, mask: Mask) -> GradientTransformation:
    """Apply ``inner`` to the selected leaves only; the others pass through unchanged.

    ``inner`` sees gradients (and params) with ``None`` at the unselected leaves,
    so its state holds nothing for them.

    Args:
        inner: the transformation to restrict.
        mask: which leaves ``inner`` applies to (see :mod:`~functional_cnn.optim.masks`).
    """
    where = "masked"
    if not isinstance(inner, GradientTransformation):
        raise TypeError(f"{where}: inner must be a GradientTransformation, got {type(inner).__name__}")
    m = resolve_mask(mask, where)
    label = f"masked({inner.name}, {mask!r})"

    def keep_only(tree: Any, chosen: Set[str]) -> Any:
        return tree_map_with_path(lambda path, x: x if path in chosen else None, tree)

    def init(params: Any) -> MaskedState:
        tp = trainable(params)
        if m is not None:
            check_mask_matches(m, tree_paths(tp), where)
        return MaskedState(part_call(label, "init", inner.init, keep_only(tp, _selected(m, tp, where))))

    def update(grads: Any, state: MaskedState, params: Any = None):
        check_state(where, state, MaskedState)
        check_grads(where, grads, params)
        if params is not None:
            tp = trainable(params)
            chosen = _selected(m, tp, where)
            sub_params = keep_only(tp, chosen)
        else:
            chosen = _selected(m, grads, where)
            sub_params = None
        sub_updates, inner_state = part_call(label, "update", inner.update, keep_only(grads, chosen), state.inner,
                                             sub_params)
        new = dict(tree_leaves_with_paths(sub_updates))
        updates = tree_map_with_path(lambda path, g: new.get(path, g), grads)
        return updates, MaskedState(inner_state)

    return GradientTransformation(init, update, label)

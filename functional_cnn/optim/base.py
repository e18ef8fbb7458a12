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

from ..layer import Array, readonly
from ..tree import (
    assert_same_structure,
    tree_describe,
    tree_leaves,
    tree_leaves_with_paths,
    tree_map,
    tree_map_with_path,
    trainable,
)

__all__ = [
    "GradientTransformation",
    "EmptyState",
    "chain",
    "apply_updates",
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
    """

    init: Callable[[Params], OptState]
    update: Callable[..., Tuple[Updates, OptState]]
    name: str = "transform"

    def __repr__(self) -> str:
        return self.name


@attrs.frozen(eq=False)
class EmptyState:
    """The state of a transformation that keeps none (``scale``, clipping, ...)."""


# ----------------------------------------------------------------------------- helpers
def freeze(x: Array) -> Array:
    """Mark a freshly built array read-only (no copy) and return it."""
    x = np.asarray(x)
    x.flags.writeable = False
    return x


def freeze_tree(tree: Any) -> Any:
    """attrs converter: read-only arrays; already read-only arrays are not copied."""
    return tree_map(readonly, tree)


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


def check_grads(where: str, grads: Any, params: Any = None) -> None:
    """Every leaf of ``grads`` must be a floating array; with ``params``, the trees must match.

    Called first by every transformation's ``update``, so an integer, complex or
    object gradient (or a Python number: its dtype is a guess) is refused with its
    path instead of being silently promoted or failing deep inside. NumPy float
    scalars (``np.float32(1.0)``, what ``a.sum()`` returns) are accepted.
    """
    for path, g in tree_leaves_with_paths(grads):
        if not isinstance(g, (np.ndarray, np.floating)) or g.dtype.kind != "f":
            got = g.dtype if isinstance(g, (np.ndarray, np.generic)) else type(g).__name__
            raise TypeError(f"{where}.update: grads leaf '{path or '<root>'}' must be a floating numpy array "
                            f"(float16/32/64), got {got}")
    if params is not None:
        check_grads_against_params(where, grads, params)


def _check_shapes(where: str, grads: Any, other: Any, other_name: str, hint: str) -> None:
    for (path, g), o in zip(tree_leaves_with_paths(grads), tree_leaves(other)):
        if np.shape(g) != np.shape(o):
            raise ValueError(
                f"{where}.update: grads leaf '{path}' has shape {np.shape(g)} but the {other_name} "
                f"leaf there has shape {np.shape(o)}{hint}"
            )


def check_grads_against_state(where: str, grads: Any, moments: Any) -> None:
    """Gradients must match the moment tree the state was built with (same model)."""
    hint = "; the state was built by init for another model (or the params changed shape)"
    try:
        assert_same_structure(grads, moments, where=f"{where}.update", names=("grads", "state"))
    except TypeError as err:
        raise TypeError(f"{err}\n{hint[2:]}") from None
    _check_shapes(where, grads, moments, "state", hint)


def check_grads_against_params(where: str, grads: Any, params: Any) -> None:
    """``grads`` must have the structure and shapes of ``trainable(params)``."""
    wanted = trainable(params)
    assert_same_structure(grads, wanted, where=f"{where}.update", names=("grads", "params (trainable)"))
    _check_shapes(where, grads, wanted, "params", "")


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


def chain(*transforms: GradientTransformation, name: Optional[str] = None) -> GradientTransformation:
    """Compose transformations: the updates of each feed the next, left to right.

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

    def update(grads: Updates, state: Tuple[OptState, ...], params: Optional[Params] = None):
        if not isinstance(state, tuple) or len(state) != len(transforms):
            got = f"tuple of {len(state)}" if isinstance(state, tuple) else type(state).__name__
            raise TypeError(
                f"{label}.update: state must be the tuple of {len(transforms)} states made by this "
                f"optimizer's init, got {got}; was it made by another optimizer?"
            )
        check_grads(label, grads, params)
        new_states: List[OptState] = []
        for t, s in zip(transforms, state):
            grads, s = part_call(label, "update", t.update, grads, s, params)
            new_states.append(s)
        return grads, tuple(new_states)

    return GradientTransformation(init, update, label)


# ----------------------------------------------------------------------------- apply
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
    assert_same_structure(updates, params, where="apply_updates", names=("updates", "params"), none_prefix=True)
    by_path = dict(tree_leaves_with_paths(updates))
    for path, u in by_path.items():
        if not isinstance(u, (np.ndarray, np.floating)) or u.dtype.kind != "f":
            got = u.dtype if isinstance(u, (np.ndarray, np.generic)) else type(u).__name__
            raise TypeError(f"apply_updates: update '{path or '<root>'}' must be a floating numpy array, got {got}")

    def add(path: str, p: Any) -> Any:
        u = by_path.get(path)
        if u is None:
            return p
        p = np.asarray(p)
        if p.dtype.kind != "f":
            raise TypeError(f"apply_updates: param '{path or '<root>'}' must be a floating numpy array, got {p.dtype}")
        if u.shape != p.shape:
            raise ValueError(
                f"apply_updates: update '{path}' has shape {u.shape}, its param has shape {p.shape}\n"
                f"updates:\n{tree_describe(updates)}"
            )
        return freeze(p + u.astype(p.dtype, copy=False))

    return tree_map_with_path(add, params)

"""Scaling transformations: step sizes, learning rates and moment estimates.

Each factory validates its hyperparameters (a ``ValueError`` names the function,
the argument and the allowed range) and returns a :class:`GradientTransformation`.
States are frozen records; a shape comment gives each field. ``P`` stands for a
tree shaped like ``trainable(params)`` whose arrays have the params' dtype.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Tuple, Union

import attrs
import numpy as np

from .._checks import real_number
from ..params import readonly
from .base import EmptyState, GradientTransformation, leaf_transform
from .leaves import (
    Array,
    LeafView,
    Leaves,
    check_state,
    freeze,
    freeze_tree,
    moment_leaves,
    new_count,
    zeros_like_params,
)
from .moments import bias_corrected, root_scaled, update_moments, widen

__all__ = [
    "ScaleByLearningRateState",
    "TraceState",
    "ScaleByAdamState",
    "ScaleByRmsState",
    "ScaleByAdagradState",
    "scale",
    "scale_by_learning_rate",
    "learning_rate",
    "trace",
    "scale_by_adam",
    "scale_by_rms",
    "scale_by_adagrad",
]

Schedule = Callable[[int], float]


@attrs.frozen(eq=False)
class ScaleByLearningRateState:
    """State of :func:`scale_by_learning_rate`."""

    count: Array = attrs.field(converter=readonly)          # () int64: updates applied so far
    learning_rate: Array = attrs.field(converter=readonly)  # () float64: rate the NEXT update applies


@attrs.frozen(eq=False)
class TraceState:
    """State of :func:`trace` (momentum)."""

    count: Array = attrs.field(converter=readonly)  # () int64
    trace: Any = attrs.field(converter=freeze_tree)  # P: the momentum buffer


@attrs.frozen(eq=False)
class ScaleByAdamState:
    """State of :func:`scale_by_adam`."""

    count: Array = attrs.field(converter=readonly)  # () int64
    mu: Any = attrs.field(converter=freeze_tree)  # P: first moment (mean of grads)
    nu: Any = attrs.field(converter=freeze_tree)  # P: second moment (mean of grads**2)


@attrs.frozen(eq=False)
class ScaleByRmsState:
    """State of :func:`scale_by_rms`."""

    count: Array = attrs.field(converter=readonly)  # () int64
    nu: Any = attrs.field(converter=freeze_tree)  # P: running mean of grads**2


@attrs.frozen(eq=False)
class ScaleByAdagradState:
    """State of :func:`scale_by_adagrad`."""

    count: Array = attrs.field(converter=readonly)  # () int64
    sum_of_squares: Any = attrs.field(converter=freeze_tree)  # P: initial value + sum of grads**2


def _frozen(arrays: Leaves) -> Leaves:
    return [freeze(a) for a in arrays]


def _widened(grads: Leaves, like: Leaves) -> Leaves:
    """Each gradient in its moment's dtype where that is wider (see :func:`~.moments.widen`)."""
    return [widen(g, m) for g, m in zip(grads, like)]


def _unit_interval(value: Any, where: str, arg: str) -> float:
    return real_number(value, where, arg, low=0.0, high=1.0, high_open=True)


def _positive(value: Any, where: str, arg: str) -> float:
    return real_number(value, where, arg, low=0.0, low_open=True)


def _bump(count: Array) -> Array:
    return new_count(int(count) + 1)


# ----------------------------------------------------------------------------- scale
def scale(step_size: float) -> GradientTransformation:
    """Multiply every update by a constant ``step_size`` (any finite real)."""
    where = "scale"
    factor = real_number(step_size, where, "step_size")

    def init(params: Any) -> EmptyState:
        return EmptyState()

    def update_leaves(grads: Leaves, state: EmptyState, view: LeafView):
        check_state(where, state, EmptyState)
        return [freeze(g * factor) for g in grads], state

    return leaf_transform(where, f"scale({factor:g})", init, update_leaves, EmptyState)


def _learning_rate_fn(lr: Union[float, Schedule], where: str) -> Callable[[int], float]:
    """A checked ``step -> lr`` function: finite and >= 0 at every step."""
    if callable(lr):
        schedule = lr

        def at(step: int) -> float:
            value = schedule(step)
            try:
                ok = math.isfinite(value) and value >= 0
            except TypeError:
                ok = False
            if not ok:
                raise ValueError(
                    f"{where}: the learning-rate schedule gave {value!r} at step {step}; "
                    f"learning rates must be finite numbers >= 0"
                )
            return float(value)

        at(0)  # fail at construction for schedules that are wrong from the start
        return at
    value = real_number(lr, where, "learning_rate", low=0.0)
    return lambda step: value


def _peek(lr_at: Callable[[int], float], step: int) -> Array:
    """The rate at ``step`` for display in the state; an invalid one shows as NaN
    here and raises when an update would use it."""
    try:
        value = lr_at(step)
    except ValueError:
        value = float("nan")
    return freeze(np.array(value, dtype=np.float64))


def scale_by_learning_rate(learning_rate: Union[float, Schedule]) -> GradientTransformation:
    """Multiply updates by ``-learning_rate``: the descent step.

    Args:
        learning_rate: a number >= 0, or a schedule ``step -> lr`` (see
            :mod:`functional_cnn.optim.schedules`) evaluated at the state's count,
            i.e. 0 for the first update.

    The state holds the count and the rate the *next* update will apply; read it
    with :func:`learning_rate`.
    """
    where = "scale_by_learning_rate"
    lr_at = _learning_rate_fn(learning_rate, where)

    def init(params: Any) -> ScaleByLearningRateState:
        return ScaleByLearningRateState(new_count(0), _peek(lr_at, 0))

    def update_leaves(grads: Leaves, state: ScaleByLearningRateState, view: LeafView):
        check_state(where, state, ScaleByLearningRateState)
        step = int(state.count)
        neg = -lr_at(step)
        updates = [freeze(neg * g) for g in grads]
        return updates, ScaleByLearningRateState(_bump(state.count), _peek(lr_at, step + 1))

    shown = f"{learning_rate:g}" if not callable(learning_rate) else repr(learning_rate)
    return leaf_transform(where, f"scale_by_learning_rate({shown})", init, update_leaves, ScaleByLearningRateState)


_RECORD_FIELDS: dict = {}


def _record_fields(cls: type) -> tuple:
    """Field names of an attrs class (``()`` for other classes), found once per class."""
    found = _RECORD_FIELDS.get(cls)
    if found is None:
        found = _RECORD_FIELDS[cls] = tuple(f.name for f in attrs.fields(cls)) if attrs.has(cls) else ()
    return found


def _find(state: Any, cls: type) -> Iterator[Any]:
    if isinstance(state, cls):
        yield state
    elif isinstance(state, (tuple, list)):
        for s in state:
            yield from _find(s, cls)
    else:
        for name in _record_fields(type(state)):
            yield from _find(getattr(state, name), cls)


def _paths_to(state: Any, cls: type, path: Tuple[Any, ...] = ()) -> Iterator[Tuple[Any, ...]]:
    if isinstance(state, cls):
        yield path
    elif isinstance(state, (tuple, list)):
        for i, s in enumerate(state):
            yield from _paths_to(s, cls, path + (i,))
    else:
        for name in _record_fields(type(state)):
            yield from _paths_to(getattr(state, name), cls, path + (name,))


def learning_rate_reader(state: Any) -> Callable[[Any], float]:
    """:func:`learning_rate` for states shaped like ``state``, with the rate's place found once.

    The reader follows the path where ``state`` holds its :class:`ScaleByLearningRateState`;
    a state of another shape falls back to the full search (and its errors).
    """
    paths = list(_paths_to(state, ScaleByLearningRateState))
    if len(paths) != 1:
        learning_rate(state)  # raises the named error
    path = paths[0]

    def read(s: Any) -> float:
        node = s
        try:
            for key in path:
                node = node[key] if type(key) is int else getattr(node, key)
        except (IndexError, KeyError, TypeError, AttributeError):
            return learning_rate(s)
        if type(node) is not ScaleByLearningRateState:
            return learning_rate(s)
        return float(node.learning_rate)

    return read


def learning_rate(state: Any) -> float:
    """The learning rate the next ``update`` with ``state`` will apply.

    Works on the state of any optimizer containing exactly one
    :func:`scale_by_learning_rate` (every alias does). To log the rate a step used,
    read it from the state *passed to* that step: ``learning_rate(state) ==
    schedule(count)``, with ``count`` the number of updates already applied.

    Raises:
        ValueError: the state holds no learning rate, or several.
    """
    found = list(_find(state, ScaleByLearningRateState))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise ValueError(
            f"learning_rate: state must contain exactly one ScaleByLearningRateState (from "
            f"scale_by_learning_rate), found {what}"
        )
    return float(found[0].learning_rate)


# ----------------------------------------------------------------------------- momentum
def trace(decay: float, nesterov: bool = False) -> GradientTransformation:
    """Momentum: ``t = g + decay * t``; the update is ``t`` (or ``g + decay * t``, Nesterov).

    Args:
        decay: momentum coefficient in [0, 1).
        nesterov: use Nesterov's look-ahead form.
    """
    where = "trace"
    decay = _unit_interval(decay, where, "decay")
    if not isinstance(nesterov, (bool, np.bool_)):
        raise TypeError(f"{where}: nesterov must be a bool, got {nesterov!r}")

    def init(params: Any) -> TraceState:
        return TraceState(new_count(0), zeros_like_params(params, where))

    def update_leaves(grads: Leaves, state: TraceState, view: LeafView):
        check_state(where, state, TraceState)
        t = _frozen(update_moments(grads, moment_leaves(where, grads, view, state.trace), decay, order=1,
                                   weight=1.0))
        if nesterov:
            updates = _frozen([(g + decay * m).astype(g.dtype, copy=False) for g, m in zip(grads, t)])
        else:  # the moment itself (already frozen) where the dtypes agree
            updates = [m if m.dtype == g.dtype else freeze(m.astype(g.dtype)) for g, m in zip(grads, t)]
        return updates, TraceState(_bump(state.count), view.unflatten(t))

    return leaf_transform(where, f"trace(decay={decay:g}, nesterov={bool(nesterov)})", init, update_leaves,
                          TraceState)


# ----------------------------------------------------------------------------- adaptive
def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                  eps_root: float = 0.0) -> GradientTransformation:
    """Adam's direction (Kingma & Ba): bias-corrected ``m / (sqrt(v + eps_root) + eps)``.

    ``m = b1 m + (1 - b1) g`` and ``v = b2 v + (1 - b2) g**2``; after ``t`` updates
    they are divided by ``1 - b1**t`` and ``1 - b2**t``. The sign is kept: chain
    with :func:`scale_by_learning_rate` to descend.

    Args:
        b1, b2: decay rates of the moments, each in [0, 1).
        eps: added to the denominator, > 0.
        eps_root: added inside the square root, >= 0.
    """
    where = "scale_by_adam"
    b1 = _unit_interval(b1, where, "b1")
    b2 = _unit_interval(b2, where, "b2")
    eps = _positive(eps, where, "eps")
    eps_root = real_number(eps_root, where, "eps_root", low=0.0)

    def init(params: Any) -> ScaleByAdamState:
        return ScaleByAdamState(new_count(0), zeros_like_params(params, where), zeros_like_params(params, where))

    def update_leaves(grads: Leaves, state: ScaleByAdamState, view: LeafView):
        check_state(where, state, ScaleByAdamState)
        mu = update_moments(grads, moment_leaves(where, grads, view, state.mu), b1, order=1)
        nu = update_moments(grads, moment_leaves(where, grads, view, state.nu), b2, order=2)
        t = int(state.count) + 1
        updates = root_scaled(bias_corrected(mu, b1, t), bias_corrected(nu, b2, t), eps, eps_root, like=grads)
        return _frozen(updates), ScaleByAdamState(new_count(t), view.unflatten(_frozen(mu)),
                                                   view.unflatten(_frozen(nu)))

    return leaf_transform(where, f"scale_by_adam(b1={b1:g}, b2={b2:g}, eps={eps:g})", init, update_leaves,
                          ScaleByAdamState)


def scale_by_rms(decay: float = 0.9, eps: float = 1e-8) -> GradientTransformation:
    """RMSProp's direction: ``g / (sqrt(v) + eps)`` with ``v = decay v + (1 - decay) g**2``.

    ``v`` starts at zero and is not bias-corrected (as in Hinton's lecture and PyTorch).

    Args:
        decay: in [0, 1).
        eps: > 0.
    """
    where = "scale_by_rms"
    decay = _unit_interval(decay, where, "decay")
    eps = _positive(eps, where, "eps")

    def init(params: Any) -> ScaleByRmsState:
        return ScaleByRmsState(new_count(0), zeros_like_params(params, where))

    def update_leaves(grads: Leaves, state: ScaleByRmsState, view: LeafView):
        check_state(where, state, ScaleByRmsState)
        nu = update_moments(grads, moment_leaves(where, grads, view, state.nu), decay, order=2)
        updates = root_scaled(_widened(grads, nu), nu, eps, like=grads)
        return _frozen(updates), ScaleByRmsState(_bump(state.count), view.unflatten(_frozen(nu)))

    return leaf_transform(where, f"scale_by_rms(decay={decay:g}, eps={eps:g})", init, update_leaves,
                          ScaleByRmsState)


def scale_by_adagrad(initial_accumulator: float = 0.1, eps: float = 1e-7) -> GradientTransformation:
    """Adagrad's direction: ``g / (sqrt(s) + eps)`` with ``s = initial_accumulator + sum g**2``.

    Args:
        initial_accumulator: starting value of ``s``, >= 0.
        eps: > 0.
    """
    where = "scale_by_adagrad"
    init_acc = real_number(initial_accumulator, where, "initial_accumulator", low=0.0)
    eps = _positive(eps, where, "eps")

    def init(params: Any) -> ScaleByAdagradState:
        return ScaleByAdagradState(new_count(0), zeros_like_params(params, where, fill=init_acc))

    def update_leaves(grads: Leaves, state: ScaleByAdagradState, view: LeafView):
        check_state(where, state, ScaleByAdagradState)
        sums = update_moments(grads, moment_leaves(where, grads, view, state.sum_of_squares), 1.0, order=2,
                              weight=1.0)
        updates = root_scaled(_widened(grads, sums), sums, eps, like=grads)
        return _frozen(updates), ScaleByAdagradState(_bump(state.count), view.unflatten(_frozen(sums)))

    return leaf_transform(where, f"scale_by_adagrad(initial_accumulator={init_acc:g}, eps={eps:g})", init,
                          update_leaves, ScaleByAdagradState)

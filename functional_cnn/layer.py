"""The Layer record: a layer is a bundle of pure functions.

Contract (shapes exclude the batch axis; arrays are batched, NCHW for images)::

    out_shape, params = layer.init(rng, in_shape, dtype=np.float32)
    y, cache          = layer.forward(params, x, rng=None, train=False)
    grads, dx         = layer.backward(params, cache, dy, need_dx=True)
    params            = layer.update_state(params, cache)   # stateful layers only

* ``params`` is an immutable tree: ``None`` for layers without parameters, a frozen
  attrs record whose arrays are read-only, or a tuple of those for combinators.
* ``grads`` has the same class as ``params``. Fields declared with :func:`state_field`
  (batch-norm running statistics) are non-trainable: their gradient is ``None``, so
  optimizers, which map over gradients, never see them.
* ``update_state`` returns params whose state fields hold the statistics computed by a
  training-mode forward pass; it is the identity for stateless layers.
* ``cache_bytes(in_shape, itemsize)`` gives the bytes one example adds to the cache,
  so :func:`functional_cnn.summary` can size a network without data.
* ``need_dx=False`` tells ``backward`` that nobody will read ``dx`` (the first layer of a
  network in a training step): it may skip computing it and return ``(grads, None)``.
  The grads must be the same as with ``need_dx=True``. A ``backward`` written without
  the keyword still works: :class:`Layer` adapts it once, at construction.
* ``layer.forward`` and ``layer.backward`` check their input first when the layer
  declares a ``spec`` (see :mod:`functional_cnn.boundary`); the functions given to
  ``Layer(...)``, the math, stay available as ``layer.forward_unchecked`` and
  ``layer.backward_unchecked``, which combinators call once they have checked the
  whole network at its boundary.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Optional, Tuple

import attrs
import numpy as np

from .boundary import checked
from .params import is_state_field, param_field, readonly, state_field

Array = np.ndarray
Shape = Tuple[int, ...]
Params = Any
Cache = Any

__all__ = [
    "Array",
    "Shape",
    "Params",
    "Cache",
    "Layer",
    "readonly",
    "param_field",
    "state_field",
    "is_state_field",
    "no_state",
    "ShapeCache",
]


def no_state(params: Params, cache: Cache) -> Params:
    """``update_state`` of a stateless layer: params unchanged."""
    return params


@attrs.frozen(eq=False)
class ShapeCache:
    """The cache of a layer whose backward needs only its input's shape and dtype."""

    x_shape: Tuple[int, ...]  # (N, ...) the input's shape
    dtype: np.dtype  # the input's (and the output's) dtype


def _takes_need_dx(fn: Callable) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin or a C callable: no keyword to pass
        return False
    return "need_dx" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _with_need_dx(backward: Callable) -> Callable:
    """``backward`` accepting ``need_dx=``: a user's function without the keyword is wrapped (it computes dx)."""
    if _takes_need_dx(backward):
        return backward

    def adapted(params: Params, cache: Cache, dy: Any, *, need_dx: bool = True) -> Tuple[Params, Any]:
        return backward(params, cache, dy)

    adapted.__wrapped__ = backward  # type: ignore[attr-defined]
    return adapted


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    return repr(value)


@attrs.frozen(eq=False)
class Layer:
    """A layer: a name and the pure functions that define it.

    Attributes:
        name: short name, e.g. ``"conv2d"``.
        init: ``(rng, in_shape, dtype=float32) -> (out_shape, params)``.
        forward: ``(params, x, *, rng=None, train=False) -> (y, cache)``: the math, with
            no input checks when the layer has a ``spec``; kept as ``forward_unchecked``.
            ``layer.forward`` is the checked entry point.
        backward: ``(params, cache, dy, *, need_dx=True) -> (grads, dx)``; ``dx`` may be
            None when ``need_dx`` is False; kept as ``backward_unchecked``.
        update_state: ``(params, cache) -> params``; identity for stateless layers.
        cache_bytes: ``(in_shape, itemsize) -> int`` bytes per example held in the
            cache, or ``None`` when unknown.
        config: the hyperparameters the layer was built with (for display and
            checkpoint manifests).
        children: sub-layers of a combinator, in order.
        rebuild: for a combinator, ``rebuild(*children)`` makes the same combinator
            over other children (used to wrap every layer, e.g. by ``debug``).
        spec: what the layer accepts (:class:`functional_cnn.boundary.Spec` or
            ``Composite``), checked where input enters a network; None (a user's layer)
            leaves every check to the layer's own functions.
    """

    name: str
    init: Callable[..., Tuple[Shape, Params]]
    forward_unchecked: Callable[..., Tuple[Array, Cache]] = attrs.field(alias="forward")
    backward_unchecked: Callable[..., Tuple[Params, Any]] = attrs.field(alias="backward", converter=_with_need_dx)
    update_state: Callable[[Params, Cache], Params] = no_state
    cache_bytes: Optional[Callable[[Shape, int], int]] = None
    config: Mapping[str, Any] = attrs.field(factory=dict)
    children: Tuple[Layer, ...] = ()
    rebuild: Optional[Callable[..., Layer]] = None
    spec: Any = None
    forward: Callable[..., Tuple[Array, Cache]] = attrs.field(init=False, repr=False)
    backward: Callable[..., Tuple[Params, Any]] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.spec is None:
            fwd, bwd = self.forward_unchecked, self.backward_unchecked
        else:
            fwd, bwd = checked(self.name, self.spec, self.forward_unchecked, self.backward_unchecked)
        object.__setattr__(self, "forward", fwd)
        object.__setattr__(self, "backward", bwd)

    def describe(self) -> str:
        """``name(k=v, ...)`` with the construction arguments."""
        args = ", ".join(f"{k}={_short(v)}" for k, v in self.config.items())
        return f"{self.name}({args})"

    def __repr__(self) -> str:
        if self.children:
            inner = ", ".join(repr(c) for c in self.children)
            return f"{self.name}({inner})"
        return self.describe()

    def _repr_html_(self) -> str:
        from .display import layer_html

        return layer_html(self)

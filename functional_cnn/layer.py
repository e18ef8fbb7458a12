"""The Layer record: a layer is a bundle of pure functions.

Contract (shapes exclude the batch axis; arrays are batched, NCHW for images)::

    out_shape, params = layer.init(rng, in_shape, dtype=np.float32)
    y, cache          = layer.forward(params, x, rng=None, train=False)
    grads, dx         = layer.backward(params, cache, dy)
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
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Tuple

import attrs
import numpy as np

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
]


def no_state(params: Params, cache: Cache) -> Params:
    """``update_state`` of a stateless layer: params unchanged."""
    return params


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
        forward: ``(params, x, *, rng=None, train=False) -> (y, cache)``.
        backward: ``(params, cache, dy) -> (grads, dx)``.
        update_state: ``(params, cache) -> params``; identity for stateless layers.
        cache_bytes: ``(in_shape, itemsize) -> int`` bytes per example held in the
            cache, or ``None`` when unknown.
        config: the hyperparameters the layer was built with (for display and
            checkpoint manifests).
        children: sub-layers of a combinator, in order.
        rebuild: for a combinator, ``rebuild(*children)`` makes the same combinator
            over other children (used to wrap every layer, e.g. by ``debug``).
    """

    name: str
    init: Callable[..., Tuple[Shape, Params]]
    forward: Callable[..., Tuple[Array, Cache]]
    backward: Callable[[Params, Cache, Array], Tuple[Params, Array]]
    update_state: Callable[[Params, Cache], Params] = no_state
    cache_bytes: Optional[Callable[[Shape, int], int]] = None
    config: Mapping[str, Any] = attrs.field(factory=dict)
    children: Tuple["Layer", ...] = ()
    rebuild: Optional[Callable[..., "Layer"]] = None

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

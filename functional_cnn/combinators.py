"""Combinators: layers built from layers. ``serial`` chains them.

``serial(a, b, c)`` is itself a Layer whose params are ``(pa, pb, pc)`` and whose
cache is ``(ca, cb, cc)``; forward folds left to right, backward folds over the
reversed children. Nested serials nest their params.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence, Tuple, TypeVar

import numpy as np
import toolz

from ._checks import check_rng
from .layer import Array, Layer, Shape
from .tree import tree_describe

__all__ = ["serial", "call_child", "child_error", "check_children", "check_child_params", "check_child_caches",
           "spawn_rngs"]

T = TypeVar("T")


def child_error(err: Exception, where: str) -> Exception:
    """``err`` re-raised with ``where`` (e.g. ``"serial[2]"``) prefixed, same type.

    Only plain ``ValueError``/``TypeError`` are rewrapped; other exceptions pass as is.
    """
    if type(err) in (ValueError, TypeError):
        return type(err)(f"{where} -> {err}")
    return err


def call_child(where: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, a child's plain ValueError/TypeError re-raised with ``where`` prefixed."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError) as err:
        new = child_error(err, where)
        if new is err:
            raise
        raise new from err


def check_children(layers: Sequence[Any], where: str) -> Tuple[Layer, ...]:
    """Every element must be a Layer; there must be at least one."""
    if not layers:
        raise ValueError(f"{where}: needs at least one layer, got none")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            hint = " (did you forget to call the factory, e.g. relu() rather than relu?)" if callable(layer) else ""
            raise TypeError(f"{where}: argument {i} must be a Layer, got {type(layer).__name__}{hint}")
    return tuple(layers)


def check_child_params(params: Any, n: int, where: str) -> None:
    """Combinator params must be a tuple with one entry per child; the error shows them by path."""
    if not isinstance(params, tuple) or len(params) != n:
        got = f"tuple of length {len(params)}" if isinstance(params, tuple) else type(params).__name__
        raise TypeError(f"{where}: params must be a tuple of {n} child params (one per layer), got {got}; "
                        f"make them with this layer's init. Got:\n{tree_describe(params)}")


def check_child_caches(cache: Any, n: int, where: str) -> None:
    """A combinator's cache must be the tuple of its children's caches that its forward returned."""
    if not isinstance(cache, tuple) or len(cache) != n:
        got = f"tuple of length {len(cache)}" if isinstance(cache, tuple) else type(cache).__name__
        raise TypeError(f"{where}: cache must be the tuple of {n} child caches returned by this layer's forward, "
                        f"got {got}")


def spawn_rngs(rng: Any, n: int, where: str) -> Tuple[Any, ...]:
    """``n`` independent child generators of ``rng`` (or ``n`` Nones)."""
    check_rng(rng, where, required=False)
    if rng is None:
        return (None,) * n
    return tuple(rng.spawn(n))


def serial(*layers: Layer) -> Layer:
    """Chain layers: the output of each is the input of the next.

    Args:
        *layers: one or more Layers (serials may nest).

    Returns:
        A Layer with params ``tuple(child params)``; ``init`` spawns one child
        generator per layer from the given ``rng``, so each layer's draws depend
        only on the seed and its position.

    >>> from functional_cnn.layers import dense, relu
    >>> net = serial(dense(3), relu(), dense(2))
    >>> net.init(np.random.default_rng(0), (4,))[0]
    (2,)
    """
    where = "serial"
    children = check_children(layers, where)
    n = len(children)
    names = [f"{where}[{i}] ({c.name})" for i, c in enumerate(children)]

    def init(rng: np.random.Generator, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, Tuple[Any, ...]]:
        rngs = spawn_rngs(rng, n, where)

        def step(acc: Tuple[Shape, Tuple[Any, ...]], item: Tuple[int, Layer]) -> Tuple[Shape, Tuple[Any, ...]]:
            shape, params = acc
            i, layer = item
            out, p = call_child(names[i], layer.init, rngs[i], shape, dtype)
            return tuple(out), params + (p,)

        # in_shape goes to the first child as given: it validates it and names itself in the error.
        return toolz.reduce(step, enumerate(children), (in_shape, ()))

    def forward(params: Tuple[Any, ...], x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, Tuple]:
        check_child_params(params, n, where)
        rngs = spawn_rngs(rng, n, where)

        def step(acc: Tuple[Array, Tuple], i: int) -> Tuple[Array, Tuple]:
            h, caches = acc
            y, c = call_child(names[i], children[i].forward, params[i], h, rng=rngs[i], train=train)
            return y, caches + (c,)

        return toolz.reduce(step, range(n), (x, ()))

    def backward(params: Tuple[Any, ...], cache: Tuple, dy: Array) -> Tuple[Tuple[Any, ...], Array]:
        check_child_params(params, n, where)
        check_child_caches(cache, n, where)

        def step(acc: Tuple[Array, Tuple], i: int) -> Tuple[Array, Tuple]:
            d, grads = acc
            g, d = call_child(names[i], children[i].backward, params[i], cache[i], d)
            return d, (g,) + grads

        dx, grads = toolz.reduce(step, reversed(range(n)), (dy, ()))
        return grads, dx

    def update_state(params: Tuple[Any, ...], cache: Tuple) -> Tuple[Any, ...]:
        check_child_params(params, n, where)
        check_child_caches(cache, n, where)
        return tuple(c.update_state(p, k) for c, p, k in zip(children, params, cache))

    def cache_bytes(in_shape: Shape, itemsize: int) -> int:
        total, shape = 0, tuple(in_shape)
        rng = np.random.default_rng(0)
        for child in children:
            if child.cache_bytes is not None:
                total += child.cache_bytes(shape, itemsize)
            shape, _ = child.init(rng, shape, np.float32)
        return total

    known = all(c.cache_bytes is not None for c in children)
    return Layer(where, init, forward, backward, update_state=update_state,
                 cache_bytes=cache_bytes if known else None, children=children, rebuild=serial)

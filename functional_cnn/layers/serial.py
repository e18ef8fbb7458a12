"""``serial``: chain layers, the output of each being the input of the next.

``serial(a, b, c)`` is itself a Layer whose params are ``(pa, pb, pc)`` and whose
cache is ``(ca, cb, cc)``; forward folds left to right, backward folds over the
reversed children. Nested serials nest their params.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import toolz

from ..layer import Array, Layer, Shape
from ._combinator import (
    call_child,
    check_child,
    check_child_backward,
    check_child_caches,
    check_child_params,
    check_children,
    composite,
    draws,
    entries,
    raise_from_child,
    spawn_rngs,
)

__all__ = ["serial"]


def serial(*layers: Layer) -> Layer:
    """Chain layers: the output of each is the input of the next.

    Args:
        *layers: one or more Layers (serials may nest).

    Returns:
        A Layer with params ``tuple(child params)``; ``init`` spawns one child
        generator per layer from the given ``rng``, so each layer's draws depend
        only on the seed and its position. ``backward(..., need_dx=False)`` passes
        ``need_dx=False`` on to the first layer only.

    >>> from functional_cnn.layers import dense, relu
    >>> net = serial(dense(3), relu(), dense(2))
    >>> net.init(np.random.default_rng(0), (4,))[0]
    (2,)
    """
    where = "serial"
    children = check_children(layers, where)
    n = len(children)
    names = [f"{where}[{i}] ({c.name})" for i, c in enumerate(children)]
    specced, forwards, backwards = entries(children)
    any_draws = any(map(draws, children))  # else forward hands the children no generators

    def init(rng: np.random.Generator, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, Tuple[Any, ...]]:
        rngs = spawn_rngs(rng, n, where)

        def step(acc: Tuple[Shape, Tuple[Any, ...]], i: int) -> Tuple[Shape, Tuple[Any, ...]]:
            shape, params = acc
            out, p = call_child(names[i], children[i].init, rngs[i], shape, dtype)
            return tuple(out), params + (p,)

        # in_shape goes to the first child as given: it validates it and names itself in the error.
        return toolz.reduce(step, range(n), (in_shape, ()))

    def forward(params: Tuple[Any, ...], x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, Tuple]:
        if not specced:
            check_child_params(params, n, where)
        rngs = spawn_rngs(rng, n, where, any_draws)
        caches = []
        for i in range(n):  # a loop, not call_child per layer: this runs on every step
            p, r = params[i], rngs[i]
            try:
                out = forwards[i](p, x, rng=r, train=train)
            except (ValueError, TypeError) as err:
                raise_from_child(err, names[i])
            x, c = out
            caches.append(c)
        return x, tuple(caches)

    def backward(params: Tuple[Any, ...], cache: Tuple, dy: Array, *, need_dx: bool = True
                 ) -> Tuple[Tuple[Any, ...], Optional[Array]]:
        if not specced:
            check_child_params(params, n, where)
            check_child_caches(cache, n, where)
        grads: list = [None] * n
        d = dy
        for i in reversed(range(n)):
            p, c = params[i], cache[i]
            try:
                out = backwards[i](p, c, d, need_dx=need_dx or i > 0)
            except (ValueError, TypeError) as err:
                raise_from_child(err, names[i])
            grads[i], d = out
        return tuple(grads), d

    def update_state(params: Tuple[Any, ...], cache: Tuple) -> Tuple[Any, ...]:
        check_child_params(params, n, where)
        check_child_caches(cache, n, where)
        new = tuple(c.update_state(p, k) for c, p, k in zip(children, params, cache))
        return params if all(a is b for a, b in zip(new, params)) and type(params) is tuple else new

    def cache_bytes(in_shape: Shape, itemsize: int) -> int:
        total, shape = 0, tuple(in_shape)
        rng = np.random.default_rng(0)
        for child in children:
            if child.cache_bytes is not None:
                total += child.cache_bytes(shape, itemsize)
            shape, _ = child.init(rng, shape, np.float32)
        return total

    def check(_: str, params: Tuple[Any, ...], in_shape: Any, dtype: Any, batch: int) -> Any:
        check_child_params(params, n, where)
        return toolz.reduce(lambda shape, i: check_child(names[i], children[i], params[i], shape, dtype, batch),
                            range(n), in_shape)

    def check_backward(_: str, params: Tuple[Any, ...], cache: Tuple) -> Any:
        check_child_params(params, n, where)
        check_child_caches(cache, n, where)
        return [check_child_backward(names[i], children[i], params[i], cache[i]) for i in range(n)][-1]

    spec = None
    if specced:
        first, last = children[0].spec, children[-1].spec
        spec = composite(children, check, check_backward, lambda out: out(n - 1), multi_in=first.multi_in,
                         n_in=first.n_in, multi_out=last.multi_out)
    known = all(c.cache_bytes is not None for c in children)
    return Layer(where, init, forward, backward, update_state=update_state,
                 cache_bytes=cache_bytes if known else None, children=children, rebuild=serial, spec=spec)

"""``residual``: ``y = shortcut(x) + block(x)``, the shortcut being a projection or the identity."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from .._checks import shape_tuple
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
    spawn_rngs,
)

__all__ = ["residual"]


def residual(block: Layer, projection: Optional[Layer] = None) -> Layer:
    """``y = shortcut(x) + block(x)``, the shortcut being ``projection`` or the identity.

    Backward: ``dx = dblock(dy) + dshortcut(dy)`` (``dy`` itself for the identity).

    Args:
        block: the residual branch.
        projection: a layer mapping the input to the block's output shape (e.g. a 1x1
            ``conv2d`` when channels change); None for the identity shortcut.

    Returns:
        A Layer with params ``(block_params,)`` or ``(block_params, projection_params)``.

    Raises:
        ValueError: at init, when the block's output shape differs from the shortcut's.

    >>> from functional_cnn.layers import dense
    >>> residual(dense(3)).init(np.random.default_rng(0), (3,))[0]
    (3,)
    """
    where = "residual"
    for i, (arg, value) in enumerate((("block", block), ("projection", projection))):
        if not isinstance(value, Layer) and not (arg == "projection" and value is None):
            hint = "; did you forget to call the factory, e.g. relu() rather than relu?" if callable(value) else ""
            raise TypeError(f"{where}: argument {i} must be a Layer, got {type(value).__name__} (the {arg}{hint})")
    children = check_children((block,) if projection is None else (block, projection), where)
    n = len(children)
    names = [f"{where}.block ({children[0].name})"] + ([f"{where}.projection ({children[1].name})"] if n == 2 else [])
    shortcut = "the projection's output" if n == 2 else "the identity shortcut's (the input)"
    specced, forwards, backwards = entries(children)
    any_draws = any(map(draws, children))  # else forward hands the children no generators

    def check_match(out: Shape, sc: Shape) -> None:
        if tuple(out) != tuple(sc):
            hint = "" if n == 2 else "; pass projection=... (e.g. a 1x1 conv2d) to map the input to it"
            raise ValueError(f"{where}: the block's output shape {tuple(out)} differs from {shortcut} shape "
                             f"{tuple(sc)}{hint}")

    def init(rng: np.random.Generator, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, Tuple[Any, ...]]:
        in_shape = shape_tuple(in_shape, where)
        rngs = spawn_rngs(rng, n, where)
        res = [call_child(names[i], c.init, rngs[i], in_shape, dtype) for i, c in enumerate(children)]
        check_match(res[0][0], res[1][0] if n == 2 else in_shape)
        return tuple(res[0][0]), tuple(p for _, p in res)

    def forward(params: Tuple[Any, ...], x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, Tuple]:
        if not specced:
            check_child_params(params, n, where)
        rngs = spawn_rngs(rng, n, where, any_draws)
        res = [call_child(names[i], forwards[i], params[i], x, rng=rngs[i], train=train) for i in range(n)]
        ys = res[1][0] if n == 2 else x
        if not specced:
            check_match(res[0][0].shape[1:], ys.shape[1:])
        return res[0][0] + ys, tuple(c for _, c in res)

    def backward(params: Tuple[Any, ...], cache: Tuple, dy: Array, *, need_dx: bool = True
                 ) -> Tuple[Tuple[Any, ...], Optional[Array]]:
        if not specced:
            check_child_params(params, n, where)
            check_child_caches(cache, n, where)
        res = [call_child(names[i], backwards[i], params[i], cache[i], dy, need_dx=need_dx) for i in range(n)]
        grads = tuple(g for g, _ in res)
        if not need_dx:
            return grads, None
        return grads, res[0][1] + (res[1][1] if n == 2 else dy)

    def update_state(params: Tuple[Any, ...], cache: Tuple) -> Tuple[Any, ...]:
        check_child_params(params, n, where)
        check_child_caches(cache, n, where)
        return tuple(c.update_state(p, k) for c, p, k in zip(children, params, cache))

    def cache_bytes(in_shape: Shape, itemsize: int) -> int:
        return sum(c.cache_bytes(tuple(in_shape), itemsize) for c in children)

    def check(_: str, params: Tuple[Any, ...], in_shape: Shape, dtype: Any, batch: int) -> Shape:
        check_child_params(params, n, where)
        outs = [check_child(names[i], c, params[i], in_shape, dtype, batch) for i, c in enumerate(children)]
        check_match(outs[0], outs[1] if n == 2 else in_shape)
        return outs[0]

    def check_backward(_: str, params: Tuple[Any, ...], cache: Tuple) -> Any:
        check_child_params(params, n, where)
        check_child_caches(cache, n, where)
        return [check_child_backward(names[i], c, params[i], cache[i]) for i, c in enumerate(children)][0]

    spec = composite(children, check, check_backward, lambda out: out(0)) if specced else None
    known = all(c.cache_bytes is not None for c in children)
    return Layer(where, init, forward, backward, update_state=update_state,
                 cache_bytes=cache_bytes if known else None, children=children, rebuild=residual, spec=spec)

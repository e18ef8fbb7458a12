"""Branching: parallel branches, fan-out and fan-in.

Multi-input or multi-output layers take or give a *tuple* of arrays, and their shapes
are tuples of per-example shapes, so they compose with ``serial``::

    inception = serial(fan_out(2), parallel(conv2d(4, 1), conv2d(4, 3, padding=1)), fan_in_concat(1))

``parallel``'s params are the tuple of its children's params, its cache the tuple of
their caches; a child's error is re-raised with its position, e.g. ``"parallel[1] (conv2d) -> ..."``.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import attrs
import numpy as np

from .._checks import positive_int, shape_tuple
from ..boundary import Spec
from ..layer import Array, Layer, Shape, ShapeCache
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

__all__ = ["BranchCache", "parallel", "fan_out", "fan_in_sum", "fan_in_concat"]

Shapes = Tuple[Shape, ...]


@attrs.frozen(eq=False)
class BranchCache:
    """The inputs' shapes and dtype, for the fan-in layers' backward."""

    x_shapes: Tuple[Tuple[int, ...], ...]  # one (N, ...) shape per input
    dtype: np.dtype
    axis: int = 0  # fan_in_concat: the axis, batch axis counted


def _shapes(value: Any, where: str, n: Optional[int] = None, arg: str = "in_shape") -> Shapes:
    """A tuple of per-example shapes, one per branch."""
    if not isinstance(value, (tuple, list)) or not value or not all(isinstance(s, (tuple, list)) for s in value):
        raise TypeError(f"{where}: {arg} must be a non-empty tuple of shapes (one per branch), "
                        f"e.g. ((3, 8, 8), (5, 8, 8)), got {value!r}")
    if n is not None and len(value) != n:
        raise ValueError(f"{where}: {arg} must hold {n} shapes (one per layer), got {len(value)}: {tuple(value)!r}")
    return tuple(shape_tuple(s, where, f"{arg}[{i}]") for i, s in enumerate(value))


def _sum(arrays: Sequence[Array]) -> Array:
    total = arrays[0] + arrays[1] if len(arrays) > 1 else arrays[0]
    for a in arrays[2:]:
        total += a
    return total


def parallel(*layers: Layer) -> Layer:
    """Apply ``layers[i]`` to ``x[i]``: a tuple of inputs gives the tuple of outputs.

    Args:
        *layers: one Layer per branch.

    Returns:
        A Layer whose ``in_shape`` and output shape are tuples of per-example shapes,
        one per branch; params ``tuple(child params)``.

    >>> from functional_cnn.layers import dense, relu
    >>> parallel(dense(2), relu()).init(np.random.default_rng(0), ((4,), (3,)))[0]
    ((2,), (3,))
    """
    where = "parallel"
    children = check_children(layers, where)
    n = len(children)
    names = [f"{where}[{i}] ({c.name})" for i, c in enumerate(children)]
    specced, forwards, backwards = entries(children)
    any_draws = any(map(draws, children))  # else forward hands the children no generators

    def init(rng: np.random.Generator, in_shape: Any, dtype: Any = np.float32) -> Tuple[Shapes, Tuple[Any, ...]]:
        shapes = _shapes(in_shape, where, n)
        rngs = spawn_rngs(rng, n, where)
        res = [call_child(names[i], c.init, rngs[i], shapes[i], dtype) for i, c in enumerate(children)]
        return tuple(tuple(out) for out, _ in res), tuple(p for _, p in res)

    def forward(params: Tuple[Any, ...], x: Any, *, rng: Any = None, train: bool = False) -> Tuple[Tuple, Tuple]:
        if not specced:
            check_child_params(params, n, where)
            if not isinstance(x, (tuple, list)) or len(x) != n:
                raise TypeError(f"{where}: x must be a tuple of {n} arrays (one per layer), got {type(x).__name__}")
        rngs = spawn_rngs(rng, n, where, any_draws)
        res = [call_child(names[i], forwards[i], params[i], x[i], rng=rngs[i], train=train) for i in range(n)]
        return tuple(y for y, _ in res), tuple(c for _, c in res)

    def backward(params: Tuple[Any, ...], cache: Tuple, dy: Any, *, need_dx: bool = True
                 ) -> Tuple[Tuple[Any, ...], Optional[Tuple]]:
        if not specced:
            check_child_params(params, n, where)
            check_child_caches(cache, n, where)
        res = [call_child(names[i], backwards[i], params[i], cache[i], dy[i], need_dx=need_dx) for i in range(n)]
        return tuple(g for g, _ in res), tuple(d for _, d in res) if need_dx else None

    def update_state(params: Tuple[Any, ...], cache: Tuple) -> Tuple[Any, ...]:
        check_child_params(params, n, where)
        check_child_caches(cache, n, where)
        return tuple(c.update_state(p, k) for c, p, k in zip(children, params, cache))

    def cache_bytes(in_shape: Any, itemsize: int) -> int:
        return sum(c.cache_bytes(tuple(s), itemsize) for c, s in zip(children, in_shape))

    def check(_: str, params: Tuple[Any, ...], in_shape: Shapes, dtype: Any, batch: int) -> Shapes:
        check_child_params(params, n, where)
        return tuple(check_child(names[i], c, params[i], in_shape[i], dtype, batch) for i, c in enumerate(children))

    def check_backward(_: str, params: Tuple[Any, ...], cache: Tuple) -> Tuple[Shapes, Any]:
        check_child_params(params, n, where)
        check_child_caches(cache, n, where)
        outs = [check_child_backward(names[i], c, params[i], cache[i]) for i, c in enumerate(children)]
        return tuple(s for s, _ in outs), outs[0][1]

    spec = None
    if specced:
        spec = composite(children, check, check_backward,
                         lambda out: (tuple(out(i)[0] for i in range(n)), out(0)[1]), multi_in=True, n_in=n,
                         multi_out=True)
    known = all(c.cache_bytes is not None for c in children)
    return Layer(where, init, forward, backward, update_state=update_state,
                 cache_bytes=cache_bytes if known else None, children=children, rebuild=parallel, spec=spec)


def fan_out(n: int) -> Layer:
    """Copy the input into ``n`` branches: ``x -> (x,) * n``; backward sums the cotangents.

    >>> fan_out(2).init(None, (3, 4))[0]
    ((3, 4), (3, 4))
    """
    where = "fan_out"
    k = positive_int(n, where, "n")

    def init(rng: Any, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shapes, None]:
        return (shape_tuple(in_shape, where),) * k, None

    def forward(params: None, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Tuple[Array, ...], Any]:
        return (x,) * k, ShapeCache(x.shape, x.dtype)

    def backward(params: None, cache: ShapeCache, dy: Tuple[Array, ...], *, need_dx: bool = True
                 ) -> Tuple[None, Optional[Array]]:
        return None, _sum(dy) if need_dx else None

    spec = Spec(lambda s, arg: (tuple(s),) * k, cache=ShapeCache, multi_out=True,
                out_of_cache=lambda p, c: ((c.x_shape,) * k, c.dtype), draws=False)
    return Layer(where, init, forward, backward, cache_bytes=lambda s, i: 0, config=dict(n=k), spec=spec)


def fan_in_sum() -> Layer:
    """Sum a tuple of same-shaped arrays; backward hands ``dy`` to every input.

    >>> fan_in_sum().init(None, ((3,), (3,)))[0]
    (3,)
    """
    where = "fan_in_sum"

    def out_shape(shapes: Shapes, arg: str) -> Shape:
        if any(tuple(s) != tuple(shapes[0]) for s in shapes):
            raise ValueError(f"{where}: all inputs must have the same shape, got {arg} "
                             f"{tuple(tuple(s) for s in shapes)}")
        return tuple(shapes[0])

    def init(rng: Any, in_shape: Any, dtype: Any = np.float32) -> Tuple[Shape, None]:
        return out_shape(_shapes(in_shape, where), "in_shape"), None

    def forward(params: None, x: Tuple[Array, ...], *, rng: Any = None, train: bool = False
                ) -> Tuple[Array, BranchCache]:
        return _sum(x), BranchCache(tuple(a.shape for a in x), x[0].dtype)

    def backward(params: None, cache: BranchCache, dy: Array, *, need_dx: bool = True
                 ) -> Tuple[None, Optional[Tuple[Array, ...]]]:
        return None, (dy,) * len(cache.x_shapes) if need_dx else None

    spec = Spec(out_shape, multi_in=True, cache=BranchCache, out_of_cache=lambda p, c: (c.x_shapes[0], c.dtype),
                draws=False)
    return Layer(where, init, forward, backward, cache_bytes=lambda s, i: 0, spec=spec)


def fan_in_concat(axis: int = 1) -> Layer:
    """Concatenate a tuple of arrays along ``axis``, counted with the batch axis (1: NCHW channels).

    Args:
        axis: a non-batch axis of the batched arrays, ``>= 1`` or negative (from the
            end); 0, the batch axis, is refused.

    >>> fan_in_concat(1).init(None, ((3, 8, 8), (5, 8, 8)))[0]
    (8, 8, 8)
    """
    where = "fan_in_concat"
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{where}: axis must be an int, got {axis!r} ({type(axis).__name__})")
    if axis == 0:
        raise ValueError(f"{where}: axis must not be 0, the batch axis (axis counts it: use 1 for the channels "
                         f"of NCHW), got 0")
    ax_spec = int(axis)

    def resolve(shapes: Sequence[Shape], arg: str) -> Tuple[int, Shape]:
        """The axis (batch axis counted) and the output shape; every other axis must agree."""
        ranks = {len(s) for s in shapes}
        if len(ranks) > 1:
            raise ValueError(f"{where}: all inputs must have the same rank, got {arg} {tuple(shapes)}")
        rank = ranks.pop() + 1  # batch axis included
        ax = ax_spec + rank if ax_spec < 0 else ax_spec
        if not 1 <= ax < rank:
            raise ValueError(f"{where}: axis {ax_spec} is not a non-batch axis of rank-{rank} batches "
                             f"(shapes {tuple(shapes)})")
        a = ax - 1
        rest = {tuple(s[:a]) + tuple(s[a + 1:]) for s in shapes}
        if len(rest) > 1:
            raise ValueError(f"{where}: inputs must agree on every axis but {ax_spec}, got {arg} {tuple(shapes)}")
        out = list(shapes[0])
        out[a] = sum(s[a] for s in shapes)
        return ax, tuple(out)

    def init(rng: Any, in_shape: Any, dtype: Any = np.float32) -> Tuple[Shape, None]:
        return resolve(_shapes(in_shape, where), "in_shape")[1], None

    def forward(params: None, x: Tuple[Array, ...], *, rng: Any = None, train: bool = False
                ) -> Tuple[Array, BranchCache]:
        ax = ax_spec + x[0].ndim if ax_spec < 0 else ax_spec
        return np.concatenate(x, axis=ax), BranchCache(tuple(a.shape for a in x), x[0].dtype, ax)

    def backward(params: None, cache: BranchCache, dy: Array, *, need_dx: bool = True
                 ) -> Tuple[None, Optional[Tuple[Array, ...]]]:
        if not need_dx:
            return None, None
        cuts = np.cumsum([s[cache.axis] for s in cache.x_shapes])[:-1]
        return None, tuple(np.ascontiguousarray(d) for d in np.split(dy, cuts, axis=cache.axis))

    def out_of_cache(params: None, cache: BranchCache) -> Tuple[Shape, np.dtype]:
        shape = list(cache.x_shapes[0])
        shape[cache.axis] = sum(s[cache.axis] for s in cache.x_shapes)
        return tuple(shape), cache.dtype

    spec = Spec(lambda s, arg: resolve(s, arg)[1], multi_in=True, cache=BranchCache, out_of_cache=out_of_cache,
                draws=False)
    return Layer(where, init, forward, backward, cache_bytes=lambda s, i: 0, config=dict(axis=ax_spec), spec=spec)

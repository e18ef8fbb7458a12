"""Branching combinators: residual connections, parallel branches, fan-out and fan-in.

Each is a Layer. Multi-input or multi-output layers take or give a *tuple* of arrays,
and their shapes are tuples of per-example shapes, so they compose with ``serial``::

    inception = serial(fan_out(2), parallel(conv2d(4, 1), conv2d(4, 3, padding=1)), fan_in_concat(1))

Combinator params are the tuple of the children's params, in order (``residual``:
``(block,)`` or ``(block, projection)``); caches are the tuple of the children's
caches; ``update_state`` folds each child's state in. Errors raised by a child are
re-raised with the child's position prefixed, e.g. ``"parallel[1] (conv2d) -> ..."``.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ._checks import cotangent, float_array, positive_int, shape_tuple
from .combinators import call_child, check_child_caches, check_child_params, check_children, spawn_rngs
from .layer import Array, Layer, Shape

__all__ = ["residual", "parallel", "fan_out", "fan_in_sum", "fan_in_concat"]

Shapes = Tuple[Shape, ...]


def _shapes(value: Any, where: str, n: Optional[int] = None, arg: str = "in_shape") -> Shapes:
    """A tuple of per-example shapes, one per branch."""
    if not isinstance(value, (tuple, list)) or not value or not all(isinstance(s, (tuple, list)) for s in value):
        raise TypeError(f"{where}: {arg} must be a non-empty tuple of shapes (one per branch), "
                        f"e.g. ((3, 8, 8), (5, 8, 8)), got {value!r}")
    if n is not None and len(value) != n:
        raise ValueError(f"{where}: {arg} must hold {n} shapes (one per layer), got {len(value)}: {tuple(value)!r}")
    return tuple(shape_tuple(s, where, f"{arg}[{i}]") for i, s in enumerate(value))


def _arrays(x: Any, where: str, n: Optional[int] = None, arg: str = "x") -> Tuple[Array, ...]:
    """A tuple of floating arrays, one per branch, sharing a dtype."""
    if not isinstance(x, (tuple, list)) or not x:
        raise TypeError(f"{where}: {arg} must be a non-empty tuple of arrays (one per branch), got {type(x).__name__}")
    if n is not None and len(x) != n:
        raise ValueError(f"{where}: {arg} must be a tuple of {n} arrays (one per layer), got {len(x)}")
    out = tuple(float_array(a, where, f"{arg}[{i}]") for i, a in enumerate(x))
    dtypes = {a.dtype for a in out}
    if len(dtypes) > 1:
        raise TypeError(f"{where}: the arrays of {arg} must share a dtype, got {[str(a.dtype) for a in out]}")
    return out


def _sum(arrays: Sequence[Array]) -> Array:
    total = arrays[0] + arrays[1] if len(arrays) > 1 else arrays[0]
    for a in arrays[2:]:
        total += a
    return total


def residual(block: Layer, projection: Optional[Layer] = None) -> Layer:
    """``y = shortcut(x) + block(x)``, the shortcut being ``projection`` or the identity.

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

    def check_match(out: Shape, sc: Shape) -> None:
        if tuple(out) != tuple(sc):
            hint = "" if n == 2 else "; pass projection=... (e.g. a 1x1 conv2d) to map the input to it"
            raise ValueError(f"{where}: the block's output shape {tuple(out)} differs from {shortcut} shape "
                             f"{tuple(sc)}{hint}")

    def init(rng: np.random.Generator, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, Tuple[Any, ...]]:
        in_shape = shape_tuple(in_shape, where)
        rngs = spawn_rngs(rng, n, where)
        out, pb = call_child(names[0], children[0].init, rngs[0], in_shape, dtype)
        if n == 1:
            check_match(out, in_shape)
            return tuple(out), (pb,)
        sc, pp = call_child(names[1], children[1].init, rngs[1], in_shape, dtype)
        check_match(out, sc)
        return tuple(out), (pb, pp)

    def forward(params: Tuple[Any, ...], x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, Tuple]:
        check_child_params(params, n, where)
        x = float_array(x, where, "x")
        rngs = spawn_rngs(rng, n, where)
        yb, cb = call_child(names[0], children[0].forward, params[0], x, rng=rngs[0], train=train)
        if n == 1:
            ys, caches = x, (cb,)
        else:
            ys, cp = call_child(names[1], children[1].forward, params[1], x, rng=rngs[1], train=train)
            caches = (cb, cp)
        check_match(yb.shape[1:], ys.shape[1:])
        return yb + ys, caches

    def backward(params: Tuple[Any, ...], cache: Tuple, dy: Array) -> Tuple[Tuple[Any, ...], Array]:
        check_child_params(params, n, where)
        check_child_caches(cache, n, where)
        gb, dx = call_child(names[0], children[0].backward, params[0], cache[0], dy)
        if n == 1:
            return (gb,), dx + dy
        gp, dxs = call_child(names[1], children[1].backward, params[1], cache[1], dy)
        return (gb, gp), dx + dxs

    def update_state(params: Tuple[Any, ...], cache: Tuple) -> Tuple[Any, ...]:
        check_child_params(params, n, where)
        check_child_caches(cache, n, where)
        return tuple(c.update_state(p, k) for c, p, k in zip(children, params, cache))

    def cache_bytes(in_shape: Shape, itemsize: int) -> int:
        return sum(c.cache_bytes(tuple(in_shape), itemsize) for c in children)

    known = all(c.cache_bytes is not None for c in children)
    return Layer(where, init, forward, backward, update_state=update_state,
                 cache_bytes=cache_bytes if known else None, children=children, rebuild=residual)


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

    def init(rng: np.random.Generator, in_shape: Any, dtype: Any = np.float32) -> Tuple[Shapes, Tuple[Any, ...]]:
        shapes = _shapes(in_shape, where, n)
        rngs = spawn_rngs(rng, n, where)
        res = [call_child(names[i], c.init, rngs[i], shapes[i], dtype) for i, c in enumerate(children)]
        return tuple(tuple(out) for out, _ in res), tuple(p for _, p in res)

    def forward(params: Tuple[Any, ...], x: Any, *, rng: Any = None, train: bool = False) -> Tuple[Tuple, Tuple]:
        check_child_params(params, n, where)
        xs = _arrays(x, where, n)
        rngs = spawn_rngs(rng, n, where)
        res = [call_child(names[i], c.forward, params[i], xs[i], rng=rngs[i], train=train) for i, c in enumerate(children)]
        return tuple(y for y, _ in res), tuple(c for _, c in res)

    def backward(params: Tuple[Any, ...], cache: Tuple, dy: Any) -> Tuple[Tuple[Any, ...], Tuple]:
        check_child_params(params, n, where)
        check_child_caches(cache, n, where)
        dys = _arrays(dy, where, n, "dy")
        res = [call_child(names[i], c.backward, params[i], cache[i], dys[i]) for i, c in enumerate(children)]
        return tuple(g for g, _ in res), tuple(d for _, d in res)

    def update_state(params: Tuple[Any, ...], cache: Tuple) -> Tuple[Any, ...]:
        check_child_params(params, n, where)
        check_child_caches(cache, n, where)
        return tuple(c.update_state(p, k) for c, p, k in zip(children, params, cache))

    def cache_bytes(in_shape: Any, itemsize: int) -> int:
        return sum(c.cache_bytes(tuple(s), itemsize) for c, s in zip(children, in_shape))

    known = all(c.cache_bytes is not None for c in children)
    return Layer(where, init, forward, backward, update_state=update_state,
                 cache_bytes=cache_bytes if known else None, children=children, rebuild=parallel)


def fan_out(n: int) -> Layer:
    """Copy the input into ``n`` branches: ``x -> (x,) * n``; backward sums the cotangents.

    >>> fan_out(2).init(None, (3, 4))[0]
    ((3, 4), (3, 4))
    """
    where = "fan_out"
    k = positive_int(n, where, "n")

    def init(rng: Any, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shapes, None]:
        return (shape_tuple(in_shape, where),) * k, None

    def forward(params: Any, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Tuple[Array, ...], Shape]:
        x = float_array(x, where, "x")
        return (x,) * k, tuple(x.shape)

    def backward(params: Any, cache: Shape, dy: Any) -> Tuple[None, Array]:
        dys = _arrays(dy, where, k, "dy")
        for i, d in enumerate(dys):
            if d.shape != cache:
                raise ValueError(f"{where}: dy[{i}] must have shape {cache} (the input's), got {d.shape}")
        return None, _sum(dys)

    return Layer(where, init, forward, backward, cache_bytes=lambda s, i: 0, config=dict(n=k))


def fan_in_sum() -> Layer:
    """Sum a tuple of same-shaped arrays; backward hands ``dy`` to every input.

    >>> fan_in_sum().init(None, ((3,), (3,)))[0]
    (3,)
    """
    where = "fan_in_sum"

    def check_same(shapes: Sequence[Shape], arg: str) -> None:
        if any(tuple(s) != tuple(shapes[0]) for s in shapes):
            raise ValueError(f"{where}: all inputs must have the same shape, got {arg} "
                             f"{tuple(tuple(s) for s in shapes)}")

    def init(rng: Any, in_shape: Any, dtype: Any = np.float32) -> Tuple[Shape, None]:
        shapes = _shapes(in_shape, where)
        check_same(shapes, "in_shape")
        return shapes[0], None

    def forward(params: Any, x: Any, *, rng: Any = None, train: bool = False) -> Tuple[Array, Tuple[int, Shape]]:
        xs = _arrays(x, where)
        check_same([a.shape for a in xs], "x shapes")
        return _sum(xs), (len(xs), xs[0].shape)

    def backward(params: Any, cache: Tuple[int, Shape], dy: Array) -> Tuple[None, Tuple[Array, ...]]:
        count, shape = cache
        return None, (cotangent(dy, shape, where),) * count

    return Layer(where, init, forward, backward, cache_bytes=lambda s, i: 0)


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
        """The per-example axis and the output shape; every other axis must agree."""
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

    def forward(params: Any, x: Any, *, rng: Any = None, train: bool = False) -> Tuple[Array, Tuple]:
        xs = _arrays(x, where)
        if len({a.shape[:1] for a in xs}) > 1 or xs[0].ndim == 0:
            raise ValueError(f"{where}: inputs must share the batch axis, got shapes {[a.shape for a in xs]}")
        ax, _ = resolve([a.shape[1:] for a in xs], "x shapes")
        return np.concatenate(xs, axis=ax), (ax, tuple(a.shape for a in xs))

    def backward(params: Any, cache: Tuple, dy: Array) -> Tuple[None, Tuple[Array, ...]]:
        ax, shapes = cache
        expected = list(shapes[0])
        expected[ax] = sum(s[ax] for s in shapes)
        dy = cotangent(dy, tuple(expected), where)
        cuts = np.cumsum([s[ax] for s in shapes])[:-1]
        return None, tuple(np.ascontiguousarray(d) for d in np.split(dy, cuts, axis=ax))

    return Layer(where, init, forward, backward, cache_bytes=lambda s, i: 0, config=dict(axis=ax_spec))

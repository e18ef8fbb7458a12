"""Helpers shared by the combinators (``serial``, ``residual``, ``parallel``): children, their errors, rngs.

A combinator whose children all declare a spec gets a :class:`~functional_cnn.boundary.Composite`
spec: it checks the whole network once, at its boundary, by propagating shapes through the
children's specs (:func:`check_child`), and then calls the children's unchecked math. One
holding a layer without a spec calls every child through its checked entry instead.
"""
from __future__ import annotations

from typing import Any, Callable, NoReturn, Sequence, Tuple, TypeVar

from .._checks import check_rng
from ..boundary import Composite, NoMemo
from ..layer import Layer

__all__ = ["call_child", "child_error", "raise_from_child", "check_children", "check_child_params",
           "check_child_caches", "spawn_rngs", "draws", "check_child", "check_child_backward", "composite", "entries"]

T = TypeVar("T")


def child_error(err: Exception, where: str) -> Exception:
    """``err`` re-raised with ``where`` (e.g. ``"serial[2]"``) prefixed, same type.

    Only plain ``ValueError``/``TypeError`` are rewrapped; other exceptions pass as is.
    """
    if type(err) in (ValueError, TypeError):
        return type(err)(f"{where} -> {err}")
    return err


def raise_from_child(err: Exception, where: str) -> NoReturn:
    """Raise ``err`` caught from a child: a plain ValueError/TypeError with ``where`` prefixed, others as they are."""
    new = child_error(err, where)
    if new is err:
        raise err
    raise new from err


def call_child(where: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, a child's plain ValueError/TypeError re-raised with ``where`` prefixed."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError) as err:
        raise_from_child(err, where)


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
        from ..tree import tree_describe  # lazy: tree imports layer

        got = f"tuple of length {len(params)}" if isinstance(params, tuple) else type(params).__name__
        raise TypeError(f"{where}: params must be a tuple of {n} child params (one per layer), got {got}; "
                        f"make them with this layer's init. Got:\n{tree_describe(params)}")


def check_child_caches(cache: Any, n: int, where: str) -> None:
    """A combinator's cache must be the tuple of its children's caches that its forward returned."""
    if not isinstance(cache, tuple) or len(cache) != n:
        got = f"tuple of length {len(cache)}" if isinstance(cache, tuple) else type(cache).__name__
        raise TypeError(f"{where}: cache must be the tuple of {n} child caches returned by this layer's forward, "
                        f"got {got}")


def draws(layer: Layer) -> bool:
    """Whether ``layer``'s forward may draw from its ``rng`` (true for a layer without a spec)."""
    return layer.spec is None or layer.spec.draws


def spawn_rngs(rng: Any, n: int, where: str, needed: bool = True) -> Tuple[Any, ...]:
    """``n`` independent child generators of ``rng`` (or ``n`` Nones: no ``rng``, or not ``needed``).

    A combinator whose children never draw passes ``needed=False``: spawning costs ~11 us a child
    (most of a batch-1 step's time in ``fit``), and no child would read the generators.
    """
    check_rng(rng, where, required=False)
    if rng is None or not needed:
        return (None,) * n
    return tuple(rng.spawn(n))


def check_child(name: str, child: Layer, params: Any, in_shape: Any, dtype: Any, n: int) -> Any:
    """The child's spec check (its output shape), its errors prefixed with ``name``."""
    return call_child(name, child.spec.check, child.name, params, in_shape, dtype, n)


def check_child_backward(name: str, child: Layer, params: Any, cache: Any) -> Any:
    """The child's backward check (the shape and dtype of its output), its errors prefixed with ``name``."""
    return call_child(name, child.spec.check_backward, child.name, params, cache)


def composite(children: Sequence[Layer], check: Callable[..., Any], check_backward: Callable[..., Any],
              pick: Callable[[Sequence[Any]], Any], **kwargs: Any) -> Composite:
    """The :class:`Composite` spec of a combinator over ``children`` (all with a spec).

    ``check_backward(params, cache)`` runs only when a type is wrong, to say which; otherwise
    ``pick`` chooses, from the children's ``(shape, dtype)`` pairs (computed lazily by index),
    what ``dy`` must be.
    """
    n = len(children)
    sigs = tuple(c.spec.signature for c in children)
    oks = tuple(c.spec.types_ok for c in children)
    outs = tuple(c.spec.check_backward for c in children)
    names = tuple(c.name for c in children)

    def signature(params: Any) -> Tuple[Any, ...]:
        if type(params) is not tuple or len(params) != n:
            raise NoMemo
        return tuple([f(p) for f, p in zip(sigs, params)])

    def types_ok(params: Any, cache: Any) -> bool:
        return (type(params) is tuple and len(params) == n and type(cache) is tuple and len(cache) == n
                and all(map(lambda f, p, c: f(p, c), oks, params, cache)))

    def fast_check_backward(where: str, params: Any, cache: Any) -> Any:
        if not types_ok(params, cache):
            return check_backward(where, params, cache)
        return pick(lambda i: outs[i](names[i], params[i], cache[i]))

    return Composite(check, fast_check_backward, signature, types_ok, draws=any(map(draws, children)), **kwargs)


def entries(children: Sequence[Layer]) -> Tuple[bool, Tuple[Callable, ...], Tuple[Callable, ...]]:
    """``(all_specced, forwards, backwards)``: the unchecked math when every child has a spec, else the
    checked entries (a child without a spec is checked by nobody but itself)."""
    specced = all(c.spec is not None for c in children)
    if specced:
        return True, tuple(c.forward_unchecked for c in children), tuple(c.backward_unchecked for c in children)
    return False, tuple(c.forward for c in children), tuple(c.backward for c in children)

"""Validation at the network boundary: one mechanism for every layer.

A layer declares what it accepts in a :class:`Spec` (leaf layers) or a
:class:`Composite` (combinators); the framework checks the declaration where input
enters a network and nowhere else:

* ``layer.forward(params, x)`` checks ``x`` (a floating array of the params' dtype,
  of the declared rank, with the channels or features the params expect), the params
  record's type and every param's shape and dtype against the layer's settings, then
  runs the layer's math (``layer.forward_unchecked``).
* ``layer.backward(params, cache, dy)`` checks the params' and the cache's types and
  ``dy`` (an array of the forward output's shape and dtype), then runs the math.
* A combinator checks once at its own boundary: it propagates the input's shape through
  its children's specs and then calls the children's unchecked math. Nothing is checked
  again inside the network.
* Forward checks are memoized on the *signature* of a call (the input's per-example
  shape and dtype, and the type, shape and dtype of every param): when the same shapes
  come back, checking a whole network costs a few microseconds.

Validation is on by default; ``validation(False)`` turns it off, for the whole process,
either as a plain call or for a block::

    with fc.validation(False):       # bad input now fails somewhere inside numpy, or not at all
        y, cache = net.forward(params, x)

A layer built without a spec (a user's ``Layer(name, init, forward, backward)``) is not
checked by the framework: it keeps whatever checks its own functions make, and a
combinator holding one calls every child through its checked entry, as if each were
called directly.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import attrs
import numpy as np

from ._checks import FLOAT_DTYPES, check_cache_type, check_params_type, cotangent, float_array
from ._parallel import quiet_blas

__all__ = ["Spec", "Composite", "validation", "validation_enabled", "check_forward", "check_backward",
           "arrays", "record_signature", "NoMemo", "MEMO_SIZE"]

Shape = Tuple[int, ...]
#: Forward signatures remembered per layer; the memo is cleared when it grows past this.
MEMO_SIZE = 64


class _Switch:
    on = True


class validation:  # noqa: N801  (used like a function: fc.validation(False))
    """Turn boundary validation on or off; usable as a plain call or a context manager.

    ``validation(False)`` switches it off at once (for the process); as a context
    manager, the previous setting is restored on exit::

        fc.validation(False)            # off from now on
        with fc.validation(True): ...   # on inside the block only

    Args:
        enabled: True (the default setting) checks every network's input, params and
            ``dy``; False runs the layers' math only.
    """

    def __init__(self, enabled: bool = True):
        if not isinstance(enabled, bool):
            raise TypeError(f"validation: enabled must be a bool, got {enabled!r}")
        self._previous = _Switch.on
        _Switch.on = enabled

    def __enter__(self) -> validation:
        return self

    def __exit__(self, *exc: Any) -> None:
        _Switch.on = self._previous


def validation_enabled() -> bool:
    """True when layers check their inputs (the default)."""
    return _Switch.on


class NoMemo(Exception):
    """Raised by a signature function when a call cannot be memoized (the full check then runs)."""


_FIELDS: Dict[type, Tuple[str, ...]] = {}


def record_signature(params: Any) -> Any:
    """A hashable summary of a params record: its type and each field's shape and dtype.

    Raises :class:`NoMemo` when a field holds something other than an array or None.
    """
    if params is None:
        return None
    cls = type(params)
    names = _FIELDS.get(cls)
    if names is None:
        if not attrs.has(cls):
            raise NoMemo
        names = _FIELDS[cls] = tuple(f.name for f in attrs.fields(cls))
    sig: list = [cls]
    for name in names:
        a = getattr(params, name)
        if a is None:
            sig.append(None)
        elif type(a) is np.ndarray:
            sig += (a.shape, a.dtype)
        else:
            raise NoMemo
    return tuple(sig)


def arrays(x: Any, where: str, n: Optional[int] = None, arg: str = "x") -> Tuple[np.ndarray, ...]:
    """A tuple of floating arrays, one per branch, sharing a dtype and a batch size."""
    if not isinstance(x, (tuple, list)) or not x:
        raise TypeError(f"{where}: {arg} must be a non-empty tuple of arrays (one per branch), got {type(x).__name__}")
    if n is not None and len(x) != n:
        raise ValueError(f"{where}: {arg} must be a tuple of {n} arrays (one per layer), got {len(x)}")
    out = tuple(float_array(a, where, f"{arg}[{i}]") for i, a in enumerate(x))
    if len({a.dtype for a in out}) > 1:
        raise TypeError(f"{where}: the arrays of {arg} must share a dtype, got {[str(a.dtype) for a in out]}")
    if len({a.shape[0] for a in out}) > 1:
        raise ValueError(f"{where}: the arrays of {arg} must share the batch axis, got shapes "
                         f"{[a.shape for a in out]}")
    return out


def _rank_text(rank: Any) -> str:
    return " or ".join(str(r) for r in ((rank,) if isinstance(rank, int) else rank))


@attrs.frozen(eq=False)
class Spec:
    """What a leaf layer accepts, declared once; the framework checks it at the boundary.

    Attributes:
        out_shape: ``(in_shape, arg) -> out_shape``: the layer's own geometry (a kernel
            that does not fit, a reshape that cannot be done) as a named ValueError that
            calls the shape ``arg``; ``init`` uses it too.
        rank: the rank(s) ``x`` may have, batch axis included (None: any).
        layout: words shown after the rank in the error, e.g. ``"(N, C, H, W)"``.
        params: the params record's class; None for a parameter-free layer (whose params
            must then be None).
        param_shapes: ``in_shape -> {field: shape or None}``: the shape every param must
            have for this input and the layer's settings (None: the field must be None).
        in_size: ``(axis, word, expected)``: ``in_shape[axis]`` must equal
            ``expected(params)`` (e.g. ``(0, "channels", lambda p: p.w.shape[1])``); axis
            None compares the whole per-example shape.
        cache: the cache record's class, checked in backward.
        out_of_cache: ``(params, cache) -> (shape, dtype)`` of the forward output (batch
            axis included), which ``dy`` must match.
        multi_in: ``x`` is a tuple of arrays (``n_in`` of them, or any number when None).
        multi_out: the output (and ``dy``) is a tuple of arrays.
        draws: ``forward`` may draw from its ``rng`` (True unless declared False, as every
            built-in layer but dropout does). A combinator spawns generators for its children
            only when one of them may draw; a layer without a spec is assumed to.
    """

    out_shape: Callable[[Any, str], Any]
    rank: Any = None
    layout: str = ""
    params: Optional[type] = None
    param_shapes: Optional[Callable[[Shape], Mapping[str, Optional[Shape]]]] = None
    in_size: Optional[Tuple[Optional[int], str, Callable[[Any], Any]]] = None
    cache: Optional[type] = None
    out_of_cache: Optional[Callable[[Any, Any], Tuple[Any, np.dtype]]] = None
    multi_in: bool = False
    n_in: Optional[int] = None
    multi_out: bool = False
    draws: bool = True

    def signature(self, params: Any) -> Any:
        """A hashable summary of ``params`` for the memo (raises :class:`NoMemo`)."""
        if self.params is None and params is not None:
            raise NoMemo
        return record_signature(params)

    def types_ok(self, params: Any, cache: Any) -> bool:
        """True when the params' and the cache's types are right (the fast path of ``check_backward``)."""
        return (params is None if self.params is None else isinstance(params, self.params)) and (
            self.cache is None or isinstance(cache, self.cache))

    def check(self, where: str, params: Any, in_shape: Any, dtype: np.dtype, n: int) -> Any:
        """Check params and an input of per-example shape ``in_shape``; return the output's shape."""
        self._check_params_type(where, params)
        if self.rank is not None and not self.multi_in:
            rank = len(in_shape) + 1
            if rank not in ((self.rank,) if isinstance(self.rank, int) else self.rank):
                lay = f" {self.layout}" if self.layout else ""
                raise ValueError(f"{where}: x must have rank {_rank_text(self.rank)}{lay}, got shape "
                                 f"{(n,) + tuple(in_shape)} (rank {rank})")
        if self.in_size is not None:
            self._check_in_size(where, params, in_shape, n)
        out = self.out_shape(in_shape, "x shapes" if self.multi_in else "x.shape[1:]")
        if self.param_shapes is not None:
            self._check_param_shapes(where, params, self.param_shapes(in_shape), dtype, in_shape)
        return out

    def check_backward(self, where: str, params: Any, cache: Any) -> Tuple[Any, np.dtype]:
        """Check the params' and the cache's types; return the shape and dtype ``dy`` must have."""
        self._check_params_type(where, params)
        if self.cache is not None and not isinstance(cache, self.cache):
            check_cache_type(cache, self.cache, where)
        return self.out_of_cache(params, cache)

    def _check_params_type(self, where: str, params: Any) -> None:
        if self.params is None:
            if params is not None:
                raise TypeError(f"{where}: params must be None ({where} has no parameters), got "
                                f"{type(params).__name__}; pass what its init returned (None)")
        elif not isinstance(params, self.params):
            check_params_type(params, self.params, where)

    def _check_in_size(self, where: str, params: Any, in_shape: Shape, n: int) -> None:
        axis, word, expected = self.in_size
        try:
            want = expected(params)
        except (IndexError, AttributeError, TypeError):  # a param of the wrong rank: its own check says so
            return
        got = tuple(in_shape) if axis is None else in_shape[axis]
        if got != want:
            x_shape = (n,) + tuple(in_shape)
            if axis is None:
                raise ValueError(f"{where}: x must have shape (N,) + {want} (the params' per-example shape), "
                                 f"got {x_shape}")
            first = attrs.fields(type(params))[0].name
            raise ValueError(f"{where}: x has {got} {word} (shape {x_shape}), params expect {want} "
                             f"(params.{first} shape {getattr(params, first).shape})")

    @staticmethod
    def _check_param_shapes(where: str, params: Any, shapes: Mapping[str, Optional[Shape]], dtype: np.dtype,
                            in_shape: Shape) -> None:
        first = None
        for name, want in shapes.items():
            a = getattr(params, name)
            if want is None:
                if a is not None:
                    raise ValueError(f"{where}: params.{name} must be None for this layer (built without it), "
                                     f"got an array of shape {np.shape(a)}")
                continue
            if a is None:
                raise ValueError(f"{where}: params.{name} must be an array of shape {tuple(want)}, got None; "
                                 f"build params with the layer's init")
            if not isinstance(a, np.ndarray) or a.dtype not in FLOAT_DTYPES:
                got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
                raise TypeError(f"{where}: params.{name} must be a floating array, got {got}")
            if a.dtype != dtype:
                if first is None:
                    raise TypeError(
                        f"{where}: x has dtype {dtype} but params have dtype {a.dtype}; cast one of them "
                        f"(x.astype(np.{a.dtype}) or functional_cnn.tree.tree_cast(params, np.{dtype}))")
                raise TypeError(f"{where}: params.{name} must have dtype {dtype} like x and params.{first}, "
                                f"got {a.dtype}")
            if a.shape != tuple(want):
                raise ValueError(f"{where}: params.{name} must have shape {tuple(want)} for this layer and an "
                                 f"input of per-example shape {tuple(in_shape)}, got {a.shape}")
            first = first or name


@attrs.frozen(eq=False)
class Composite:
    """What a combinator accepts: functions over its children's specs.

    Attributes:
        check: ``(where, params, in_shape, dtype, n) -> out_shape``: the params' structure,
            then each child's spec with the shapes propagated; errors name the child.
        check_backward: ``(where, params, cache) -> (shape, dtype)`` of ``dy``.
        signature: ``params -> hashable`` for the memo (raises :class:`NoMemo`).
        types_ok: ``(params, cache) -> bool``: the params' and the caches' types are right.
        multi_in, n_in, multi_out: as in :class:`Spec`.
        draws: some child draws from its ``rng`` (see :class:`Spec`).
    """

    check: Callable[..., Any]
    check_backward: Callable[..., Tuple[Any, np.dtype]]
    signature: Callable[[Any], Any]
    types_ok: Callable[[Any, Any], bool]
    multi_in: bool = False
    n_in: Optional[int] = None
    multi_out: bool = False
    draws: bool = False


def inputs(where: str, spec: Any, x: Any) -> Tuple[Any, Any, np.dtype, int]:
    """``x`` as array(s), its per-example shape(s), dtype and batch size."""
    if spec.multi_in:
        xs = arrays(x, where, spec.n_in)
        return xs, tuple(a.shape[1:] for a in xs), xs[0].dtype, xs[0].shape[0]
    x = float_array(x, where, "x")
    return x, x.shape[1:], x.dtype, x.shape[0]


def check_forward(where: str, spec: Any, memo: Dict[Any, Any], params: Any, x: Any) -> Any:
    """The boundary check of ``forward``: ``x`` converted and checked against ``params`` (memoized)."""
    x, in_shape, dtype, n = inputs(where, spec, x)
    try:
        key = (spec.signature(params), in_shape, dtype)
    except NoMemo:
        key = None
    if key is None or key not in memo:
        spec.check(where, params, in_shape, dtype, n)
        if key is not None:
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            memo[key] = True
    return x


def check_backward(where: str, spec: Any, params: Any, cache: Any, dy: Any) -> Any:
    """The boundary check of ``backward``: params and cache types, then ``dy`` against the forward output."""
    shape, dtype = spec.check_backward(where, params, cache)
    if not spec.multi_out:
        return cotangent(dy, shape, where, dtype=dtype)
    if not isinstance(dy, (tuple, list)) or not dy:
        raise TypeError(f"{where}: dy must be a non-empty tuple of arrays (one per output), got {type(dy).__name__}")
    if len(dy) != len(shape):
        raise ValueError(f"{where}: dy must be a tuple of {len(shape)} arrays (one per output), got {len(dy)}")
    return tuple(cotangent(d, s, where, f"dy[{i}]", dtype=dtype) for i, (d, s) in enumerate(zip(dy, shape)))


def checked(where: str, spec: Any, forward: Callable, backward: Callable) -> Tuple[Callable, Callable]:
    """The entry points ``layer.forward`` and ``layer.backward``: the boundary check, then the math."""
    memo: Dict[Any, Any] = {}

    def checked_forward(params: Any, x: Any, *, rng: Any = None, train: bool = False) -> Any:
        quiet_blas()
        if _Switch.on:
            x = check_forward(where, spec, memo, params, x)
        return forward(params, x, rng=rng, train=train)

    def checked_backward(params: Any, cache: Any, dy: Any, *, need_dx: bool = True) -> Any:
        quiet_blas()
        if _Switch.on:
            dy = check_backward(where, spec, params, cache, dy)
        return backward(params, cache, dy, need_dx=need_dx)

    return checked_forward, checked_backward

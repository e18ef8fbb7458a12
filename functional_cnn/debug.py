"""Debug mode: find the first layer where NaN or Inf appears, forward or backward.

``debug(net)`` returns a network that computes exactly what ``net`` computes, with
the same params, but checks every layer's outputs (forward: ``y``; backward: ``dx``
and every gradient) and raises :class:`NonFiniteError` at the first non-finite
value. The error names the layer by its position (``"3"``, ``"5.0.1"``, the same
numbering as params paths), its description and the direction. ``fit(...,
debug=True)`` and ``make_step(..., debug=True)`` use it.

>>> import numpy as np, functional_cnn as fc
>>> net = debug(fc.serial(fc.dense(2), fc.relu()))
>>> _, p = net.init(np.random.default_rng(0), (3,))
>>> net.forward(p, np.array([[np.nan, 0.0, 1.0]], dtype=np.float32))
Traceback (most recent call last):
...
functional_cnn.debug.NonFiniteError: forward of layer 0 dense(out_features=2): output has 2 NaN and 0 Inf (its input already had 1 NaN and 0 Inf)
"""  # noqa: E501 (a doctest's expected output is one line)
from __future__ import annotations

from typing import Any, Tuple

import attrs
import numpy as np

from .layer import Array, Layer
from .tree import tree_leaves_with_paths

__all__ = ["NonFiniteError", "debug", "count_nonfinite"]


class NonFiniteError(FloatingPointError):
    """NaN or Inf appeared; ``layer`` is its position, ``direction`` "forward" or "backward"."""

    def __init__(self, message: str, layer: str, direction: str):
        super().__init__(message)
        self.layer = layer
        self.direction = direction


def count_nonfinite(tree: Any) -> Tuple[int, int]:
    """(NaN count, Inf count) over the floating array leaves of a tree (or one array)."""
    nan = inf = 0
    for _, leaf in tree_leaves_with_paths(tree):
        a = np.asarray(leaf)
        if a.dtype.kind == "f":
            nan += int(np.isnan(a).sum())
            inf += int(np.isinf(a).sum())
    return nan, inf


def _where(path: str, layer: Layer) -> str:
    return f"layer {path or '<root>'} {layer.describe() if not layer.children else layer.name}"


def _check_leaf(layer: Layer, path: str) -> Layer:
    """``layer`` whose math checks its results; its spec (the boundary check) is kept as it is."""

    def forward(params: Any, x: Any, *, rng: Any = None, train: bool = False) -> Tuple[Array, Any]:
        y, cache = layer.forward_unchecked(params, x, rng=rng, train=train)
        nan, inf = count_nonfinite(y)
        if nan or inf:
            xn, xi = count_nonfinite(x)
            before = f" (its input already had {xn} NaN and {xi} Inf)" if xn or xi else " (its input was finite)"
            raise NonFiniteError(f"forward of {_where(path, layer)}: output has {nan} NaN and {inf} Inf{before}",
                                 path, "forward")
        return y, cache

    def backward(params: Any, cache: Any, dy: Array, *, need_dx: bool = True) -> Tuple[Any, Any]:
        grads, dx = layer.backward_unchecked(params, cache, dy, need_dx=need_dx)
        outputs = [("dx", dx)] if dx is not None else []
        for name, value in outputs + [(f"grad {p or '<leaf>'}", g) for p, g in tree_leaves_with_paths(grads)]:
            nan, inf = count_nonfinite(value)
            if nan or inf:
                dn, di = count_nonfinite(dy)
                before = f" (dy already had {dn} NaN and {di} Inf)" if dn or di else " (dy was finite)"
                raise NonFiniteError(f"backward of {_where(path, layer)}: {name} has {nan} NaN and {inf} Inf{before}",
                                     path, "backward")
        return grads, dx

    return attrs.evolve(layer, forward=forward, backward=backward)


def debug(net: Layer, _path: str = "") -> Layer:
    """``net`` with a finiteness check after every layer's forward and backward.

    Combinators are rebuilt around checked children (``Layer.rebuild``), so the
    first failing *leaf* layer is named; a combinator without ``rebuild`` is checked
    as a whole.
    """
    if not isinstance(net, Layer):
        raise TypeError(f"debug: net must be a Layer, got {type(net).__name__}")
    if net.children and net.rebuild is not None:
        kids = [debug(c, f"{_path}.{i}" if _path else str(i)) for i, c in enumerate(net.children)]
        return net.rebuild(*kids)
    return _check_leaf(net, _path)

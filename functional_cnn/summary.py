"""``summary``: a network's layers, shapes, parameter counts and cache sizes, from shapes alone."""
from __future__ import annotations

from typing import Any, List, Tuple

import attrs
import numpy as np

from ._checks import float_dtype, positive_int, shape_tuple
from .layer import Layer
from .tree import state_paths, trainable, tree_leaves_with_paths, tree_size

__all__ = ["SummaryRow", "Summary", "summary"]


@attrs.frozen
class SummaryRow:
    """One layer: its description, output shape, trainable and state sizes, cache bytes."""

    depth: int
    name: str
    out_shape: Tuple[int, ...]
    params: int
    state: int
    cache_bytes: Any  # int, or None when the layer does not declare it


@attrs.frozen
class Summary:
    """The rows and totals; ``str()`` renders the table."""

    in_shape: Tuple[int, ...]
    batch_size: int
    dtype: str
    rows: Tuple[SummaryRow, ...]
    total_params: int
    total_state: int
    total_cache_bytes: Any

    def __str__(self) -> str:
        head = ("layer", "output shape", "params", "state", f"cache @ batch {self.batch_size}")
        body = [("  " * r.depth + r.name, _batched(self.batch_size, r.out_shape), f"{r.params:,}",
                 f"{r.state:,}" if r.state else "-", _bytes(r.cache_bytes)) for r in self.rows]
        total = ("total", "", f"{self.total_params:,}", f"{self.total_state:,}" if self.total_state else "-",
                 _bytes(self.total_cache_bytes))
        widths = [max(len(row[i]) for row in [head, total] + body) for i in range(5)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths[:1]) + "  " + "  ".join(f"{{:>{w}}}" for w in widths[1:])
        rule = "-" * (sum(widths) + 8)
        lines = [f"input {(self.batch_size,) + self.in_shape} {self.dtype}", fmt.format(*head), rule]
        lines += [fmt.format(*row) for row in body] + [rule, fmt.format(*total)]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from .display import summary_html

        return summary_html(self)


def _batched(batch: int, shape: Tuple[Any, ...]) -> str:
    """``(batch,) + shape``, or one such shape per branch for a tuple of shapes."""
    if shape and isinstance(shape[0], tuple):
        return "(" + ", ".join(str((batch,) + s) for s in shape) + ")"
    return str((batch,) + shape)


def _bytes(n: Any) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


def summary(net: Layer, in_shape: Any, batch_size: int = 1, dtype: Any = np.float32) -> Summary:
    """Describe ``net`` layer by layer for inputs of ``in_shape`` (batch axis excluded).

    Shapes come from each layer's ``init``; cache sizes from ``cache_bytes``; no data
    is run. The children of every combinator are listed one per row, indented under it:
    ``serial``'s in a chain, ``residual``'s (block, then projection) on the block's input,
    ``parallel``'s each on its own branch of the input; any other layer with children
    gives each child the combinator's input.

    >>> from functional_cnn.layers import dense, relu
    >>> from functional_cnn.layers import serial
    >>> s = summary(serial(dense(3), relu()), (4,), batch_size=8)
    >>> s.total_params, s.total_cache_bytes
    (15, 224)
    """
    if not isinstance(net, Layer):
        raise TypeError(f"summary: net must be a Layer, got {type(net).__name__}")
    in_shape = shape_tuple(in_shape, "summary")
    batch = positive_int(batch_size, "summary", "batch_size")
    dt = float_dtype(dtype, "summary")
    rng = np.random.default_rng(0)
    rows: List[SummaryRow] = []

    def visit(layer: Layer, shape: Tuple[int, ...], depth: int) -> Tuple[int, ...]:
        out, params = layer.init(rng, shape, dt)
        out = tuple(out)
        n_state = sum(int(np.size(x)) for x in _state_leaves(params))
        per_ex = layer.cache_bytes(shape, dt.itemsize) if layer.cache_bytes is not None else None
        cache = None if per_ex is None else per_ex * batch
        rows.append(SummaryRow(depth, layer.describe() if not layer.children else layer.name, out,
                               tree_size(trainable(params)), n_state, cache))
        if layer.name == "serial":
            inner = shape
            for child in layer.children:
                inner = visit(child, inner, depth + 1)
        elif layer.name == "parallel":
            for child, branch in zip(layer.children, shape):
                visit(child, tuple(branch), depth + 1)
        else:  # residual and any other combinator: every child sees the input
            for child in layer.children:
                visit(child, shape, depth + 1)
        return out

    visit(net, in_shape, 0)
    top = rows[0]
    return Summary(in_shape, batch, str(dt), tuple(rows), top.params, top.state, top.cache_bytes)


def _state_leaves(params: Any) -> List[Any]:
    wanted = set(state_paths(params))
    return [leaf for path, leaf in tree_leaves_with_paths(params) if path in wanted]

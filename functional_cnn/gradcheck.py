"""A public gradient checker for layers and losses.

``check_layer`` builds float64 params and inputs, runs the layer's backward pass on
a random cotangent ``r`` and compares, tensor by tensor, with central differences
of ``L = sum(forward(params, x) * r)``. It also checks the declared output shape and
purity (inputs and params unchanged; the same call gives the same output). A
mismatch raises :class:`GradCheckError` carrying the report, a table with one row
per tensor (``x`` and every parameter path such as ``"0.w"``).

>>> from functional_cnn.layers import dense
>>> report = check_layer(dense(3), np.random.default_rng(0), (4,))
>>> report.ok
True
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import attrs
import numpy as np

from ._checks import positive_int
from .layer import Layer
from .tree import (
    assert_same_structure,
    trainable,
    tree_cast,
    tree_flatten,
    tree_leaves,
    tree_leaves_with_paths,
    tree_unflatten,
)

__all__ = ["GradCheckRow", "GradCheckReport", "GradCheckError", "check_layer", "check_loss", "numeric_gradient"]


@attrs.frozen
class GradCheckRow:
    """One check: a gradient tensor (with errors) or a property (shape, purity)."""

    name: str
    detail: str
    max_abs_err: float = 0.0
    rel_err: float = 0.0
    ok: bool = True


@attrs.frozen
class GradCheckReport:
    """All rows of one check; ``ok`` when every row passed."""

    title: str
    rows: Tuple[GradCheckRow, ...]
    tol: float

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def failures(self) -> Tuple[GradCheckRow, ...]:
        return tuple(r for r in self.rows if not r.ok)

    def table(self) -> str:
        """The report as an aligned text table."""
        head = ("check", "detail", "max|num-ana|", "rel err", "status")
        body = [
            (r.name, r.detail, f"{r.max_abs_err:.2e}", f"{r.rel_err:.2e}", "ok" if r.ok else "FAIL") for r in self.rows
        ]
        widths = [max(len(row[i]) for row in [head] + body) for i in range(len(head))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines = [self.title, fmt.format(*head)] + [fmt.format(*row) for row in body]
        return "\n".join(line.rstrip() for line in lines)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        verdict = "ok" if self.ok else "FAILED: " + ", ".join(r.name for r in self.failures)
        return f"GradCheckReport({self.title!r}, {len(self.rows)} rows, {verdict})"

    def _repr_html_(self) -> str:
        from .display import gradcheck_html

        return gradcheck_html(self)


class GradCheckError(AssertionError):
    """Raised when a check fails; ``report`` holds the full table."""

    def __init__(self, report: GradCheckReport):
        names = ", ".join(r.name for r in report.failures)
        super().__init__(f"gradient check failed for {names}\n{report.table()}")
        self.report = report


def numeric_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, indices: Sequence[int], eps: float) -> np.ndarray:
    """Central differences of scalar ``f`` at the flat ``indices`` of ``x`` (float64, x never modified)."""
    out = np.empty(len(indices))
    for j, i in enumerate(indices):
        xp = x.astype(np.float64, copy=True)
        flat = xp.reshape(-1)
        orig = flat[i]
        flat[i] = orig + eps
        hi = f(xp)
        flat[i] = orig - eps
        lo = f(xp)
        out[j] = (hi - lo) / (2 * eps)
    return out


def _compare(name: str, analytic: Any, numeric_at: Callable[[Sequence[int]], np.ndarray], shape: Tuple[int, ...],
             rng: np.random.Generator, max_checks: Optional[int], tol: float, atol: float) -> GradCheckRow:
    size = int(np.prod(shape))
    if analytic is None or np.shape(analytic) != tuple(shape):
        return GradCheckRow(name, f"analytic gradient has shape {np.shape(analytic)}, expected {shape}", ok=False)
    if size == 0:
        return GradCheckRow(name, f"{shape} (empty)")
    idx = np.arange(size) if max_checks is None or size <= max_checks else np.sort(
        rng.choice(size, max_checks, replace=False))
    num = numeric_at(idx)
    ana = np.asarray(analytic, dtype=np.float64).reshape(-1)[idx]
    diff = np.abs(num - ana)
    max_abs = float(diff.max())
    scale = float(np.linalg.norm(num) + np.linalg.norm(ana))
    rel = float(np.linalg.norm(num - ana) / scale) if scale > 0 else 0.0
    ok = bool(np.all(np.isfinite(ana))) and (rel <= tol or max_abs <= atol)
    return GradCheckRow(name, f"{tuple(shape)} {len(idx)}/{size} checked", max_abs, rel, ok)


def check_layer(layer: Layer, rng: np.random.Generator, in_shape: Tuple[int, ...], *, batch_size: int = 2,
                train: bool = True, eps: float = 1e-6, tol: float = 1e-6, atol: float = 1e-9,
                max_checks: Optional[int] = 150, x: Optional[np.ndarray] = None, params: Any = None,
                raise_on_fail: bool = True) -> GradCheckReport:
    """Check a layer's gradients, declared shape and purity in float64.

    Args:
        layer: the Layer to check.
        rng: source of the params, the input, the cotangent and the forward rng.
        in_shape: per-example input shape.
        batch_size: examples in the test batch.
        train: passed to forward (dropout and batch norm behave as in training).
        eps: central-difference step (1e-6 suits float64).
        tol: largest accepted relative error ``|num - ana| / (|num| + |ana|)`` per tensor.
        atol: a tensor whose largest absolute error is below this passes too.
        max_checks: at most this many elements per tensor (chosen at random); None: all.
        x: use this input instead of a random one (cast to float64).
        params: use these params instead of the layer's init (cast to float64).
        raise_on_fail: raise :class:`GradCheckError` when a row fails.

    Returns:
        The :class:`GradCheckReport`.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"check_layer: layer must be a Layer, got {type(layer).__name__}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"check_layer: rng must be a numpy.random.Generator, got {type(rng).__name__}")
    batch_size = positive_int(batch_size, "check_layer", "batch_size")
    seed = int(rng.integers(2**62))
    fwd_rng = lambda: np.random.default_rng(seed)  # noqa: E731  same dropout mask for every evaluation
    out_shape, p0 = layer.init(rng, tuple(in_shape), dtype=np.float64)
    if params is not None:
        p0 = params
    p0 = tree_cast(p0, np.float64)
    x0 = rng.standard_normal((batch_size,) + tuple(in_shape)) if x is None else np.asarray(x, dtype=np.float64)
    x_before = x0.copy()
    p_before = [np.array(a, copy=True) for a in tree_leaves(p0)]

    rows: List[GradCheckRow] = []
    y, cache = layer.forward(p0, x0, rng=fwd_rng(), train=train)
    expect = (x0.shape[0],) + tuple(out_shape)
    rows.append(GradCheckRow("output shape", f"declared {expect}, actual {tuple(y.shape)}",
                             ok=tuple(y.shape) == expect))
    r = rng.standard_normal(y.shape)
    grads, dx = layer.backward(p0, cache, r, need_dx=True)  # dx is one of the gradients checked

    def loss(p: Any, xx: np.ndarray) -> float:
        out, _ = layer.forward(p, xx, rng=fwd_rng(), train=train)
        return float(np.sum(out * r))

    rows.append(_compare("x", dx, lambda idx: numeric_gradient(lambda xx: loss(p0, xx), x0, idx, eps), x0.shape, rng,
                         max_checks, tol, atol))
    train_tree = trainable(p0)
    assert_same_structure(train_tree, grads, where=f"check_layer({layer.name})", names=("trainable params", "grads"))
    leaves, treedef = tree_flatten(p0)
    all_paths = [path for path, _ in tree_leaves_with_paths(p0)]
    grad_by_path = dict(tree_leaves_with_paths(grads))
    for path, leaf in tree_leaves_with_paths(train_tree):
        i = all_paths.index(path)

        def f_leaf(v: np.ndarray, i: int = i) -> float:
            new = list(leaves)
            new[i] = v
            return loss(tree_unflatten(treedef, new), x0)

        rows.append(_compare(path, grad_by_path.get(path), lambda idx, leaf=leaf, f=f_leaf: numeric_gradient(
            f, np.asarray(leaf), idx, eps), np.shape(leaf), rng, max_checks, tol, atol))

    unchanged = np.array_equal(x0, x_before) and all(
        np.array_equal(a, b) for a, b in zip(tree_leaves(p0), p_before))
    rows.append(GradCheckRow("purity: inputs", "x and params unchanged by forward/backward", ok=unchanged))
    y2, _ = layer.forward(p0, x0, rng=fwd_rng(), train=train)
    rows.append(GradCheckRow("purity: repeat", "same inputs give the same output", ok=np.array_equal(y, y2)))
    report = GradCheckReport(
        f"gradcheck {layer.describe() if not layer.children else layer.name} in_shape={tuple(in_shape)} "
        f"batch={batch_size} float64 eps={eps:g} tol={tol:g}", tuple(rows), tol)
    if raise_on_fail and not report.ok:
        raise GradCheckError(report)
    return report


def check_loss(loss: Callable[[np.ndarray, Any], Tuple[Any, np.ndarray]], rng: np.random.Generator,
               pred: np.ndarray, target: Any, *, eps: float = 1e-6, tol: float = 1e-6, atol: float = 1e-9,
               max_checks: Optional[int] = 200, raise_on_fail: bool = True) -> GradCheckReport:
    """Check ``dpred`` of ``value, dpred = loss(pred, target)`` against central differences in float64."""
    if not callable(loss):
        raise TypeError(f"check_loss: loss must be callable (pred, target) -> (value, dpred), got {loss!r}")
    pred = np.asarray(pred, dtype=np.float64)
    if isinstance(target, np.ndarray) and np.issubdtype(target.dtype, np.floating):
        target = target.astype(np.float64)
    _, dpred = loss(pred, target)
    name = getattr(loss, "__name__", "loss")
    row = _compare("pred", dpred, lambda idx: numeric_gradient(lambda p: float(loss(p, target)[0]), pred, idx, eps),
                   pred.shape, rng, max_checks, tol, atol)
    report = GradCheckReport(f"gradcheck {name} pred={pred.shape} float64 eps={eps:g} tol={tol:g}", (row,), tol)
    if raise_on_fail and not report.ok:
        raise GradCheckError(report)
    return report


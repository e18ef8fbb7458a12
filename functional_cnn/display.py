"""How records look in a notebook: short text reprs and small HTML tables.

Jupyter shows an object's ``_repr_html_()`` when it has one. The records of this library define it by
calling the functions here, so the rendering lives in one place:

* :func:`array_text` / :func:`tree_repr`: a short plain repr, ``DenseParams(w=float32[784, 10], b=float32[10])``.
* :func:`tree_html`: params and grads as one row per array (path, shape, dtype, norm, min, max), never a wall of
  numbers.
* :func:`layer_html`: a network as a nested list of layers with their configs.
* :func:`summary_html`, :func:`gradcheck_html`, :func:`fields_html`: tables for ``summary``, a gradient-check
  report, and the records that ``fit`` and ``evaluate`` return.

Everything here is a pure function of its argument and returns a string.
"""
from __future__ import annotations

import html
import math
from typing import Any, Iterable, Optional, Sequence

import attrs
import numpy as np

__all__ = ["array_text", "tree_repr", "tree_html", "layer_html", "summary_html", "gradcheck_html", "fields_html",
           "html_table"]

_STYLE = ("<style>.fcnn td,.fcnn th{padding:2px 8px;text-align:right;font-family:monospace}"
          ".fcnn td:first-child,.fcnn th:first-child{text-align:left}"
          ".fcnn tr.fail td{background:#fde2e2;color:#9b1c1c;font-weight:bold}"
          ".fcnn caption{text-align:left;font-weight:bold}"
          ".fcnn ul{margin:0;padding-left:1.2em;font-family:monospace}</style>")


def _e(value: Any) -> str:
    return html.escape(str(value))


def html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, caption: Optional[str] = None,
               failing: Optional[Sequence[bool]] = None) -> str:
    """An HTML table; rows whose ``failing`` entry is true get the class ``fail`` (shown red)."""
    rows = list(rows)
    flags = list(failing) if failing is not None else [False] * len(rows)
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    fail = ' class="fail"'
    body = "".join(
        f"<tr{fail if bad else ''}>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>"
        for row, bad in zip(rows, flags)
    )
    return f"{_STYLE}<table class=\"fcnn\">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def array_text(x: Any) -> str:
    """``float32[784, 10]`` for an array; ``repr`` for anything else."""
    if isinstance(x, np.ndarray):
        return f"{x.dtype}[{', '.join(str(d) for d in x.shape)}]"
    return repr(x)


def tree_repr(record: Any) -> str:
    """A one-line repr of an attrs record that shows arrays by dtype and shape."""
    cls = type(record)
    if not attrs.has(cls):
        return repr(record)
    parts = [f"{f.name}={array_text(getattr(record, f.name))}" for f in attrs.fields(cls)]
    return f"{cls.__name__}({', '.join(parts)})"


def _stats(x: np.ndarray) -> Sequence[str]:
    if x.size == 0:
        return ("-", "-", "-")
    x64 = x.astype(np.float64, copy=False) if x.dtype.kind == "f" else x.astype(np.float64)
    return (f"{float(np.sqrt(np.sum(x64 * x64))):.4g}", f"{float(x64.min()):.4g}", f"{float(x64.max()):.4g}")


def tree_html(tree: Any, title: Optional[str] = None) -> str:
    """Params or grads as a table: one row per array with its path, shape, dtype, L2 norm, min and max."""
    from .tree import tree_leaves_with_paths  # lazy: tree is a heavier import than this module needs

    rows = []
    for path, leaf in tree_leaves_with_paths(tree):
        if isinstance(leaf, np.ndarray):
            rows.append((path or "(root)", str(leaf.shape), str(leaf.dtype), *_stats(leaf)))
        else:
            rows.append((path or "(root)", "-", type(leaf).__name__, str(leaf), "", ""))
    caption = title if title is not None else type(tree).__name__
    if not rows:
        return f"<p class=\"fcnn\"><b>{_e(caption)}</b>: no arrays</p>"
    return html_table(("path", "shape", "dtype", "norm", "min", "max"), rows, caption=caption)


def _layer_item(layer: Any) -> str:
    children = getattr(layer, "children", ())
    head = _e(layer.describe() if not children else f"{layer.name}")
    if not children:
        return f"<li>{head}</li>"
    inner = "".join(_layer_item(c) for c in children)
    return f"<li>{head}<ul>{inner}</ul></li>"


def layer_html(layer: Any) -> str:
    """A layer as a nested list: combinators open into their children, leaves show their config."""
    return f"{_STYLE}<div class=\"fcnn\"><ul>{_layer_item(layer)}</ul></div>"


def _bytes(n: Any) -> str:
    if n is None:
        return "?"
    if n < 1024:
        return f"{n:,} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            return f"{n:,.1f} {unit}"
    return str(n)  # unreachable: the loop returns at GiB


def summary_html(s: Any) -> str:
    """The summary table: one row per layer (indented by depth) and a total row."""
    rows = [("\u00a0\u00a0" * r.depth + r.name, str((s.batch_size,) + tuple(r.out_shape)), f"{r.params:,}",
             f"{r.state:,}" if r.state else "-", _bytes(r.cache_bytes)) for r in s.rows]
    rows.append(("total", "", f"{s.total_params:,}", f"{s.total_state:,}" if s.total_state else "-",
                 _bytes(s.total_cache_bytes)))
    caption = f"input {(s.batch_size,) + tuple(s.in_shape)} {s.dtype}"
    return html_table(("layer", "output shape", "params", "state", f"cache @ batch {s.batch_size}"), rows,
                      caption=caption)


def gradcheck_html(report: Any) -> str:
    """A gradient-check report; failing rows are marked."""
    rows = [(r.name, r.detail, f"{r.max_abs_err:.2e}", f"{r.rel_err:.2e}", "ok" if r.ok else "FAIL")
            for r in report.rows]
    verdict = "passed" if report.ok else f"FAILED: {', '.join(r.name for r in report.failures)}"
    return html_table(("check", "detail", "max|num-ana|", "rel err", "status"), rows,
                      caption=f"{report.title} ({verdict}, tol {report.tol:g})",
                      failing=[not r.ok for r in report.rows])


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    if value is None:
        return "-"
    if isinstance(value, np.ndarray) or attrs.has(type(value)) or isinstance(value, (tuple, list, dict)):
        from .tree import tree_leaves

        leaves = [x for x in tree_leaves(value) if isinstance(x, np.ndarray)]
        return f"{len(leaves)} arrays, {sum(x.size for x in leaves):,} values"
    return str(value)


def fields_html(record: Any) -> str:
    """An attrs record as a two-column table of its fields; nested trees are summarized, not printed."""
    cls = type(record)
    rows = [(f.name, _value_text(getattr(record, f.name))) for f in attrs.fields(cls)]
    return html_table(("field", "value"), rows, caption=cls.__name__)

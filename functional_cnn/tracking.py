"""Per-layer norms of one training step: gradient, update, parameter, and update/param ratio.

``fit(..., track_layers=True)`` (and ``make_step(..., track_layers=True)``) attach a
tuple of :class:`LayerNorms` to every step's metrics and :class:`~functional_cnn.train.StepRecord`.

Grouping: a *layer* is a params path minus its last component, so the leaves
``"0.w"`` and ``"0.b"`` form layer ``"0"`` and ``"5.0.1.gamma"`` forms layer
``"5.0.1"``, the same numbering as params paths and as ``functional_cnn.debug``.
A network that is a single layer (leaves ``"w"``, ``"b"``) has one layer named
``"<root>"``. Only trainable leaves count: state fields (batch-norm running
statistics) have no gradient and are left out of every norm.

Each norm is the L2 norm over all the layer's leaves together, computed in float64::

    grad_norm   = sqrt(sum over leaves of sum(g**2))
    update_norm = sqrt(sum over leaves of sum(u**2))      # u: what the optimizer adds
    param_norm  = sqrt(sum over leaves of sum(p**2))      # p: params *before* the update
    ratio       = update_norm / param_norm                 # inf when param_norm == 0

A ratio near 1e-3 per step is the usual rule of thumb for a healthy learning rate;
gradient norms that shrink by orders of magnitude towards the input are the
signature of vanishing gradients.

>>> import numpy as np, functional_cnn as fc
>>> net = fc.serial(fc.dense(2), fc.relu(), fc.dense(1))
>>> _, p = net.init(np.random.default_rng(0), (3,))
>>> [n.layer for n in layer_norms(p, p, p)]
['0', '2']
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import attrs
import numpy as np

from ._atomic import atomic_write
from .tree import trainable, tree_leaves_with_paths

__all__ = ["LayerNorms", "layer_norms", "layer_of", "norms_row", "LAYERS", "write_layer_rows", "read_layer_rows",
           "LayerLog"]

LAYERS = "layers.jsonl"
ROOT = "<root>"


@attrs.frozen
class LayerNorms:
    """The norms of one layer at one step (see the module docstring for the definitions)."""

    layer: str
    grad_norm: float
    update_norm: float
    param_norm: float
    ratio: float

    def as_dict(self) -> Dict[str, float]:
        """``{"grad_norm": ..., "update_norm": ..., "param_norm": ..., "ratio": ...}``."""
        return {"grad_norm": self.grad_norm, "update_norm": self.update_norm, "param_norm": self.param_norm,
                "ratio": self.ratio}


def layer_of(path: str) -> str:
    """The layer a leaf path belongs to: ``"0.w"`` -> ``"0"``, ``"w"`` -> ``"<root>"``."""
    head, _, _ = path.rpartition(".")
    return head or ROOT


def _squares_by_layer(tree: Any, where: str) -> Dict[str, float]:
    sums: Dict[str, float] = {}
    for path, leaf in tree_leaves_with_paths(tree):
        a = np.asarray(leaf)
        if a.dtype.kind not in "fiu":
            raise TypeError(f"layer_norms: {where} leaf {path!r} must be a numeric array, got {a.dtype}")
        a = a.astype(np.float64, copy=False)
        key = layer_of(path)
        sums[key] = sums.get(key, 0.0) + float(np.vdot(a, a))
    return sums


def layer_norms(params: Any, grads: Any, updates: Any) -> Tuple[LayerNorms, ...]:
    """Per-layer norms of one step, in params order.

    Args:
        params: the params the step started from (state fields are ignored).
        grads: their gradients, same structure (``None`` where there is none).
        updates: what the optimizer returned to add to ``params``.

    Returns:
        One :class:`LayerNorms` per layer that has a gradient.
    """
    g2 = _squares_by_layer(grads, "grads")
    u2 = _squares_by_layer(updates, "updates")
    p2 = _squares_by_layer(trainable(params), "params")
    out = []
    for name, g in g2.items():
        u, p = u2.get(name, 0.0), p2.get(name, 0.0)
        un, pn = float(np.sqrt(u)), float(np.sqrt(p))
        ratio = un / pn if pn > 0 else (0.0 if un == 0 else float("inf"))
        out.append(LayerNorms(name, float(np.sqrt(g)), un, pn, ratio))
    return tuple(out)


def norms_row(record: Any) -> Dict[str, Any]:
    """The JSON row of a :class:`~functional_cnn.train.StepRecord` that carries ``layer_norms``.

    ``{"step": 12, "epoch": 1, "layers": {"0": {"grad_norm": ..., ...}, ...}}``
    """
    if getattr(record, "layer_norms", None) is None:
        raise ValueError(f"norms_row: the record of step {getattr(record, 'step', '?')} has no layer_norms; "
                         f"train with track_layers=True")
    return {"step": record.step, "epoch": record.epoch, "layers": {n.layer: n.as_dict() for n in record.layer_norms}}


def _encode(row: Mapping[str, Any]) -> bytes:
    # inf (a zero param norm) is written as null: JSON has no infinity.
    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return None if isinstance(v, float) and not np.isfinite(v) else v

    return (json.dumps(clean(dict(row)), sort_keys=True) + "\n").encode()


def write_layer_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rewrite ``layers.jsonl`` whole and atomically, one line per step."""
    data = b"".join(_encode(r) for r in rows)
    atomic_write(path, lambda f: f.write(data))


class LayerLog:
    """``layers.jsonl`` of a run being trained, kept the way ``metrics.jsonl`` is.

    On resume from ``start_step`` the rows up to that step are kept and later ones
    (written after the checkpoint by an interrupted run) are dropped and redone.
    :meth:`add` takes every record of the stream; :meth:`write` rewrites the file
    whole and atomically (call it with the metrics, before the checkpoint).
    """

    def __init__(self, run_dir: Path, start_step: int = 0):
        self.path = Path(run_dir) / LAYERS
        self._lines = [_encode(r) for r in read_layer_rows(run_dir, max_step=start_step)] if start_step else []

    def add(self, record: Any) -> None:
        """Keep the norms of a StepRecord that carries them; other records are ignored."""
        if getattr(record, "layer_norms", None) is not None:
            self._lines.append(_encode(norms_row(record)))

    def write(self) -> None:
        data = b"".join(self._lines)
        atomic_write(self.path, lambda f: f.write(data))


def read_layer_rows(run_dir: Path, max_step: Optional[int] = None) -> List[Dict[str, Any]]:
    """The rows of a run's ``layers.jsonl`` (empty if it has none), up to ``max_step`` when given."""
    from .runs import read_jsonl  # lazy: runs is the CLI's module, tracking is the library's

    rows = read_jsonl(Path(run_dir) / LAYERS)
    return [row for row in rows if max_step is None or row.get("step", 0) <= max_step]

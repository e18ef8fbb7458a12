"""Consumers of the training stream: a progress bar, epoch lines, and the curves plot.

tqdm and matplotlib are optional extras, imported only when used: without tqdm, or
when the output is not a terminal, progress is one plain line per epoch; without
matplotlib, no PNG is written and the caller is told why.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, TextIO

__all__ = ["Progress", "epoch_line", "plot_curves", "curves_figure", "PlotUnavailable"]


class PlotUnavailable(ImportError):
    """matplotlib is not installed."""


def epoch_line(row: Dict[str, Any], epochs: int) -> str:
    """``epoch 3/8  loss 0.2113  acc 94.18%  test_loss 0.2274  test_acc 93.10%  lr 0.001  2.2s``."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['loss']:.4f}"]
    if row.get("accuracy") is not None:
        parts.append(f"acc {100 * row['accuracy']:.2f}%")
    if row.get("test_loss") is not None:
        parts.append(f"test_loss {row['test_loss']:.4f}")
    if row.get("test_accuracy") is not None:
        parts.append(f"test_acc {100 * row['test_accuracy']:.2f}%")
    parts += [f"lr {row['learning_rate']:.3g}", f"{row['seconds']:.1f}s"]
    return "  ".join(parts)


class Progress:
    """A per-epoch tqdm bar on a terminal, nothing otherwise; ``close`` before printing epoch lines."""

    def __init__(self, stream: TextIO = sys.stderr, enabled: bool = True):
        self._stream = stream
        self._bar: Any = None
        self._tqdm: Any = None
        if enabled and getattr(stream, "isatty", lambda: False)():
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            self._tqdm = tqdm

    def step(self, record: Any) -> None:
        """Advance on a :class:`functional_cnn.train.StepRecord`."""
        if self._tqdm is None:
            return
        if self._bar is None:
            self._bar = self._tqdm(total=record.batches_per_epoch, initial=record.batch - 1, file=self._stream,
                                   desc=f"epoch {record.epoch}", leave=False, unit="batch")
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{record.loss:.4f}", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or :class:`PlotUnavailable`."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise PlotUnavailable('plotting needs matplotlib: pip install "functional_cnn[plot]"') from err
    return plt


def curves_figure(rows: List[Dict[str, Any]], title: Optional[str] = None,
                  series: Optional[Dict[str, List[Dict[str, Any]]]] = None) -> Any:
    """The loss and accuracy curves per epoch (train and test) as a matplotlib Figure.

    ``series`` maps labels to row lists to compare several runs in one figure.
    Raises :class:`PlotUnavailable` without matplotlib.
    """
    plt = _pyplot()
    runs = series if series is not None else {"": rows}
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (label, rs) in enumerate(runs.items()):
        color = f"C{i}"  # one colour per run: train solid, test dashed
        epochs = [r["epoch"] for r in rs]
        prefix = f"{label} " if label else ""
        for ax, key in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            if any(r.get(key) is not None for r in rs):
                ax.plot(epochs, [r.get(key) for r in rs], color=color, marker="o", label=f"{prefix}train")
            if any(r.get(f"test_{key}") is not None for r in rs):
                ax.plot(epochs, [r.get(f"test_{key}") for r in rs], color=color, marker="s", linestyle="--",
                        label=f"{prefix}test")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(rows: List[Dict[str, Any]], path: Path, title: Optional[str] = None,
                series: Optional[Dict[str, List[Dict[str, Any]]]] = None) -> Path:
    """Draw loss and accuracy per epoch (train and test) into a PNG, atomically.

    ``series`` maps labels to row lists to compare several runs in one figure.
    Raises :class:`PlotUnavailable` without matplotlib.
    """
    from ._atomic import atomic_write

    fig = curves_figure(rows, title, series)
    plt = _pyplot()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return Path(path)

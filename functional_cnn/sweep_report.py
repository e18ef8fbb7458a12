"""A sweep's summary: per grid point, the final test accuracy and loss over seeds, as records, CSV,
markdown and a plot of the test curves with a band over the seeds.

Written at the top of the sweep folder, atomically: ``summary.csv``, ``summary.md`` and
``summary.png`` (the plot needs matplotlib, the ``plot`` extra).
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import attrs

from . import runs
from ._atomic import atomic_write
from .reporting import PlotUnavailable

__all__ = ["RunResult", "SweepRow", "summarize", "write_summary", "markdown_table", "SUMMARY_CSV", "SUMMARY_MD",
           "SUMMARY_PNG"]

SUMMARY_CSV, SUMMARY_MD, SUMMARY_PNG = "summary.csv", "summary.md", "summary.png"
_STATS = ("mean", "std", "min", "max")


@attrs.frozen
class RunResult:
    """The outcome of one run of a sweep.

    Attributes:
        name, run_dir: the run directory's name and path.
        label: the grid point (its varying flags); seed: the seed.
        status: ``"done"`` (ran now), ``"skipped"`` (finished before) or ``"failed"``.
        error: the one-line error of a failed run.
        test_accuracy, test_loss: of the last epoch row in ``metrics.jsonl`` (None if failed).
        curve: ``(step, test_loss, test_accuracy)`` per epoch row.
    """

    name: str
    run_dir: str
    label: str
    seed: int
    status: str
    error: Optional[str] = None
    test_accuracy: Optional[float] = None
    test_loss: Optional[float] = None
    curve: Tuple[Tuple[int, Optional[float], Optional[float]], ...] = ()

    @classmethod
    def from_run(cls, name: str, run_dir: str, label: str, seed: int, status: str,
                 error: Optional[str]) -> RunResult:
        """Read the final test metrics of a successful run from its ``metrics.jsonl``."""
        if status == "failed":
            return cls(name, run_dir, label, seed, status, error)
        rows = runs.read_metrics(Path(run_dir))
        if not rows:
            return cls(name, run_dir, label, seed, "failed", f"{run_dir} has no epochs in {runs.METRICS}")
        curve = tuple((r["step"], r.get("test_loss"), r.get("test_accuracy")) for r in rows)
        return cls(name, run_dir, label, seed, status, None, rows[-1].get("test_accuracy"),
                   rows[-1].get("test_loss"), curve)


@attrs.frozen
class SweepRow:
    """One grid point of a sweep's summary: the final test metrics over its seeds.

    ``*_std`` is the sample standard deviation (ddof 1), None with fewer than two finished runs;
    every statistic is None when no run of the point finished.
    """

    label: str
    runs: int
    failed: int
    test_accuracy_mean: Optional[float]
    test_accuracy_std: Optional[float]
    test_accuracy_min: Optional[float]
    test_accuracy_max: Optional[float]
    test_loss_mean: Optional[float]
    test_loss_std: Optional[float]
    test_loss_min: Optional[float]
    test_loss_max: Optional[float]
    errors: Tuple[str, ...] = ()


def _stats(values: Sequence[float]) -> List[Optional[float]]:
    if not values:
        return [None] * 4
    mean = math.fsum(values) / len(values)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return [mean, std, min(values), max(values)]


def summarize(results: Sequence[RunResult]) -> List[SweepRow]:
    """One :class:`SweepRow` per grid point, in the order the points first appear."""
    groups: Dict[str, List[RunResult]] = {}
    for r in results:
        groups.setdefault(r.label, []).append(r)
    table = []
    for label, group in groups.items():
        ok = [r for r in group if r.status != "failed"]
        acc = _stats([r.test_accuracy for r in ok if r.test_accuracy is not None])
        loss = _stats([r.test_loss for r in ok if r.test_loss is not None])
        errors = tuple(f"seed {r.seed}: {r.error}" for r in group if r.status == "failed")
        table.append(SweepRow(label, len(group), len(group) - len(ok), *acc, *loss, errors))
    return table


def _fmt(value: Optional[float], scale: float, digits: int) -> str:
    return "-" if value is None else f"{scale * value:.{digits}f}"


def markdown_table(table: Sequence[SweepRow]) -> str:
    """The summary as a markdown table (accuracy in %)."""
    lines = [("| config | runs | failed | test acc % (mean ± std) | min | max | test loss (mean ± std) | min | max "
              "| errors |"), "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in table:
        acc = f"{_fmt(r.test_accuracy_mean, 100, 2)} ± {_fmt(r.test_accuracy_std, 100, 2)}"
        loss = f"{_fmt(r.test_loss_mean, 1, 4)} ± {_fmt(r.test_loss_std, 1, 4)}"
        errors = "; ".join(r.errors).replace("|", "\\|")
        lines.append(f"| {r.label or '(one config)'} | {r.runs} | {r.failed} | {acc} | "
                     f"{_fmt(r.test_accuracy_min, 100, 2)} | {_fmt(r.test_accuracy_max, 100, 2)} | {loss} | "
                     f"{_fmt(r.test_loss_min, 1, 4)} | {_fmt(r.test_loss_max, 1, 4)} | {errors} |")
    return "\n".join(lines) + "\n"


def _csv(table: Sequence[SweepRow]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    fields = [f.name for f in attrs.fields(SweepRow)]
    writer.writerow(fields)
    for r in table:
        writer.writerow(["; ".join(v) if isinstance(v, tuple) else "" if v is None else repr(v) if isinstance(v, float)
                         else v for v in attrs.astuple(r, recurse=False)])
    return buf.getvalue()


def plot_summary(results: Sequence[RunResult], path: Path) -> Path:
    """Test loss and accuracy against the step per grid point: the mean over seeds, a min-max band."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise PlotUnavailable('plotting needs matplotlib: pip install "functional_cnn[plot]"') from err
    groups: Dict[str, List[RunResult]] = {}
    for r in results:
        if r.status != "failed" and r.curve:
            groups.setdefault(r.label, []).append(r)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, (label, group) in enumerate(groups.items()):
        n = min(len(r.curve) for r in group)
        steps = [group[0].curve[k][0] for k in range(n)]
        for ax, col in ((axes[0], 1), (axes[1], 2)):
            ys = [[r.curve[k][col] for r in group] for k in range(n)]
            if any(v is None for y in ys for v in y):
                continue
            ax.plot(steps, [math.fsum(y) / len(y) for y in ys], color=f"C{i % 10}", marker="o",
                    label=f"{label or 'all'} ({len(group)} seeds)")
            ax.fill_between(steps, [min(y) for y in ys], [max(y) for y in ys], color=f"C{i % 10}", alpha=0.2)
    for ax, what in zip(axes, ("test loss", "test accuracy"), strict=True):
        ax.set(xlabel="step", ylabel=what, title=f"{what}: mean over seeds, band min-max")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return path


def write_summary(table: Sequence[SweepRow], results: Sequence[RunResult], out: Path, *, plot: bool = True,
                  stream: Any = None) -> None:
    """Write ``summary.csv``, ``summary.md`` and (with matplotlib) ``summary.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / SUMMARY_CSV, lambda f: f.write(_csv(table).encode()))
    atomic_write(out / SUMMARY_MD, lambda f: f.write(markdown_table(table).encode()))
    if plot:
        try:
            plot_summary(results, out / SUMMARY_PNG)
        except PlotUnavailable as err:
            if stream is not None:
                print(f"note: no {SUMMARY_PNG}: {err}", file=stream)

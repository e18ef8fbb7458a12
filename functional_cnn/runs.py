"""Run directories: what ``functional-cnn train`` writes, and reading it back.

A run directory holds::

    config.json      the resolved configuration, seed and package versions
    metrics.jsonl    one JSON line per epoch
    checkpoint.npz   params, optimizer state, step and config (functional_cnn.checkpoint)
    curves.png       training curves (only with matplotlib installed)

Every file is written atomically (temporary file, fsync, ``os.replace``), so an
interrupted run leaves the previous complete version of each file.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from ._atomic import atomic_write

__all__ = ["CONFIG", "METRICS", "CHECKPOINT", "CURVES", "versions", "write_json", "read_config",
           "write_metrics", "read_metrics", "epoch_metrics"]

CONFIG, METRICS, CHECKPOINT, CURVES = "config.json", "metrics.jsonl", "checkpoint.npz", "curves.png"


def versions() -> Dict[str, str]:
    """Versions of Python and the packages a result depends on."""
    import attrs
    import scipy
    import toolz

    from . import __version__

    return {"functional_cnn": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "attrs": attrs.__version__, "toolz": toolz.__version__, "python": platform.python_version()}


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as indented JSON, atomically."""
    data = (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
    atomic_write(path, lambda f: f.write(data))


def read_config(run_dir: Path) -> Dict[str, Any]:
    """The ``config.json`` of a run directory."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory: {CONFIG} is missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def write_metrics(path: Path, rows: List[Dict[str, Any]]) -> None:
    """Rewrite ``metrics.jsonl`` whole and atomically (a crash never leaves half a line)."""
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
    atomic_write(path, lambda f: f.write(data))


def read_metrics(run_dir: Path) -> List[Dict[str, Any]]:
    """The epoch rows of a run's ``metrics.jsonl`` (empty if it has none yet)."""
    return read_jsonl(Path(run_dir) / METRICS)


def read_jsonl(path: Path) -> List[Dict[str, Any]]:
    """The rows of a JSON-lines file (empty if there is none); a bad line is a ValueError naming it."""
    if not path.is_file():
        return []
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {i} is not valid JSON: {err}") from err
    return rows


def epoch_metrics(record: Any) -> Dict[str, Any]:
    """The JSON row of an :class:`functional_cnn.train.EpochRecord`."""
    return {"epoch": record.epoch, "step": record.step, "loss": record.loss, "accuracy": record.accuracy,
            "test_loss": record.test_loss, "test_accuracy": record.test_accuracy,
            "learning_rate": record.learning_rate, "seconds": round(record.seconds, 4), "complete": record.complete}

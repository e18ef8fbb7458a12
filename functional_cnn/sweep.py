"""Sweeps: a grid of ``functional-cnn train`` configs over seeds, run on Dask or in this process.

Each grid point, for each seed, is an ordinary run directory under ``out``, written by the
train command's own code (``functional_cnn.cli.main(["train", ...])``) in a worker, so it
is bit-identical to the same config trained alone. Its name holds the flags that vary and
the seed, e.g. ``out/optimizer=sgd_lr=0.1_seed=0``. At the top of ``out`` go
``summary.csv``, ``summary.md`` and ``summary.png`` (see :mod:`functional_cnn.sweep_report`).

Running the same sweep again skips finished runs and resumes unfinished ones
(``train --resume``). A worker that dies mid-run has its run rescheduled by Dask (up to
``distributed.scheduler.allowed-failures`` deaths per run, 3 by default); the retry
resumes from the last checkpoint, and every file in a run directory is written atomically.
A run that fails for a real reason (a NaN loss) is reported with its error; the others go on.

>>> rows = run_sweep({"model": "seed1", "dataset": "digits", "lr": [0.01, 0.1], "max_steps": 3},
...                  seeds="0-1", out="/tmp/sweep", workers=2)          # doctest: +SKIP
>>> [(r.label, r.runs, r.test_accuracy_mean) for r in rows]            # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import runs
from .reporting import Progress
from .sweep_grid import (
    NOT_SWEPT,
    RunSpec,
    check_value,
    is_finished,
    parse_seeds,
    plan_sweep,
    train_actions,
)
from .sweep_report import RunResult, SweepRow, summarize, write_summary

__all__ = ["run_sweep", "run_one", "parse_seeds", "plan_sweep", "is_finished", "check_value", "RunSpec", "RunResult",
           "SweepRow", "train_actions", "NOT_SWEPT", "DASK_EXTRA"]

DASK_EXTRA = 'pip install "functional_cnn[distributed]"'
SCHEDULER_TIMEOUT_S = 3


def run_one(spec: RunSpec) -> Dict[str, Any]:
    """Train one run (the Dask task): fresh, or resumed when its directory holds a checkpoint or config.

    Returns ``{"status": "done" | "failed", "error": str | None, "seconds": float, "resumed": bool}``;
    the train command's own errors (NaN loss, bad data) come back as a failed status, never raised.
    """
    from .cli import main

    path = Path(spec.run_dir)
    resume = (path / runs.CHECKPOINT).is_file() or (path / runs.CONFIG).is_file()
    argv = spec.resume_argv() if resume else spec.argv
    err, t0 = io.StringIO(), time.perf_counter()
    with contextlib.redirect_stderr(err):
        try:
            code = main(list(argv), out=io.StringIO())
        except SystemExit as exc:  # argparse; cannot happen for a planned spec, but never kill a worker
            code = exc.code if isinstance(exc.code, int) else 2
    if code == 130:  # train caught a KeyboardInterrupt: stop the sweep too (its checkpoints are kept)
        raise KeyboardInterrupt
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    error = None if code == 0 else (lines[-1].replace("functional-cnn train: error: ", "", 1) if lines
                                    else f"train exited with status {code}")
    return {"status": "done" if code == 0 else "failed", "error": error,
            "seconds": time.perf_counter() - t0, "resumed": resume}


class _RunBar(Progress):
    """One bar over the sweep's runs (tqdm on a terminal), else one line per finished run."""

    def __init__(self, total: int, done: int, stream: Any, enabled: bool):
        super().__init__(stream, enabled)
        self._total, self._done, self._lines = total, done, enabled and self._tqdm is None
        if self._tqdm is not None:
            self._bar = self._tqdm(total=total, initial=done, file=stream, desc="sweep", unit="run")

    def finished(self, spec: RunSpec, result: Dict[str, Any]) -> None:
        self._done += 1
        what = "done" if result["status"] == "done" else f"FAILED: {result['error']}"
        if result["status"] == "done" and result.get("resumed"):
            what += ", resumed from its checkpoint"
        line = f"[{self._done}/{self._total}] {spec.name}: {what} ({result['seconds']:.1f}s)"
        if self._bar is not None:
            self._bar.update(1)
            if result["status"] != "done":
                self._bar.write(line, file=self._stream)
        elif self._lines:
            print(line, file=self._stream, flush=True)


def _dask(why: str) -> Any:
    try:
        import distributed
    except ImportError as err:
        raise ImportError(f"{why} needs dask.distributed: {DASK_EXTRA}") from err
    return distributed


def _connect(distributed: Any, workers: Optional[int], scheduler: Optional[str], n_runs: int) -> Tuple[Any, Any]:
    """(client, cluster or None): an embedded LocalCluster, or a client of the scheduler at ``scheduler``."""
    if scheduler is not None:
        from distributed.comm import parse_address, parse_host_port
        from distributed.comm.registry import backends

        try:  # a malformed address fails here, before a Client half exists
            scheme, location = parse_address(scheduler)
            if scheme not in backends:
                raise ValueError(f"unknown protocol {scheme!r}; expected one of {', '.join(sorted(backends))}")
            if scheme in ("tcp", "tls", "ws", "wss"):
                parse_host_port(location)
        except ValueError as err:
            raise ValueError(f"--scheduler {scheduler!r} is not a Dask scheduler address like tcp://10.0.0.5:8786: "
                             f"{err}") from None
        try:
            return distributed.Client(scheduler, timeout=SCHEDULER_TIMEOUT_S, set_as_default=False), None
        except (OSError, ValueError, TypeError) as err:
            message = " ".join(str(err).split())
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler!r}: {message}") from None
    cluster = distributed.LocalCluster(n_workers=workers or min(os.cpu_count() or 1, max(n_runs, 1)),
                                       threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=logging.CRITICAL)
    return distributed.Client(cluster, set_as_default=False), cluster


def run_sweep(grid: Mapping[str, Any], seeds: Union[str, int, Sequence[int]] = 0,
              out: Union[str, os.PathLike] = "runs/sweep", *, workers: Optional[int] = None,
              scheduler: Optional[str] = None, progress: bool = True, plot: bool = True,
              stream: Any = None) -> List[SweepRow]:
    """Run every grid point for every seed and write the summary at the top of ``out``.

    Args:
        grid: ``functional-cnn train`` flags to a value or a list of values, e.g.
            ``{"optimizer": ["sgd", "adam"], "lr": [0.01, 0.1], "max_steps": 100}``.
        seeds: ``"0,1,2"``, ``"0-4"``, an int or a list of ints.
        out: the sweep folder; one run directory per (point, seed) inside.
        workers: processes of an embedded Dask ``LocalCluster`` (default: the CPU count, at most
            the number of runs). Without Dask, ``None`` or 1 runs the grid in this process.
        scheduler: address of a running Dask scheduler to use instead (``tcp://host:8786``).
        progress: show a bar over the runs (tqdm on a terminal) or one line per run.
        plot: draw ``summary.png`` (needs matplotlib; skipped with a note without it).
        stream: where progress and notes go (default ``sys.stderr``).

    Returns:
        One :class:`SweepRow` per grid point: mean, std, min and max of the final test
        accuracy and loss over the seeds, with the counts of runs and failed runs.

    Raises:
        ValueError: bad grid, seeds or workers, or an unreachable scheduler (nothing is run).
        ImportError: ``workers`` > 1 or ``scheduler`` without dask.distributed.
    """
    stream = sys.stderr if stream is None else stream
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"run_sweep: workers must be an int >= 1, got {workers!r}")
    if workers is not None and scheduler is not None:
        raise ValueError("run_sweep: give workers (an embedded cluster) or scheduler (an existing one), not both")
    specs = plan_sweep(grid, seeds, out)
    done = {s.name: is_finished(s) for s in specs}
    todo = [s for s in specs if not done[s.name]]
    results: Dict[str, Dict[str, Any]] = {}
    try:
        distributed = _dask(f"a sweep on {workers} workers" if scheduler is None else "a sweep on a Dask scheduler")
    except ImportError:
        if scheduler is not None or (workers or 1) > 1:
            raise
        distributed = None
    if len(done) > len(todo):
        print(f"{len(done) - len(todo)} of {len(specs)} runs already finished in {out}: skipped", file=stream)
    bar = _RunBar(len(specs), len(specs) - len(todo), stream, progress)
    try:
        if not todo:
            pass
        elif distributed is None:
            print(f"dask.distributed is not installed: running {len(todo)} runs one after another in this process "
                  f"({DASK_EXTRA} to run them in parallel)", file=stream)
            for spec in todo:
                results[spec.name] = run_one(spec)
                bar.finished(spec, results[spec.name])
        else:
            client, cluster = _connect(distributed, workers, scheduler, len(todo))
            try:
                futures = {client.submit(run_one, spec, pure=False, retries=0): spec for spec in todo}
                for future in distributed.as_completed(futures, loop=client.loop):
                    spec = futures[future]
                    try:
                        results[spec.name] = future.result()
                    except Exception as err:  # noqa: BLE001  KilledWorker after too many deaths, or a bug in a run
                        message = " ".join(f"{type(err).__name__}: {err}".split())
                        results[spec.name] = {"status": "failed", "error": message, "seconds": 0.0}
                    bar.finished(spec, results[spec.name])
            finally:
                client.close()
                if cluster is not None:
                    cluster.close()
    finally:
        bar.close()
    outcome = [RunResult.from_run(s.name, s.run_dir, s.label, s.seed,
                                  "skipped" if done[s.name] else results[s.name]["status"],
                                  None if done[s.name] else results[s.name]["error"]) for s in specs]
    table = summarize(outcome)
    write_summary(table, outcome, Path(out), plot=plot, stream=stream)
    return table

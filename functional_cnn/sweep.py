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

import argparse
import contextlib
import io
import itertools
import os
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import attrs

from . import runs
from .reporting import Progress
from .sweep_report import RunResult, SweepRow, summarize, write_summary

__all__ = ["run_sweep", "parse_seeds", "plan_sweep", "RunSpec", "RunResult", "SweepRow", "train_actions",
           "NOT_SWEPT", "DASK_EXTRA"]

# Train flags a sweep sets itself: one directory per run, resumed automatically, the seed from --seeds.
NOT_SWEPT = ("--help", "--out", "--resume", "--seed", "--quiet", "--no-plot")
DASK_EXTRA = 'pip install "functional_cnn[distributed]"'
SCHEDULER_TIMEOUT_S = 3


@attrs.frozen
class RunSpec:
    """One run of a sweep: a grid point and a seed.

    Attributes:
        name: the run directory's name (the varying flags and the seed).
        run_dir: where it runs.
        point: ``(flag, value)`` pairs, every flag given (value: a string, or a bool for switches).
        label: the varying flags alone, ``"optimizer=sgd lr=0.1"`` (the summary's row key).
        seed: the seed.
        argv: the ``functional-cnn train`` arguments of a fresh run.
    """

    name: str
    run_dir: str
    point: Tuple[Tuple[str, Any], ...]
    label: str
    seed: int
    argv: Tuple[str, ...]

    def resume_argv(self) -> Tuple[str, ...]:
        """``train --resume DIR`` arguments (the run's config comes from its directory)."""
        argv = ["train", "--resume", self.run_dir, "--quiet", "--no-plot"]
        for flag, value in self.point:
            if flag in ("--epochs", "--max-steps"):
                argv += [flag, value]
        return tuple(argv)


def train_actions(train_parser: Optional[argparse.ArgumentParser] = None) -> Dict[str, argparse.Action]:
    """The ``functional-cnn train`` options a sweep takes, by long flag, in the train parser's order.

    Read from the train subparser itself, so a flag added to ``train`` is sweepable at once.
    """
    if train_parser is None:
        from .cli import build_parser  # late: cli imports this module's CLI half

        sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
        train_parser = sub.choices["train"]
    found = {}
    for action in train_parser._actions:
        flags = [s for s in action.option_strings if s.startswith("--")]
        if flags and flags[0] not in NOT_SWEPT:
            found[flags[0]] = action
    return found


def check_value(action: argparse.Action, text: str) -> str:
    """``text`` if the train option ``action`` accepts it; ValueError (one line) otherwise."""
    flag = action.option_strings[-1]
    if action.type is not None:
        try:
            typed = action.type(text)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
            kind = getattr(action.type, "__name__", "value")
            raise ValueError(f"{flag}: {text!r} is not a valid {kind} ({err})") from None
    else:
        typed = text
    if action.choices is not None and typed not in action.choices:
        raise ValueError(f"{flag}: unknown value {text!r}; choose from {', '.join(map(str, action.choices))}")
    return text


def parse_seeds(text: Union[str, int, Sequence[int]]) -> Tuple[int, ...]:
    """Seeds from ``"0,1,2"``, ``"0-4"`` (inclusive), a mix (``"0-2,7"``), an int or a list of ints."""
    if isinstance(text, int) and not isinstance(text, bool):
        text = [text]
    if not isinstance(text, str):
        items = list(text)
        if not items or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in items):
            raise ValueError(f"seeds must be non-negative ints, got {items!r}")
        seeds = items
    else:
        seeds = []
        for part in text.split(","):
            m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
            if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
                raise ValueError(f"seeds must look like 0,1,2 or 0-4 (non-negative, ascending ranges), got {text!r}")
            lo = int(m.group(1))
            seeds += range(lo, int(m.group(2) or lo) + 1)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds list a seed twice: {text!r}")
    return tuple(seeds)


def _as_values(action: argparse.Action, flag: str, value: Any) -> List[Any]:
    """The grid values of one flag: strings for options, bools for switches (nargs=0)."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ValueError(f"{flag}: empty list of values")
    if action.nargs == 0:
        if not all(isinstance(v, bool) for v in values):
            raise ValueError(f"{flag} is a switch: give True/False, got {values!r}")
        return values
    if action.nargs is not None:  # a multi-valued option (nargs "+", "*", N): one fixed value, all runs
        return [tuple(check_value(action, str(v)) for v in values)]
    out = [check_value(action, v if isinstance(v, str) else repr(v) if isinstance(v, float) else str(v))
           for v in values]
    if len(set(out)) != len(out):
        raise ValueError(f"{flag} lists a value twice: {', '.join(out)}")
    return out


def _token(flag: str, value: Any) -> str:
    text = ("on" if value else "off") if isinstance(value, bool) else "+".join(value) if isinstance(value, tuple) \
        else str(value)
    return f"{flag.lstrip('-')}={re.sub(r'[^A-Za-z0-9.+-]', '_', text)}"


def plan_sweep(grid: Mapping[str, Any], seeds: Union[str, int, Sequence[int]], out: Union[str, os.PathLike],
               actions: Optional[Dict[str, argparse.Action]] = None) -> List[RunSpec]:
    """Expand ``grid`` x ``seeds`` into runs, validating every value against the train command.

    Args:
        grid: train flags (``"--lr"``, ``"lr"`` or ``"batch_size"``) to a value or a list of values.
        seeds: see :func:`parse_seeds`.
        out: the sweep folder.

    Raises:
        ValueError: an unknown flag or value, malformed seeds, a config ``train`` refuses, or a run
            directory that already holds a run of another config.
    """
    actions = train_actions() if actions is None else actions
    seeds = parse_seeds(seeds)
    axes: List[Tuple[str, List[Any]]] = []
    for key, value in grid.items():
        flag = "--" + key.lstrip("-").replace("_", "-")
        if flag not in actions:
            raise ValueError(f"run_sweep: unknown train flag {key!r}; the sweepable flags are {', '.join(actions)}")
        axes.append((flag, _as_values(actions[flag], flag, value)))
    order = list(actions)
    axes.sort(key=lambda axis: order.index(axis[0]))
    varying = [flag for flag, values in axes if len(values) > 1]
    specs, names = [], set()
    for combo in itertools.product(*(values for _, values in axes)):
        point = tuple((flag, v) for (flag, _), v in zip(axes, combo))
        label = " ".join(_token(f, v) for f, v in point if f in varying)
        argv: List[str] = ["train"]
        for flag, v in point:
            argv += ([flag] if v else []) if isinstance(v, bool) else [flag, *v] if isinstance(v, tuple) else [flag, v]
        for seed in seeds:
            name = "_".join([_token(f, v) for f, v in point if f in varying] + [f"seed={seed}"])
            if name in names:
                raise ValueError(f"run_sweep: two grid points share the run directory name {name!r}")
            names.add(name)
            run_dir = str(Path(out) / name)
            specs.append(RunSpec(name, run_dir, point, label, seed,
                                 tuple(argv + ["--seed", str(seed), "--out", run_dir, "--quiet", "--no-plot"])))
    for spec in specs:
        _check_against_disk(spec)
    return specs


def _resolved_config(spec: RunSpec) -> Dict[str, Any]:
    """The config ``train`` would resolve for a fresh run of ``spec`` (raises as train would)."""
    from .cli import CLIError, _resolve_train_config, build_parser

    args = build_parser().parse_args(list(spec.argv))
    try:
        return _resolve_train_config(args)
    except CLIError as err:
        raise ValueError(str(err)) from None


def _check_against_disk(spec: RunSpec) -> None:
    cfg = _resolved_config(spec)
    path = Path(spec.run_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory")
    if not (path / runs.CONFIG).is_file():
        return
    saved = runs.read_config(path)
    for key, value in cfg.items():
        if key in saved and key not in ("epochs", "max_steps") and saved[key] != value:
            raise ValueError(f"{path} holds a run with {key}={saved[key]!r} but this sweep asks for {value!r}; "
                             f"use another --out")


def is_finished(spec: RunSpec) -> bool:
    """Whether ``spec``'s directory holds a run that reached its last epoch or its ``--max-steps``."""
    path = Path(spec.run_dir)
    if not ((path / runs.CONFIG).is_file() and (path / runs.CHECKPOINT).is_file()):
        return False
    try:
        from .checkpoint import load_checkpoint

        cfg, rows, step = runs.read_config(path), runs.read_metrics(path), load_checkpoint(path / runs.CHECKPOINT).step
    except (OSError, ValueError):  # unreadable: let train --resume say what is wrong
        return False
    given = dict(spec.point)
    epochs = int(given.get("--epochs", cfg.get("epochs")))
    max_steps = given.get("--max-steps", cfg.get("max_steps"))
    if not rows or rows[-1]["step"] != step:
        return False
    last = rows[-1]
    return (max_steps is not None and step >= int(max_steps)) or (last["epoch"] >= epochs and last["complete"])


def run_one(spec: RunSpec) -> Dict[str, Any]:
    """Train one run (the Dask task): fresh, or resumed when its directory holds a checkpoint or config.

    Returns ``{"status": "done" | "failed", "error": str | None, "seconds": float}``; the train
    command's own errors (NaN loss, bad data) come back as a failed status, never raised.
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
    error = None if code == 0 else (lines[-1] if lines else f"train exited with status {code}")
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
    import logging

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
    import sys

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
                    except Exception as err:  # KilledWorker after too many deaths, or a bug in a run
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

"""A sweep's grid: train flags with lists of values, expanded over seeds into named runs.

The sweepable flags are read from the ``functional-cnn train`` subparser's own actions, so a
flag added to ``train`` is sweepable at once; every value is checked with that action's type
and choices, and every run's config with the train command's own config resolution, before
anything runs. See :mod:`functional_cnn.sweep`.
"""
from __future__ import annotations

import argparse
import itertools
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import attrs

from . import runs

__all__ = ["RunSpec", "NOT_SWEPT", "train_actions", "check_value", "parse_seeds", "plan_sweep", "is_finished"]

# Train flags a sweep sets itself: one directory per run, resumed automatically, the seed from --seeds.
NOT_SWEPT = ("--help", "--out", "--resume", "--seed", "--quiet", "--no-plot")


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
    out = [check_value(action, str(v)) for v in values]  # str(0.1) == "0.1", also for numpy scalars
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
        point = tuple((flag, v) for (flag, _), v in zip(axes, combo, strict=True))
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
    from .cli import build_parser

    parser = build_parser()
    for spec in specs:
        _check_against_disk(spec, parser)
    return specs


def _resolved_config(spec: RunSpec, parser: argparse.ArgumentParser) -> Dict[str, Any]:
    """The config ``train`` would resolve for a fresh run of ``spec`` (raises as train would)."""
    from .cli import CLIError, _resolve_train_config

    try:
        return _resolve_train_config(parser.parse_args(list(spec.argv)))
    except CLIError as err:
        raise ValueError(str(err)) from None


def _check_against_disk(spec: RunSpec, parser: argparse.ArgumentParser) -> None:
    """Refuse a config train would refuse, or a directory holding a run of another config."""
    cfg = _resolved_config(spec, parser)
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
    from .checkpoint import CheckpointError, load_checkpoint

    try:
        cfg, rows, step = runs.read_config(path), runs.read_metrics(path), load_checkpoint(path / runs.CHECKPOINT).step
    except (OSError, ValueError, CheckpointError):  # unreadable: train --resume will say what is wrong
        return False
    given = dict(spec.point)
    epochs = int(given.get("--epochs", cfg.get("epochs")))
    max_steps = given.get("--max-steps", cfg.get("max_steps"))
    if not rows or rows[-1]["step"] != step:
        return False
    last = rows[-1]
    return (max_steps is not None and step >= int(max_steps)) or (last["epoch"] >= epochs and last["complete"])

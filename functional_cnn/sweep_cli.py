"""``functional-cnn sweep``: the train command's flags, each taking a comma-separated list.

The parser is built from the train subparser's own actions, so every flag ``train`` has
(including ones added later) is sweepable: ``--optimizer sgd,adam --lr 0.01,0.1``. Switches
(flags without a value) are passed to every run. The work is done by
:func:`functional_cnn.sweep.run_sweep`.
"""
from __future__ import annotations

import argparse
from typing import Any, Dict, List

from .sweep_grid import NOT_SWEPT, check_value, parse_seeds, train_actions

__all__ = ["add_sweep_parser", "cmd_sweep"]


def _list_of(action: argparse.Action) -> Any:
    """An argparse type: a comma-separated list of values ``action`` accepts, as a tuple of strings."""
    def parse(text: str) -> tuple:
        values = tuple(v.strip() for v in text.split(","))
        if any(not v for v in values):
            raise argparse.ArgumentTypeError(f"empty value in the list {text!r}")
        try:
            return tuple(check_value(action, v) for v in values)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).partition(": ")[2]) from None
    parse.__name__ = "list"
    return parse


def _seeds(text: str) -> tuple:
    try:
        return parse_seeds(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _workers(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of worker processes >= 1, got {text!r}")
    return int(text)


def add_sweep_parser(sub: Any, train_parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``sweep`` subcommand to ``sub``, with every option of ``train_parser`` as a list flag."""
    s = sub.add_parser("sweep", help="train a grid of configs over seeds (on Dask when installed)",
                       description="Each train flag takes a comma-separated list; every combination is run "
                                   "for every seed. Run again to skip finished runs and resume unfinished ones.")
    for action in train_actions(train_parser).values():
        names = [o for o in action.option_strings if o not in NOT_SWEPT]
        help_text = action.help or ""
        if action.nargs == 0:
            s.add_argument(*names, dest=action.dest, action="store_true", help=f"{help_text} (every run)")
        elif action.nargs is None:
            choices = f" {{{','.join(map(str, action.choices))}}}" if action.choices else ""
            s.add_argument(*names, dest=action.dest, type=_list_of(action), metavar="V[,V...]",
                           help=f"{help_text}; a comma-separated list{choices}")
        else:  # a multi-valued option: passed to every run as given
            s.add_argument(*names, dest=action.dest, nargs=action.nargs, type=action.type, choices=action.choices,
                           help=f"{help_text} (every run)")
    s.add_argument("--seeds", type=_seeds, default=(0,), help="seeds: 0,1,2 or 0-4 (default 0)")
    s.add_argument("--out", default="runs/sweep", help="sweep folder: one run directory per config and seed, "
                                                       "summary.csv/.md/.png at the top (default runs/sweep)")
    s.add_argument("--workers", type=_workers, help="worker processes of an embedded Dask LocalCluster "
                                                    "(default: the CPU count)")
    s.add_argument("--scheduler", metavar="ADDRESS", help="address of a running Dask scheduler, "
                                                          "e.g. tcp://10.0.0.5:8786")
    s.add_argument("--no-plot", action="store_true", help="do not write summary.png")
    s.add_argument("--quiet", action="store_true", help="no progress bar or per-run lines")
    return s


def cmd_sweep(args: argparse.Namespace, out: Any) -> int:
    """Run the sweep; print the summary table. Exit status 0, or 1 if any run failed."""
    from .sweep import run_sweep
    from .sweep_report import SUMMARY_MD, markdown_table

    grid: Dict[str, Any] = {}
    for flag, action in train_actions().items():
        value = getattr(args, action.dest, None)
        if value is None or value is False:
            continue
        grid[flag] = list(value) if action.nargs is None else True if action.nargs == 0 else tuple(value)
    if args.workers is not None and args.scheduler is not None:
        raise ValueError("give --workers (an embedded cluster) or --scheduler (an existing one), not both")
    table = run_sweep(grid, list(args.seeds), args.out, workers=args.workers, scheduler=args.scheduler,
                      progress=not args.quiet, plot=not args.no_plot)
    print(markdown_table(table), file=out, end="")
    failed: List[int] = [r.failed for r in table]
    print(f"{sum(r.runs for r in table)} runs, {sum(failed)} failed; summary in {args.out}/{SUMMARY_MD}", file=out)
    return 1 if any(failed) else 0

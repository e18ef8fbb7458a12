"""What the tree utilities and one optimizer step cost, in microseconds per call.

    python benchmarks/tree_overhead.py                      # the code on sys.path (this checkout)
    python benchmarks/tree_overhead.py --before /tmp/old    # plus a column for another checkout

``--before DIR`` runs this same script in a subprocess with ``DIR`` (a copy of the package's
repository at another commit, e.g. ``git archive c1f1981 | tar -x -C /tmp/old``) first on
``sys.path`` and prints both columns side by side. Times are CPU time (``time.process_time``,
so other load on a shared box does not count), the best of 7 blocks of ``timeit`` calls.

The trees are the params of seed 000's net (conv2d(4, 3), relu, max_pool2d(2), flatten,
dense(10) on 1x28x28) and of LeNet-5; the gradients are random arrays of the same shapes.
Not a test: nothing here asserts a speed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import timeit
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def best_us(fn: Callable[[], object], blocks: int = 7) -> float:
    """Best per-call CPU time in microseconds over ``blocks`` blocks of calls."""
    timer = timeit.Timer(fn, timer=time.process_time)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=blocks, number=number)) / number * 1e6


def _momentum_floor(params: list, grads: object) -> None:
    """The array operations of one sgd-momentum step with no tree handling: the floor."""
    from functional_cnn.tree import tree_leaves

    for p, g in zip(params, tree_leaves(grads)):
        t = 0.9 * np.zeros_like(g) + g
        p + (-0.01 * t)


def _adam_floor(params: list, grads: object) -> None:
    """The array operations of one Adam step with no tree handling: the floor."""
    from functional_cnn.tree import tree_leaves

    for p, g in zip(params, tree_leaves(grads)):
        m = 0.9 * np.zeros_like(g) + 0.1 * g
        v = 0.999 * np.zeros_like(g) + 0.001 * (g * g)
        p + (-0.001 * ((m / 0.1) / (np.sqrt(v / 0.001 + 0.0) + 1e-8)))


def measure() -> Dict[str, float]:
    import numpy as np

    import functional_cnn as fc
    from functional_cnn import models
    from functional_cnn.tree import assert_same_structure, tree_flatten, tree_map, tree_unflatten

    nets = {
        "seed000": (fc.serial(fc.conv2d(4, 3), fc.relu(), fc.max_pool2d(2), fc.flatten(), fc.dense(10)), (1, 28, 28)),
        "lenet5": (models.lenet5(), (1, 28, 28)),
    }
    rows: Dict[str, float] = {}
    for net_name, (net, in_shape) in nets.items():
        _, params = net.init(np.random.default_rng(0), in_shape)
        rng = np.random.default_rng(1)
        grads = tree_map(lambda p: rng.standard_normal(p.shape).astype(p.dtype), params)
        leaves, treedef = tree_flatten(params)
        rows[f"{net_name} tree_flatten"] = best_us(lambda: tree_flatten(params))
        rows[f"{net_name} tree_unflatten"] = best_us(lambda: tree_unflatten(treedef, leaves))
        rows[f"{net_name} tree_map of two trees"] = best_us(lambda: tree_map(lambda a, b: a, grads, params))
        rows[f"{net_name} assert_same_structure"] = best_us(lambda: assert_same_structure(grads, params))
        for opt_name, opt in (("sgd momentum", fc.sgd(0.01, momentum=0.9)), ("adam", fc.adam(1e-3))):
            state = opt.init(params)

            def step(opt=opt, state=state) -> None:
                updates, _ = opt.update(grads, state, params)
                fc.apply_updates(params, updates)

            rows[f"{net_name} {opt_name}: update + apply_updates"] = best_us(step)
        rows[f"{net_name} sgd momentum: the numpy arithmetic alone"] = best_us(lambda: _momentum_floor(leaves, grads))
        rows[f"{net_name} adam: the numpy arithmetic alone"] = best_us(lambda: _adam_floor(leaves, grads))
    return rows


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another checkout to measure first, for a before column")
    parser.add_argument("--code", type=Path, help=argparse.SUPPRESS)  # internal: put this checkout first
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.code or ROOT))
    before: Dict[str, float] = {}
    if args.before is not None:
        env = dict(os.environ, PYTHONPATH=str(args.before))
        done = subprocess.run([sys.executable, __file__, "--code", str(args.before), "--json"],
                              capture_output=True, text=True, check=True, env=env)
        before = json.loads(done.stdout)
    after = measure()
    if args.json:
        print(json.dumps(after))
        return 0
    columns: List[Tuple[str, Dict[str, float]]] = [("before (us)", before)] if before else []
    columns.append(("after (us)", after))
    head = "| call | " + " | ".join(c for c, _ in columns) + (" | speed-up |" if before else " |")
    print(head)
    print("|" + "---|" * (len(columns) + 1 + bool(before)))
    for key in after:
        cells = " | ".join(f"{col[key]:.1f}" for _, col in columns)
        ratio = f" | {before[key] / after[key]:.1f}x |" if before else " |"
        print(f"| {key} | {cells}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

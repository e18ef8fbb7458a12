"""Where a training step's time goes, layer by layer (the profile in docs/performance.md).

    python -m benchmarks.profile_layers lenet-padded 64
    python -m benchmarks.profile_layers seed000 1 --cprofile     # plus the top functions

Each layer's forward (train=True) and backward is timed on its own, on the activations
the network really produces, in CPU time (``time.process_time``: other load on a shared
box does not count) as the best of 5 blocks of calls. Set ``OPENBLAS_NUM_THREADS=1`` for
figures comparable with docs/performance.md.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.workers import NETS, fcnn_runner, init_params, make_data  # noqa: E402


def best_time(fn: Callable[[], Any], calls: int, blocks: int = 5) -> float:
    """Best per-call CPU time in microseconds over ``blocks`` blocks of ``calls`` calls."""
    fn()
    best = float("inf")
    for _ in range(blocks):
        start = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - start) / calls)
    return best * 1e6


def profile(net: str, batch: int, calls: int) -> Tuple[float, List[Tuple[str, float, float]]]:
    """Whole-step time and ``(layer, forward us, backward us)`` per layer of ``net``."""
    step, _ = fcnn_runner(net, batch, "train", 0)
    total = best_time(step, calls)
    layer, params = init_params(net, 0)
    h, _ = make_data(batch, 0)
    rows = []
    for child, p in zip(layer.children, params):
        y, cache = child.forward(p, h, train=True)
        dy = np.ones_like(y)
        fwd = best_time(lambda: child.forward(p, h, train=True), calls)
        bwd = best_time(lambda: child.backward(p, cache, dy), calls)
        rows.append((child.describe(), fwd, bwd))
        h = y
    return total, rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("net", choices=NETS)
    ap.add_argument("batch", type=int)
    ap.add_argument("--calls", type=int, help="calls per timed block (default: about 2000 examples' worth)")
    ap.add_argument("--cprofile", action="store_true", help="also print cProfile's top functions for 200 steps")
    args = ap.parse_args(argv)
    calls = args.calls or max(2, 2000 // args.batch)
    total, rows = profile(args.net, args.batch, calls)
    print(f"{args.net} batch {args.batch}: training step {total:,.0f} us "
          f"({args.batch / total * 1e6:,.0f} samples per CPU-second)")
    print("| layer | forward us | backward us |\n|---|---:|---:|")
    for name, fwd, bwd in rows:
        print(f"| {name} | {fwd:,.1f} | {bwd:,.1f} |")
    layers = sum(f + b for _, f, b in rows)
    print(f"| all layers | {sum(f for _, f, _ in rows):,.1f} | {sum(b for _, _, b in rows):,.1f} |")
    print(f"rest of the step (loss, SGD momentum, serial's bookkeeping): {total - layers:,.0f} us")
    if args.cprofile:
        step, _ = fcnn_runner(args.net, args.batch, "train", 0)
        prof = cProfile.Profile()
        prof.runcall(lambda: [step() for _ in range(200)])
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-layer time at 1 and 2 functional_cnn threads, in one process, interleaved (docs/performance.md).

    python -m benchmarks.thread_gain lenet-padded 64
    python -m benchmarks.thread_gain lenet-padded 1000 --infer

Each layer's forward (``train=True`` unless ``--infer``) and backward (``need_dx`` except for
the first layer, as in a training step) is timed on the activations the network really
produces, alternating ``fc.set_num_threads(1)`` and ``(2)`` for ``--rounds`` rounds; the best
wall time of each is kept (other load on a shared box only ever adds time). Set
``OPENBLAS_NUM_THREADS=1`` so that BLAS's own workers do not compete with the layer threads
(the library does that itself from the first split on, but this script switches back and forth).
"""
from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.workers import NETS, init_params, make_data  # noqa: E402


def best_of(fn: Callable[[], Any], threads: int, rounds: int) -> float:
    """Best wall time of one call of ``fn`` at ``threads`` threads, in microseconds."""
    import functional_cnn as fc

    fc.set_num_threads(threads)
    fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e6


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("net", choices=NETS)
    ap.add_argument("batch", type=int)
    ap.add_argument("--infer", action="store_true", help="forward with train=False only")
    ap.add_argument("--rounds", type=int, default=25)
    args = ap.parse_args(argv)
    from functional_cnn._memory import keep_freed_memory

    keep_freed_memory()  # as make_step does
    layer, params = init_params(args.net, 0)
    h, _ = make_data(args.batch, 0)
    print(f"{args.net} batch {args.batch}{' inference' if args.infer else ''}: best of {args.rounds}, us")
    print("| layer | pass | 1 thread | 2 threads | gain |\n|---|---|---:|---:|---:|")
    for i, (child, p) in enumerate(zip(layer.children, params)):
        y, cache = child.forward(p, h, train=not args.infer)
        dy = np.ones_like(y)
        passes = [("forward", partial(child.forward, p, h, train=not args.infer))]
        if not args.infer:
            passes.append(("backward", partial(child.backward, p, cache, dy, need_dx=i > 0)))
        for name, fn in passes:
            one = two = float("inf")
            for _ in range(3):  # interleave the thread counts
                one = min(one, best_of(fn, 1, args.rounds // 3 + 1))
                two = min(two, best_of(fn, 2, args.rounds // 3 + 1))
            print(f"| {child.describe()} | {name} | {one:,.0f} | {two:,.0f} | {one / two:.2f}x |")
        h = y
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

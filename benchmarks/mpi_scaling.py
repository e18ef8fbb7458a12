"""Data-parallel step time on MPI: LeNet-5 with 1 and 2 ranks, and the cost of a gradient exchange.

Run from the repository root::

    python benchmarks/mpi_scaling.py                       # ranks 1 2, batches 256 1024
    python benchmarks/mpi_scaling.py --json benchmarks/results/mpi_scaling.json
    python benchmarks/mpi_scaling.py --quick               # a smoke run (seconds)

Method (printed with the table):

* each configuration runs in a fresh ``mpiexec -n R`` job with ``OPENBLAS_NUM_THREADS=1``;
  every rank builds LeNet-5 (61,706 params) and the Adam step
  ``make_step(..., comm=COMM_WORLD, accumulate=R)``, so each rank computes ``batch / R``
  examples per step, and trains on the same fixed batch of the ``mnist-sample`` digits;
* after ``--warmup`` steps, ``--steps`` steps are timed on rank 0 (wall clock, median of
  per-step times); ``exchange in step`` is the time the step spent in its all-gather,
  which includes waiting for the slower rank;
* ``exchange alone`` times the same all-gather (same bytes) right after a barrier, median
  of ``--exchanges`` calls: the transfer cost without load imbalance;
* ``--sweep`` also times the all-gather for payloads of 1 KiB to 16 MiB, and fits
  ``t = alpha + bytes / beta`` (latency and bandwidth of one exchange between 2 ranks);
* the plain one-process step (``make_step`` without ``comm``) is timed as the reference.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _worker(args: argparse.Namespace) -> None:
    """One configuration inside ``mpiexec``: prints one JSON line on rank 0."""
    import numpy as np

    import functional_cnn as fc
    from functional_cnn.datasets import load_dataset
    from functional_cnn.models import build_model

    comm = None
    if args.ranks:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    rank = comm.Get_rank() if comm else 0
    data = load_dataset("mnist-sample", seed=0)
    x, y = data.x_train[: args.batch], data.y_train[: args.batch]
    net = build_model("lenet", 10)
    _, params = net.init(np.random.default_rng(0), data.image_shape)
    opt = fc.adam(1e-3)
    state = opt.init(params)
    step = fc.make_step(net, fc.softmax_cross_entropy, opt, comm=comm) if comm else \
        fc.make_step(net, fc.softmax_cross_entropy, opt)
    times = []
    for i in range(args.warmup + args.steps):
        if i == args.warmup and step.__dict__.get("exchange"):
            step.exchange.seconds = 0.0
        t0 = time.perf_counter()
        params, state, _ = step(params, state, (x, y), None)
        times.append(time.perf_counter() - t0)
    row: Dict[str, Any] = {"ranks": comm.Get_size() if comm else 0, "batch": args.batch,
                           "step_s": statistics.median(times[args.warmup:]),
                           "step_s_min": min(times[args.warmup:]), "steps": args.steps}
    if comm:
        from functional_cnn.data_parallel import _layout, _record_bytes

        ex = step.exchange
        row["exchange_in_step_s"] = ex.seconds / args.steps
        nbytes = _record_bytes(_layout(params)) * (step.accumulate // ex.size)
        row["payload_bytes"] = nbytes
        row["exchange_alone_s"] = _time_allgather(comm, ex, nbytes, args.exchanges)
        if args.sweep and ex.size > 1:
            sizes = [2 ** p for p in range(10, 25, 2)]
            row["sweep"] = [[n, _time_allgather(comm, ex, n, max(3, args.exchanges // 2))] for n in sizes]
    if rank == 0:
        print(json.dumps(row), flush=True)


def _time_allgather(comm: Any, ex: Any, nbytes: int, repeats: int) -> float:
    import numpy as np

    payload = np.zeros(nbytes, np.uint8)
    times = []
    for _ in range(repeats):
        comm.Barrier()
        t0 = time.perf_counter()
        ex.allgather(payload, 0x6670, "a benchmark exchange", "payload")
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _fit(sweep: List[List[float]]) -> Dict[str, float]:
    """Least-squares ``t = alpha + n / beta`` over the sweep."""
    n = [s[0] for s in sweep]
    t = [s[1] for s in sweep]
    mn, mt = sum(n) / len(n), sum(t) / len(t)
    slope = sum((a - mn) * (b - mt) for a, b in zip(n, t)) / sum((a - mn) ** 2 for a in n)
    return {"alpha_s": mt - slope * mn, "beta_bytes_per_s": 1.0 / slope if slope > 0 else float("inf")}


def _run(ranks: int, batch: int, args: argparse.Namespace) -> Dict[str, Any]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                         if p]))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--batch", str(batch), "--steps",
           str(args.steps), "--warmup", str(args.warmup), "--exchanges", str(args.exchanges)]
    if ranks:
        cmd = ["mpiexec", "-n", str(ranks)] + cmd + ["--ranks", str(ranks)] + (["--sweep"] if args.sweep else [])
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"mpi_scaling: {' '.join(cmd)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ranks", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=256, help=argparse.SUPPRESS)
    p.add_argument("--rank-counts", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batches", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--exchanges", type=int, default=50)
    p.add_argument("--sweep", action="store_true", help="time exchanges of 1 KiB to 16 MiB and fit alpha, beta")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 steps, batch 64")
    p.add_argument("--json", help="write the rows and the machine here")
    args = p.parse_args()
    if args.worker:
        return _worker(args)
    if args.quick:
        args.batches, args.steps, args.warmup, args.exchanges = [64], 2, 1, 3
    rows = []
    for batch in args.batches:
        rows.append(_run(0, batch, args))
        rows += [_run(r, batch, args) for r in args.rank_counts]
    print("| ranks | batch | step (ms) | exchange in step (ms) | exchange alone (ms) | payload per rank (KiB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ranks = r["ranks"] or "plain"
        ex = (f"{1e3 * r['exchange_in_step_s']:.2f} | {1e3 * r['exchange_alone_s']:.3f} | "
              f"{r['payload_bytes'] / 1024:.0f}") if "payload_bytes" in r else "- | - | -"
        print(f"| {ranks} | {r['batch']} | {1e3 * r['step_s']:.1f} | {ex} |")
    fits = [_fit(r["sweep"]) for r in rows if "sweep" in r]
    for f in fits[:1]:
        print(f"exchange between 2 ranks: alpha {1e6 * f['alpha_s']:.1f} us, beta {f['beta_bytes_per_s'] / 1e9:.2f} GB/s")
    if args.json:
        machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                   "load_avg": os.getloadavg()}
        Path(args.json).write_text(json.dumps({"machine": machine, "rows": rows, "fit": fits[:1],
                                               "method": __doc__}, indent=2) + "\n")


if __name__ == "__main__":
    main()

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
* ``exchange alone`` times the same all-gather (same bytes) right after a barrier, fastest
  of ``--exchanges`` calls: the transfer cost when both ranks hold a core (on a shared box
  the median mostly measures how long the other rank waits to be scheduled);
* ``--sweep`` also times the all-gather for payloads of 1 KiB to 16 MiB, and fits
  ``t = alpha + bytes / beta`` (latency and bandwidth of one exchange between 2 ranks);
* the plain one-process step (``make_step`` without ``comm``) is timed as the reference,
  with the optimizer update alone and the ordered sum per micro-batch (fastest of 20);
* with ``--sweep`` the script prints the scaling model of ``docs/distributed.md``
  (:func:`step_model`) from these measurements, for this machine's shared memory and for
  two assumed networks.
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
    if not comm:  # the parts of a step that do not shrink with more ranks
        row["update_s"] = _best(lambda: fc.apply_updates(params, opt.update(fc.tree_map(lambda a: a, fc.trainable(
            params)), state, params)[0]))
        from functional_cnn.accumulate import MicroResult, combine

        grads = [np.array(a) for a in fc.tree_leaves(fc.trainable(params))]
        terms = [MicroResult(1, 1.0, None, grads, []) for _ in range(8)]
        row["combine_term_s"] = _best(lambda: combine(terms)) / len(terms)
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


def _best(f: Any, repeats: int = 20) -> float:
    """Fastest of ``repeats`` calls of ``f()``, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def _time_allgather(comm: Any, ex: Any, nbytes: int, repeats: int) -> float:
    import numpy as np

    payload = np.zeros(nbytes, np.uint8)
    times = []
    for _ in range(repeats):
        comm.Barrier()
        t0 = time.perf_counter()
        ex.allgather(payload, 0x6670, "a benchmark exchange", "payload")
        times.append(time.perf_counter() - t0)
    return min(times)


def _fit(sweep: List[List[float]], largest: int = 2 ** 20) -> Dict[str, float]:
    """Least-squares ``t = alpha + n / beta`` over the sweep's payloads of at most ``largest`` bytes."""
    n = [s[0] for s in sweep if s[0] <= largest]
    t = [s[1] for s in sweep if s[0] <= largest]
    mn, mt = sum(n) / len(n), sum(t) / len(t)
    slope = sum((a - mn) * (b - mt) for a, b in zip(n, t)) / sum((a - mn) ** 2 for a in n)
    return {"alpha_s": mt - slope * mn, "beta_bytes_per_s": 1.0 / slope if slope > 0 else float("inf")}


NETWORKS = {"10 GbE (alpha 50 us, beta 1.25 GB/s)": (50e-6, 1.25e9),
            "100 Gb/s InfiniBand (alpha 2 us, beta 12.5 GB/s)": (2e-6, 12.5e9)}
MODEL_RANKS = (1, 2, 4, 8, 16, 32, 64, 128)


def step_model(ranks: int, batch: int, p: Dict[str, float]) -> Dict[str, float]:
    """Predicted seconds of one data-parallel step (one rank per node, ``accumulate = ranks``).

    ``compute = c * batch / R`` (each rank's micro-batch), ``combine = gamma * R`` (the ordered sum of R
    gradients on every rank), ``update = u`` (the optimizer, on every rank), and the all-gather of one
    payload of ``P`` bytes per rank: ``(R - 1) * (alpha + P / beta)`` (direct or ring all-gather: every rank
    receives the R - 1 other payloads through one link).
    """
    compute = p["c"] * batch / ranks
    exchange = (ranks - 1) * (p["alpha"] + p["P"] / p["beta"])
    total = compute + p["gamma"] * ranks + p["u"] + exchange
    return {"compute_s": compute, "exchange_s": exchange, "step_s": total}


def model_params(rows: List[Dict[str, Any]], fit: Dict[str, float]) -> Dict[str, float]:
    """c, u, gamma from the one-process rows; P from a data-parallel row; alpha, beta from the sweep fit."""
    plain = max((r for r in rows if r["ranks"] == 0), key=lambda r: r["batch"])
    par = next(r for r in rows if r["ranks"] > 1)
    return {"c": (plain["step_s_min"] - plain["update_s"]) / plain["batch"], "u": plain["update_s"],
            "gamma": plain["combine_term_s"], "P": float(par["payload_bytes"]), "alpha": fit["alpha_s"],
            "beta": fit["beta_bytes_per_s"]}


def print_model(rows: List[Dict[str, Any]], fit: Dict[str, float]) -> Dict[str, Any]:
    base = model_params(rows, fit)
    print(f"\nmodel inputs: c {1e3 * base['c']:.3f} ms/example, update {1e3 * base['u']:.2f} ms, combine "
          f"{1e3 * base['gamma']:.3f} ms per micro-batch, payload {base['P'] / 1024:.0f} KiB")
    nets = {f"shared memory, measured (alpha {1e6 * fit['alpha_s']:.0f} us, beta "
            f"{fit['beta_bytes_per_s'] / 1e9:.1f} GB/s)": (fit["alpha_s"], fit["beta_bytes_per_s"]), **NETWORKS}
    out: Dict[str, Any] = {"inputs": base, "tables": {}}
    for name, (alpha, beta) in nets.items():
        p = dict(base, alpha=alpha, beta=beta)
        for batch in sorted({r["batch"] for r in rows}):
            t1 = step_model(1, batch, p)["step_s"]
            best = min(range(1, 1025), key=lambda r: step_model(r, batch, p)["step_s"])
            half = next((r for r in range(1, 1025) if t1 / step_model(r, batch, p)["step_s"] / r < 0.5), None)
            print(f"\n{name}, batch {batch}: fastest at R = {best} "
                  f"({t1 / step_model(best, batch, p)['step_s']:.1f}x); efficiency below 50% from R = {half}")
            print("| R | compute (ms) | exchange (ms) | step (ms) | speedup | efficiency |")
            print("|---|---|---|---|---|---|")
            table = []
            for r in MODEL_RANKS:
                m = step_model(r, batch, p)
                table.append(dict(m, ranks=r))
                print(f"| {r} | {1e3 * m['compute_s']:.1f} | {1e3 * m['exchange_s']:.2f} | {1e3 * m['step_s']:.1f} | "
                      f"{t1 / m['step_s']:.1f}x | {100 * t1 / m['step_s'] / r:.0f}% |")
            out["tables"][f"{name}, batch {batch}"] = {"fastest_ranks": best, "half_efficiency_ranks": half,
                                                       "rows": table}
    return out


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
    model = None
    if fits:
        f = fits[0]
        print(f"exchange between 2 ranks (payloads up to 1 MiB): alpha {1e6 * f['alpha_s']:.1f} us, "
              f"beta {f['beta_bytes_per_s'] / 1e9:.2f} GB/s")
        model = print_model(rows, f)
    if args.json:
        machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                   "load_avg": os.getloadavg()}
        Path(args.json).write_text(json.dumps({"machine": machine, "rows": rows, "fit": fits[:1], "model": model,
                                               "method": __doc__}, indent=2) + "\n")


if __name__ == "__main__":
    main()

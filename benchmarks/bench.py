"""Speed of functional_cnn against PyTorch (CPU) and the seed notebooks' own loops.

Run from the repository root::

    python -m benchmarks.bench                 # full table (a few minutes)
    python -m benchmarks.bench --quick         # fewer configurations, shorter runs
    python benchmarks/bench.py --json out.json --threads 2 --repeats 5

Method (also printed with the table):

* every measurement runs in its own fresh subprocess, with ``OMP/OPENBLAS/MKL_NUM_THREADS``
  and ``torch.set_num_threads`` set to ``--threads``, so the peak RSS reported
  (``ru_maxrss``) belongs to that implementation alone: interpreter, imports, data and
  working memory (``rss_before_mb`` is the same figure just before timing starts);
* implementations are interleaved (fcnn, torch, notebook, fcnn, ...) for ``--repeats``
  rounds and the median rate is reported, which damps drift from other load on the box;
* all implementations start from the same weights (initialized by functional_cnn and
  copied) and see the same data; ``first_loss`` in the JSON shows they compute the same
  network;
* ``best samples/s`` is the fastest round: on a shared box the median can land on a
  round where another process took a core, which stalls 2-thread pools at every barrier;
* ``samples/CPU-s`` divides by the process's CPU time instead of wall time: on a shared
  box it shows the work an implementation needs even when other load stretches the wall
  clock (with 2 threads it also counts time spent spinning in thread pools);
* ``% peak`` is the useful conv/dense FLOP rate (2 per multiply-add; a training step is
  counted as 3x the forward) over the best float32 ``2048x2048`` matmul rate measured in
  the same run with the same thread count.
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
from typing import Any, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/bench.py` as well as `python -m benchmarks.bench`
    sys.path.insert(0, str(ROOT))

IMPLS = ("fcnn", "torch", "notebook")
NOTEBOOK_NETS = ("seed1", "seed2")
FULL = [("lenet", 1, "train"), ("lenet", 64, "train"), ("lenet", 256, "train"), ("seed1", 1, "train"),
        ("seed1", 128, "train"), ("seed2", 1, "train"), ("lenet", 1000, "infer"), ("seed1", 1000, "infer")]
QUICK = [("lenet", 64, "train"), ("seed1", 1, "train"), ("seed1", 128, "train"), ("lenet", 1000, "infer")]
NOTEBOOK_BATCH = {"train": 8, "infer": 16}  # examples per timed call: its rate does not depend on batch


def _env(threads: int) -> Dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _spawn(spec: Dict[str, Any], threads: int, timeout: float) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench", "--worker", json.dumps(spec)]
    done = subprocess.run(cmd, cwd=ROOT, env=_env(threads), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return {"error": tail[0], **spec}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _have_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def machine_info(threads: int) -> Dict[str, Any]:
    """CPU model, cores, numpy/BLAS, torch version, threads and load."""
    import numpy as np

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = "unknown"
    try:
        cfg = np.show_config(mode="dicts")
        b = cfg["Build Dependencies"]["blas"]
        blas = f"{b.get('name')} {b.get('version')}"
    except Exception:  # noqa: BLE001 - informational only
        pass
    info: Dict[str, Any] = {"cpu": cpu, "logical_cpus": os.cpu_count(), "python": platform.python_version(),
                            "numpy": np.__version__, "blas": blas, "threads": threads}
    try:
        import threadpoolctl

        info["threadpoolctl"] = threadpoolctl.__version__
    except ImportError:
        info["threadpoolctl"] = None
    if _have_torch():
        done = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                              text=True, env=_env(threads))
        info["torch"] = done.stdout.strip() or None
    else:
        info["torch"] = None
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = os.getloadavg()
    return info


def plan(configs: Sequence[tuple], impls: Sequence[str]) -> List[Dict[str, Any]]:
    """One spec per (configuration, implementation); notebooks only where they exist."""
    specs = []
    for net, batch, mode in configs:
        for impl in impls:
            if impl == "notebook":
                if net not in NOTEBOOK_NETS or batch != min(b for n, b, m in configs if n == net and m == mode):
                    continue  # the notebook loop is per example: measure it once per net and mode
                batch = NOTEBOOK_BATCH[mode]
            specs.append({"impl": impl, "net": net, "batch": batch, "mode": mode})
    return specs


def summarize(results: List[Dict[str, Any]], peak: float) -> List[Dict[str, Any]]:
    """Median over repeats, ratios to PyTorch (same net/batch/mode) and to the notebook (same net/mode)."""
    from benchmarks.workers import step_flops

    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for r in results:
        if "error" not in r:
            groups.setdefault((r["impl"], r["net"], r["batch"], r["mode"]), []).append(r)
    rows = []
    for (impl, net, batch, mode), runs in groups.items():
        rates = [r["samples_per_s"] for r in runs]
        med = statistics.median(rates)
        cpu_rates = [r["samples_per_cpu_s"] for r in runs if r.get("samples_per_cpu_s")]
        flops = step_flops(net, 1)[mode] * med
        rows.append({"impl": impl, "net": net, "batch": batch, "mode": mode, "samples_per_s": med,
                     "samples_per_s_runs": rates, "samples_per_s_best": max(rates),
                     "samples_per_cpu_s": statistics.median(cpu_rates) if cpu_rates else None, "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                     "rss_before_mb": max(r["rss_before_mb"] for r in runs), "first_loss": runs[0]["first_loss"],
                     "gflops": flops / 1e9, "pct_matmul_peak": 100.0 * flops / 1e9 / peak if peak else None})
    index = {(r["impl"], r["net"], r["batch"], r["mode"]): r for r in rows}
    for r in rows:
        torch_row = index.get(("torch", r["net"], r["batch"], r["mode"]))
        r["ratio_torch"] = r["samples_per_s"] / torch_row["samples_per_s"] if torch_row else None
        nb = [x for x in rows if x["impl"] == "notebook" and x["net"] == r["net"] and x["mode"] == r["mode"]]
        r["ratio_notebook"] = r["samples_per_s"] / nb[0]["samples_per_s"] if nb else None
    order = {"fcnn": 0, "torch": 1, "notebook": 2}
    rows.sort(key=lambda r: (r["mode"], r["net"], r["batch"] if r["impl"] != "notebook" else 0, order[r["impl"]]))
    return rows


def table(rows: List[Dict[str, Any]]) -> str:
    """A plain-text (Markdown) table of the summarized rows."""
    def f(v: Optional[float], fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    head = ("| impl | net | batch | mode | samples/s | x PyTorch | x notebook | best samples/s | samples/CPU-s "
            "| peak RSS MB | GFLOP/s | % matmul peak |\n|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        batch = f"{r['batch']} (per example)" if r["impl"] == "notebook" else str(r["batch"])
        lines.append(f"| {r['impl']} | {r['net']} | {batch} | {r['mode']} | {r['samples_per_s']:,.0f} | "
                     f"{f(r['ratio_torch'], '.2f')} | {f(r['ratio_notebook'], ',.0f')} | "
                     f"{f(r.get('samples_per_s_best'), ',.0f')} | {f(r.get('samples_per_cpu_s'), ',.0f')} | "
                     f"{r['peak_rss_mb']:.0f} | "
                     f"{r['gflops']:.2f} | {f(r['pct_matmul_peak'], '.1f')} |")
    return "\n".join(lines)


def import_time(threads: int, repeats: int = 5) -> Dict[str, float]:
    """Median wall time of ``import numpy`` and of ``import functional_cnn`` on top of it, fresh processes."""
    code = ("import time; t0 = time.perf_counter(); import numpy; t1 = time.perf_counter(); "
            "import functional_cnn; t2 = time.perf_counter(); print(t1 - t0, t2 - t1)")
    pairs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(threads), capture_output=True, text=True)
        if out.returncode == 0:
            pairs.append([float(v) for v in out.stdout.split()])
    if not pairs:
        return {"numpy_s": float("nan"), "functional_cnn_extra_s": float("nan")}
    return {"numpy_s": statistics.median(p[0] for p in pairs),
            "functional_cnn_extra_s": statistics.median(p[1] for p in pairs)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer configurations and shorter timings")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP/torch threads (default 2)")
    ap.add_argument("--repeats", type=int, help="interleaved rounds; median reported (default 5, quick 3)")
    ap.add_argument("--seconds", type=float, help="timed seconds per measurement (default 1.5, quick 0.5)")
    ap.add_argument("--impls", default=",".join(IMPLS), help="comma-separated subset of fcnn,torch,notebook")
    ap.add_argument("--nets", help="comma-separated subset of lenet,seed1,seed2")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        from benchmarks.workers import run

        print(json.dumps(run(json.loads(args.worker)), default=float))
        return 0
    repeats = args.repeats or (3 if args.quick else 5)
    seconds = args.seconds if args.seconds is not None else (0.5 if args.quick else 1.5)
    impls = [i for i in args.impls.split(",") if i]
    unknown = set(impls) - set(IMPLS)
    if unknown:
        ap.error(f"--impls: unknown {sorted(unknown)}; choose from {', '.join(IMPLS)}")
    if "torch" in impls and not _have_torch():
        print("PyTorch is not installed: skipping it (pip install torch to compare).", file=sys.stderr)
        impls.remove("torch")
    configs = QUICK if args.quick else FULL
    if args.nets:
        configs = [c for c in FULL if c[0] in args.nets.split(",")] if not args.quick else \
            [c for c in QUICK + [("seed2", 1, "train")] if c[0] in args.nets.split(",")]
    info = machine_info(args.threads)
    specs = plan(configs, impls)
    timeout = 60 + 20 * seconds
    peak = _spawn({"impl": "matmul", "seconds": seconds}, args.threads, timeout).get("gflops", 0.0)
    results = []
    start = time.perf_counter()
    for rnd in range(repeats):
        for spec in specs:
            res = _spawn({**spec, "seconds": seconds, "threads": args.threads, "seed": 0}, args.threads, timeout)
            if "error" in res:
                print(f"  {spec}: failed: {res['error']}", file=sys.stderr)
            results.append({**res, "round": rnd})
    rows = summarize(results, peak)
    if hasattr(os, "getloadavg"):
        info["loadavg_end"] = os.getloadavg()
    imports = import_time(args.threads)
    print(f"machine: {info['cpu']}, {info['logical_cpus']} logical CPUs; numpy {info['numpy']} ({info['blas']}); "
          f"torch {info['torch']}; threads {args.threads}; load {info.get('loadavg_start')} -> {info.get('loadavg_end')}")
    print(f"float32 matmul peak (2048^3, best of run): {peak:.1f} GFLOP/s; {repeats} interleaved rounds of "
          f"{seconds:g} s, median shown; peak RSS per fresh subprocess (ru_maxrss)")
    print(table(rows))
    print(f"import numpy: {imports['numpy_s'] * 1e3:.0f} ms; import functional_cnn on top: "
          f"{imports['functional_cnn_extra_s'] * 1e3:.0f} ms")
    print(f"total benchmark time {time.perf_counter() - start:.0f} s")
    if args.json:
        payload = {"machine": info, "matmul_peak_gflops": peak, "repeats": repeats, "seconds": seconds,
                   "import_time": imports, "rows": rows, "runs": results,
                   "method": "fresh subprocess per measurement; interleaved rounds; median samples/s; "
                             "peak RSS = ru_maxrss of that subprocess"}
        args.json.write_text(json.dumps(payload, indent=2, default=float))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())

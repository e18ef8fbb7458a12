"""Speed of functional_cnn against PyTorch (CPU), each written as its users write it.

Run from the repository root::

    python -m benchmarks.bench               # every workload, 1 and 2 threads (~6 min on a quiet box)
    python -m benchmarks.bench --quick       # 2 rounds of 0.5 s, same workloads (~3 min on a quiet box)
    python -m benchmarks.bench --workloads 'lenet-*' --threads 1
    python -m benchmarks.bench --prefix baseline-       # writes results/baseline-threads{1,2}.json

Method (also stored in every JSON file):

* every measurement runs in its own fresh subprocess with ``OMP/OPENBLAS/MKL_NUM_THREADS``
  and ``torch.set_num_threads`` set to the thread count, so its peak RSS (``ru_maxrss``)
  and minor page faults (``ru_minflt`` delta over the timed steps, per step) are its own;
* the two frameworks alternate (fcnn then torch in even rounds, torch then fcnn in odd
  ones), every workload at every thread count in each round, for ``--repeats`` rounds;
  the median rate is reported and the ratio is median fcnn / median torch (>1: fcnn is
  faster); the per-round ratios are kept too;
* each timed measurement runs 5 warm-up steps, then steps until ``--seconds`` have passed;
* the end-to-end run (``fashion-lenet-e2e``) trains LeNet-5 on the whole Fashion-MNIST
  training set for ``--epochs`` epochs at batch 64 with SGD momentum, evaluating on the
  test set after each epoch, once per framework and thread count; its rate is training
  examples over the whole run's wall time, so its ratio is torch time / fcnn time.
"""
from __future__ import annotations

import argparse
import datetime
import fnmatch
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

RESULTS = ROOT / "benchmarks" / "results"
IMPLS = ("fcnn", "torch", "notebook")
NOTEBOOK_BATCH = 8  # examples per timed call of the notebook's per-example loop

#: id -> what runs. ``label`` is how the tables name it; ``target`` is the issue's bar for the
#: ratio (printed by the bench, not in the README); ``notebook`` adds the notebook loop.
WORKLOADS: Dict[str, Dict[str, Any]] = {
    "lenet-unpadded-b64-train": dict(net="lenet-unpadded", batch=64, mode="train", target=1.0,
                                     label="LeNet-5, unpadded (tutorial form), batch 64, training"),
    "lenet-padded-b64-train": dict(net="lenet-padded", batch=64, mode="train", target=1.0,
                                   label="LeNet-5, padded, batch 64, training"),
    "seed000-b1-train": dict(net="seed000", batch=1, mode="train", target=1.5, notebook=True,
                             label="seed 000 network, batch 1, training"),
    "seed000-b128-train": dict(net="seed000", batch=128, mode="train", target=1.3, notebook=True,
                               label="seed 000 network, batch 128, training"),
    "lenet-padded-b1000-infer": dict(net="lenet-padded", batch=1000, mode="infer", target=1.5,
                                     label="LeNet-5, padded, batch 1000, inference"),
    "lenet-unpadded-b1000-infer": dict(net="lenet-unpadded", batch=1000, mode="infer", target=1.5,
                                       label="LeNet-5, unpadded, batch 1000, inference"),
    "fashion-lenet-e2e": dict(net="lenet-padded", batch=64, mode="e2e", target=1.0,
                              label="LeNet-5, padded, Fashion-MNIST, {epochs} + test, batch 64"),
}
RSS_WORKLOAD, RSS_TARGET_MB = "lenet-padded-b64-train", 100.0
METHOD = ("fresh subprocess per measurement; fcnn and torch alternate, order swapped every round; "
          "median samples/s over rounds; ratio = median fcnn / median torch; peak RSS = ru_maxrss of that "
          "subprocess; page faults = ru_minflt delta over the timed steps / steps; torch: nn.Sequential with "
          "default init, nn.CrossEntropyLoss, optim.SGD(momentum=0.9), tensors from torch.from_numpy once; "
          "fcnn: fc.make_step with fc.sgd(momentum=0.9); e2e: fc.fit vs a randperm loop, test set after each "
          "epoch, one run per framework and thread count")


def _env(threads: int) -> Dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _spawn(spec: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench", "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=_env(spec["threads"]), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", **spec}
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return {"error": tail[0], **spec}
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine_info() -> Dict[str, Any]:
    """CPU model, cores, Python, numpy and its BLAS, torch version, git commit."""
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
        b = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{b.get('name')} {b.get('version')}"
    except (KeyError, TypeError):
        pass
    done = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                          text=True, env=_env(1))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "functional_cnn"], cwd=ROOT, capture_output=True,
                           text=True)
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "blas": blas, "torch": done.stdout.strip() or None,
            "commit": commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")}


def select(patterns: Optional[str]) -> List[str]:
    """Workload ids matching comma-separated ``fnmatch`` patterns (all when None)."""
    if not patterns:
        return list(WORKLOADS)
    chosen = []
    for pat in [p.strip() for p in patterns.split(",") if p.strip()]:
        hits = [w for w in WORKLOADS if fnmatch.fnmatchcase(w, pat)]
        if not hits:
            raise ValueError(f"--workloads: {pat!r} matches none of {', '.join(WORKLOADS)}")
        chosen += [w for w in hits if w not in chosen]
    return [w for w in WORKLOADS if w in chosen]


def plan_round(workloads: Sequence[str], threads: Sequence[int], rnd: int, seconds: float) -> List[Dict[str, Any]]:
    """The timed (non-e2e) measurements of round ``rnd``: fcnn/torch order swapped on odd rounds."""
    specs = []
    notebook_done = set()
    for t in threads:
        for wid in workloads:
            w = WORKLOADS[wid]
            if w["mode"] == "e2e":
                continue
            pair = ["fcnn", "torch"] if rnd % 2 == 0 else ["torch", "fcnn"]
            for impl in pair:
                specs.append({"impl": impl, "workload": wid, "net": w["net"], "batch": w["batch"],
                              "mode": w["mode"], "threads": t, "seconds": seconds, "seed": 0})
            if w.get("notebook") and t not in notebook_done:  # per example: once per round and thread count
                notebook_done.add(t)
                specs.append({"impl": "notebook", "workload": "seed000-notebook", "net": w["net"],
                              "batch": NOTEBOOK_BATCH, "mode": "train", "threads": t, "seconds": seconds, "seed": 0})
    return specs


def plan_e2e(workloads: Sequence[str], threads: Sequence[int], epochs: int) -> List[Dict[str, Any]]:
    """One end-to-end run per framework and thread count, order swapped between thread counts."""
    specs = []
    for i, t in enumerate(threads):
        for wid in workloads:
            w = WORKLOADS[wid]
            if w["mode"] != "e2e":
                continue
            for impl in (["fcnn", "torch"] if i % 2 == 0 else ["torch", "fcnn"]):
                specs.append({"impl": impl, "workload": wid, "net": w["net"], "batch": w["batch"], "mode": "e2e",
                              "threads": t, "epochs": epochs, "seed": 0})
    return specs


def _impl_summary(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    rates = [r["samples_per_s"] for r in runs]
    out = {"samples_per_s": statistics.median(rates), "samples_per_s_runs": rates,
           "samples_per_s_best": max(rates), "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
           "minflt_per_step": statistics.median(r["minflt_per_step"] for r in runs)}
    cpu = [r["samples_per_cpu_s"] for r in runs if r.get("samples_per_cpu_s")]
    out["samples_per_cpu_s"] = statistics.median(cpu) if cpu else None
    for key in ("first_loss", "time_s", "cpu_s", "test_accuracy", "train_loss", "steps", "epochs"):
        if key in runs[0]:
            out[key] = statistics.median(r[key] for r in runs)
    return out


def summarize(results: List[Dict[str, Any]], threads: int) -> List[Dict[str, Any]]:
    """One row per workload at ``threads``: each framework's median figures and the ratios."""
    mine = [r for r in results if r.get("threads") == threads and "error" not in r]
    notebook = [r for r in mine if r["impl"] == "notebook"]
    nb = _impl_summary(notebook) if notebook else None
    rows = []
    for wid, w in WORKLOADS.items():
        by_impl = {impl: [r for r in mine if r["workload"] == wid and r["impl"] == impl] for impl in ("fcnn", "torch")}
        if not any(by_impl.values()):
            continue
        epochs = next((r["epochs"] for rs in by_impl.values() for r in rs if "epochs" in r), None)
        label = w["label"].format(epochs=f"{epochs} epoch{'s' if epochs != 1 else ''}" if epochs else "")
        row: Dict[str, Any] = {"workload": wid, "label": label, "net": w["net"], "batch": w["batch"],
                               "mode": w["mode"], "threads": threads, "target": w["target"]}
        for impl, runs in by_impl.items():
            row[impl] = _impl_summary(runs) if runs else None
        f, t = row["fcnn"], row["torch"]
        row["ratio_torch"] = f["samples_per_s"] / t["samples_per_s"] if f and t else None
        row["ratio_torch_cpu"] = (f["samples_per_cpu_s"] / t["samples_per_cpu_s"]
                                  if f and t and f["samples_per_cpu_s"] and t["samples_per_cpu_s"] else None)
        rounds: Dict[int, Dict[str, float]] = {}
        for r in mine:
            if r["workload"] == wid and "round" in r:
                rounds.setdefault(r["round"], {})[r["impl"]] = r["samples_per_s"]
        row["ratio_torch_rounds"] = [v["fcnn"] / v["torch"] for _, v in sorted(rounds.items())
                                     if "fcnn" in v and "torch" in v]
        row["notebook"] = nb if w.get("notebook") else None
        row["ratio_notebook"] = f["samples_per_s"] / nb["samples_per_s"] if f and nb and w.get("notebook") else None
        rows.append(row)
    return rows


def table(rows: List[Dict[str, Any]]) -> str:
    """The console table of one thread count's rows (Markdown)."""
    def g(d: Optional[Dict[str, Any]], key: str, fmt: str) -> str:
        return "-" if not d or d.get(key) is None else format(d[key], fmt)

    lines = ["| workload | fcnn samples/s | torch samples/s | ratio | target | x notebook | RSS MB fcnn / torch "
             "| page faults/step fcnn / torch | e2e s fcnn / torch | test acc fcnn / torch |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        f, t = r["fcnn"], r["torch"]
        ratio = "-" if r["ratio_torch"] is None else f"{r['ratio_torch']:.2f}"
        nb = "-" if r["ratio_notebook"] is None else f"{r['ratio_notebook']:.0f}"
        lines.append(f"| {r['workload']} | {g(f, 'samples_per_s', ',.0f')} | {g(t, 'samples_per_s', ',.0f')} | "
                     f"{ratio} | {r['target']:.1f} | {nb} | "
                     f"{g(f, 'peak_rss_mb', '.0f')} / {g(t, 'peak_rss_mb', '.0f')} | "
                     f"{g(f, 'minflt_per_step', '.1f')} / {g(t, 'minflt_per_step', '.1f')} | "
                     f"{g(f, 'time_s', '.1f')} / {g(t, 'time_s', '.1f')} | "
                     f"{g(f, 'test_accuracy', '.4f')} / {g(t, 'test_accuracy', '.4f')} |")
    return "\n".join(lines)


def merge(old: Dict[str, Any], new: Dict[str, Any]) -> Dict[str, Any]:
    """``new`` plus the rows (and runs) of ``old``'s workloads that ``new`` did not measure, in table order."""
    if not new["rows"]:  # nothing measured at this thread count: the old file stands
        return old
    measured = {r["workload"] for r in new["rows"]}
    kept = [r for r in old["rows"] if r["workload"] not in measured]
    order = list(WORKLOADS)
    rows = sorted(new["rows"] + kept, key=lambda r: order.index(r["workload"]) if r["workload"] in order else 99)
    runs = new["runs"] + [r for r in old["runs"] if r.get("workload") not in measured]
    return {**new, "rows": rows, "runs": runs,
            "settings": {**new["settings"], "workloads": [r["workload"] for r in rows]}}


def resummarize(path: Path) -> None:
    """Recompute a results file's rows from the raw runs it stores (after a change to :func:`summarize`)."""
    payload = json.loads(path.read_text())
    t = payload["machine"]["threads"]
    old = {r["workload"]: r for r in payload["rows"]}
    rows = summarize(payload["runs"], t)
    for row in rows:
        if "run" in old.get(row["workload"], {}):
            row["run"] = old[row["workload"]]["run"]
    payload["rows"] = rows
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    os.replace(tmp, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds of 0.5 s (default: 3 rounds of 1 s)")
    ap.add_argument("--workloads", help=f"comma-separated fnmatch patterns over: {', '.join(WORKLOADS)}")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--repeats", type=int, help="rounds; the median is reported")
    ap.add_argument("--seconds", type=float, help="timed seconds per measurement")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of the end-to-end run (default 3)")
    ap.add_argument("--e2e-threads", default="2", help="thread counts of the end-to-end run (default 2)")
    ap.add_argument("--out-dir", type=Path, default=RESULTS, help="where threads<N>.json go (default %(default)s)")
    ap.add_argument("--prefix", default="", help="file name prefix, e.g. baseline-")
    ap.add_argument("--max-minutes", type=float, default=12.0,
                    help="wall-clock budget: a measurement still running when it ends is stopped and reported "
                         "as timed out (default %(default)s)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of workloads this run did not measure from the existing files")
    ap.add_argument("--resummarize", nargs="+", type=Path, metavar="JSON",
                    help="recompute these result files' rows from their stored runs, then exit")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        from benchmarks.workers import run

        print(json.dumps(run(json.loads(args.worker)), default=float))
        return 0
    if args.resummarize:
        for path in args.resummarize:
            resummarize(path)
            print(f"resummarized {path}")
        return 0
    try:
        workloads = select(args.workloads)
        threads = [int(t) for t in args.threads.split(",") if t.strip()]
        e2e_threads = [int(t) for t in args.e2e_threads.split(",") if t.strip()]
    except ValueError as err:
        ap.error(str(err) if "--workloads" in str(err) else f"--threads/--e2e-threads: expected positive integers "
                 f"like 1,2, got {args.threads!r} / {args.e2e_threads!r}")
    if not threads or min(threads) < 1 or (e2e_threads and min(e2e_threads) < 1):
        ap.error(f"--threads: expected positive integers like 1,2, got {args.threads!r}")
    if args.epochs < 1:
        ap.error(f"--epochs: expected >= 1, got {args.epochs}")
    repeats = args.repeats or (2 if args.quick else 3)
    seconds = args.seconds if args.seconds is not None else (0.5 if args.quick else 1.0)
    info = machine_info()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    load_start = os.getloadavg()
    start = time.perf_counter()
    results: List[Dict[str, Any]] = []
    deadline = start + 60 * args.max_minutes
    specs = [{**spec, "round": rnd} for rnd in range(repeats) for spec in plan_round(workloads, threads, rnd, seconds)]
    specs += plan_e2e(workloads, [t for t in e2e_threads if t in threads], args.epochs)
    for spec in specs:
        left = deadline - time.perf_counter()
        if left < 5:
            res = {"error": "not run: --max-minutes budget spent", **spec}
        else:
            res = _spawn(spec, timeout=min(left, 300 * args.epochs if spec["mode"] == "e2e" else 60 + 20 * seconds))
        if "error" in res:
            print(f"  {spec['impl']} {spec['workload']} threads {spec['threads']}: failed: {res['error']}",
                  file=sys.stderr)
        results.append({**res, "round": spec["round"]} if "round" in spec else res)
    load_end = os.getloadavg()
    total = time.perf_counter() - start
    print(f"machine: {info['cpu']}, {info['logical_cpus']} logical CPUs; numpy {info['numpy']} ({info['blas']}); "
          f"torch {info['torch']}; commit {info['commit']}; load {load_start[0]:.1f} -> {load_end[0]:.1f}")
    ok = True
    for t in threads:
        rows = summarize(results, t)
        ok = ok and bool(rows)
        print(f"\n{t} thread{'s' if t > 1 else ''}: {repeats} rounds of {seconds:g} s, median samples/s; "
              f"ratio = fcnn / torch")
        print(table(rows))
        if args.no_write:
            continue
        payload = {"machine": {**info, "threads": t}, "started": started, "loadavg_start": load_start,
                   "loadavg_end": load_end, "seconds_total": total,
                   "settings": {"repeats": repeats, "seconds": seconds, "epochs": args.epochs, "quick": args.quick,
                                "workloads": workloads, "threads_in_run": threads, "e2e_threads": e2e_threads},
                   "method": METHOD, "rss_target_mb": RSS_TARGET_MB, "rows": rows,
                   "runs": [r for r in results if r.get("threads") == t]}
        args.out_dir.mkdir(parents=True, exist_ok=True)
        path = args.out_dir / f"{args.prefix}threads{t}.json"
        for row in rows:
            row["run"] = {"started": started, "loadavg_start": load_start, "loadavg_end": load_end,
                          "commit": info["commit"]}
        if args.merge and path.exists():
            payload = merge(json.loads(path.read_text()), payload)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload, indent=1, default=float) + "\n")
        os.replace(tmp, path)
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    print(f"total benchmark time {total:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

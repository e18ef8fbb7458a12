"""Write the speed tables of README.md and docs/performance.md from the committed bench results.

    python -m benchmarks.readme_table            # rewrite both files' generated blocks
    python -m benchmarks.readme_table --check    # exit 1 if either differs from the JSON

The blocks sit between marker comments; everything outside them is left alone:

* README.md, ``<!-- speed-table:start -->`` ... ``<!-- speed-table:end -->``: one table,
  1 and 2 threads side by side, from ``benchmarks/results/threads{1,2}.json``;
* docs/performance.md, ``<!-- perf-table:threads<N>:start -->`` ... ``:end -->``: the full
  figures of one thread count (CPU rates, page faults, RSS, per-round ratios), and
  ``<!-- perf-table:baseline:start -->``: the ratios before and after, where
  ``baseline-threads<N>.json`` exist.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
THREADS = (1, 2)


def load(results_dir: Path = RESULTS, prefix: str = "") -> Dict[int, Dict[str, Any]]:
    """``{threads: payload}`` for each ``<prefix>threads<N>.json`` present."""
    out = {}
    for t in THREADS:
        path = results_dir / f"{prefix}threads{t}.json"
        if path.exists():
            out[t] = json.loads(path.read_text())
    return out


def _rows(payload: Optional[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    return {r["workload"]: r for r in payload["rows"]} if payload else {}


def _rate(side: Optional[Dict[str, Any]], mode: str) -> str:
    if not side:
        return "-"
    if mode == "e2e":
        return f"{side['time_s']:.0f} s ({100 * side['test_accuracy']:.1f}%)"
    return f"{side['samples_per_s']:,.0f}"


def _ratio(row: Optional[Dict[str, Any]], key: str = "ratio_torch", bold: bool = True) -> str:
    if not row or row.get(key) is None:
        return "-"
    return f"**{row[key]:.2f}x**" if bold else f"{row[key]:.2f}x"


def _order(results: Dict[int, Dict[str, Any]]) -> List[str]:
    seen: List[str] = []
    for t in sorted(results):
        seen += [r["workload"] for r in results[t]["rows"] if r["workload"] not in seen]
    return seen


def _load_range(payload: Dict[str, Any]) -> str:
    """The 1-minute load averages seen by the runs behind ``payload``'s rows, as 'a to b'."""
    runs = [r["run"] for r in payload["rows"] if "run" in r] or [payload]
    loads = [x for run in runs for x in (run["loadavg_start"][0], run["loadavg_end"][0])]
    return f"{min(loads):.1f} to {max(loads):.1f}"


def _rounds(results: Dict[int, Dict[str, Any]]) -> str:
    """How many rounds the timed rows' medians are over, e.g. '2' or '2 to 3'."""
    counts = {len(r[impl]["samples_per_s_runs"]) for p in results.values() for r in p["rows"]
              if r["mode"] != "e2e" for impl in ("fcnn", "torch") if r.get(impl)}
    return "-" if not counts else (f"{min(counts)}" if len(counts) == 1 else f"{min(counts)} to {max(counts)}")


def _machine_line(results: Dict[int, Dict[str, Any]]) -> str:
    m = results[min(results)]["machine"]
    loads = ", ".join(f"{t} thread{'s' if t > 1 else ''} {_load_range(p)}" for t, p in sorted(results.items()))
    return (f"{m['cpu']}, {m['logical_cpus']} logical CPUs, Python {m['python']}, numpy {m['numpy']} "
            f"({m['blas']}), PyTorch {m['torch']}; functional_cnn at commit {m['commit']}; medians over "
            f"{_rounds(results)} alternating rounds; load average (1 min) {loads}")


def readme_block(results: Dict[int, Dict[str, Any]]) -> str:
    """The README's speed table: every workload at 1 and 2 threads, plus peak RSS."""
    if not results:
        raise ValueError("readme_block: no threads<N>.json results to build the table from")
    rows = {t: _rows(results.get(t)) for t in THREADS}
    head = ["| workload | 1 thread: functional_cnn | PyTorch | ratio | ratio of CPU time | "
            "2 threads: functional_cnn | PyTorch | ratio |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines = []
    for wid in _order(results):
        any_row = next(rows[t][wid] for t in THREADS if wid in rows[t])
        cells = []
        for t in THREADS:
            r = rows[t].get(wid)
            cells += [_rate(r and r["fcnn"], any_row["mode"]), _rate(r and r["torch"], any_row["mode"]), _ratio(r)]
            if t == 1:
                cells.append(_ratio(r, "ratio_torch_cpu", bold=False))
        label = any_row["label"] + (" (wall time, test accuracy)" if any_row["mode"] == "e2e" else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    rss_id = "lenet-padded-b64-train"
    cells = []
    for t in THREADS:
        r = rows[t].get(rss_id)
        cells += ([f"{r['fcnn']['peak_rss_mb']:.0f} MB", f"{r['torch']['peak_rss_mb']:.0f} MB", ""] if r
                  else ["-", "-", ""]) + ([""] if t == 1 else [])
    lines.append("| peak RSS of the whole process, LeNet-5 padded, batch 64, training | " + " | ".join(cells) + " |")
    cells = []
    for t in THREADS:
        r = rows[t].get(rss_id)
        cells += ([f"{r['fcnn']['minflt_per_step']:.0f}", f"{r['torch']['minflt_per_step']:.0f}", ""] if r
                  else ["-", "-", ""]) + ([""] if t == 1 else [])
    lines.append("| minor page faults per step, same run | " + " | ".join(cells) + " |")
    note = ("Samples per second (median over rounds), each framework in its own fresh process; "
            "ratio = functional_cnn / PyTorch, above 1 means functional_cnn is faster; for the end-to-end "
            "run it is PyTorch's time over functional_cnn's. The ratio of CPU time compares samples per "
            "CPU-second, which other load on the machine disturbs less than wall time. Measured on "
            + _machine_line(results) + ".")
    return "\n".join([note, "", *head, *lines])


def docs_block(payload: Dict[str, Any]) -> str:
    """docs/performance.md's full table for one thread count."""
    t = payload["machine"]["threads"]

    def g(d: Optional[Dict[str, Any]], key: str, fmt: str) -> str:
        return "-" if not d or d.get(key) is None else format(d[key], fmt)

    starts = sorted({r["run"]["started"] for r in payload["rows"] if "run" in r}) or [payload["started"]]
    lines = [f"{t} thread{'s' if t > 1 else ''}; load average (1 min) {_load_range(payload)} during the "
             f"run{'s' if len(starts) > 1 else ''} started {', '.join(starts)}; commit "
             f"{payload['machine']['commit']}.", "",
             "| workload | fcnn samples/s | torch samples/s | ratio | ratio per round | fcnn samples/CPU-s | "
             "torch samples/CPU-s | ratio of CPU time | peak RSS MB fcnn / torch | page faults/step fcnn / torch "
             "| x notebook loop |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in payload["rows"]:
        f, tt = r["fcnn"], r["torch"]
        if r["mode"] == "e2e":
            rate_f, rate_t = _rate(f, "e2e"), _rate(tt, "e2e")
        else:
            rate_f, rate_t = g(f, "samples_per_s", ",.0f"), g(tt, "samples_per_s", ",.0f")
        per_round = ", ".join(f"{v:.2f}" for v in r.get("ratio_torch_rounds") or []) or "-"
        nb = "-" if r.get("ratio_notebook") is None else f"{r['ratio_notebook']:.0f}x"
        lines.append(f"| {r['label']} | {rate_f} | {rate_t} | {_ratio(r)} | {per_round} | "
                     f"{g(f, 'samples_per_cpu_s', ',.0f')} | {g(tt, 'samples_per_cpu_s', ',.0f')} | "
                     f"{_ratio(r, 'ratio_torch_cpu', bold=False)} | "
                     f"{g(f, 'peak_rss_mb', '.0f')} / {g(tt, 'peak_rss_mb', '.0f')} | "
                     f"{g(f, 'minflt_per_step', ',.0f')} / {g(tt, 'minflt_per_step', ',.0f')} | {nb} |")
    return "\n".join(lines)


def baseline_block(before: Dict[int, Dict[str, Any]], after: Dict[int, Dict[str, Any]]) -> str:
    """Ratios to PyTorch before (baseline files) and after (current files), per thread count."""
    head = ["| workload | threads | before: ratio | after: ratio | before: ratio of CPU time | "
            "after: ratio of CPU time | before: fcnn samples/s | after: fcnn samples/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines = []
    for t in THREADS:
        b, a = _rows(before.get(t)), _rows(after.get(t))
        for wid in [w for w in _order(after) if w in a or w in b]:
            rb, ra = b.get(wid), a.get(wid)
            label = (ra or rb)["label"]
            mode = (ra or rb)["mode"]
            lines.append(f"| {label} | {t} | {_ratio(rb)} | {_ratio(ra)} | "
                         f"{_ratio(rb, 'ratio_torch_cpu', bold=False)} | {_ratio(ra, 'ratio_torch_cpu', bold=False)} | "
                         f"{_rate(rb and rb['fcnn'], mode)} | {_rate(ra and ra['fcnn'], mode)} |")
    commits = ", ".join(sorted({p["machine"]["commit"] for p in before.values()}))
    loads = "; ".join(f"{t} thread{'s' if t > 1 else ''} {_load_range(p)}" for t, p in sorted(before.items()))
    return "\n".join([f"Before: commit {commits} (`benchmarks/results/baseline-threads<N>.json`; load average "
                      f"(1 min) {loads}); after: the tables above. Rows differ by more than the code: "
                      "read them with the load and the per-round ratios.", "", *head, *lines])


def replace_block(text: str, name: str, block: str, where: str) -> str:
    """``text`` with the lines between ``<!-- name:start -->`` and ``<!-- name:end -->`` replaced by ``block``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"replace_block: {where} has no {start} ... {end} markers")
    return text[: i + len(start)] + "\n" + block.rstrip("\n") + "\n" + text[j:]


def render(readme: str, perf: str, results_dir: Path = RESULTS) -> Dict[str, str]:
    """The new texts of README.md and docs/performance.md generated from ``results_dir``."""
    results = load(results_dir)
    readme = replace_block(readme, "speed-table", readme_block(results), "README.md")
    for t, payload in sorted(results.items()):
        perf = replace_block(perf, f"perf-table:threads{t}", docs_block(payload), "docs/performance.md")
    baseline = load(results_dir, "baseline-")
    if baseline and "<!-- perf-table:baseline:start -->" in perf:
        perf = replace_block(perf, "perf-table:baseline", baseline_block(baseline, results), "docs/performance.md")
    return {"README.md": readme, "docs/performance.md": perf}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a file differs from what the JSON generates")
    ap.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    files = {name: (args.root / name).read_text() for name in ("README.md", "docs/performance.md")}
    try:
        new = render(files["README.md"], files["docs/performance.md"], args.root / "benchmarks" / "results")
    except ValueError as err:
        print(f"readme_table: {err}", file=sys.stderr)
        return 2
    stale = [name for name in files if files[name] != new[name]]
    if args.check:
        for name in stale:
            print(f"{name}: speed tables differ from benchmarks/results; run python -m benchmarks.readme_table")
        return 1 if stale else 0
    for name in stale:
        path = args.root / name
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(new[name])
        os.replace(tmp, path)
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the examples at their full settings and write the README's examples table from the results.

    python -m benchmarks.examples_table --run     # run everything (minutes), write the JSON and the table
    python -m benchmarks.examples_table           # rewrite the table from the committed JSON
    python -m benchmarks.examples_table --check   # exit 1 if README.md differs from the JSON

The results go to ``benchmarks/results/examples.json``; the table sits in README.md between
``<!-- examples-table:start -->`` and ``<!-- examples-table:end -->``, and the Quick start's epoch line
and accuracy of ``functional-cnn train`` between ``<!-- quickstart-run:start -->`` and ``:end -->``.
Each example runs in this process through its ``main(argv)`` with its default settings (``functional-cnn train`` through
:func:`functional_cnn.cli.main`), on the offline data sets, one thread for BLAS and for
functional_cnn. Accuracies do not depend on the machine or the thread count; wall times do, and
are those of the run recorded in the JSON.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "examples.json"
MARKER = "examples-table"
QUICKSTART = "quickstart-run"

#: Seed notebook 000's training accuracy after its 5 epochs, as the notebook printed it
#: (``Epoch 5: ... Accuracy=0.8775``, in ../shared/seeds/); the example's target.
NOTEBOOK_000_ACCURACY = 0.8775
SEED1_SEEDS = range(10)
SEED2_SEEDS = range(6)
CLI_LENET_SEEDS = range(3)
SWAP_LIMIT = 1000  # swap_optimizers.py's default training digits


def load_example(name: str) -> ModuleType:
    """``examples/<name>.py`` as a module (the examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"_example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _quiet(fn: Callable[[], Any]) -> Any:
    """``fn()`` with its prints sent nowhere (the examples print their progress)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def _cli_train(argv: List[str]) -> Dict[str, Any]:
    """``functional-cnn train argv`` in a temporary run folder: the last epoch's row and the wall time."""
    from functional_cnn import cli, runs

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        start = time.perf_counter()
        code = _quiet(lambda: cli.main(["train", *argv, "--out", str(out), "--no-plot", "--quiet"]))
        seconds = time.perf_counter() - start
        if code != 0:
            raise RuntimeError(f"functional-cnn train {' '.join(argv)} exited with {code}")
        rows = runs.read_metrics(out)
        config = runs.read_config(out)
    last = rows[-1]
    return {"argv": argv, "epochs": last["epoch"], "test_accuracy": last["test_accuracy"], "seconds": seconds,
            "last_row": last, "config": {k: config[k] for k in ("model", "dataset", "optimizer", "schedule",
                                                                "batch_size", "epochs", "seed")}}


def run_all() -> Dict[str, Any]:
    """Run every example and CLI configuration of the table; the results as a JSON-ready dict."""
    import functional_cnn as fc
    from benchmarks.bench import machine_info
    from functional_cnn.datasets import load_dataset

    load_dataset("fashion-mnist")  # its files are needed for the last run: fail now, not after minutes
    fc.set_num_threads(1)
    load_start = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    out: Dict[str, Any] = {}

    seed1 = load_example("seed1_cnn")
    out["seed1_cnn"] = {str(s): _quiet(lambda s=s: seed1.main(["--seed", str(s)])) for s in SEED1_SEEDS}
    seed2 = load_example("seed2_binary")
    out["seed2_binary"] = {str(s): _quiet(lambda s=s: seed2.main(["--seed", str(s)])) for s in SEED2_SEEDS}
    out["lenet_mnist"] = _quiet(lambda: load_example("lenet_mnist").main(["--seed", "0"]))
    swap = _quiet(lambda: load_example("swap_optimizers").main(["--seed", "0", "--limit", str(SWAP_LIMIT),
                                                                 "--no-plot"]))
    out["swap_optimizers"] = {"table": swap["table"], "limit": SWAP_LIMIT}
    out["custom_layer"] = _quiet(lambda: load_example("custom_layer").main(["--seed", "0"]))
    out["cli_lenet"] = {str(s): _cli_train(["--seed", str(s)]) for s in CLI_LENET_SEEDS}
    out["cli_resnet"] = {"mnist-sample": _cli_train(["--model", "resnet-small", "--seed", "0"]),
                         "fashion-mnist": _cli_train(["--model", "resnet-small", "--dataset", "fashion-mnist",
                                                      "--epochs", "5", "--seed", "0"])}
    machine = dict(machine_info(), started=started, threads=1, loadavg_start=list(load_start),
                   loadavg_end=list(os.getloadavg()))
    return {"machine": machine, "results": _plain(out)}


def _plain(x: Any) -> Any:
    """``x`` with numpy scalars and arrays turned into JSON values."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "tolist"):
        return x.tolist()
    return x


# ----------------------------------------------------------------------------- the table
def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def _span(values: Sequence[float], digits: int = 1) -> str:
    lo, hi = min(values), max(values)
    return f"{_pct(lo, digits)}-{_pct(hi, digits)}"


def _seeds(keys: Sequence[str]) -> str:
    seeds = sorted(int(k) for k in keys)
    if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds))


_OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "momentum": "SGD with momentum",
                    "nesterov": "SGD with Nesterov momentum", "rmsprop": "RMSProp", "adagrad": "Adagrad"}


def _cli_settings(run: Dict[str, Any]) -> str:
    """``"Adam with cosine decay, batch 32, 10 epochs"`` from a CLI run's recorded config."""
    c = run["config"]
    decay = f" with {c['schedule']} decay" if c["schedule"] != "constant" else ""
    name = _OPTIMIZER_NAMES.get(c["optimizer"], c["optimizer"])
    return f"{name}{decay}, batch {c['batch_size']}, {c['epochs']} epochs"


def block(payload: Dict[str, Any]) -> str:
    """The README's examples table from a results payload."""
    r, m = payload["results"], payload["machine"]
    s1 = r["seed1_cnn"]
    s1_0 = s1["0"]
    s2 = r["seed2_binary"]
    s2_0 = s2["0"]
    lenet = r["lenet_mnist"]
    swap = r["swap_optimizers"]["table"]
    custom = r["custom_layer"]
    cli = r["cli_lenet"]
    resnet = r["cli_resnet"]
    rows = [
        ("`examples/seed1_cnn.py`",
         f"seed 000's net and recipe: batch 1, SGD 0.01, {len(s1_0['epochs'])} epochs on 1,000 digits",
         f"{_pct(s1_0['train_accuracy'], 2)} train accuracy after {len(s1_0['epochs'])} epochs (notebook: "
         f"{_pct(NOTEBOOK_000_ACCURACY, 2)}); {_seeds(list(s1))}: "
         f"{_span([v['train_accuracy'] for v in s1.values()])}; {s1_0['seconds']:.1f} s"),
        ("`examples/seed2_binary.py`",
         f"seed 002's sigmoid net, BCE, 0-vs-1 digits, batch 1, {len(s2_0['errors'])} epochs",
         f"{_pct(s2_0['test_accuracy'])} test accuracy ({s2_0['test_right']}/{s2_0['test_n']}); "
         f"{_seeds(list(s2))}: {_span([v['test_accuracy'] for v in s2.values()])}; {s2_0['seconds']:.1f} s"),
        ("`examples/lenet_mnist.py`",
         "LeNet-5 with Adam, a checkpoint that reloads bit-identical, curves",
         f"{_pct(lenet['test_accuracy'])} test accuracy after {len(lenet['rows'])} epochs, {lenet['seconds']:.1f} s"),
        ("`examples/swap_optimizers.py`",
         "one LeNet trained with sgd, momentum and adam (only the optimizer argument changes), one plot",
         "test " + " / ".join(_pct(swap[k]["test_accuracy"]) for k in ("sgd", "momentum", "adam"))
         + f" on {r['swap_optimizers']['limit']:,} training digits"),
        ("`examples/custom_layer.py`",
         "a new layer (swish with a learnable slope), proven with the gradient checker; a broken backward caught",
         f"rel. error {custom['max_rel_err']:.1e}; {_pct(custom['epochs'][-1]['test_accuracy'])} on `digits`"),
        ("`functional-cnn train`",
         f"LeNet-5, {_cli_settings(cli['0'])}",
         f"{_pct(cli['0']['test_accuracy'])} test accuracy ({_seeds(list(cli))}: "
         + "/".join(_pct(cli[k]["test_accuracy"]) for k in sorted(cli, key=int)) + f"); {cli['0']['seconds']:.0f} s"),
        ("`functional-cnn train --model resnet-small`",
         f"residual blocks with batch norm and dropout; {_cli_settings(resnet['mnist-sample'])}",
         f"{_pct(resnet['mnist-sample']['test_accuracy'])} on `mnist-sample`; "
         f"{_pct(resnet['fashion-mnist']['test_accuracy'])} on full Fashion-MNIST after "
         f"{resnet['fashion-mnist']['epochs']} epochs ({resnet['fashion-mnist']['seconds'] / 60:.0f} min)"),
    ]
    loads = [m["loadavg_start"][0], m["loadavg_end"][0]]
    note = (f"Default settings, seed 0 unless a range of seeds is given, one thread, at commit {m['commit']} "
            f"(Python {m['python']}, numpy {m['numpy']}, {m['logical_cpus']} logical CPUs; load average (1 min) "
            f"{min(loads):.1f} to {max(loads):.1f}). Accuracies and losses are the same at every thread count; "
            "wall times are this run's.")
    lines = ["| example | what it shows | measured |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join([note, "", *lines])


def docs_figures(payload: Dict[str, Any]) -> List[str]:
    """Figures docs/examples.md quotes from the recorded runs (seed 0, and the seed ranges of seed notebooks
    000 and 002's examples), formatted as it prints them."""
    r = payload["results"]
    s1 = r["seed1_cnn"]["0"]
    first, fifth = s1["epochs"][0], s1["epochs"][-1]
    s2 = r["seed2_binary"]["0"]
    lenet = r["lenet_mnist"]["rows"][-1]
    custom = r["custom_layer"]["epochs"][-1]
    out = [f"Loss = {first['loss_sum']:.4f}, Accuracy={first['accuracy']:.4f}",
           f"Loss = {fifth['loss_sum']:.4f}, **Accuracy={fifth['accuracy']:.4f}**",
           f"| {s1['test_accuracy']:.4f} |",
           f"| {s2['errors'][-1]:.4f} |", f"**{s2['test_right']}/{s2['test_n']} ({_pct(s2['test_accuracy'])})**",
           f"| {_pct(lenet['accuracy'], 2)} | **{_pct(lenet['test_accuracy'], 2)}** |",
           f"training accuracy is {_pct(custom['accuracy'], 2)}", f"accuracy {_pct(custom['test_accuracy'], 2)} ("]
    for row in r["swap_optimizers"]["table"].values():
        out.append(f"| {row['loss']:.4f} | {_pct(row['accuracy'], 2)} | {row['test_loss']:.4f} |")
    train = [v["train_accuracy"] for v in r["seed1_cnn"].values()]
    test = [v["test_accuracy"] for v in r["seed1_cnn"].values()]
    out.append(f"**{min(train):.3f}–{max(train):.3f} (mean {sum(train) / len(train):.3f})**")
    out.append(f"{min(test):.3f}–{max(test):.3f} (mean {sum(test) / len(test):.3f})")
    s2_all = [r["seed2_binary"][k]["test_accuracy"] for k in sorted(r["seed2_binary"], key=int)]
    out.append(", ".join("100" if a == 1.0 else f"{100 * a:.1f}" for a in s2_all)
               + f"% (mean {_pct(sum(s2_all) / len(s2_all))}, min {_pct(min(s2_all))})")
    out.append(f"{r['custom_layer']['max_rel_err']:.1e} for `x`")
    return out


def quickstart_block(payload: Dict[str, Any]) -> str:
    """The Quick start's last epoch line and accuracy of ``functional-cnn train``, seed 0."""
    from functional_cnn.reporting import epoch_line

    run = payload["results"]["cli_lenet"]["0"]
    return "\n".join(["```", epoch_line(run["last_row"], run["epochs"]), "```", "",
                      f"The default run reaches **{_pct(run['test_accuracy'])} test accuracy** (LeNet-5, "
                      f"{_cli_settings(run)})."])


def render(readme: str, path: Path = RESULTS) -> str:
    """``readme`` with its examples table and Quick start figures generated from the JSON at ``path``."""
    from benchmarks.readme_table import replace_block

    payload = json.loads(path.read_text())
    readme = replace_block(readme, QUICKSTART, quickstart_block(payload), "README.md")
    return replace_block(readme, MARKER, block(payload), "README.md")


def _between(text: str, name: str) -> str:
    """What ``text`` holds between the ``name`` markers (empty when they are missing)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    i, j = text.find(start), text.find(end)
    return text[i:j] if 0 <= i < j else ""


def _write(path: Path, text: str) -> None:
    from functional_cnn._atomic import atomic_write

    atomic_write(path, lambda f: f.write(text.encode()))


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", action="store_true", help="run every example first (minutes) and rewrite the JSON")
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md differs from what the JSON generates")
    ap.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.run and args.check:
        ap.error("--run and --check do not go together")
    results = args.root / "benchmarks" / "results" / "examples.json"
    if args.run:
        payload = run_all()
        _write(results, json.dumps(payload, indent=1, sort_keys=True) + "\n")
        print(f"wrote {results.relative_to(args.root)}")
    readme_path = args.root / "README.md"
    readme = readme_path.read_text()
    try:
        new = render(readme, results)
    except (OSError, ValueError, KeyError) as err:
        print(f"examples_table: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    if args.check:
        stale = [name for name in (QUICKSTART, MARKER) if _between(new, name) != _between(readme, name)]
        if new != readme:
            print(f"README.md: {' and '.join(stale) or 'generated'} block differs from "
                  "benchmarks/results/examples.json; run python -m benchmarks.examples_table", file=sys.stderr)
            return 1
        return 0
    if new != readme:
        _write(readme_path, new)
        print("wrote README.md")
    return 0


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    sys.exit(main())

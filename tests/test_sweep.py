"""functional-cnn sweep / run_sweep: runs equal standalone train runs, faults, resume, failures, bad input."""
import csv
import io
import json
import logging
import os
import signal
import sys
import threading
import time

import attrs
import numpy as np
import pytest

from functional_cnn import cli, fingerprint
from functional_cnn.checkpoint import load_checkpoint
from functional_cnn.cli import main
from functional_cnn.sweep import SweepRow, run_sweep
from functional_cnn.train import EpochRecord

TINY = ["--model", "seed1", "--dataset", "digits", "--batch-size", "16", "--max-steps", "3"]


def train_alone(tmp_path, name, argv):
    """The same config trained by ``functional-cnn train`` on its own; returns its run directory."""
    out = tmp_path / "alone" / name
    assert main(["train", *argv, "--out", str(out), "--quiet", "--no-plot"], out=io.StringIO()) == 0
    return out


def exit_status(argv):
    """``functional-cnn ARGV``'s exit status (argparse errors exit from inside main)."""
    try:
        return main(argv, out=io.StringIO())
    except SystemExit as exit_:
        return exit_.code


def same_run(a, b):
    ca, cb = load_checkpoint(a / "checkpoint.npz"), load_checkpoint(b / "checkpoint.npz")
    return ca.step == cb.step and fingerprint((ca.params, ca.opt_state)) == fingerprint((cb.params, cb.opt_state))


def final_test_accuracy(run_dir):
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["test_accuracy"]


def test_a_two_worker_sweep_equals_standalone_train_runs(tmp_path, capsys):
    pytest.importorskip("distributed")
    out = tmp_path / "sweep"
    code = main(["sweep", *TINY, "--optimizer", "sgd,adam", "--seeds", "0,1", "--workers", "2", "--out", str(out)],
                out=io.StringIO())
    assert code == 0, capsys.readouterr().err
    names = {p.name for p in out.iterdir() if p.is_dir()}
    assert names == {f"optimizer={o}_seed={s}" for o in ("sgd", "adam") for s in (0, 1)}
    for opt in ("sgd", "adam"):
        for seed in (0, 1):
            run = out / f"optimizer={opt}_seed={seed}"
            assert {p.name for p in run.iterdir()} == {"config.json", "metrics.jsonl", "checkpoint.npz"}
            alone = train_alone(tmp_path, run.name, TINY + ["--optimizer", opt, "--seed", str(seed)])
            assert same_run(run, alone), run.name
            assert (run / "config.json").read_text() == (alone / "config.json").read_text()
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["label"] for r in rows] == ["optimizer=sgd", "optimizer=adam"]
    for r in rows:
        accs = [final_test_accuracy(out / f"{r['label'].replace(' ', '_')}_seed={s}") for s in (0, 1)]
        assert (r["runs"], r["failed"]) == ("2", "0")
        assert float(r["test_accuracy_mean"]) == pytest.approx(np.mean(accs), abs=1e-12)
        assert float(r["test_accuracy_std"]) == pytest.approx(np.std(accs, ddof=1), abs=1e-12)
        assert (float(r["test_accuracy_min"]), float(r["test_accuracy_max"])) == (min(accs), max(accs))
    assert "| optimizer=adam | 2 | 0 |" in (out / "summary.md").read_text()
    assert (out / "summary.png").read_bytes()[:4] == b"\x89PNG"


def test_a_worker_killed_mid_run_is_retried_and_the_sweep_completes(tmp_path):
    distributed = pytest.importorskip("distributed")
    # Long enough (3 epochs, a checkpoint after each) that the kill lands mid-run, after a checkpoint.
    grid = {"model": "seed1", "dataset": "digits", "batch_size": 16, "test_fraction": 0.5, "epochs": 3}
    out = tmp_path / "sweep"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.CRITICAL) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        result = {}
        sweep = threading.Thread(target=lambda: result.update(table=run_sweep(
            grid, [0, 1], out, scheduler=cluster.scheduler_address, progress=False, plot=False,
            stream=io.StringIO())))
        sweep.start()
        deadline = time.monotonic() + 60
        while not any((out / f"seed={s}" / "checkpoint.npz").exists() for s in (0, 1)):
            assert time.monotonic() < deadline and sweep.is_alive(), "no run wrote a checkpoint"
            time.sleep(0.02)
        busy = [addr for addr, keys in client.processing().items() if keys]
        assert busy, "no run in progress when the worker was to be killed"
        pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
        os.kill(pid, signal.SIGKILL)
        sweep.join(120)
        assert not sweep.is_alive()
    (row,) = result["table"]
    assert isinstance(row, SweepRow) and attrs.has(SweepRow)
    assert (row.runs, row.failed, row.errors) == (2, 0, ())
    for seed in (0, 1):
        run = out / f"seed={seed}"
        assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
        argv = [f"--{k.replace('_', '-')}={v}" for k, v in grid.items()] + ["--seed", str(seed)]
        assert same_run(run, train_alone(tmp_path, run.name, argv)), run.name
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


def test_an_interrupted_sweep_skips_finished_runs_and_resumes_the_unfinished_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # in-process, so the interruption can be staged
    real_fit, calls = cli.fit, []

    def fit_interrupted_in_the_second_run(*args, **kwargs):
        calls.append(1)
        for record in real_fit(*args, **kwargs):
            yield record
            if len(calls) == 2 and isinstance(record, EpochRecord):
                raise KeyboardInterrupt  # Ctrl-C after the second run saved its first epoch

    argv = ["--model", "seed1", "--dataset", "digits", "--test-fraction", "0.9", "--batch-size", "64",
            "--epochs", "2"]
    out = tmp_path / "sweep"
    sweep = ["sweep", *argv, "--lr", "0.01,0.02", "--seeds", "0", "--out", str(out), "--no-plot"]
    monkeypatch.setattr(cli, "fit", fit_interrupted_in_the_second_run)
    assert main(sweep, out=io.StringIO()) == 130
    first, second = out / "lr=0.01_seed=0", out / "lr=0.02_seed=0"
    assert load_checkpoint(second / "checkpoint.npz").step == 3  # one epoch of two
    assert not (out / "summary.csv").exists()
    finished_at = (first / "checkpoint.npz").stat().st_mtime_ns
    monkeypatch.setattr(cli, "fit", real_fit)
    capsys.readouterr()
    assert main(sweep, out=io.StringIO()) == 0
    err = capsys.readouterr().err
    assert "1 of 2 runs already finished" in err and "[2/2] lr=0.02_seed=0: done, resumed from its checkpoint" in err
    assert (first / "checkpoint.npz").stat().st_mtime_ns == finished_at
    for run, lr in ((first, "0.01"), (second, "0.02")):
        assert same_run(run, train_alone(tmp_path, run.name, argv + ["--lr", lr]))
    # The same folder with another fixed flag is refused before anything runs.
    other = [("32" if a == "64" else a) for a in sweep]
    assert other != sweep
    code = main(other, out=io.StringIO())
    assert code == 2 and "holds a run with batch_size=64 but this sweep asks for 32" in capsys.readouterr().err


def test_a_failed_run_is_reported_and_the_others_complete(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", *TINY, "--optimizer", "sgd", "--lr", "0.01,1e30", "--seeds", "0-1", "--workers", "1",
                 "--out", str(out), "--no-plot"], out=io.StringIO())
    assert code == 1
    good, bad = run_rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["label"] for r in run_rows] == ["lr=0.01", "lr=1e30"]
    assert (good["runs"], good["failed"], good["errors"]) == ("2", "0", "")
    assert 0 < float(good["test_accuracy_mean"]) <= 1
    assert (bad["runs"], bad["failed"], bad["test_accuracy_mean"]) == ("2", "2", "")
    assert bad["errors"].count("fit: loss is nan") == 2 and "seed 0:" in bad["errors"]
    assert not (out / "lr=1e30_seed=0").exists()  # it died before its first epoch: nothing half-written
    assert "| lr=1e30 | 2 | 2 | - ± - |" in (out / "summary.md").read_text()


def test_without_dask_workers_1_runs_in_process_and_more_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)
    out = tmp_path / "sweep"
    stdout = io.StringIO()
    assert main(["sweep", *TINY, "--seeds", "0,1", "--workers", "1", "--out", str(out), "--no-plot"], out=stdout) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "in this process" in line] == [
        ('dask.distributed is not installed: running 2 runs one after another in this process '
         '(pip install "functional_cnn[distributed]" to run them in parallel)')]
    assert err[-2].startswith("[1/2] seed=0: done (") and err[-1].startswith("[2/2] seed=1: done (")
    assert "| (one config) | 2 | 0 |" in stdout.getvalue()
    assert same_run(out / "seed=1", train_alone(tmp_path, "seed=1", TINY + ["--seed", "1"]))
    for extra in (["--workers", "2"], ["--scheduler", "tcp://127.0.0.1:8786"]):
        assert exit_status(["sweep", *TINY, "--out", str(tmp_path / "other"), *extra]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert 'needs dask.distributed: pip install "functional_cnn[distributed]"' in line
    assert not (tmp_path / "other").exists()


def test_a_flag_added_to_train_is_sweepable_at_once(tmp_path, monkeypatch, capsys):
    """What another branch adds to the train parser (say --note) appears in sweep with no edit."""
    monkeypatch.setitem(sys.modules, "distributed", None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # and the plot is skipped with one line
    real_add = cli.add_sweep_parser

    def add_after_a_new_train_flag(sub, train):
        train.add_argument("--note", choices=["a", "b"], help="a flag from another branch")
        return real_add(sub, train)

    monkeypatch.setattr(cli, "add_sweep_parser", add_after_a_new_train_flag)
    out = tmp_path / "sweep"
    assert main(["sweep", *TINY, "--note", "a,b", "--out", str(out)], out=io.StringIO()) == 0
    assert sorted(p.name for p in out.iterdir()) == ["note=a_seed=0", "note=b_seed=0", "summary.csv", "summary.md"]
    notes = [line for line in capsys.readouterr().err.splitlines() if "summary.png" in line]
    assert notes == ['note: no summary.png: plotting needs matplotlib: pip install "functional_cnn[plot]"']
    assert exit_status(["sweep", *TINY, "--note", "a,c", "--out", str(tmp_path / "bad")]) == 2
    assert "argument --note: unknown value 'c'; choose from a, b" in capsys.readouterr().err


@pytest.mark.parametrize("extra, needle", [
    (["--optimizer", "sgd,foo"], "argument --optimizer: unknown value 'foo'; choose from adagrad, adam"),
    (["--lr", "0.1,x"], "argument --lr: 'x' is not a valid float"),
    (["--lr", "0.1,-1"], "--lr must be >= 0, got -1.0"),
    (["--seeds", "0-x"], "argument --seeds: seeds must look like 0,1,2 or 0-4"),
    (["--seeds", "3-1"], "argument --seeds: seeds must look like 0,1,2 or 0-4"),
    (["--seeds", "0,0"], "seeds list a seed twice"),
    (["--workers", "0"], "expected a number of worker processes >= 1, got '0'"),
    (["--scheduler", "nonsense"], "--scheduler 'nonsense' is not a Dask scheduler address"),
    (["--scheduler", "tcp://127.0.0.1:1"], "cannot reach the Dask scheduler at 'tcp://127.0.0.1:1'"),
    (["--scheduler", "tcp://127.0.0.1:1", "--workers", "2"], "give --workers (an embedded cluster) or --scheduler"),
])
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(tmp_path, capsys, extra, needle):
    if "--scheduler" in extra:
        pytest.importorskip("distributed")
    t0 = time.monotonic()
    code = exit_status(["sweep", *TINY, "--out", str(tmp_path / "sweep"), *extra])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and line.startswith("functional-cnn sweep: error: ") and needle in line
    assert time.monotonic() - t0 < 20  # an unreachable scheduler fails within its few-second timeout
    assert not (tmp_path / "sweep").exists()


def test_run_sweep_names_an_unknown_flag(tmp_path):
    with pytest.raises(ValueError, match="run_sweep: unknown train flag 'nope'; the sweepable flags are --model"):
        run_sweep({"nope": [1, 2]}, 0, tmp_path / "sweep")
    with pytest.raises(ValueError, match="--optimizer: unknown value 'foo'"):
        run_sweep({"optimizer": ["sgd", "foo"]}, 0, tmp_path / "sweep")
    assert not (tmp_path / "sweep").exists()

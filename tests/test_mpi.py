"""Data-parallel training on MPI: mpiexec -n 2 equals --accumulate 2 in one process bit for bit, resume,
a rank that dies or hangs, and every bad launch."""
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import functional_cnn as fc
from functional_cnn.checkpoint import load_checkpoint
from functional_cnn.cli import main

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "mpi_worker.py"
MPIEXEC = shutil.which("mpiexec")
LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "PMI_FD", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS",
                 "HYDRA_CONTROL_FD")
LENET = ["-m", "functional_cnn", "train", "--quiet", "--no-plot", "--epochs", "1", "--batch-size", "64"]


def env():
    e = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    e.update(PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return e


def run(args, ranks=None, timeout=120):
    """``python args`` (under ``mpiexec -n ranks`` when given); returns the CompletedProcess and its seconds."""
    cmd = [sys.executable, *map(str, args)]
    if ranks is not None:
        assert MPIEXEC is not None, 'mpiexec is not on PATH: pip install -e ".[test]" installs the mpich wheel'
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    t0 = time.monotonic()
    done = subprocess.run(cmd, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - t0


def same_checkpoints(a, b):
    ca, cb = load_checkpoint(Path(a) / "checkpoint.npz"), load_checkpoint(Path(b) / "checkpoint.npz")
    return ca.step == cb.step and fc.fingerprint((ca.params, ca.opt_state)) == fc.fingerprint((cb.params, cb.opt_state))


def test_two_ranks_equal_accumulate_2_bit_for_bit_lenet(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    done, _ = run(LENET + ["--max-steps", "3", "--accumulate", "2", "--out", one])
    assert done.returncode == 0, done.stderr
    done, _ = run(LENET + ["--max-steps", "3", "--data-parallel", "--out", two], ranks=2)
    assert done.returncode == 0, done.stderr
    assert same_checkpoints(one, two)
    assert (one / "metrics.jsonl").read_text().split('"seconds"')[0] == \
        (two / "metrics.jsonl").read_text().split('"seconds"')[0]
    assert done.stdout.count("epoch 1/1") == 1  # only rank 0 reports
    base, _ = run(LENET + ["--max-steps", "3", "--out", tmp_path / "plain"])
    assert not same_checkpoints(one, tmp_path / "plain")  # accumulation changed the bits, so equality means something


@pytest.mark.parametrize("k", [2, 4])
def test_two_ranks_equal_one_process_with_batch_norm_and_dropout(tmp_path, k):
    single, mpi = tmp_path / "single.npz", tmp_path / "mpi.npz"
    done, _ = run([WORKER, single, "single", k])
    assert done.returncode == 0, done.stderr
    done, _ = run([WORKER, mpi, "mpi", k], ranks=2)
    assert done.returncode == 0, done.stderr
    a, b = np.load(single), np.load(mpi)
    assert sorted(a.files) == sorted(b.files) and {"1.mean", "1.var", "losses"} <= set(a.files)
    for name in a.files:
        assert a[name].dtype == b[name].dtype and a[name].tobytes() == b[name].tobytes(), name
    assert not np.array_equal(a["1.mean"], np.zeros_like(a["1.mean"]))


def test_resume_under_mpi_is_bit_exact(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    done, _ = run(LENET + ["--max-steps", "4", "--accumulate", "2", "--out", whole])
    assert done.returncode == 0, done.stderr
    done, _ = run(LENET + ["--max-steps", "2", "--data-parallel", "--out", cut], ranks=2)
    assert done.returncode == 0, done.stderr
    done, _ = run(["-m", "functional_cnn", "train", "--resume", cut, "--max-steps", "4", "--data-parallel",
                   "--quiet", "--no-plot"], ranks=2)
    assert done.returncode == 0, done.stderr
    assert f"resuming {cut} at step 2" in done.stdout and done.stdout.count("resuming") == 1
    assert same_checkpoints(whole, cut)


def test_a_hung_rank_ends_the_job_with_a_message_naming_step_and_rank(tmp_path):
    done, seconds = run([WORKER, tmp_path / "x.npz", "hang", 2], ranks=2, timeout=100)
    assert done.returncode != 0
    assert "data-parallel step 2: rank 0 waited 3 s for the gradients of rank(s) [1]" in done.stderr
    assert seconds < 60
    assert not (tmp_path / "x.npz").exists()


def test_a_killed_rank_ends_the_job(tmp_path):
    done, seconds = run([WORKER, tmp_path / "x.npz", "die", 2], ranks=2, timeout=100)
    assert done.returncode != 0 and seconds < 60
    assert "rank(s) [1]" in done.stderr or "BAD TERMINATION" in done.stdout + done.stderr
    assert not (tmp_path / "x.npz").exists()


def test_an_error_on_every_rank_is_reported_once_by_rank_0(tmp_path):
    done, _ = run(["-m", "functional_cnn", "train", "--optimizer", "sgd", "--lr", "1e6", "--schedule", "constant",
                   "--max-steps", "20", "--data-parallel", "--quiet", "--no-plot", "--out", tmp_path / "r"], ranks=2)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert errors == ["functional-cnn train: error: fit: loss is nan at step 3 (epoch 1, batch 3 of 125); lower the "
                      "learning rate or check the data for NaN/Inf"]
    assert not (tmp_path / "r").exists()


def test_data_parallel_without_mpiexec_is_one_line_exit_2(tmp_path):
    done, _ = run(LENET + ["--data-parallel", "--out", tmp_path / "r"])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "functional-cnn train: error: --data-parallel needs a job started by mpiexec, e.g. mpiexec -n 2 "
        "functional-cnn train --data-parallel (this process is alone in COMM_WORLD and no MPI launcher "
        "variables are set)"]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("extra, line", [
    (["--batch-size", "33"], "--batch-size 33 must be divisible by the 2 ranks"),
    (["--accumulate", "3"], "--accumulate 3 must be a multiple of the 2 ranks"),
    (["--exchange-timeout", "0"], "--exchange-timeout must be > 0 seconds, got 0.0"),
])
def test_bad_data_parallel_settings_are_one_line_exit_2(tmp_path, extra, line):
    done, _ = run(LENET + ["--data-parallel", "--out", tmp_path / "r"] + extra, ranks=2)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"functional-cnn train: error: {line}"]
    assert not (tmp_path / "r").exists()


def test_without_mpi4py_the_error_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    code = main(["train", "--data-parallel", "--out", str(tmp_path / "r")], out=io.StringIO())
    assert code == 2
    assert capsys.readouterr().err == ('functional-cnn train: error: data-parallel training needs mpi4py: '
                                       'pip install "functional_cnn[distributed]"\n')


class FakeComm:
    """Enough of a communicator for make_step's checks (no MPI in the test process)."""

    def __init__(self, size):
        self.size = size

    def Get_rank(self):
        return 0

    def Get_size(self):
        return self.size

    Isend = Irecv = Abort = None


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(comm=object()), TypeError, r"make_step: comm must be an mpi4py communicator .* got object"),
    (dict(comm=FakeComm(2), accumulate=3), ValueError,
     r"make_step: accumulate \(=3\) must be a multiple of the number of ranks \(=2\)"),
    (dict(comm=FakeComm(2), exchange_timeout=0), ValueError,
     r"make_step: exchange_timeout must be a number of seconds > 0, got 0"),
    (dict(comm=FakeComm(2), accumulate=0), ValueError, r"make_step: accumulate must be an integer >= 1, got 0"),
])
def test_library_form_refuses_bad_comm_and_accumulate(kwargs, err, match):
    net = fc.serial(fc.flatten(), fc.dense(3))
    with pytest.raises(err, match=match):
        fc.make_step(net, fc.softmax_cross_entropy, fc.sgd(0.1), **kwargs)


def test_library_form_defaults_accumulate_to_the_rank_count():
    net = fc.serial(fc.flatten(), fc.dense(3))
    assert fc.make_step(net, fc.softmax_cross_entropy, fc.sgd(0.1), comm=FakeComm(3)).accumulate == 3


def test_scaling_benchmark_runs_and_writes_its_json(tmp_path):
    """The measuring script of docs/distributed.md keeps working (no speed is asserted)."""
    out = tmp_path / "scaling.json"
    done, _ = run(["benchmarks/mpi_scaling.py", "--quick", "--rank-counts", "2", "--json", out], timeout=300)
    assert done.returncode == 0, done.stderr
    assert "| plain | 64 |" in done.stdout and "| 2 | 64 |" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [(r["ranks"], r["batch"]) for r in rows] == [(0, 64), (2, 64)]
    assert rows[1]["payload_bytes"] > 4 * 61706 and rows[1]["step_s"] > 0 and rows[1]["exchange_alone_s"] > 0


def test_a_setup_error_on_one_rank_stops_every_rank_with_one_line(tmp_path):
    """MPMD launch: rank 1 alone gets a bad flag; the ranks agree before training and rank 0 reports it."""
    good = [sys.executable] + LENET + ["--max-steps", "2", "--data-parallel", "--out", str(tmp_path / "r")]
    bad = good[:-2] + ["--batch-size", "0", "--out", str(tmp_path / "r")]
    t0 = time.monotonic()
    done = subprocess.run([MPIEXEC, "-n", "1", *good, ":", "-n", "1", *bad], env=env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and time.monotonic() - t0 < 60
    assert done.stderr.strip().splitlines() == ["functional-cnn train: error: rank 1: --batch-size must be >= 1, got 0"]
    assert not (tmp_path / "r").exists()

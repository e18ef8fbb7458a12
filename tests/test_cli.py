"""The command line: train / resume / evaluate / summary / gradcheck / plot, and its errors."""
import gzip
import io
import json
import subprocess
import sys

import numpy as np
import pytest

from functional_cnn import fingerprint
from functional_cnn.checkpoint import load_checkpoint
from functional_cnn.cli import main

TINY = ["train", "--model", "seed1", "--dataset", "digits", "--batch-size", "64", "--quiet", "--no-plot"]


def run(argv):
    out = io.StringIO()
    code = main(argv, out=out)
    return code, out.getvalue()


def errors(capsys, argv):
    """Run a failing command; return its exit status and the stderr lines."""
    code = main(argv, out=io.StringIO())
    return code, capsys.readouterr().err.strip().splitlines()


def test_train_writes_a_run_directory(tmp_path):
    out = tmp_path / "run"
    code, text = run(TINY + ["--epochs", "2", "--out", str(out)])
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.jsonl", "checkpoint.npz"}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "seed1" and cfg["seed"] == 0 and "numpy" in cfg["versions"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
    assert "epoch 2/2  loss" in text and "test_acc" in text
    assert rows[1]["loss"] < rows[0]["loss"] and rows[1]["test_accuracy"] > 0.15  # above chance (0.1)


def test_resume_is_bit_exact(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(TINY + ["--epochs", "2", "--max-steps", "30", "--out", str(a)])[0] == 0
    assert run(TINY + ["--epochs", "2", "--max-steps", "12", "--out", str(b)])[0] == 0
    code, text = run(["train", "--resume", str(b), "--max-steps", "30", "--quiet", "--no-plot"])
    assert code == 0 and "resuming" in text
    ca, cb = load_checkpoint(a / "checkpoint.npz"), load_checkpoint(b / "checkpoint.npz")
    assert ca.step == cb.step == 30
    assert fingerprint((ca.params, ca.opt_state)) == fingerprint((cb.params, cb.opt_state))


def test_evaluate_summary_gradcheck(tmp_path):
    out = tmp_path / "run"
    run(TINY + ["--epochs", "1", "--out", str(out)])
    code, text = run(["evaluate", str(out)])
    assert code == 0 and "seed1 on digits test (359 examples)" in text and "accuracy" in text
    code, text = run(["summary", "--model", "lenet"])
    assert code == 0 and "61,706" in text
    code, text = run(["gradcheck", "--model", "seed1", "--max-checks", "10"])
    assert code == 0 and "seed1: all layers pass" in text and text.count("gradcheck ") == 5


def test_plot_writes_a_png_when_matplotlib_is_there(tmp_path, capsys):
    out = tmp_path / "run"
    run(TINY + ["--epochs", "1", "--out", str(out)])
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        code, err = errors(capsys, ["plot", str(out)])
        assert code == 2 and "matplotlib" in err[0]
        return
    code, text = run(["plot", str(out)])
    assert code == 0 and (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_module_entry_point_runs():
    res = subprocess.run([sys.executable, "-m", "functional_cnn", "summary", "--model", "seed1"],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "6,810" in res.stdout


@pytest.mark.parametrize("argv, needle", [
    (["train", "--model", "vgg"], "invalid choice: 'vgg' (choose from 'lenet', 'resnet-small', 'seed1', 'seed2')"),
    (["train", "--dataset", "cifar"], "invalid choice: 'cifar' (choose from 'mnist-sample', 'digits'"),
    (["train", "--optimizer", "lion"], "invalid choice: 'lion' (choose from 'adagrad', 'adam'"),
    (["train", "--epochs", "zero"], "argument --epochs: invalid int value: 'zero'"),
    (["summary", "--input-shape", "1,a"], "argument --input-shape: expected a shape like 1,28,28"),
    (["launch"], "invalid choice: 'launch'"),
])
def test_bad_flags_exit_2_with_one_line(capsys, argv, needle):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


@pytest.mark.parametrize("extra, needle", [
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--lr", "-0.1"], "--lr must be >= 0, got -0.1"),
    (["--max-steps", "0"], "--max-steps must be >= 1"),
])
def test_bad_values_exit_2_and_write_nothing(tmp_path, capsys, extra, needle):
    out = tmp_path / "run"
    code, err = errors(capsys, TINY + extra + ["--out", str(out)])
    assert code == 2 and len(err) == 1 and needle in err[0]
    assert not out.exists()


def test_missing_idx_files_name_the_place_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    code, err = errors(capsys, ["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "none"), "--out", str(out),
                                "--quiet"])
    assert code == 2 and len(err) == 1 and "train-images-idx3-ubyte" in err[0]
    assert not out.exists()


def test_idx_with_a_bad_magic_number(tmp_path, capsys):
    data = tmp_path / "mnist"
    data.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (data / name).write_bytes(b"\x12\x34\x08\x03" + b"\x00" * 64)
    code, err = errors(capsys, ["train", "--dataset", "mnist", "--data-dir", str(data), "--out",
                                str(tmp_path / "run"), "--quiet"])
    assert code == 2 and len(err) == 1 and "magic" in err[0]
    assert not (tmp_path / "run").exists()


def test_missing_corrupt_and_foreign_checkpoints(tmp_path, capsys):
    code, err = errors(capsys, ["evaluate", str(tmp_path / "nothing.npz")])
    assert code == 2 and "no such file" in err[0]
    run_dir = tmp_path / "run"
    run(TINY + ["--epochs", "1", "--out", str(run_dir)])
    ck = run_dir / "checkpoint.npz"
    blob = ck.read_bytes()
    ck.write_bytes(blob[: len(blob) // 2])
    code, err = errors(capsys, ["evaluate", str(run_dir)])
    assert code == 2 and len(err) == 1 and "[truncated]" in err[0]
    ck.write_bytes(blob)
    cfg = json.loads((run_dir / "config.json").read_text())
    cfg["model"] = "seed2"  # the checkpoint holds seed1's params
    (run_dir / "config.json").write_text(json.dumps(cfg))
    code, err = errors(capsys, ["train", "--resume", str(run_dir), "--quiet", "--no-plot"])
    assert code == 2 and len(err) == 1 and "[mismatch]" in err[0]
    assert ck.read_bytes() == blob  # the failed resume left the checkpoint as it was


def test_refuses_to_overwrite_an_existing_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run(TINY + ["--epochs", "1", "--out", str(run_dir)])
    code, err = errors(capsys, TINY + ["--epochs", "1", "--out", str(run_dir)])
    assert code == 2 and "already holds a run; use --resume" in err[0]


def test_gz_idx_files_train(tmp_path):
    from functional_cnn.idx import write_idx

    data = tmp_path / "fmnist"
    data.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 64), ("t10k", 32)):
        write_idx(data / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(data / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
        for kind in ("images", "labels"):
            raw = data / f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
            raw.with_name(raw.name + ".gz").write_bytes(gzip.compress(raw.read_bytes()))
            raw.unlink()
    code, text = run(["train", "--model", "seed1", "--dataset", "fashion-mnist", "--data-dir", str(data), "--epochs",
                      "1", "--batch-size", "32", "--out", str(tmp_path / "run"), "--quiet", "--no-plot"])
    assert code == 0 and "epoch 1/1" in text


def test_resume_works_when_a_kill_left_only_a_config_or_only_a_checkpoint(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run(TINY + ["--epochs", "2", "--out", str(full)])[0] == 0
    assert run(TINY + ["--epochs", "2", "--max-steps", "23", "--out", str(cut)])[0] == 0
    (cut / "config.json").unlink()  # killed between the checkpoint and config.json
    code, text = run(["train", "--resume", str(cut), "--max-steps", "46", "--quiet", "--no-plot"])
    assert code == 0 and "resuming" in text and (cut / "config.json").exists()
    a, b = load_checkpoint(full / "checkpoint.npz"), load_checkpoint(cut / "checkpoint.npz")
    assert fingerprint((a.params, a.opt_state)) == fingerprint((b.params, b.opt_state))
    only_config = tmp_path / "fresh"
    only_config.mkdir()
    (only_config / "config.json").write_text((full / "config.json").read_text())  # killed before any checkpoint
    code, text = run(["train", "--resume", str(only_config), "--quiet", "--no-plot"])
    assert code == 0 and "no checkpoint yet, starting from step 0" in text
    c = load_checkpoint(only_config / "checkpoint.npz")
    assert fingerprint((c.params, c.opt_state)) == fingerprint((a.params, a.opt_state))
    rows = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]

"""Smoke tests of the runnable scripts in examples/, with tiny settings.

One script runs as a user would run it (a subprocess in a temporary folder); the others
are imported and their ``main(argv)`` called in-process, checking both what they print
and the figures they return. matplotlib is optional: the plot tests expect a PNG when it
is importable and the "skipped plot" note when it is not, and the note is also checked
with matplotlib hidden, so both paths run wherever the suite runs.
"""
from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import functional_cnn as fc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.examples_table import load_example  # noqa: E402  (examples/ is not a package)

EXAMPLES = ROOT / "examples"
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def is_fraction(value: float) -> bool:
    return 0.0 <= value <= 1.0


def assert_png_or_note(path: Path, result_plot, out: str) -> None:
    if HAVE_MATPLOTLIB:
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert result_plot == str(path)
    else:
        assert "skipped plot" in out and "matplotlib" in out
        assert not path.exists()


# ----------------------------------------------------------------------------- seed 000
def test_seed1_cnn_runs_as_a_script(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, str(EXAMPLES / "seed1_cnn.py"), "--epochs", "2", "--limit", "60"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("seed 000's CNN: 48 training digits, 12 test digits")
    for k in (1, 2):  # the notebook's format: sum of losses, running train accuracy
        (line,) = [s for s in lines if s.startswith(f"Epoch {k}:")]
        m = re.fullmatch(rf"Epoch {k}: Loss = (\d+\.\d{{4}}), Accuracy=(\d\.\d{{4}})", line)
        assert m, line
        assert math.isfinite(float(m.group(1))) and is_fraction(float(m.group(2)))
    assert re.search(r"^Test accuracy: \d\.\d{4} \(12 digits\)$", done.stdout, re.M)
    assert list(tmp_path.iterdir()) == []  # writes nothing


def test_seed1_cnn_main_returns_its_figures_and_is_reproducible(capsys):
    example = load_example("seed1_cnn")
    first = example.main(["--epochs", "2", "--limit", "60", "--seed", "3"])
    out = capsys.readouterr().out
    assert [e["epoch"] for e in first["epochs"]] == [1, 2]
    for e in first["epochs"]:
        assert e["loss_sum"] == pytest.approx(48 * e["loss"])  # the printed figure is the epoch's sum
        assert f"Epoch {e['epoch']}: Loss = {e['loss_sum']:.4f}, Accuracy={e['accuracy']:.4f}" in out
    assert first["epochs"][1]["loss"] < first["epochs"][0]["loss"]
    assert is_fraction(first["train_accuracy"]) and is_fraction(first["test_accuracy"])
    again = example.main(["--epochs", "2", "--limit", "60", "--seed", "3"])
    assert again["epochs"] == first["epochs"] and again["test_accuracy"] == first["test_accuracy"]


def test_seed1_cnn_refuses_a_too_small_limit(capsys):
    with pytest.raises(SystemExit) as exc:
        load_example("seed1_cnn").main(["--limit", "5"])
    assert exc.value.code == 2
    assert "--limit must be at least 10 digits, got 5" in capsys.readouterr().err


# ----------------------------------------------------------------------------- seed 002
def test_seed2_binary_prints_the_notebook_lines(capsys):
    result = load_example("seed2_binary").main(["--epochs", "2", "--per-class", "10", "--show", "4"])
    out = capsys.readouterr().out
    for k, error in enumerate(result["errors"], start=1):
        assert f"{k}/2, error={error}\n" in out
        assert math.isfinite(error) and error > 0
    preds = re.findall(r"^pred: ([01]), true: ([01])$", out, re.M)
    assert len(preds) == 4
    assert result["test_n"] == 20 and 0 <= result["test_right"] <= 20
    assert result["test_accuracy"] == result["test_right"] / 20
    assert f"Test accuracy: {result['test_accuracy']:.4f} ({result['test_right']}/20 right)" in out


def test_seed2_binary_draws_balanced_disjoint_zeros_and_ones():
    example = load_example("seed2_binary")
    from functional_cnn.datasets import load_dataset

    data = load_dataset("mnist-sample", seed=0)
    rng = np.random.default_rng(0)
    x_tr, y_tr = example.zeros_and_ones(data.x_train, data.y_train, 7, rng)
    x_te, y_te = example.zeros_and_ones(data.x_test, data.y_test, 7, rng)
    assert np.bincount(y_tr).tolist() == [7, 7] and np.bincount(y_te).tolist() == [7, 7]
    train_rows = {row.tobytes() for row in x_tr}
    assert not any(row.tobytes() in train_rows for row in x_te)


def test_seed2_binary_refuses_more_than_100_per_class(capsys):
    with pytest.raises(SystemExit) as info:
        load_example("seed2_binary").main(["--per-class", "101"])
    assert info.value.code == 2
    assert "--per-class must be in [1, 100]" in capsys.readouterr().err


# ----------------------------------------------------------------------------- LeNet-5
def test_lenet_mnist_checkpoint_and_plot(tmp_path, capsys):
    ckpt, png = tmp_path / "lenet.npz", tmp_path / "curves.png"
    result = load_example("lenet_mnist").main(
        ["--epochs", "1", "--limit", "64", "--checkpoint", str(ckpt), "--plot", str(png)])
    out = capsys.readouterr().out
    (row,) = result["rows"]
    assert re.search(r"^epoch 1/1  loss \d+\.\d{4}  acc [\d.]+%  test_loss [\d.]+  test_acc [\d.]+%", out, re.M)
    assert math.isfinite(row["loss"]) and is_fraction(row["accuracy"]) and is_fraction(result["test_accuracy"])
    assert row["step"] == 2  # 64 images at batch 32
    assert ckpt.is_file() and result["reload_identical"] is True
    assert "reloads bit-identical: True" in out
    assert_png_or_note(png, result["plot"], out)


def test_lenet_mnist_without_matplotlib_notes_the_skipped_plot(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    png = tmp_path / "curves.png"
    result = load_example("lenet_mnist").main(["--epochs", "1", "--limit", "32", "--plot", str(png)])
    out = capsys.readouterr().out
    assert "skipped plot: plotting needs matplotlib" in out
    assert result["plot"] is None and not png.exists()
    assert "checkpoint" not in result


# ----------------------------------------------------------------------------- optimizers
def test_swap_optimizers_table_and_one_plot(tmp_path, capsys):
    png = tmp_path / "opt.png"
    result = load_example("swap_optimizers").main(["--epochs", "1", "--limit", "64", "--plot", str(png)])
    out = capsys.readouterr().out
    assert list(result["table"]) == ["sgd", "momentum", "adam"]
    for name, end in result["table"].items():
        assert math.isfinite(end["loss"]) and math.isfinite(end["test_loss"])
        assert is_fraction(end["accuracy"]) and is_fraction(end["test_accuracy"])
        assert len(result["runs"][name]) == 1
    for label in ("sgd(0.05)", "sgd(0.01, momentum=0.9)", "adam(0.001"):
        assert re.search(rf"^{re.escape(label)}.*\d+\.\d{{4}}\s+[\d.]+%", out, re.M), label
    # the runs differ only by the optimizer, so they differ
    assert len({end["loss"] for end in result["table"].values()}) == 3
    assert_png_or_note(png, result["plot"], out)
    assert [p.name for p in tmp_path.iterdir()] == (["opt.png"] if HAVE_MATPLOTLIB else [])


def test_swap_optimizers_seed1_without_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = load_example("swap_optimizers").main(
        ["--model", "seed1", "--epochs", "1", "--limit", "32", "--plot", str(tmp_path / "x.png")])
    assert "skipped plot" in capsys.readouterr().out and result["plot"] is None
    assert all(math.isfinite(end["loss"]) for end in result["table"].values())


# ----------------------------------------------------------------------------- custom layer
def test_custom_layer_demo(capsys):
    result = load_example("custom_layer").main(["--epochs", "1", "--limit", "60"])
    out = capsys.readouterr().out
    assert result["gradcheck_ok"] is True
    assert 0.0 <= result["max_rel_err"] < 1e-6  # float64 central differences agree with the backward
    assert result["broken_failures"] == ["x"]  # the broken dx is caught; beta's gradient still passes
    assert re.search(r"^x\s+\(2, 3, 4, 4\) 96/96 checked.*ok$", out, re.M)
    assert "caught GradCheckError; failing rows: x" in out
    (epoch,) = result["epochs"]
    assert math.isfinite(epoch["loss"]) and is_fraction(epoch["accuracy"]) and is_fraction(epoch["test_accuracy"])
    assert len(result["betas"]) == 8 and result["betas"] != [1.0] * 8  # beta was trained


def test_custom_swish_checks_on_dense_features_and_refuses_wrong_channels():
    example = load_example("custom_layer")
    rng = np.random.default_rng(1)
    assert fc.check_layer(example.swish(0.7), rng, (5,), batch_size=3).ok   # (N, C) input
    _, params = example.swish().init(rng, (3, 4, 4))
    assert params.beta.dtype == np.float32 and not params.beta.flags.writeable
    with pytest.raises(ValueError, match=r"swish: x must be \(N, 3, \.\.\.\) .* got shape \(2, 4, 4, 4\)"):
        example.swish_forward(params, np.zeros((2, 4, 4, 4), np.float32))
    with pytest.raises(fc.GradCheckError, match="gradient check failed for x"):
        fc.check_layer(fc.Layer("broken", example.swish().init, example.swish_forward,
                                example.swish_backward_broken), rng, (2, 3, 3))

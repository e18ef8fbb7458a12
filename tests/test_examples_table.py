"""The README's examples table is generated from the committed example results, and those results
are what the code gives now.

Accuracies are deterministic (explicit seeds, the same bits at every thread count), so the cheap
examples are rerun here at their full settings and compared exactly with the JSON. Wall times are
only read back, never asserted.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import examples_table  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "examples.json"


@pytest.fixture(scope="module")
def committed():
    return json.loads(RESULTS.read_text())


def test_readme_examples_table_matches_the_committed_results():
    readme = (ROOT / "README.md").read_text()
    assert examples_table.render(readme, RESULTS) == readme, "run: python -m benchmarks.examples_table"


def test_the_table_shows_the_committed_figures(committed):
    """Spot checks that the rendering reads the right fields (a renamed key must not go unnoticed)."""
    text = examples_table.block(committed)
    r = committed["results"]
    assert f"{100 * r['seed1_cnn']['0']['train_accuracy']:.2f}% train accuracy after 5 epochs" in text
    assert f"({r['seed2_binary']['0']['test_right']}/{r['seed2_binary']['0']['test_n']})" in text
    assert f"{100 * r['lenet_mnist']['test_accuracy']:.1f}% test accuracy after 5 epochs" in text
    assert f"{100 * r['cli_resnet']['fashion-mnist']['test_accuracy']:.1f}% on full Fashion-MNIST" in text
    assert f"rel. error {r['custom_layer']['max_rel_err']:.1e}" in text
    assert f"at commit {committed['machine']['commit']}" in text
    assert text.count("\n| `") == 7  # one row per example or command


def test_docs_examples_quotes_the_committed_figures(committed):
    text = (ROOT / "docs" / "examples.md").read_text()
    missing = [f for f in examples_table.docs_figures(committed) if f not in text]
    assert not missing, f"docs/examples.md does not quote these recorded figures: {missing}"


def test_check_notices_a_hand_edited_examples_table(tmp_path, capsys):
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    shutil.copy(RESULTS, tmp_path / "benchmarks" / "results" / "examples.json")
    assert examples_table.main(["--check", "--root", str(tmp_path)]) == 0
    readme = (tmp_path / "README.md").read_text()
    row = readme.index("| `examples/seed1_cnn.py`")
    (tmp_path / "README.md").write_text(readme[:row] + "| `examples/x.py` | hand-edited | 99% |\n" + readme[row:])
    assert examples_table.main(["--check", "--root", str(tmp_path)]) == 1
    assert "examples-table block differs" in capsys.readouterr().err
    assert examples_table.main(["--root", str(tmp_path)]) == 0
    assert examples_table.main(["--check", "--root", str(tmp_path)]) == 0
    assert "hand-edited" not in (tmp_path / "README.md").read_text()


def test_missing_results_are_a_named_error(tmp_path, capsys):
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    assert examples_table.main(["--check", "--root", str(tmp_path)]) == 2
    assert "examples.json" in capsys.readouterr().err


def test_seed1_cnn_at_full_settings_reproduces_the_committed_figures(committed, capsys):
    """Seed notebook 000's recipe, 4,000 steps at batch 1 (a few seconds): every figure, bit for bit, at this
    machine's default thread count (the JSON was recorded with one thread)."""
    result = examples_table.load_example("seed1_cnn").main(["--seed", "0"])
    capsys.readouterr()
    want = committed["results"]["seed1_cnn"]["0"]
    assert result["epochs"] == want["epochs"]
    assert (result["train_accuracy"], result["test_accuracy"], result["test_loss"]) == \
        (want["train_accuracy"], want["test_accuracy"], want["test_loss"])


def test_lenet_and_custom_layer_at_full_settings_reproduce_the_committed_figures(committed, capsys):
    """Two examples whose batches of 32 split across threads on every step (the JSON was recorded on one)."""
    lenet = examples_table.load_example("lenet_mnist").main(["--seed", "0"])
    custom = examples_table.load_example("custom_layer").main(["--seed", "0"])
    capsys.readouterr()
    want = committed["results"]
    drop_time = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert drop_time(lenet["rows"]) == drop_time(want["lenet_mnist"]["rows"])
    assert custom["epochs"] == want["custom_layer"]["epochs"]
    assert custom["betas"] == want["custom_layer"]["betas"]
    assert custom["max_rel_err"] == want["custom_layer"]["max_rel_err"]


def test_seed2_binary_at_full_settings_reproduces_the_committed_figures(committed, capsys):
    result = examples_table.load_example("seed2_binary").main(["--seed", "0"])
    capsys.readouterr()
    want = committed["results"]["seed2_binary"]["0"]
    assert result["errors"] == want["errors"]
    assert (result["test_right"], result["test_n"]) == (want["test_right"], want["test_n"])

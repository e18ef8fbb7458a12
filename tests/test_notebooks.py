"""The notebooks in examples/notebooks: each .py (jupytext percent) is paired with an .ipynb that holds the same
cells, and each runs top to bottom in its quick setting."""
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="the notebook tests need jupytext and nbclient (test extra)")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "examples" / "notebooks"
SCRIPTS = sorted(NOTEBOOKS.glob("*.py"))

#: What each notebook must show when it runs: a text that only appears if its point was made.
EXPECTED = {
    "seed000_rebuilt": ["failing tensors: ['w']", "largest difference from the formula"],
    "seed002_rebuilt": ["saturated hidden units", "test accuracy after", "dense 3380->100"],
    "swap_optimizers": ["first run :", "mean ± std"],
    "write_your_own_layer": ["failing tensors: ['s']", "learned scale per channel"],
}


def test_every_notebook_is_listed():
    assert {p.stem for p in SCRIPTS} == set(EXPECTED), "add the notebook's expected output to EXPECTED"


def _sources(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_paired_ipynb_has_the_same_cells(script):
    paired = script.with_suffix(".ipynb")
    assert paired.exists(), f"{paired.name} is missing: run `jupytext --sync {script.name}`"
    assert _sources(jupytext.read(script)) == _sources(jupytext.read(paired)), (
        f"{paired.name} differs from {script.name}: run `jupytext --sync {script.name}`")


def _text_outputs(nb):
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if "text" in o:
                out.append(o["text"])
            out.extend(str(v) for k, v in o.get("data", {}).items() if k.startswith("text/"))
    return "\n".join(out)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(script, monkeypatch, tmp_path):
    monkeypatch.setenv("FCNN_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    nb = jupytext.read(script)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = _text_outputs(nb)
    for expected in EXPECTED[script.stem]:
        assert expected in text, f"{script.name}: expected {expected!r} in its outputs"

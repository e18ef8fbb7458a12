"""Layer tracking (fit/make_step ``track_layers``, ``train --track-layers``) and ``functional-cnn inspect``."""
import base64
import importlib.util
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import functional_cnn as fc
from functional_cnn.cli import main
from functional_cnn.tracking import LayerNorms, layer_norms, layer_of
from functional_cnn.train import StepRecord, step_rng

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LENET = ["train", "--model", "lenet", "--batch-size", "32", "--epochs", "1", "--quiet", "--no-plot"]
TINY = ["train", "--model", "seed1", "--dataset", "digits", "--batch-size", "64", "--quiet", "--no-plot"]
MISSING_PLOT = 'functional-cnn inspect needs matplotlib: pip install "functional_cnn[plot]"'


def run(argv):
    out = io.StringIO()
    code = main(argv, out=out)
    return code, out.getvalue()


def small_net():
    """conv + batch norm (state fields) + nested serial + dense: every grouping case."""
    return fc.serial(fc.conv2d(3, 3), fc.batch_norm(), fc.relu(), fc.serial(fc.max_pool2d(2), fc.flatten()),
                     fc.dense(4))


def small_data(n=24, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 8, 8), dtype=np.float32), rng.integers(0, 4, n)


# ----------------------------------------------------------------------------- tracking numbers
def test_tracking_equals_norms_computed_by_hand():
    net, opt = small_net(), fc.adam(1e-2)
    x, y = small_data()
    _, params = net.init(np.random.default_rng(0), (1, 8, 8))
    state = opt.init(params)
    new_params, _, m = fc.make_step(net, fc.softmax_cross_entropy, opt, track_layers=True)(
        params, state, (x, y), step_rng(0, 0))

    # the same step by hand
    out, cache = net.forward(params, x, rng=step_rng(0, 0), train=True)
    _, dout = fc.softmax_cross_entropy(out, y)
    grads, _ = net.backward(params, cache, dout)
    updates, _ = opt.update(grads, state, params)

    def norm(arrays):
        return float(np.sqrt(sum(np.sum(np.asarray(a, np.float64) ** 2) for a in arrays)))

    expected = {
        "0": (norm([grads[0].w, grads[0].b]), norm([updates[0].w, updates[0].b]), norm([params[0].w, params[0].b])),
        # batch norm: gamma and beta only; the running statistics are state, with no gradient
        "1": (norm([grads[1].gamma, grads[1].beta]), norm([updates[1].gamma, updates[1].beta]),
              norm([params[1].gamma, params[1].beta])),
        "4": (norm([grads[4].w, grads[4].b]), norm([updates[4].w, updates[4].b]), norm([params[4].w, params[4].b])),
    }
    assert [n.layer for n in m.layer_norms] == ["0", "1", "4"]
    for n in m.layer_norms:
        g, u, p = expected[n.layer]
        np.testing.assert_allclose([n.grad_norm, n.update_norm, n.param_norm, n.ratio], [g, u, p, u / p], rtol=1e-12)
        assert n.grad_norm > 0 and n.update_norm > 0
    # and the update really is what moved the params
    moved = np.asarray(new_params[4].w, np.float64) - np.asarray(params[4].w, np.float64)
    np.testing.assert_allclose(np.linalg.norm(np.concatenate([moved.ravel(), (np.asarray(new_params[4].b, np.float64)
                               - params[4].b).ravel()])), m.layer_norms[2].update_norm, rtol=1e-5)


def test_grouping_by_path_prefix():
    assert layer_of("0.w") == "0" and layer_of("5.0.1.gamma") == "5.0.1" and layer_of("w") == "<root>"
    net = fc.dense(3)
    _, p = net.init(np.random.default_rng(0), (2,))
    zero = fc.tree_map(np.zeros_like, p)
    (n,) = layer_norms(p, p, zero)
    assert n == LayerNorms("<root>", n.grad_norm, 0.0, n.grad_norm, 0.0)
    # a zero param norm with a nonzero update gives an infinite ratio (written as null in layers.jsonl)
    (z,) = layer_norms(zero, p, p)
    assert z.param_norm == 0.0 and z.ratio == float("inf")


def test_tracking_off_changes_nothing_and_costs_nothing():
    net = small_net()
    x, y = small_data(40)
    _, params = net.init(np.random.default_rng(0), (1, 8, 8))

    def train(track):
        recs = list(fc.fit(net, params, fc.softmax_cross_entropy, fc.adam(1e-2), (x, y), epochs=2, batch_size=16,
                           seed=3, track_layers=track))
        return [r for r in recs if isinstance(r, StepRecord)], recs[-1]

    steps_off, last_off = train(False)
    steps_on, last_on = train(True)
    assert fc.fingerprint(last_off.params) == fc.fingerprint(last_on.params)
    assert fc.fingerprint(last_off.opt_state) == fc.fingerprint(last_on.opt_state)
    assert [s.loss for s in steps_off] == [s.loss for s in steps_on]
    assert all(s.layer_norms is None for s in steps_off)
    assert len(steps_on) == 6 and all(len(s.layer_norms) == 3 for s in steps_on)


def test_track_layers_must_be_a_bool():
    x, y = small_data()
    net = fc.serial(fc.flatten(), fc.dense(4))
    _, p = net.init(np.random.default_rng(0), (1, 8, 8))
    with pytest.raises(TypeError, match=r"fit: track_layers must be a bool, got 'yes'"):
        next(fc.fit(net, p, fc.softmax_cross_entropy, fc.sgd(0.1), (x, y), epochs=1, batch_size=8, seed=0,
                    track_layers="yes"))
    with pytest.raises(TypeError, match=r"make_step: track_layers must be a bool, got 1"):
        fc.make_step(net, fc.softmax_cross_entropy, fc.sgd(0.1), track_layers=1)


# ----------------------------------------------------------------------------- train --track-layers
def read_rows(run_dir):
    return [json.loads(line) for line in (run_dir / "layers.jsonl").read_text().splitlines()]


def test_train_track_layers_writes_layers_jsonl_and_resumes(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run(TINY + ["--epochs", "2", "--track-layers", "--out", str(full)])[0] == 0
    rows = read_rows(full)
    steps = [r["step"] for r in rows]
    assert steps == list(range(1, len(rows) + 1)) and len(rows) == 46  # 2 epochs of ceil(1437 / 64) = 23 steps
    assert set(rows[0]["layers"]) == {"0", "4"}
    assert set(rows[0]["layers"]["0"]) == {"grad_norm", "update_norm", "param_norm", "ratio"}
    assert json.loads((full / "config.json").read_text())["track_layers"] is True

    # 1 epoch, then a line past the checkpoint as if killed before the checkpoint, then resume (tracking kept)
    assert run(TINY + ["--epochs", "2", "--track-layers", "--max-steps", "23", "--out", str(cut)])[0] == 0
    with open(cut / "layers.jsonl", "a") as f:
        f.write(json.dumps({"step": 24, "epoch": 2, "layers": {"0": {"grad_norm": -1.0}}}) + "\n")
    code, text = run(["train", "--resume", str(cut), "--max-steps", "46", "--quiet", "--no-plot"])
    assert code == 0 and "resuming" in text
    assert read_rows(cut) == rows  # the stale line is gone, and the numbers are those of the uninterrupted run


def test_train_without_tracking_writes_no_layers_file(tmp_path):
    out = tmp_path / "run"
    assert run(TINY + ["--max-steps", "2", "--out", str(out)])[0] == 0
    assert not (out / "layers.jsonl").exists()
    assert json.loads((out / "config.json").read_text())["track_layers"] is False


# ----------------------------------------------------------------------------- inspect
STEMS = {"curves", "filters", "filter_norms", "feature_maps_0", "feature_maps_1", "feature_maps_2", "confusion",
         "misclassified", "layer_norms"}


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    pytest.importorskip("matplotlib")
    run_dir = tmp_path_factory.mktemp("inspect") / "lenet"
    assert run(LENET + ["--max-steps", "4", "--track-layers", "--out", str(run_dir)])[0] == 0
    code, text = run(["inspect", str(run_dir)])
    assert code == 0, text
    return run_dir, text


def test_inspect_writes_every_png_and_a_report_that_embeds_them(lenet_run):
    run_dir, text = lenet_run
    assert f"wrote 9 figures to {run_dir / 'inspect'}" in text and "note:" not in text
    pngs = {p.stem: p.read_bytes() for p in (run_dir / "inspect").glob("*.png")}
    assert set(pngs) == STEMS
    assert all(data[:8] == PNG_MAGIC for data in pngs.values())
    page = (run_dir / "report.html").read_text()
    embedded = dict(re.findall(r"<img src='data:image/png;base64,([A-Za-z0-9+/=]+)' alt='(\w+)'>", page))
    assert {alt: base64.b64decode(b64) for b64, alt in embedded.items()} == pngs
    assert "src='http" not in page and "src=\"http" not in page  # self-contained
    assert "conv2d(out_channels=6, kernel_size=5x5, padding=2x2)" in page and "61,706" in page  # fc.summary


def _has_text(fig, kind):
    """A suptitle/supxlabel/supylabel on the figure or a title/xlabel/ylabel on some axes."""
    sup = {"title": "_suptitle", "xlabel": "_supxlabel", "ylabel": "_supylabel"}[kind]
    if getattr(fig, sup, None) is not None and getattr(fig, sup).get_text():
        return True
    return any(getattr(ax, f"get_{kind}")() for ax in fig.axes)


def test_every_figure_has_a_title_and_axis_labels(lenet_run):
    import matplotlib.pyplot as plt

    from functional_cnn.inspect_report import load_run, run_figures

    run_dir, _ = lenet_run
    figures = run_figures(load_run(run_dir))
    assert set(figures) == STEMS
    for stem, (fig, caption) in figures.items():
        assert _has_text(fig, "title") and _has_text(fig, "xlabel") and _has_text(fig, "ylabel"), stem
        assert caption.strip()
    # colour bars: the filter grid, each confusion panel, each feature-map row
    assert any(ax.get_label() == "<colorbar>" for ax in figures["filters"][0].axes)
    assert sum(ax.get_label() == "<colorbar>" for ax in figures["confusion"][0].axes) == 2
    for fig, _ in figures.values():
        plt.close(fig)


def test_inspect_without_tracking_prints_and_shows_the_hint(tmp_path):
    pytest.importorskip("matplotlib")
    run_dir = tmp_path / "seed1"
    assert run(TINY + ["--max-steps", "2", "--out", str(run_dir)])[0] == 0
    code, text = run(["inspect", str(run_dir), "--images", "1"])
    assert code == 0
    assert "note: This run was trained without layer tracking" in text and "train --track-layers" in text
    assert "functional-cnn train --track-layers" in (run_dir / "report.html").read_text()
    stems = {p.stem for p in (run_dir / "inspect").glob("*.png")}
    assert stems == {"curves", "filters", "feature_maps_0", "confusion", "misclassified"}  # one conv: no norms bars


@pytest.mark.parametrize("make, needle", [
    (lambda d: None, "is not a run directory (no such folder)"),
    (lambda d: d.mkdir(), "has no checkpoint.npz; train it first"),
])
def test_inspect_bad_run_dir_one_line_exit_2(tmp_path, capsys, make, needle):
    target = tmp_path / "run"
    make(target)
    code = main(["inspect", str(target)], out=io.StringIO())
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0] and err[0].startswith("functional-cnn inspect: error:")
    assert not (target / "report.html").exists() and not (target / "inspect").exists()


def test_inspect_without_matplotlib_says_which_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code = main(["inspect", str(tmp_path)], out=io.StringIO())
    assert code == 2 and capsys.readouterr().err.strip().splitlines() == [MISSING_PLOT]
    assert list(tmp_path.iterdir()) == []


def test_figure_functions_without_matplotlib_raise_plot_unavailable(monkeypatch):
    from functional_cnn.inspection import confusion_figure
    from functional_cnn.reporting import PlotUnavailable

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotUnavailable, match=r'needs matplotlib: pip install "functional_cnn\[plot\]"'):
        confusion_figure([0, 1], [1, 1], ["a", "b"])


# ----------------------------------------------------------------------------- the pieces
def test_confusion_matrix_counts_and_checks_labels():
    from functional_cnn.inspection import confusion_matrix

    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    with pytest.raises(ValueError, match=r"confusion_matrix: labels must lie in \[0, 3\), got 0\.\.3"):
        confusion_matrix([0, 3], [0, 1], 3)


def test_feature_maps_walk_nested_combinators():
    from functional_cnn.inspection import conv_layers, feature_maps

    net = fc.serial(fc.conv2d(2, 3), fc.relu(), fc.serial(fc.max_pool2d(2), fc.residual(fc.conv2d(2, 3, padding=1))),
                    fc.flatten(), fc.dense(3))
    _, p = net.init(np.random.default_rng(0), (1, 10, 10))
    x = np.random.default_rng(1).random((2, 1, 10, 10), dtype=np.float32)
    maps = feature_maps(net, p, x)
    assert [(path, y.shape) for path, _, y in maps] == [("0", (2, 2, 8, 8)), ("2.0", (2, 2, 4, 4)),
                                                        ("2.1.0", (2, 2, 4, 4))]
    # the recorded output is the one the layer computes on what reaches it
    np.testing.assert_array_equal(maps[0][2], net.children[0].forward(p[0], x)[0])
    assert [path for path, _, _ in conv_layers(net, p)] == ["0", "2.1.0"]


def test_misclassified_titles_rank_by_confidence():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from functional_cnn.inspection import misclassified_figure

    x = np.zeros((4, 1, 4, 4), np.float32)
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3]])
    fig = misclassified_figure(x, np.array([1, 1, 0, 0]), probs, ["zero", "one"])
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["pred zero (90%)\ntrue one", "pred one (80%)\ntrue zero"]
    plt.close(fig)


def test_vanishing_gradients_example_runs(tmp_path):
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("vanishing", ROOT / "examples" / "vanishing_gradients.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "v.png"
    result = module.main(["--epochs", "1", "--per-class", "5", "--out", str(out)])
    assert out.read_bytes()[:8] == PNG_MAGIC and result["plot"] == str(out)
    assert set(result["medians"]) == {"notebook", "glorot"}
    assert all(set(m) == {"0", "1", "4", "6"} and all(v > 0 for v in m.values()) for m in result["medians"].values())
    fig = result["figure"]
    assert len([ax for ax in fig.axes if ax.get_yscale() == "log"]) == 4

"""The benchmark keeps working and its tables stay in sync with the committed results.

No speed is asserted anywhere: timings depend on the machine and its load.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import bench, readme_table, workers  # noqa: E402
from benchmarks.notebook_baseline import Seed000Net, Seed002Net  # noqa: E402

SIDE_KEYS = {"samples_per_s", "samples_per_s_runs", "samples_per_s_best", "samples_per_cpu_s", "peak_rss_mb",
             "minflt_per_step", "first_loss"}


# ----------------------------------------------------------------------------- a real (tiny) run
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, "benchmarks/bench.py", "--workloads", "seed000-b1-train", "--threads", "1",
           "--repeats", "2", "--seconds", "0.01", "--out-dir", str(out), "--prefix", "t-"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    return done, out / "t-threads1.json"


def test_tiny_run_prints_a_table_and_writes_json(tiny_run):
    done, path = tiny_run
    assert done.returncode == 0, done.stderr
    assert "| seed000-b1-train |" in done.stdout
    payload = json.loads(path.read_text())
    assert {"machine", "method", "settings", "rows", "runs", "loadavg_start", "loadavg_end", "started"} <= set(payload)
    assert {"cpu", "numpy", "blas", "torch", "commit"} <= set(payload["machine"])
    assert payload["machine"]["threads"] == 1
    [row] = payload["rows"]
    assert row["workload"] == "seed000-b1-train" and row["batch"] == 1 and row["mode"] == "train"
    for impl in ("fcnn", "torch", "notebook"):
        assert SIDE_KEYS <= set(row[impl]), (impl, sorted(SIDE_KEYS - set(row[impl])))
        assert row[impl]["samples_per_s"] > 0 and row[impl]["peak_rss_mb"] > 0
        assert len(row[impl]["samples_per_s_runs"]) == 2
    assert row["ratio_torch"] == pytest.approx(row["fcnn"]["samples_per_s"] / row["torch"]["samples_per_s"])
    assert row["ratio_notebook"] == pytest.approx(row["fcnn"]["samples_per_s"] / row["notebook"]["samples_per_s"])
    assert len(row["ratio_torch_rounds"]) == 2
    # Same data, an untrained 10-class net: every first loss is near log(10).
    assert all(1.5 < row[i]["first_loss"] < 3.5 for i in ("fcnn", "torch", "notebook"))


def test_bad_workload_pattern_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--workloads", "lenet-*,resnet-*"])
    assert exc.value.code == 2
    assert "'resnet-*' matches none of" in capsys.readouterr().err


def test_bad_thread_count_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--threads", "0", "--no-write"])
    assert exc.value.code == 2
    assert "--threads: expected positive integers" in capsys.readouterr().err


# ----------------------------------------------------------------------------- planning and summaries
def test_select_matches_patterns_in_table_order():
    assert bench.select("*-infer,lenet-padded-b64-train") == [
        "lenet-padded-b64-train", "lenet-padded-b1000-infer", "lenet-unpadded-b1000-infer"]
    assert bench.select(None) == list(bench.WORKLOADS)
    with pytest.raises(ValueError, match="'nope' matches none of"):
        bench.select("nope")


def test_rounds_alternate_the_order_and_time_the_notebook_once_per_thread_count():
    wl = ["seed000-b1-train", "seed000-b128-train", "fashion-lenet-e2e"]
    even, odd = bench.plan_round(wl, [1, 2], 0, 0.1), bench.plan_round(wl, [1, 2], 1, 0.1)
    assert [s["impl"] for s in even[:3]] == ["fcnn", "torch", "notebook"]
    assert [s["impl"] for s in odd[:3]] == ["torch", "fcnn", "notebook"]
    assert sum(s["impl"] == "notebook" for s in even) == 2  # one per thread count
    assert all(s["mode"] != "e2e" for s in even + odd)
    e2e = bench.plan_e2e(wl, [1, 2], 3)
    assert [(s["impl"], s["threads"], s["epochs"]) for s in e2e] == [
        ("fcnn", 1, 3), ("torch", 1, 3), ("torch", 2, 3), ("fcnn", 2, 3)]


def _fake(impl, workload, rate, rnd=None, **extra):
    r = {"impl": impl, "workload": workload, "threads": 1, "samples_per_s": rate, "samples_per_cpu_s": rate,
         "peak_rss_mb": 50.0, "minflt_per_step": 3.0, "first_loss": 2.3, **extra}
    return r if rnd is None else {**r, "round": rnd}


def test_summarize_takes_medians_and_ratios():
    runs = [_fake("fcnn", "seed000-b1-train", v, i) for i, v in enumerate([100.0, 300.0, 200.0])]
    runs += [_fake("torch", "seed000-b1-train", v, i) for i, v in enumerate([100.0, 100.0, 400.0])]
    runs += [_fake("notebook", "seed000-notebook", 4.0, 0), {"error": "boom", "impl": "torch", "threads": 1}]
    runs += [_fake("fcnn", "fashion-lenet-e2e", 1000.0, time_s=180.0, test_accuracy=0.88),
             _fake("torch", "fashion-lenet-e2e", 500.0, time_s=360.0, test_accuracy=0.87)]
    rows = {r["workload"]: r for r in bench.summarize(runs, 1)}
    assert set(rows) == {"seed000-b1-train", "fashion-lenet-e2e"}
    row = rows["seed000-b1-train"]
    assert row["fcnn"]["samples_per_s"] == 200.0 and row["fcnn"]["samples_per_s_best"] == 300.0
    assert row["ratio_torch"] == 2.0 and row["ratio_notebook"] == 50.0
    assert row["ratio_torch_rounds"] == [1.0, 3.0, 0.5]
    e2e = rows["fashion-lenet-e2e"]
    assert e2e["ratio_torch"] == 2.0 and e2e["fcnn"]["time_s"] == 180.0 and e2e["ratio_notebook"] is None
    assert "| seed000-b1-train | 200 | 100 | 2.00 | 1.5 | 50 |" in bench.table([row])


def test_merge_keeps_rows_this_run_did_not_measure():
    old = {"rows": [{"workload": "fashion-lenet-e2e"}, {"workload": "seed000-b1-train", "old": True}],
           "runs": [{"workload": "fashion-lenet-e2e"}, {"workload": "seed000-b1-train"}]}
    new = {"rows": [{"workload": "seed000-b1-train"}], "runs": [{"workload": "seed000-b1-train", "new": 1}],
           "settings": {"workloads": ["seed000-b1-train"]}}
    merged = bench.merge(old, new)
    assert [r["workload"] for r in merged["rows"]] == ["seed000-b1-train", "fashion-lenet-e2e"]
    assert "old" not in merged["rows"][0]
    assert len(merged["runs"]) == 2 and merged["settings"]["workloads"] == ["seed000-b1-train", "fashion-lenet-e2e"]


# ----------------------------------------------------------------------------- generated tables
def test_readme_and_performance_tables_match_the_committed_results():
    new = readme_table.render((ROOT / "README.md").read_text(), (ROOT / "docs/performance.md").read_text())
    assert (ROOT / "README.md").read_text() == new["README.md"], "run: python -m benchmarks.readme_table"
    assert (ROOT / "docs/performance.md").read_text() == new["docs/performance.md"], \
        "run: python -m benchmarks.readme_table"


def test_check_notices_a_hand_edited_table(tmp_path):
    for name in ("README.md", "docs/performance.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "benchmarks" / "results", tmp_path / "benchmarks" / "results")
    assert readme_table.main(["--check", "--root", str(tmp_path)]) == 0
    readme = (tmp_path / "README.md").read_text()
    start = readme.index("<!-- speed-table:start -->")
    row = readme.index("| LeNet-5", start)
    (tmp_path / "README.md").write_text(readme[:row] + "| LeNet-5, hand-edited | 1 | 1 | **9.99x** |\n" + readme[row:])
    assert readme_table.main(["--check", "--root", str(tmp_path)]) == 1
    assert readme_table.main(["--root", str(tmp_path)]) == 0
    assert readme_table.main(["--check", "--root", str(tmp_path)]) == 0
    assert "hand-edited" not in (tmp_path / "README.md").read_text()


def test_missing_markers_are_an_error():
    with pytest.raises(ValueError, match="README.md has no <!-- speed-table:start --> ... <!-- speed-table:end -->"):
        readme_table.replace_block("# no markers\n", "speed-table", "x", "README.md")


# ----------------------------------------------------------------------------- the workloads themselves
@pytest.mark.parametrize("net", workers.NETS)
def test_both_frameworks_build_the_same_network(net):
    torch = pytest.importorskip("torch")
    layer, params = workers.init_params(net, 0)
    model = workers.build_torch(net, 0)
    fc_shapes = sorted(leaf.shape for p in params for leaf in (getattr(p, "w", None), getattr(p, "b", None))
                       if leaf is not None)
    torch_shapes = sorted(tuple(t.shape) if t.ndim != 2 else tuple(t.shape[::-1]) for t in model.parameters())
    assert fc_shapes == torch_shapes
    x, _ = workers.make_data(2, 0)
    with torch.no_grad():
        assert tuple(model(torch.from_numpy(x)).shape) == layer.forward(params, x)[0].shape == (2, 10)


@pytest.mark.parametrize("impl", ["fcnn", "torch"])
def test_end_to_end_runs_report_time_accuracy_and_faults(impl, monkeypatch):
    if impl == "torch":
        pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    data = (rng.random((96, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 96),
            rng.random((40, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 40))
    monkeypatch.setattr(workers, "fashion_data", lambda: data)
    res = (workers.e2e_fcnn("seed000", 2, 64, 0) if impl == "fcnn" else
           workers.e2e_torch("seed000", 2, 64, 0, threads=1))
    assert res["steps"] == 4 and res["train_examples"] == 192  # 2 epochs of ceil(96 / 64) steps
    assert 0.0 <= res["test_accuracy"] <= 1.0 and res["test_accuracy"] * 40 == round(res["test_accuracy"] * 40)
    assert res["time_s"] > 0 and res["minflt_per_step"] >= 0 and np.isfinite(res["train_loss"])


def test_notebook_000_forward_equals_functional_cnn_on_copied_weights():
    layer, params = workers.init_params("seed000", 0)
    x, _ = workers.make_data(3, 0)
    logits, _ = layer.forward(params, x)
    expect = np.exp(logits - logits.max(axis=1, keepdims=True))
    expect /= expect.sum(axis=1, keepdims=True)
    net = Seed000Net(params[0].w, params[0].b, params[4].w, params[4].b)
    got = np.stack([net.predict(xi) for xi in x])
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-6)


def test_notebook_002_forward_equals_functional_cnn_on_copied_weights():
    from functional_cnn.models import seed2_net

    layer = seed2_net(init="notebook")
    _, params = layer.init(np.random.default_rng(0), workers.IN_SHAPE)
    x, _ = workers.make_data(2, 0)
    y, _ = layer.forward(params, x)
    net = Seed002Net(params[0].w, params[1].b, params[4].w, params[4].b, params[6].w, params[6].b)
    got = np.stack([net.predict(xi)[:, 0] for xi in x])
    np.testing.assert_allclose(got, y, rtol=1e-4, atol=1e-6)


def test_notebook_loop_trains_in_place():
    net = Seed000Net.random(np.random.default_rng(0))
    x, labels = workers.make_data(4, 0)
    before = net.dense.weights.copy()
    total = net.train(x, labels, 0.01)
    assert np.isfinite(total) and not np.array_equal(before, net.dense.weights)


def test_step_flops_counts_convs_and_denses():
    flops = workers.step_flops("seed000", 2)
    conv = 2 * 4 * 26 * 26 * 9
    dense = 2 * 676 * 10
    assert flops["infer"] == 2 * (conv + dense)
    assert flops["train"] == 3 * flops["infer"]


def test_profile_layers_reports_every_layer(capsys):
    from benchmarks import profile_layers

    total, rows = profile_layers.profile("seed000", 2, calls=2)
    assert [name.split("(")[0] for name, _, _ in rows] == ["conv2d", "relu", "max_pool2d", "flatten", "dense"]
    assert total > 0 and all(f > 0 and b > 0 for _, f, b in rows)
    assert profile_layers.main(["seed000", "1", "--calls", "2"]) == 0
    assert "| conv2d(out_channels=4, kernel_size=3x3) |" in capsys.readouterr().out


def test_handoff_probe_prints_one_row_per_size(capsys):
    from benchmarks import handoff

    assert handoff.main(["--repeats", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and " MB |" in line]
    assert [r.split(" | ")[0] for r in rows] == [f"| {mb:g} MB" for mb in handoff.SIZES_MB]

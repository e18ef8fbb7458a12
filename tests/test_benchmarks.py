"""The benchmark script keeps working: a tiny run, its JSON, and the baseline's faithfulness.

No speed is asserted anywhere: timings depend on the machine and its load.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import bench, workers  # noqa: E402
from benchmarks.notebook_baseline import Seed000Net, Seed002Net  # noqa: E402

ROW_KEYS = {"impl", "net", "batch", "mode", "samples_per_s", "samples_per_s_runs", "samples_per_s_best",
            "samples_per_cpu_s", "ratio_torch",
            "ratio_notebook",
            "peak_rss_mb", "rss_before_mb", "gflops", "pct_matmul_peak", "first_loss"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "result.json"
    cmd = [sys.executable, "benchmarks/bench.py", "--quick", "--repeats", "1", "--seconds", "0.01",
           "--impls", "fcnn,notebook", "--nets", "seed1", "--json", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    return done, out


def test_tiny_run_prints_a_table_and_writes_json(tiny_run):
    done, out = tiny_run
    assert done.returncode == 0, done.stderr
    assert "| impl | net | batch |" in done.stdout
    payload = json.loads(out.read_text())
    assert {"machine", "matmul_peak_gflops", "rows", "runs", "import_time", "method"} <= set(payload)
    assert {"cpu", "numpy", "blas", "threads", "torch"} <= set(payload["machine"])
    assert payload["matmul_peak_gflops"] > 0
    rows = payload["rows"]
    assert {(r["impl"], r["batch"]) for r in rows} == {("fcnn", 1), ("fcnn", 128), ("notebook", 8)}
    for row in rows:
        assert ROW_KEYS <= set(row), sorted(ROW_KEYS - set(row))
        assert row["samples_per_s"] > 0 and row["peak_rss_mb"] > 0
    fcnn = [r for r in rows if r["impl"] == "fcnn"]
    assert all(r["ratio_notebook"] > 0 and r["ratio_torch"] is None for r in fcnn)


def test_implementations_start_from_the_same_network(tiny_run):
    done, out = tiny_run
    rows = json.loads(out.read_text())["rows"]
    losses = {r["impl"]: r["first_loss"] for r in rows if r["batch"] in (1, 8)}
    # Different batches of the same data: both losses are ~log(10) for an untrained net.
    assert all(1.5 < v < 3.5 for v in losses.values()), losses


def test_bad_implementation_name_is_refused(capsys):
    with pytest.raises(SystemExit) as info:
        bench.main(["--impls", "fcnn,jax"])
    assert info.value.code == 2 and "jax" in capsys.readouterr().err


def test_notebook_000_forward_equals_functional_cnn_on_copied_weights():
    layer, params = workers.init_params("seed1", 0)
    x, _ = workers.make_data("seed1", 3, 0)
    logits, _ = layer.forward(params, x)
    expect = np.exp(logits - logits.max(axis=1, keepdims=True))
    expect /= expect.sum(axis=1, keepdims=True)
    net = Seed000Net(params[0].w, params[0].b, params[4].w, params[4].b)
    got = np.stack([net.predict(xi) for xi in x])
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-6)


def test_notebook_002_forward_equals_functional_cnn_on_copied_weights():
    layer, params = workers.init_params("seed2", 0)
    x, _ = workers.make_data("seed2", 2, 0)
    y, _ = layer.forward(params, x)
    net = Seed002Net(params[0].w, params[1].b, params[4].w, params[4].b, params[6].w, params[6].b)
    got = np.stack([net.predict(xi)[:, 0] for xi in x])
    np.testing.assert_allclose(got, y, rtol=1e-4, atol=1e-6)


def test_notebook_loop_trains_in_place():
    net = Seed000Net.random(np.random.default_rng(0))
    x, labels = workers.make_data("seed1", 4, 0)
    before = net.dense.weights.copy()
    total = net.train(x, labels, 0.01)
    assert np.isfinite(total) and not np.array_equal(before, net.dense.weights)


def test_step_flops_counts_convs_and_denses():
    flops = workers.step_flops("seed1", 2)
    conv = 2 * 4 * 26 * 26 * 9
    dense = 2 * 676 * 10
    assert flops["infer"] == 2 * (conv + dense)
    assert flops["train"] == 3 * flops["infer"]


def test_summarize_computes_medians_and_ratios():
    runs = [
        {"impl": i, "net": "seed1", "batch": b, "mode": "train", "samples_per_s": v, "peak_rss_mb": 50.0,
         "rss_before_mb": 40.0, "first_loss": 2.3}
        for i, b, v in [("fcnn", 1, 100.0), ("fcnn", 1, 300.0), ("fcnn", 1, 200.0), ("torch", 1, 100.0),
                        ("notebook", 8, 4.0)]
    ]
    rows = {(r["impl"], r["batch"]): r for r in bench.summarize(runs, peak=100.0)}
    fcnn = rows[("fcnn", 1)]
    assert fcnn["samples_per_s"] == 200.0 and fcnn["samples_per_s_runs"] == [100.0, 300.0, 200.0]
    assert fcnn["ratio_torch"] == 2.0 and fcnn["ratio_notebook"] == 50.0
    assert fcnn["pct_matmul_peak"] == pytest.approx(100 * fcnn["gflops"] / 100.0)
    assert fcnn["samples_per_s_best"] == 300.0
    assert "| fcnn | seed1 | 1 | train | 200 | 2.00 | 50 | 300 | - |" in bench.table(list(rows.values()))


def test_profile_layers_reports_every_layer(capsys):
    from benchmarks import profile_layers

    total, rows = profile_layers.profile("seed1", 2, calls=2)
    assert [name.split("(")[0] for name, _, _ in rows] == ["conv2d", "relu", "max_pool2d", "flatten", "dense"]
    assert total > 0 and all(f > 0 and b > 0 for _, f, b in rows)
    assert profile_layers.main(["seed1", "1", "--calls", "2"]) == 0
    assert "| conv2d(out_channels=4, kernel_size=3x3) |" in capsys.readouterr().out

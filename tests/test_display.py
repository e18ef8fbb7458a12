"""Notebook display: short text reprs and HTML tables for layers, params, summaries, reports and records."""
import re

import attrs
import numpy as np
import pytest

import functional_cnn as fc
from functional_cnn import display
from functional_cnn.layers import Conv2DParams
from functional_cnn.models import lenet5
from functional_cnn.train import EpochRecord, EvalResult, StepRecord


def _rows(html):
    """The cell texts of each body row of an HTML table."""
    body = html.split("<tbody>", 1)[1]
    return [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body)]


@pytest.fixture(scope="module")
def lenet():
    net = lenet5()
    _, params = net.init(np.random.default_rng(0), (1, 28, 28))
    return net, params


def test_summary_html_has_a_row_per_layer_and_the_total(lenet):
    net, _ = lenet
    s = fc.summary(net, (1, 28, 28), batch_size=8)
    rows = _rows(s._repr_html_())
    assert len(rows) == len(s.rows) + 1
    for row, srow in zip(rows, s.rows):
        assert row[0].strip("\u00a0") == srow.name.replace("<", "&lt;").replace(">", "&gt;")
        assert row[1] == str((8,) + tuple(srow.out_shape))
        assert row[2] == f"{srow.params:,}"
    assert rows[-1][0] == "total" and rows[-1][2] == f"{s.total_params:,}"


def test_layer_html_nests_combinators_and_shows_leaf_configs():
    net = fc.serial(fc.conv2d(4, 3), fc.residual(fc.serial(fc.dense(3), fc.relu())), fc.flatten())
    html = net._repr_html_()
    for leaf in ("conv2d(out_channels=4, kernel_size=3x3)", "dense(out_features=3)", "relu()", "flatten()"):
        assert f"<li>{leaf}</li>" in html
    # serial > residual > serial > dense: dense sits four lists deep
    depth = html[: html.index("dense(")].count("<ul>") - html[: html.index("dense(")].count("</ul>")
    assert depth == 4


def test_layer_html_escapes_names():
    layer = fc.Layer("a<b>", lambda rng, s, dtype=None: (s, None), lambda p, x, **k: (x, None),
                     lambda p, c, dy: (None, dy))
    html = layer._repr_html_()
    assert "a&lt;b&gt;" in html and "<b>(" not in html


def test_params_html_shows_shape_dtype_norm_min_max_per_array(lenet):
    _, params = lenet
    rows = _rows(display.tree_html(params))
    paths = fc.tree_paths(params)
    assert [r[0] for r in rows] == paths
    for row, leaf in zip(rows, fc.tree_leaves(params)):
        assert row[1] == str(leaf.shape) and row[2] == str(leaf.dtype)
        assert float(row[3]) == pytest.approx(np.linalg.norm(leaf.astype(np.float64).ravel()), rel=1e-3)
        assert float(row[4]) == pytest.approx(float(leaf.min()), rel=1e-3, abs=1e-6)
        assert float(row[5]) == pytest.approx(float(leaf.max()), rel=1e-3, abs=1e-6)


def test_params_html_never_prints_the_values():
    small = Conv2DParams(np.full((2, 1, 3, 3), 0.123456, np.float32), np.zeros(2, np.float32))
    big = Conv2DParams(np.full((64, 32, 3, 3), 0.123456, np.float32), np.zeros(64, np.float32))
    assert abs(len(display.tree_html(big)) - len(display.tree_html(small))) < 40
    assert "0.123456" not in display.tree_html(big)


def test_short_repr_of_a_params_record():
    p = Conv2DParams(np.zeros((6, 1, 5, 5), np.float32), np.zeros(6, np.float32))
    assert display.tree_repr(p) == "Conv2DParams(w=float32[6, 1, 5, 5], b=float32[6])"


def test_gradcheck_html_marks_failing_rows():
    good = fc.conv2d(2, 3)

    def flipped(params, cache, dy):
        grads, dx = good.backward(params, cache, dy)
        return Conv2DParams(grads.w[:, :, ::-1, ::-1], grads.b), dx

    with pytest.raises(fc.GradCheckError) as info:
        fc.check_layer(attrs.evolve(good, backward=flipped), np.random.default_rng(0), (1, 5, 5))
    report = info.value.report
    html = report._repr_html_()
    failing = re.findall(r'<tr class="fail">(.*?)</tr>', html)
    assert len(failing) == 1 and "<td>w</td>" in failing[0] and "FAIL" in failing[0]
    assert len(_rows(html)) == len(report.rows)
    assert "FAILED: w" in html and "FAILED: w" in repr(report)


def test_records_from_fit_and_evaluate_render_their_fields(lenet):
    _, params = lenet
    ev = EvalResult(0.25, 0.875, 64)
    assert _rows(ev._repr_html_()) == [["loss", "0.25"], ["accuracy", "0.875"], ["n", "64"]]
    step = StepRecord(epoch=1, step=3, batch=2, batches_per_epoch=10, loss=1.5, accuracy=None, learning_rate=0.01)
    assert ["accuracy", "-"] in _rows(step._repr_html_())
    epoch = EpochRecord(epoch=1, step=10, loss=0.5, accuracy=0.9, learning_rate=0.01, seconds=1.0, test_loss=None,
                        test_accuracy=None, params=params, opt_state=None)
    cells = dict(_rows(epoch._repr_html_()))
    n = sum(leaf.size for leaf in fc.tree_leaves(params))
    assert cells["params"] == f"{len(fc.tree_leaves(params))} arrays, {n:,} values"


def test_params_and_grads_records_repr_by_shape_and_render_as_tables(lenet):
    net, params = lenet
    x = np.random.default_rng(1).random((2, 1, 28, 28), dtype=np.float32)
    out, cache = net.forward(params, x)
    grads, _ = net.backward(params, cache, np.ones_like(out))
    for record in (params[0], grads[0], params[-1], grads[-1]):
        w, b = record.w, record.b
        assert repr(record) == (f"{type(record).__name__}(w={w.dtype}[{', '.join(map(str, w.shape))}], "
                                f"b={b.dtype}[{b.shape[0]}])")
        rows = _rows(record._repr_html_())
        assert [r[0] for r in rows] == ["w", "b"] and rows[0][1] == str(w.shape)
        assert float(rows[0][3]) == pytest.approx(np.linalg.norm(w.astype(np.float64).ravel()), rel=1e-3)


@pytest.mark.parametrize("name", ["lenet", "seed1", "seed2", "resnet-small"])
def test_no_model_params_repr_prints_array_values(name):
    """Every params record in the CLI models (conv, dense, bias, batch norm) shows shapes, not numbers."""
    from functional_cnn.models import build_model

    _, params = build_model(name, 10).init(np.random.default_rng(0), (1, 28, 28))
    text = repr(params)
    records = list(_records(params))
    assert records, "the model has no params records"
    assert "array(" not in text and len(text) < 150 * len(records)
    for record in records:
        assert repr(record).startswith(type(record).__name__ + "(") and "[" in repr(record)


def _records(tree):
    """The attrs records inside a params tree."""
    if attrs.has(type(tree)):
        yield tree
    elif isinstance(tree, (tuple, list)):
        for item in tree:
            yield from _records(item)

"""ONNX export: every layer and model against ``net.forward(train=False)``, dynamic batch, errors, the CLI."""
import inspect
import io
import os
import subprocess
import sys

import attrs
import numpy as np
import pytest

import functional_cnn as fc
from functional_cnn import onnx_export
from functional_cnn.cli import main
from functional_cnn.models import MODELS, build_model
from functional_cnn.onnx_export import OnnxExportError, OnnxUnavailable, export_onnx, register_onnx_exporter, to_onnx
from functional_cnn.tree import tree_flatten, tree_leaves_with_paths, tree_unflatten

onnx = pytest.importorskip("onnx")
from onnx.reference import ReferenceEvaluator  # noqa: E402 (after the importorskip)

TOL = dict(rtol=1e-5, atol=1e-5)


def _realistic(params, rng):
    """Batch-norm running statistics away from their init (mean 0, var 1), so inference form is tested."""
    leaves, treedef = tree_flatten(params)
    paths = [p for p, _ in tree_leaves_with_paths(params)]
    out = []
    for path, leaf in zip(paths, leaves):
        field = path.rsplit(".", 1)[-1]
        if field == "var":
            leaf = rng.uniform(0.5, 2.0, leaf.shape).astype(leaf.dtype)
        elif field in ("mean", "beta"):
            leaf = rng.normal(0.0, 0.5, leaf.shape).astype(leaf.dtype)
        elif field == "gamma":
            leaf = rng.uniform(0.5, 1.5, leaf.shape).astype(leaf.dtype)
        elif field == "b":
            leaf = rng.normal(0.0, 0.1, leaf.shape).astype(leaf.dtype)  # biases init to zero: make them count
        out.append(leaf)
    return tree_unflatten(treedef, out)


def _setup(net, in_shape, batch=2, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    _, params = net.init(rng, in_shape, dtype)
    params = _realistic(params, rng)
    shapes = in_shape if isinstance(in_shape[0], tuple) else (in_shape,)
    xs = [rng.normal(size=(batch,) + s).astype(dtype) for s in shapes]
    return params, xs


def _expected(net, params, xs):
    y, _ = net.forward(params, tuple(xs) if len(xs) > 1 else xs[0], train=False)
    return list(y) if isinstance(y, tuple) else [y]


# (id, network, per-example input shape): every layer and every option the exporter translates.
CASES = [
    ("conv2d", lambda: fc.conv2d(3, 3), (2, 6, 7)),
    ("conv2d-stride2", lambda: fc.conv2d(3, 3, stride=2), (2, 7, 8)),
    ("conv2d-stride-pair", lambda: fc.conv2d(2, (2, 3), stride=(1, 2)), (2, 6, 7)),
    ("conv2d-pad-int", lambda: fc.conv2d(3, 3, padding=1), (2, 5, 6)),
    ("conv2d-pad-pair", lambda: fc.conv2d(3, 3, padding=(2, 1)), (2, 5, 6)),
    ("conv2d-valid", lambda: fc.conv2d(3, 3, padding="valid"), (2, 5, 6)),
    ("conv2d-same-odd-extra", lambda: fc.conv2d(3, 2, padding="same"), (2, 5, 6)),  # 1 extra row/col at the end
    ("conv2d-same-k4", lambda: fc.conv2d(3, 4, padding="same"), (2, 5, 6)),
    ("conv2d-same-stride2", lambda: fc.conv2d(3, 3, stride=2, padding="same"), (2, 6, 7)),
    ("conv2d-same-dilation", lambda: fc.conv2d(3, 2, dilation=2, padding="same"), (2, 6, 5)),
    ("conv2d-dilation", lambda: fc.conv2d(3, 3, dilation=(2, 1)), (2, 7, 6)),
    ("conv2d-groups", lambda: fc.conv2d(4, 3, groups=2, padding=1), (4, 5, 5)),
    ("conv2d-depthwise", lambda: fc.conv2d(6, 3, groups=3), (3, 5, 5)),
    ("conv2d-no-bias", lambda: fc.conv2d(3, 3, use_bias=False), (2, 5, 5)),
    ("conv1d", lambda: fc.conv1d(3, 3), (2, 9)),
    ("conv1d-stride-pad", lambda: fc.conv1d(3, 3, stride=2, padding=1), (2, 9)),
    ("conv1d-same", lambda: fc.conv1d(3, 4, padding="same"), (2, 9)),
    ("conv1d-same-stride2", lambda: fc.conv1d(3, 3, stride=2, padding="same"), (2, 8)),
    ("conv1d-valid", lambda: fc.conv1d(3, 3, padding="valid"), (2, 9)),
    ("conv1d-dilation-groups", lambda: fc.conv1d(4, 3, dilation=2, groups=2, use_bias=False), (4, 9)),
    ("max_pool2d", lambda: fc.max_pool2d(2), (2, 6, 6)),
    ("max_pool2d-floor", lambda: fc.max_pool2d(2), (2, 7, 5)),  # the last row/column is dropped
    ("max_pool2d-stride", lambda: fc.max_pool2d(3, stride=2), (2, 8, 7)),
    ("max_pool2d-rect", lambda: fc.max_pool2d((1, 2), stride=(2, 1)), (2, 5, 6)),
    ("avg_pool2d", lambda: fc.avg_pool2d(2), (2, 7, 5)),
    ("avg_pool2d-stride", lambda: fc.avg_pool2d(3, stride=2), (2, 8, 7)),
    ("avg_pool2d-rect", lambda: fc.avg_pool2d((2, 3), stride=(1, 2)), (2, 5, 8)),
    ("max_pool1d", lambda: fc.max_pool1d(2), (2, 9)),
    ("max_pool1d-stride", lambda: fc.max_pool1d(3, stride=2), (2, 10)),
    ("avg_pool1d", lambda: fc.avg_pool1d(2), (2, 9)),
    ("avg_pool1d-stride", lambda: fc.avg_pool1d(3, stride=2), (2, 10)),
    ("global_avg_pool2d", lambda: fc.global_avg_pool2d(), (3, 4, 5)),
    ("dense", lambda: fc.dense(4), (6,)),
    ("dense-no-bias", lambda: fc.dense(4, use_bias=False), (6,)),
    ("flatten", lambda: fc.serial(fc.flatten(), fc.dense(3)), (2, 3, 4)),
    ("reshape", lambda: fc.reshape((4, -1)), (2, 8)),
    ("reshape-flat", lambda: fc.reshape(24), (2, 3, 4)),
    ("relu", lambda: fc.relu(), (3, 4)),
    ("leaky_relu", lambda: fc.leaky_relu(0.2), (3, 4)),
    ("sigmoid", lambda: fc.sigmoid(), (3, 4)),
    ("tanh", lambda: fc.tanh(), (3, 4)),
    ("gelu", lambda: fc.gelu(), (3, 4)),
    ("gelu-approximate", lambda: fc.gelu(approximate=True), (3, 4)),
    ("identity", lambda: fc.serial(fc.dense(3), fc.identity()), (4,)),
    ("softmax", lambda: fc.softmax(), (3, 4, 5)),  # default axis -1, the last
    ("softmax-axis1", lambda: fc.softmax(axis=1), (3, 4, 5)),
    ("log_softmax", lambda: fc.log_softmax(), (3, 5)),
    ("log_softmax-axis-2", lambda: fc.log_softmax(axis=-2), (3, 4, 5)),
    ("batch_norm-features", lambda: fc.batch_norm(), (5,)),
    ("batch_norm-1d", lambda: fc.batch_norm(), (3, 6)),
    ("batch_norm-2d-eps", lambda: fc.batch_norm(eps=1e-2), (3, 4, 4)),
    ("layer_norm", lambda: fc.layer_norm(), (6,)),
    ("layer_norm-images-eps", lambda: fc.layer_norm(eps=1e-3), (2, 3, 4)),
    ("dropout", lambda: fc.serial(fc.dense(4), fc.dropout(0.5)), (3,)),
    ("bias", lambda: fc.serial(fc.conv2d(2, 3, use_bias=False), fc.bias()), (2, 5, 5)),
    ("residual", lambda: fc.residual(fc.serial(fc.conv2d(2, 3, padding=1), fc.relu(), fc.conv2d(2, 3, padding=1))),
     (2, 5, 5)),
    ("residual-projection", lambda: fc.residual(fc.conv2d(4, 3, stride=2, padding=1), fc.conv2d(4, 1, stride=2)),
     (2, 6, 6)),
    ("fan_in_sum", lambda: fc.serial(fc.fan_out(3), fc.parallel(fc.dense(4), fc.dense(4), fc.identity()),
                                     fc.fan_in_sum()), (4,)),
    ("fan_in_concat", lambda: fc.serial(fc.fan_out(2), fc.parallel(fc.conv2d(2, 1), fc.conv2d(3, 3, padding=1)),
                                        fc.fan_in_concat(1)), (2, 5, 5)),
    ("fan_in_concat-negative", lambda: fc.serial(fc.fan_out(2), fc.fan_in_concat(-1)), (2, 3)),
    ("nested-serial", lambda: fc.serial(fc.serial(fc.dense(4), fc.tanh()), fc.serial(fc.serial(fc.dense(2)))), (3,)),
    ("tuple-in-tuple-out", lambda: fc.parallel(fc.dense(2), fc.relu()), ((3,), (2, 2))),
    ("output-is-input", lambda: fc.serial(fc.dropout(0.1), fc.identity()), (3,)),
    ("outputs-share-a-tensor", lambda: fc.serial(fc.dense(2), fc.fan_out(2)), (3,)),
]
IDS = [c[0] for c in CASES]


def _model(case):
    _, make, shape = case
    net = make()
    params, xs = _setup(net, shape)
    model = to_onnx(net, params, shape)
    onnx.checker.check_model(model, full_check=True)
    return net, params, xs, model


def _compare(run, net, params, xs, model):
    got = run(model, {i.name: x for i, x in zip(model.graph.input, xs)})
    want = _expected(net, params, xs)
    assert len(got) == len(want) == len(model.graph.output)
    for g, w in zip(got, want):
        assert g.dtype == np.float32 and g.shape == w.shape
        np.testing.assert_allclose(g, w, **TOL)


def _reference(model, feeds):
    return ReferenceEvaluator(model).run(None, feeds)


def _onnxruntime(model, feeds):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_layer_matches_forward_in_the_reference_evaluator(case):
    _compare(_reference, *_model(case))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_layer_matches_forward_in_onnxruntime(case):
    pytest.importorskip("onnxruntime")
    _compare(_onnxruntime, *_model(case))


def _layer_factories():
    """Every public factory returning a Layer (``fc.__all__``); ``debug`` wraps layers and keeps their names."""
    return {n for n in fc.__all__ if inspect.isfunction(getattr(fc, n))
            and getattr(fc, n).__annotations__.get("return") == "Layer"} - {"debug"}


def test_every_public_layer_has_an_exporter_and_a_case():
    names = _layer_factories()
    assert len(names) >= 28
    assert names <= set(onnx_export._EXPORTERS), sorted(names - set(onnx_export._EXPORTERS))

    def walk(layer):
        yield layer.name
        for child in layer.children:
            yield from walk(child)

    covered = {n for _, make, _ in CASES for n in walk(make())}
    assert names <= covered, sorted(names - covered)


def _exported_model(model_name, tmp_path):
    net = build_model(model_name, 2 if model_name == "seed2" else 10)
    params, _ = _setup(net, (1, 28, 28))
    return net, params, export_onnx(net, params, (1, 28, 28), tmp_path / "net.onnx")


def _batches(sizes):
    return [np.random.default_rng(n).random((n, 1, 28, 28), dtype=np.float32) for n in sizes]


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_models_match_forward_at_two_batch_sizes_from_one_file(model_name, tmp_path):
    net, params, path = _exported_model(model_name, tmp_path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    assert model.opset_import[0].version == onnx_export.OPSET == 17
    reference = ReferenceEvaluator(str(path))
    for x in _batches((1, 3)):
        np.testing.assert_allclose(reference.run(None, {"x": x})[0], net.forward(params, x, train=False)[0], **TOL)


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_models_in_onnxruntime_at_two_batch_sizes_from_one_file(model_name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net, params, path = _exported_model(model_name, tmp_path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for x in _batches((2, 5)):
        np.testing.assert_allclose(session.run(None, {"x": x})[0], net.forward(params, x, train=False)[0], **TOL)


def test_initializers_are_named_by_tree_path_and_float64_params_become_float32():
    net = fc.serial(fc.conv2d(2, 3), fc.relu(), fc.flatten(), fc.dense(3))
    params, (x,) = _setup(net, (1, 5, 5), dtype=np.float64)
    model = to_onnx(net, params, (1, 5, 5))
    assert [t.name for t in model.graph.initializer] == fc.tree_paths(params) == ["0.w", "0.b", "3.w", "3.b"]
    assert {t.data_type for t in model.graph.initializer} == {onnx.TensorProto.FLOAT}
    got = ReferenceEvaluator(model).run(None, {"x": x.astype(np.float32)})[0]
    np.testing.assert_allclose(got, net.forward(params, x)[0], **TOL)


# A custom layer (the README's channel_scale) and its exporter.
@attrs.frozen(eq=False)
class ScaleParams:
    s: np.ndarray = fc.param_field()  # (C,)


def channel_scale():
    def init(rng, in_shape, dtype=np.float32):
        return tuple(in_shape), ScaleParams(np.linspace(0.5, 2.0, in_shape[0]).astype(dtype))

    def forward(params, x, *, rng=None, train=False):
        return x * params.s.reshape((1, -1) + (1,) * (x.ndim - 2)), None

    return fc.Layer("channel_scale", init, forward, lambda p, c, dy: (None, dy))


def export_channel_scale(ctx, layer, params, x, in_shape):
    s = ctx.param(params.s.reshape((-1,) + (1,) * (len(in_shape) - 1)), "s")
    return ctx.op("Mul", [x, s])


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the exporter registry, restored after the test."""
    monkeypatch.setattr(onnx_export, "_EXPORTERS", dict(onnx_export._EXPORTERS))
    return onnx_export._EXPORTERS


def test_a_layer_without_exporter_is_named_with_its_path(registry):
    net = fc.serial(fc.conv2d(2, 3), fc.residual(fc.serial(fc.relu(), channel_scale())))
    params, _ = _setup(net, (1, 5, 5))
    with pytest.raises(OnnxExportError, match=r"serial\[1\] \(residual\) -> residual.block \(serial\) -> "
                                              r"serial\[1\] \(channel_scale\): layer 'channel_scale' has no ONNX "
                                              r"exporter; register one with .*register_onnx_exporter"):
        to_onnx(net, params, (1, 5, 5))
    with pytest.raises(OnnxExportError, match=r"^export_onnx: channel_scale: layer 'channel_scale' has no ONNX"):
        to_onnx(channel_scale(), ScaleParams(np.ones(1, np.float32)), (1, 2, 2))


def test_a_registered_exporter_exports_a_custom_layer(registry):
    register_onnx_exporter("channel_scale", export_channel_scale)
    assert onnx_export.onnx_exporter("channel_scale") is export_channel_scale
    net = fc.serial(fc.conv2d(3, 3), channel_scale(), fc.relu())
    params, xs = _setup(net, (1, 5, 5))
    model = to_onnx(net, params, (1, 5, 5))
    assert "1.s" in [t.name for t in model.graph.initializer]
    _compare(_reference, net, params, xs, model)


def test_register_refuses_bad_arguments_and_silent_replacement(registry):
    with pytest.raises(ValueError, match=r"exporter for 'relu' is already registered; pass replace=True"):
        register_onnx_exporter("relu", export_channel_scale)
    with pytest.raises(TypeError, match=r"name must be a non-empty str, got ''"):
        register_onnx_exporter("", export_channel_scale)
    with pytest.raises(TypeError, match=r"fn must be callable, got str"):
        register_onnx_exporter("mine", "not a function")
    register_onnx_exporter("relu", lambda ctx, layer, params, x, in_shape: ctx.op("Neg", [x]), replace=True)
    y = ReferenceEvaluator(to_onnx(fc.relu(), None, (2,))).run(None, {"x": np.array([[1.0, -2.0]], np.float32)})[0]
    np.testing.assert_array_equal(y, [[-1.0, 2.0]])


def test_exporter_mistakes_are_reported_with_the_layer(registry):
    register_onnx_exporter("channel_scale", lambda ctx, layer, params, x, in_shape: 42)
    with pytest.raises(OnnxExportError, match=r"serial\[0\] \(channel_scale\): the exporter returned 42, expected"):
        to_onnx(fc.serial(channel_scale()), (ScaleParams(np.ones(2, np.float32)),), (2, 3))
    register_onnx_exporter("channel_scale", lambda ctx, layer, params, x, in_shape: ctx.op("NoSuchOp", [x]),
                           replace=True)
    with pytest.raises(OnnxExportError, match=r"exported graph of channel_scale\(\) is not valid ONNX"):
        to_onnx(channel_scale(), ScaleParams(np.ones(2, np.float32)), (2, 3))


def test_params_that_do_not_fit_the_network_are_refused():
    lenet, seed1 = build_model("lenet"), build_model("seed1")
    _, params = seed1.init(np.random.default_rng(0), (1, 28, 28))
    with pytest.raises(OnnxExportError, match=r"serial: params must be a tuple of 12 \(one per child layer\), "
                                              r"got a tuple of 5"):
        to_onnx(lenet, params, (1, 28, 28))
    with pytest.raises(OnnxExportError, match=r"^export_onnx: serial\[0\] \(conv2d\): params must have the arrays "
                                              r"\['w', 'b'\] \(as layer.init makes them for this input\), got \[\] "
                                              r"\(NoneType\)"):
        to_onnx(seed1, (None,) + params[1:], (1, 28, 28))
    _, wide = fc.conv2d(5, 3).init(np.random.default_rng(0), (1, 28, 28))
    with pytest.raises(OnnxExportError, match=r"serial\[0\] \(conv2d\): params.w has shape \(5, 1, 3, 3\), "
                                              r"expected \(4, 1, 3, 3\)"):
        to_onnx(seed1, (wide,) + params[1:], (1, 28, 28))
    ints = attrs.evolve(params[4], w=params[4].w.astype(np.int32))
    with pytest.raises(OnnxExportError, match=r"serial\[4\] \(dense\): param 'w' must be a float array, got "
                                              r"dtype int32"):
        to_onnx(seed1, params[:4] + (ints,), (1, 28, 28))
    with pytest.raises(ValueError, match=r"in_shape must be a per-example shape of positive ints .* got \(1, 0, 28\)"):
        to_onnx(seed1, params, (1, 0, 28))
    with pytest.raises(ValueError, match=r"in_shape must be a per-example shape .* got \(\(3,\), \(2, -1\)\)"):
        to_onnx(fc.parallel(fc.relu(), fc.relu()), (None, None), ((3,), (2, -1)))
    with pytest.raises(TypeError, match=r"export_onnx: net must be a Layer, got tuple"):
        to_onnx((seed1,), params, (1, 28, 28))


def test_export_writes_atomically_and_refuses_bad_paths(tmp_path, registry):
    net = fc.serial(fc.flatten(), fc.dense(2))
    params, _ = _setup(net, (2, 3))
    target = tmp_path / "net.onnx"
    target.write_bytes(b"old")
    del registry["dense"]
    with pytest.raises(OnnxExportError, match=r"serial\[1\] \(dense\)"):
        export_onnx(net, params, (2, 3), target)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["net.onnx"]  # untouched, no temp file
    with pytest.raises(FileNotFoundError, match=r"cannot write .*missing/net.onnx: folder .*missing does not exist"):
        export_onnx(fc.flatten(), None, (2, 3), tmp_path / "missing" / "net.onnx")
    with pytest.raises(NotADirectoryError, match=r"folder .*net.onnx does not exist"):
        export_onnx(fc.flatten(), None, (2, 3), target / "inner.onnx")
    with pytest.raises(IsADirectoryError, match=r"is a folder; give a file name"):
        export_onnx(fc.flatten(), None, (2, 3), tmp_path)
    assert export_onnx(fc.flatten(), None, (2, 3), target) == target.absolute()
    assert onnx.load(str(target)).graph.node[0].op_type == "Flatten" and os.listdir(tmp_path) == ["net.onnx"]


def test_without_onnx_the_library_says_which_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    with pytest.raises(OnnxUnavailable, match=r'^export_onnx needs onnx: pip install "functional_cnn\[onnx\]"$'):
        to_onnx(fc.relu(), None, (2,))


# The command line, on a tiny run directory.
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("onnx") / "run"
    code = main(["train", "--model", "seed1", "--max-steps", "2", "--epochs", "1", "--quiet", "--no-plot",
                 "--out", str(run_dir)], out=io.StringIO())
    assert code == 0
    return run_dir


def _cli_errors(capsys, argv):
    code = main(argv, out=io.StringIO())
    return code, capsys.readouterr().err.strip().splitlines()


def test_cli_export_writes_the_runs_model(tiny_run, tmp_path):
    target = tmp_path / "seed1.onnx"
    res = subprocess.run([sys.executable, "-m", "functional_cnn", "export", str(tiny_run), "--onnx", str(target)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"wrote {target}: seed1 for input (N, 1, 28, 28), opset 17, float32" in res.stdout
    ck = fc.load_checkpoint(tiny_run / "checkpoint.npz")
    net = build_model("seed1")
    _, template = net.init(np.random.default_rng(0), (1, 28, 28))
    params = fc.load_checkpoint(tiny_run / "checkpoint.npz", params_like=template).params
    assert ck.step == 2
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(ReferenceEvaluator(str(target)).run(None, {"x": x})[0], net.forward(params, x)[0],
                               **TOL)


def test_cli_export_bad_input_is_one_line_and_exit_2(tiny_run, tmp_path, capsys, monkeypatch):
    target = tmp_path / "out.onnx"
    code, err = _cli_errors(capsys, ["export", str(tmp_path / "no-run"), "--onnx", str(target)])
    assert code == 2 and len(err) == 1 and err[0].startswith("functional-cnn export: error: ") and "no-run" in err[0]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = _cli_errors(capsys, ["export", str(tiny_run), "--onnx", str(blocker / "out.onnx")])
    assert code == 2 and len(err) == 1 and "cannot write" in err[0] and "does not exist" in err[0]
    code, err = _cli_errors(capsys, ["export", str(tiny_run), "--onnx", str(tmp_path)])
    assert code == 2 and err == [(f"functional-cnn export: error: --onnx {tmp_path} is a folder; give a file name "
                                  f"such as {tmp_path / 'model.onnx'}")]
    monkeypatch.setattr(onnx_export, "_EXPORTERS", {k: v for k, v in onnx_export._EXPORTERS.items() if k != "relu"})
    code, err = _cli_errors(capsys, ["export", str(tiny_run), "--onnx", str(target)])
    assert code == 2 and len(err) == 1 and "serial[1] (relu): layer 'relu' has no ONNX exporter" in err[0]
    assert sorted(os.listdir(tmp_path)) == ["file"]  # nothing written, not even a temporary file


def test_cli_export_without_onnx(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    code, err = _cli_errors(capsys, ["export", str(tiny_run), "--onnx", str(tmp_path / "x.onnx")])
    assert code == 2 and err == ['functional-cnn export needs onnx: pip install "functional_cnn[onnx]"']
    assert not os.listdir(tmp_path)


def test_cli_export_needs_an_output_file(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", "run"])
    assert exc.value.code == 2 and "the following arguments are required: --onnx" in capsys.readouterr().err

"""Validation at the network boundary (functional_cnn.boundary) and the need_dx contract.

* Params that contradict their layer, params given to a parameter-free layer, a dy or a
  cache of the wrong kind: each a named error (``ERROR_CASES``, shown in docs/errors.md).
* ``validation(False)`` computes the same numbers and skips the checks.
* ``backward(..., need_dx=False)`` gives the same grads and ``dx = None``, for every layer.
* Inside a network, children are not checked again: the network checks once.
"""
from __future__ import annotations

import importlib

import attrs
import numpy as np
import pytest

import functional_cnn as fc
from errors_doc import Case
from functional_cnn.layers import BatchNormParams, BiasParams, Conv1DParams, Conv2DParams, DenseParams, LayerNormParams
from functional_cnn.tree import tree_leaves, tree_structure

validation_module = importlib.import_module("functional_cnn.boundary")
F32 = np.float32


def _p(layer, shape, dtype=F32):
    return layer.init(np.random.default_rng(0), shape, dtype)[1]


def _x(*shape, dtype=F32):
    return np.random.default_rng(1).standard_normal(shape).astype(dtype)


def _backward(layer, params, x, dy_dtype=F32, dy=None):
    y, cache = layer.forward(params, x)
    return layer.backward(params, cache, y.astype(dy_dtype) if dy is None else dy)


C43 = fc.conv2d(4, 3)
D5 = fc.dense(5)
BN = fc.batch_norm()
NET = fc.serial(fc.conv2d(2, 3), fc.relu(), fc.flatten(), fc.dense(3))
NET_P = _p(NET, (1, 6, 6))

ERROR_CASES = [
    Case("validation", "conv2d(4, 3) forward, params with 5 filters",
         lambda: C43.forward(Conv2DParams(np.ones((5, 1, 3, 3), F32), np.ones(5, F32)), _x(2, 1, 5, 5)),
         ValueError, "conv2d: params.w must have shape (4, 1, 3, 3) for this layer and an input of per-example "
                     "shape (1, 5, 5), got (5, 1, 3, 3)"),
    Case("validation", "conv2d(4, 3) forward, a 5x5 kernel",
         lambda: C43.forward(Conv2DParams(np.ones((4, 1, 5, 5), F32), np.ones(4, F32)), _x(2, 1, 7, 7)),
         ValueError, "conv2d: params.w must have shape (4, 1, 3, 3)"),
    Case("validation", "conv2d(4, 3) forward, a bias of length 3",
         lambda: C43.forward(Conv2DParams(np.ones((4, 1, 3, 3), F32), np.ones(3, F32)), _x(2, 1, 5, 5)),
         ValueError, "conv2d: params.b must have shape (4,)"),
    Case("validation", "conv2d(4, 3, use_bias=False) forward, params with a bias",
         lambda: fc.conv2d(4, 3, use_bias=False).forward(Conv2DParams(np.ones((4, 1, 3, 3), F32), np.ones(4, F32)),
                                                         _x(2, 1, 5, 5)),
         ValueError, "conv2d: params.b must be None for this layer (built without it), got an array of shape (4,)"),
    Case("validation", "dense(5) forward, w of shape (6, 7)",
         lambda: D5.forward(DenseParams(np.ones((6, 7), F32), np.ones(5, F32)), _x(2, 6)),
         ValueError, "dense: params.w must have shape (6, 5) for this layer and an input of per-example shape (6,), "
                     "got (6, 7)"),
    Case("validation", "dense(5) forward, params without the bias",
         lambda: D5.forward(DenseParams(np.ones((6, 5), F32)), _x(2, 6)),
         ValueError, "dense: params.b must be an array of shape (5,), got None"),
    Case("validation", "dense(5) forward, a float64 bias beside a float32 w",
         lambda: D5.forward(DenseParams(np.ones((6, 5), F32), np.ones(5)), _x(2, 6)),
         TypeError, "dense: params.b must have dtype float32 like x and params.w, got float64"),
    Case("validation", "dense(5) forward, an integer w",
         lambda: D5.forward(DenseParams(np.ones((6, 5), np.int64), np.ones(5, F32)), _x(2, 6)),
         TypeError, "dense: params.w must be a floating array, got int64"),
    Case("validation", "conv1d(4, 3) forward, a kernel of 2",
         lambda: fc.conv1d(4, 3).forward(Conv1DParams(np.ones((4, 3, 2), F32), np.ones(4, F32)), _x(2, 3, 6)),
         ValueError, "conv1d: params.w must have shape (4, 3, 3)"),
    Case("validation", "batch_norm forward, statistics for 2 channels on 3",
         lambda: BN.forward(BatchNormParams(np.ones(3, F32), np.zeros(3, F32), np.zeros(2, F32), np.ones(2, F32)),
                            _x(2, 3, 4, 4)),
         ValueError, "batch_norm: params.mean must have shape (3,)"),
    Case("validation", "batch_norm forward, gamma for 2 channels on 3",
         lambda: BN.forward(_p(BN, (2, 4, 4)), _x(2, 3, 4, 4)),
         ValueError, "batch_norm: x has 3 channels (shape (2, 3, 4, 4)), params expect 2 (params.gamma shape (2,))"),
    Case("validation", "layer_norm forward, beta of another shape",
         lambda: fc.layer_norm().forward(LayerNormParams(np.ones((2, 3), F32), np.zeros(6, F32)), _x(4, 2, 3)),
         ValueError, "layer_norm: params.beta must have shape (2, 3)"),
    Case("validation", "bias forward, b of another shape",
         lambda: fc.bias().forward(BiasParams(np.ones((3, 2), F32)), _x(4, 2, 3)),
         ValueError, "bias: x must have shape (N,) + (3, 2) (the params' per-example shape), got (4, 2, 3)"),
    Case("validation", "relu forward, params that are not None",
         lambda: fc.relu().forward(_p(D5, (3,)), _x(2, 3)),
         TypeError, "relu: params must be None (relu has no parameters), got DenseParams"),
    Case("validation", "max_pool2d forward, params ()",
         lambda: fc.max_pool2d(2).forward((), _x(2, 1, 4, 4)),
         TypeError, "max_pool2d: params must be None (max_pool2d has no parameters), got tuple"),
    Case("validation", "serial forward, 5 filters in slot 0",
         lambda: NET.forward((Conv2DParams(np.ones((5, 1, 3, 3), F32), np.ones(5, F32)),) + NET_P[1:],
                             _x(2, 1, 6, 6)),
         ValueError, "serial[0] (conv2d) -> conv2d: params.w must have shape (2, 1, 3, 3)"),
    Case("validation", "serial forward, an image that flattens to other features than dense's",
         lambda: NET.forward(NET_P, _x(2, 1, 7, 7)),
         ValueError, "serial[3] (dense) -> dense: x has 50 features (shape (2, 50)), params expect 32"),
    Case("validation", "relu backward, float64 dy after a float32 forward",
         lambda: _backward(fc.relu(), None, _x(2, 3), np.float64),
         TypeError, "relu: dy must have dtype float32 (the forward output's), got float64"),
    Case("validation", "max_pool2d backward, int64 dy",
         lambda: _backward(fc.max_pool2d(2), None, _x(2, 1, 4, 4), np.int64),
         TypeError, "max_pool2d: dy must have dtype float32 (the forward output's), got int64"),
    Case("validation", "dense backward, a conv2d cache",
         lambda: D5.backward(_p(D5, (3,)), C43.forward(_p(C43, (1, 5, 5)), _x(2, 1, 5, 5))[1], _x(2, 5)),
         TypeError, "dense: cache must be the DenseCache returned by this layer's forward, got Conv2DCache"),
    Case("validation", "conv2d backward, DenseParams",
         lambda: C43.backward(_p(D5, (3,)), C43.forward(_p(C43, (1, 5, 5)), _x(2, 1, 5, 5))[1], _x(2, 4, 3, 3)),
         TypeError, "conv2d: params must be Conv2DParams, got DenseParams"),
    Case("validation", "serial backward, float16 dy",
         lambda: _backward(NET, NET_P, _x(2, 1, 6, 6), np.float16),
         TypeError, "serial: dy must have dtype float32 (the forward output's), got float16"),
    Case("validation", "validation('off')", lambda: fc.validation("off"), TypeError,
         "validation: enabled must be a bool, got 'off'"),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.what)
def test_documented_bad_inputs(case):
    case.check()


@pytest.mark.parametrize("layer, in_shape, params, match", [
    (fc.conv2d(4, 3), (1, 5, 5), Conv2DParams(np.ones((5, 1, 3, 3), F32), np.ones(5, F32)),
     r"conv2d: params\.w must have shape \(4, 1, 3, 3\) .* got \(5, 1, 3, 3\)"),
    (fc.conv2d(4, 3, groups=2), (2, 5, 5), Conv2DParams(np.ones((4, 2, 3, 3), F32), np.ones(4, F32)),
     r"conv2d: x has 2 channels \(shape \(2, 2, 5, 5\)\), params expect 4"),
    (fc.conv2d(4, 3), (1, 5, 5), Conv2DParams(np.ones((4, 1, 3), F32), np.ones(4, F32)),
     r"conv2d: params\.w must have shape \(4, 1, 3, 3\) .* got \(4, 1, 3\)"),
    (fc.dense(5), (6,), DenseParams(np.ones((6, 7), F32), np.ones(7, F32)),
     r"dense: params\.w must have shape \(6, 5\) .* got \(6, 7\)"),
    (fc.dense(5, use_bias=False), (6,), DenseParams(np.ones((6, 5), F32), np.ones(5, F32)),
     r"dense: params\.b must be None"),
    (fc.batch_norm(), (3,), BatchNormParams(np.ones(3, F32), np.zeros(4, F32), np.zeros(3, F32), np.ones(3, F32)),
     r"batch_norm: params\.beta must have shape \(3,\)"),
    (fc.batch_norm(), (3,), BatchNormParams(np.ones(3, F32), np.zeros(3, F32)),
     r"batch_norm: params\.mean must be an array of shape \(3,\), got None"),
])
def test_params_that_contradict_the_layer_are_refused(layer, in_shape, params, match):
    """A named ValueError where params used to be computed with silently (5 channels out of conv2d(4, 3))."""
    with pytest.raises(ValueError, match=match):
        layer.forward(params, _x(2, *in_shape))


# ----------------------------------------------------------------------------- every layer
def _multi(shape):
    return isinstance(shape, tuple) and shape and isinstance(shape[0], tuple)


def _input(shape, rng, n=3):
    if _multi(shape):
        return tuple(_input(s, rng, n) for s in shape)
    return rng.uniform(0.5, 1.5, (n,) + shape) * rng.choice([-1.0, 1.0], (n,) + shape)


LAYERS = {  # factory name: [(layer, in_shape, train)]; the test below fails if a factory has no row
    "conv2d": [(fc.conv2d(3, 3, padding=1), (2, 5, 5), True), (fc.conv2d(4, 3, stride=2, groups=2), (2, 7, 7), True),
               (fc.conv2d(2, (1, 3), padding="same", use_bias=False), (3, 4, 9), False)],
    "conv1d": [(fc.conv1d(2, 3, padding=1), (2, 8), True), (fc.conv1d(4, 2, stride=2, groups=2), (2, 9), True)],
    "dense": [(fc.dense(4), (5,), True), (fc.dense(2, use_bias=False), (3,), True)],
    "bias": [(fc.bias(), (2, 3), True)],
    "max_pool2d": [(fc.max_pool2d(2), (2, 4, 5), True), (fc.max_pool2d(3, 1), (1, 5, 5), True)],
    "avg_pool2d": [(fc.avg_pool2d(2), (2, 4, 4), True), (fc.avg_pool2d(3, 2), (1, 7, 6), True)],
    "global_avg_pool2d": [(fc.global_avg_pool2d(), (3, 2, 2), True)],
    "max_pool1d": [(fc.max_pool1d(2), (2, 7), True)],
    "avg_pool1d": [(fc.avg_pool1d(3, 2), (2, 8), True)],
    "flatten": [(fc.flatten(), (2, 3, 2), True)],
    "reshape": [(fc.reshape((3, -1)), (6,), True)],
    "relu": [(fc.relu(), (4,), True)],
    "leaky_relu": [(fc.leaky_relu(0.1), (2, 3), True)],
    "sigmoid": [(fc.sigmoid(), (4,), True)],
    "tanh": [(fc.tanh(), (4,), True)],
    "gelu": [(fc.gelu(), (4,), True), (fc.gelu(approximate=True), (4,), True)],
    "softmax": [(fc.softmax(), (5,), True)],
    "log_softmax": [(fc.log_softmax(1), (3, 2), True)],
    "identity": [(fc.identity(), (3,), True)],
    "dropout": [(fc.dropout(0.5), (6,), True), (fc.dropout(0.5), (6,), False)],
    "batch_norm": [(fc.batch_norm(), (3, 2, 2), True), (fc.batch_norm(), (3,), False)],
    "layer_norm": [(fc.layer_norm(), (2, 3), True)],
    "serial": [(fc.serial(fc.conv2d(2, 3), fc.relu(), fc.flatten(), fc.dense(3)), (1, 5, 5), True)],
    "residual": [(fc.residual(fc.serial(fc.dense(3), fc.tanh())), (3,), True),
                 (fc.residual(fc.conv2d(2, 3, padding=1), fc.conv2d(2, 1)), (1, 4, 4), True)],
    "parallel": [(fc.parallel(fc.dense(2), fc.relu()), ((3,), (2,)), True)],
    "fan_out": [(fc.fan_out(3), (2, 2), True)],
    "fan_in_sum": [(fc.fan_in_sum(), ((3,), (3,)), True)],
    "fan_in_concat": [(fc.fan_in_concat(1), ((2, 3), (1, 3)), True)],
}
ROWS = [(name, layer, shape, train) for name, rows in LAYERS.items() for layer, shape, train in rows]


def test_every_layer_factory_has_a_row():
    factories = {n for n in fc.layers.__all__ if n[0].islower()}
    assert factories == set(LAYERS)


@pytest.mark.parametrize("name, layer, in_shape, train", ROWS, ids=[f"{r[0]}-{i}" for i, r in enumerate(ROWS)])
def test_need_dx_false_gives_the_same_grads_and_no_dx(name, layer, in_shape, train):
    rng = np.random.default_rng(0)
    _, params = layer.init(rng, in_shape, np.float64)
    x = _input(in_shape, rng)
    y, cache = layer.forward(params, x, rng=np.random.default_rng(5), train=train)
    dy = _input(tuple(a.shape[1:] for a in y) if isinstance(y, tuple) else y.shape[1:], rng)
    grads, dx = layer.backward(params, cache, dy)
    grads_only, none = layer.backward(params, cache, dy, need_dx=False)
    assert dx is not None and none is None
    assert tree_structure(grads_only) == tree_structure(grads)
    for a, b in zip(tree_leaves(grads_only), tree_leaves(grads)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, layer, in_shape, train", ROWS, ids=[f"{r[0]}-{i}" for i, r in enumerate(ROWS)])
def test_validation_off_gives_the_same_numbers(name, layer, in_shape, train):
    rng = np.random.default_rng(0)
    _, params = layer.init(rng, in_shape, np.float32)
    x = tree_leaves(_input(in_shape, rng)) if _multi(in_shape) else _input(in_shape, rng)
    x = tuple(a.astype(F32) for a in x) if _multi(in_shape) else x.astype(F32)
    results = []
    for on in (True, False):
        with fc.validation(on):
            y, cache = layer.forward(params, x, rng=np.random.default_rng(5), train=train)
            grads, dx = layer.backward(params, cache, y)
        results.append(tree_leaves((y, grads, dx)))
    assert fc.validation_enabled()
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_validation_off_skips_the_checks_and_the_switch_restores():
    wrong = Conv2DParams(np.ones((5, 1, 3, 3), F32), np.ones(5, F32))  # 5 filters for conv2d(4, 3)
    with fc.validation(False):
        assert not fc.validation_enabled()
        y, _ = C43.forward(wrong, _x(2, 1, 5, 5))  # computed as given, unchecked
        assert y.shape == (2, 5, 3, 3)
    assert fc.validation_enabled()
    with pytest.raises(ValueError, match="conv2d: params.w must have shape"):
        C43.forward(wrong, _x(2, 1, 5, 5))
    fc.validation(False)  # a plain call switches it for the process
    try:
        assert not fc.validation_enabled()
    finally:
        fc.validation(True)
    assert fc.validation_enabled()


# ----------------------------------------------------------------------------- checked once
def test_children_inside_a_network_are_not_checked_again(monkeypatch):
    """One boundary check per network call; the children's specs run once per new signature."""
    entries, leaf_checks = [], []
    real_entry, real_check = validation_module.check_forward, validation_module.Spec.check
    monkeypatch.setattr(validation_module, "check_forward", lambda where, *a: entries.append(where) or
                        real_entry(where, *a))
    monkeypatch.setattr(validation_module.Spec, "check", lambda self, where, *a: leaf_checks.append(where) or
                        real_check(self, where, *a))
    net = fc.models.lenet5()
    _, params = net.init(np.random.default_rng(0), (1, 28, 28))
    x = _x(4, 1, 28, 28)
    y, cache = net.forward(params, x)
    assert entries == ["serial"] and len(leaf_checks) == 12  # every child, through its spec, once
    net.forward(params, x)
    net.forward(params, _x(7, 1, 28, 28))  # another batch size: the same per-example shapes
    assert entries == ["serial"] * 3 and len(leaf_checks) == 12  # memoized
    new_params = fc.tree_map(lambda a: a * 2, params)  # new arrays of the same shapes, as after a step
    net.forward(new_params, x)
    assert len(leaf_checks) == 12
    net.forward(fc.tree_cast(params, np.float64), x.astype(np.float64))  # another signature: checked again
    assert len(leaf_checks) == 24


def test_a_network_with_a_layer_without_spec_checks_each_child_itself(monkeypatch):
    entries = []
    real_entry = validation_module.check_forward
    monkeypatch.setattr(validation_module, "check_forward", lambda where, *a: entries.append(where) or
                        real_entry(where, *a))
    net = fc.serial(fc.dense(3), channel_scale(), fc.relu())
    assert net.spec is None
    _, params = net.init(np.random.default_rng(0), (4,))
    net.forward(params, _x(2, 4))
    assert entries == ["dense", "relu"]
    net = fc.serial(channel_scale(), fc.dense(2))
    _, params = net.init(np.random.default_rng(0), (3,))
    with pytest.raises(TypeError, match=r"serial\[1\] \(dense\) -> dense: x has dtype float64 but params have "
                                        r"dtype float32"):
        net.forward(params, _x(2, 3, dtype=np.float64))


# ----------------------------------------------------------------------------- need_dx in combinators
@attrs.frozen(eq=False)
class ScaleParams:
    s: np.ndarray = fc.param_field()


def channel_scale(log=None):
    """The README's user layer: no spec, a backward without need_dx."""

    def init(rng, in_shape, dtype=np.float32):
        return in_shape, ScaleParams(np.ones(in_shape[0], dtype))

    def forward(params, x, *, rng=None, train=False):
        s = params.s.reshape((1, -1) + (1,) * (x.ndim - 2))
        return x * s, (x, s)

    def backward(params, cache, dy):
        x, s = cache
        if log is not None:
            log.append("computed dx")
        axes = (0,) + tuple(range(2, x.ndim))
        return ScaleParams((dy * x).sum(axis=axes)), dy * s

    return fc.Layer("channel_scale", init, forward, backward)


def spy(log):
    """A parameter-free layer recording the need_dx it was given."""

    def backward(params, cache, dy, *, need_dx=True):
        log.append(need_dx)
        return None, dy if need_dx else None

    return fc.Layer("spy", lambda rng, s, dtype=F32: (s, None), lambda p, x, *, rng=None, train=False: (x, None),
                    backward)


def test_serial_passes_need_dx_false_to_its_first_layer_only():
    log = []
    net = fc.serial(spy(log), fc.dense(3), spy(log), fc.residual(fc.serial(spy(log), fc.dense(3))))
    _, p = net.init(np.random.default_rng(0), (4,))
    y, cache = net.forward(p, _x(2, 4))
    _, dx = net.backward(p, cache, y, need_dx=False)
    assert dx is None and log == [True, True, False]  # backward runs last layer first
    log.clear()
    _, dx = net.backward(p, cache, y)
    assert dx.shape == (2, 4) and log == [True, True, True]


def test_a_residual_first_in_a_network_passes_need_dx_false_into_its_block():
    log = []
    net = fc.serial(fc.residual(fc.serial(spy(log), fc.dense(3))), fc.relu())
    _, p = net.init(np.random.default_rng(0), (3,))
    y, cache = net.forward(p, _x(2, 3))
    assert net.backward(p, cache, y, need_dx=False)[1] is None and log == [False]


def test_a_user_backward_without_need_dx_keeps_working():
    log = []
    layer = channel_scale(log)
    report = fc.check_layer(layer, np.random.default_rng(0), (3, 4, 4))
    assert report.ok
    net = fc.serial(layer, fc.relu())
    _, p = net.init(np.random.default_rng(0), (3, 4, 4))
    y, cache = net.forward(p, _x(2, 3, 4, 4))
    grads, dx = net.backward(p, cache, y, need_dx=False)
    assert log[-1] == "computed dx" and dx.shape == (2, 3, 4, 4)  # it may compute dx: nothing breaks
    np.testing.assert_array_equal(grads[0].s, net.backward(p, cache, y)[0][0].s)


def test_gradcheck_checks_dx_and_a_training_step_with_need_dx_false_matches():
    net = fc.models.lenet5()
    _, p = net.init(np.random.default_rng(0), (1, 28, 28))
    x = _x(3, 1, 28, 28)
    y, cache = net.forward(p, x, train=True)
    g1, dx = net.backward(p, cache, y)
    g2, none = net.backward(p, cache, y, need_dx=False)
    assert dx.shape == x.shape and none is None
    for a, b in zip(tree_leaves(g1), tree_leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    report = fc.check_layer(fc.conv2d(2, 3, padding=1), np.random.default_rng(0), (1, 5, 5))
    assert any(r.name == "x" and r.ok for r in report.rows)

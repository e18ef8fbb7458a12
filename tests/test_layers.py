"""One table of layer cases, each run through the same checks (see layer_checks.py)."""
from __future__ import annotations

import inspect
import typing

import attrs
import numpy as np
import pytest
from scipy import special

import functional_cnn as fc
from functional_cnn.layer import Layer
from layer_checks import LayerCase, run_all
from layer_references import (
    batch_norm_eval_reference,
    conv1d_reference,
    conv2d_stride1_reference,
    conv_reference,
    dense_reference,
    layer_norm_reference,
    pool1d_reference,
    pool_reference,
    positive,
    signed,
)

relu_ref = lambda p, x: np.maximum(x, 0)  # noqa: E731
gelu_ref = lambda p, x: x * special.ndtr(x)  # noqa: E731
identity_ref = lambda p, x: x  # noqa: E731

seed_net_small = fc.serial(fc.conv2d(4, 3), fc.relu(), fc.max_pool2d(2), fc.flatten(), fc.dense(5))


def serial_reference(params, x):
    conv, _, _, _, dense = params
    h = np.maximum(conv_reference()(conv, x), 0)
    h = pool_reference(2)(None, h).reshape(x.shape[0], -1)
    return dense_reference(dense, h)


inception = fc.serial(fc.fan_out(2), fc.parallel(fc.conv2d(2, 1), fc.conv2d(3, 3, padding=1)), fc.fan_in_concat(1))
res_proj = fc.residual(fc.serial(fc.conv2d(4, 3, padding=1), fc.tanh(), fc.conv2d(4, 1)), projection=fc.conv2d(4, 1))

# One row or more per public layer factory and combinator; test_every_public_layer_factory_has_a_row
# derives the factories from functional_cnn.__all__ and fails when one has no row.
CASES = [
    LayerCase("conv2d", fc.conv2d(3, 3), (2, 6, 5), conv_reference()),
    LayerCase("conv2d-nobias", fc.conv2d(2, 2, use_bias=False), (1, 4, 4), conv_reference()),
    LayerCase("conv2d-stride2", fc.conv2d(2, 3, stride=2), (2, 7, 7), conv_reference(stride=2)),
    LayerCase("conv2d-pad1", fc.conv2d(2, 3, padding=1), (2, 5, 5), conv_reference(padding=1)),
    LayerCase("conv2d-pad-pair", fc.conv2d(2, (3, 2), padding=(2, 1)), (1, 4, 5), conv_reference(padding=(2, 1))),
    LayerCase("conv2d-same-s2", fc.conv2d(2, 3, stride=2, padding="same"), (2, 6, 7),
              conv_reference(stride=2, padding="same")),
    LayerCase("conv2d-same-even-k", fc.conv2d(2, 4, padding="same"), (1, 5, 5), conv_reference(padding="same")),
    LayerCase("conv2d-dilation", fc.conv2d(2, 3, dilation=2), (2, 7, 7), conv_reference(dilation=2)),
    LayerCase("conv2d-all", fc.conv2d(3, (2, 3), stride=(2, 1), padding=(1, 2), dilation=(1, 2)), (2, 6, 6),
              conv_reference(stride=(2, 1), padding=(1, 2), dilation=(1, 2))),
    LayerCase("conv2d-groups", fc.conv2d(4, 3, groups=2, padding=1), (4, 5, 5), conv_reference(padding=1, groups=2)),
    LayerCase("conv2d-depthwise", fc.conv2d(3, 3, groups=3), (3, 5, 5), conv_reference(groups=3)),
    LayerCase("conv1d", fc.conv1d(3, 3), (2, 9), conv1d_reference()),
    LayerCase("conv1d-nobias", fc.conv1d(2, 2, use_bias=False), (1, 6), conv1d_reference()),
    LayerCase("conv1d-stride-pad", fc.conv1d(2, 3, stride=2, padding=2), (2, 9), conv1d_reference(2, 2)),
    LayerCase("conv1d-same-dilation", fc.conv1d(2, 3, padding="same", dilation=2, stride=2), (2, 11),
              conv1d_reference(2, "same", 2)),
    LayerCase("conv1d-groups", fc.conv1d(4, 3, groups=2, padding=1), (4, 7), conv1d_reference(1, 1, 1, 2)),
    LayerCase("conv1d-depthwise", fc.conv1d(3, 2, groups=3), (3, 6), conv1d_reference(groups=3)),
    LayerCase("max_pool2d", fc.max_pool2d(2), (2, 6, 6), pool_reference(2), x_fn=positive),
    LayerCase("max_pool2d-odd", fc.max_pool2d(2), (2, 5, 7), pool_reference(2), x_fn=positive),
    LayerCase("max_pool2d-overlap", fc.max_pool2d(3, 2), (2, 7, 7), pool_reference(3, 2), x_fn=positive),
    LayerCase("max_pool2d-s3k2", fc.max_pool2d(2, 3), (1, 8, 8), pool_reference(2, 3), x_fn=positive),
    LayerCase("avg_pool2d", fc.avg_pool2d(2), (2, 5, 6), pool_reference(2, op=np.mean)),
    LayerCase("avg_pool2d-overlap", fc.avg_pool2d(3, 1), (2, 5, 5), pool_reference(3, 1, op=np.mean)),
    LayerCase("global_avg_pool2d", fc.global_avg_pool2d(), (3, 4, 5), lambda p, x: x.mean(axis=(2, 3))),
    LayerCase("max_pool1d", fc.max_pool1d(2), (2, 9), pool1d_reference(2), x_fn=positive),
    LayerCase("max_pool1d-overlap", fc.max_pool1d(3, 2), (2, 9), pool1d_reference(3, 2), x_fn=positive),
    LayerCase("avg_pool1d", fc.avg_pool1d(3), (2, 8), pool1d_reference(3, op=np.mean)),
    LayerCase("avg_pool1d-stride1", fc.avg_pool1d(2, 1), (1, 5), pool1d_reference(2, 1, op=np.mean)),
    LayerCase("dense", fc.dense(4), (5,), dense_reference),
    LayerCase("dense-nobias", fc.dense(3, use_bias=False), (4,), dense_reference),
    LayerCase("bias", fc.bias(b_init="he_normal"), (2, 3, 3), lambda p, x: x + p.b),
    LayerCase("flatten", fc.flatten(), (2, 3, 4), lambda p, x: x.reshape(x.shape[0], -1)),
    LayerCase("reshape", fc.reshape((4, -1)), (2, 3, 4), lambda p, x: x.reshape(x.shape[0], 4, 6)),
    LayerCase("relu", fc.relu(), (3, 4), relu_ref, x_fn=signed),
    LayerCase("leaky_relu", fc.leaky_relu(0.2), (7,), lambda p, x: np.where(x > 0, x, 0.2 * x), x_fn=signed),
    LayerCase("sigmoid", fc.sigmoid(), (6,), lambda p, x: special.expit(x)),
    LayerCase("tanh", fc.tanh(), (2, 3), lambda p, x: np.tanh(x)),
    LayerCase("gelu", fc.gelu(), (6,), gelu_ref),
    LayerCase("gelu-tanh", fc.gelu(approximate=True), (6,),
              lambda p, x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))),
    LayerCase("softmax", fc.softmax(), (5,), lambda p, x: special.softmax(x, axis=-1)),
    LayerCase("softmax-axis1", fc.softmax(axis=1), (3, 2, 2), lambda p, x: special.softmax(x, axis=1)),
    LayerCase("log_softmax", fc.log_softmax(), (5,), lambda p, x: special.log_softmax(x, axis=-1)),
    LayerCase("identity", fc.identity(), (3, 2), identity_ref),
    LayerCase("dropout-0.3", fc.dropout(0.3), (4, 5), identity_ref),
    LayerCase("dropout-0.5-4d", fc.dropout(0.5), (2, 3, 3), identity_ref),
    LayerCase("dropout-0", fc.dropout(0.0), (6,), identity_ref),
    LayerCase("batch_norm-2d", fc.batch_norm(), (5,), batch_norm_eval_reference, batch=4, cache_overhead=3 * 5),
    LayerCase("batch_norm-3d", fc.batch_norm(momentum=0.5), (3, 6), batch_norm_eval_reference, cache_overhead=3 * 3),
    LayerCase("batch_norm-4d", fc.batch_norm(), (3, 4, 4), batch_norm_eval_reference, cache_overhead=3 * 3),
    LayerCase("batch_norm-4d-eval", fc.batch_norm(), (2, 3, 3), batch_norm_eval_reference, train=False,
              cache_overhead=2),
    LayerCase("layer_norm-1d", fc.layer_norm(), (6,), layer_norm_reference),
    LayerCase("layer_norm-3d", fc.layer_norm(), (2, 3, 4), layer_norm_reference),
    LayerCase("serial-seed000", seed_net_small, (1, 8, 8), serial_reference, x_fn=positive),
    LayerCase("serial-nested", fc.serial(fc.serial(fc.dense(4), fc.tanh()), fc.serial(fc.dense(3))), (5,),
              lambda p, x: dense_reference(p[1][0], np.tanh(dense_reference(p[0][0], x)))),
    LayerCase("debug-serial", fc.debug(seed_net_small), (1, 8, 8), serial_reference, x_fn=positive),
    LayerCase("residual-identity", fc.residual(fc.serial(fc.dense(4), fc.tanh(), fc.dense(4))), (4,),
              lambda p, x: x + (np.tanh(x @ p[0][0].w + p[0][0].b) @ p[0][2].w + p[0][2].b)),
    LayerCase("residual-projection", res_proj, (2, 5, 5),
              lambda p, x: conv2d_stride1_reference(p[1], x) + conv2d_stride1_reference(
                  p[0][2], np.tanh(conv2d_stride1_reference(p[0][0], x, pad=1)))),
    LayerCase("residual-batch_norm", fc.residual(fc.serial(fc.conv2d(2, 3, padding=1), fc.batch_norm())), (2, 4, 4),
              lambda p, x: x + batch_norm_eval_reference(p[0][1], conv2d_stride1_reference(p[0][0], x, pad=1)),
              cache_overhead=3 * 2),
    LayerCase("fan_out-parallel-fan_in_concat", inception, (2, 5, 5),
              lambda p, x: np.concatenate([conv2d_stride1_reference(p[1][0], x),
                                           conv2d_stride1_reference(p[1][1], x, 1)], 1)),
    LayerCase("fan_in_sum", fc.serial(fc.fan_out(3), fc.parallel(fc.dense(3), fc.dense(3), fc.identity()),
                                      fc.fan_in_sum()),
              (3,), lambda p, x: x @ p[1][0].w + p[1][0].b + x @ p[1][1].w + p[1][1].b + x),
    LayerCase("fan_in_concat-last", fc.serial(fc.fan_out(2), fc.parallel(fc.identity(), fc.tanh()),
                                              fc.fan_in_concat(-1)),
              (2, 3), lambda p, x: np.concatenate([x, np.tanh(x)], axis=-1)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_layer_passes_common_checks(case):
    run_all(case)


def public_layer_factories():
    """Names of the functions in ``functional_cnn.__all__`` (and ``layers.__all__``) annotated to return a Layer."""
    found = set()
    for module in (fc, fc.layers):
        for name in module.__all__:
            value = getattr(module, name)
            if not inspect.isfunction(value):
                continue
            returns = inspect.signature(value).return_annotation
            assert returns is not inspect.Signature.empty, f"{module.__name__}.{name} has no return annotation"
            if typing.get_type_hints(value).get("return") is Layer:
                found.add(name)
    return found


def layer_names(layer):
    return {layer.name}.union(*(layer_names(child) for child in layer.children))


def test_every_public_layer_factory_has_a_row():
    """A row covers the factories in its id ("debug-serial") and every layer of its tree."""
    factories = public_layer_factories()
    assert {"conv2d", "serial", "residual", "fan_in_concat", "debug", "batch_norm"} <= factories
    covered = set()
    for case in CASES:
        covered |= layer_names(case.layer) | set(case.id.split("-"))
    assert not factories - covered, f"no row in the layer table for {sorted(factories - covered)}"


def test_case_ids_are_unique_and_start_with_a_factory():
    factories = public_layer_factories()
    assert len({c.id for c in CASES}) == len(CASES)
    for case in CASES:
        assert case.id.split("-")[0] in factories, case.id


def test_seed000_forward_formula_on_its_3x3_example():
    """Y_i = B_i + sum_j X_j (cross-correlated with) K_ij on the notebook's 3 channels of 3x3 and 2 kernels of 2x2."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 3, 3))
    w = rng.standard_normal((2, 3, 2, 2))
    b = rng.standard_normal(2)
    layer = fc.conv2d(2, 2)
    y, _ = layer.forward(fc.layers.Conv2DParams(w, b), x)
    for i in range(2):
        for r in range(2):
            for c in range(2):
                # y_rc = b + k11 x_r,c + k12 x_r,c+1 + k21 x_r+1,c + k22 x_r+1,c+1, summed over input channels j
                expect = b[i] + sum(
                    w[i, j, 0, 0] * x[0, j, r, c] + w[i, j, 0, 1] * x[0, j, r, c + 1]
                    + w[i, j, 1, 0] * x[0, j, r + 1, c] + w[i, j, 1, 1] * x[0, j, r + 1, c + 1]
                    for j in range(3)
                )
                assert y[0, i, r, c] == pytest.approx(expect, rel=1e-12)


def test_max_pool_gives_one_gradient_per_all_zero_window():
    """After ReLU whole windows are 0; the notebook's equality mask would route the gradient 4 times."""
    layer = fc.max_pool2d(2)
    x = np.zeros((1, 1, 2, 2))
    y, cache = layer.forward(None, x)
    _, dx = layer.backward(None, cache, np.ones_like(y))
    assert dx.sum() == 1.0 and dx[0, 0, 0, 0] == 1.0


def test_relu_derivative_at_zero_is_zero():
    layer = fc.relu()
    y, cache = layer.forward(None, np.zeros((1, 3)))
    _, dx = layer.backward(None, cache, np.ones((1, 3)))
    np.testing.assert_array_equal(dx, 0.0)


def test_sigmoid_and_softmax_do_not_overflow():
    x = np.array([[-1e4, 0.0, 1e4]], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y, _ = fc.sigmoid().forward(None, x)
        p, _ = fc.softmax().forward(None, x)
        lp, _ = fc.log_softmax().forward(None, x)
    np.testing.assert_array_equal(y, [[0.0, 0.5, 1.0]])
    np.testing.assert_allclose(p, [[0.0, 0.0, 1.0]])
    assert np.isfinite(lp[0, 2]) and lp[0, 0] == -2e4


def test_params_are_immutable_records():
    _, params = fc.conv2d(2, 3).init(np.random.default_rng(0), (1, 5, 5))
    with pytest.raises(attrs.exceptions.FrozenInstanceError, match="can't set attribute"):
        params.w = np.zeros_like(params.w)
    with pytest.raises(ValueError, match="read-only"):
        params.w -= 1.0
    raw = np.ones((2, 1, 3, 3), dtype=np.float32)
    rebuilt = fc.layers.Conv2DParams(raw, None)
    raw[...] = 5.0  # the record copied a writeable input: later writes to it do not leak in
    assert float(rebuilt.w.max()) == 1.0


def test_init_is_reproducible_and_uses_only_the_given_generator():
    net = fc.serial(fc.conv2d(3, 3), fc.relu(), fc.flatten(), fc.dense(4))
    _, a = net.init(np.random.default_rng(42), (1, 6, 6))
    _, b = net.init(np.random.default_rng(42), (1, 6, 6))
    _, c = net.init(np.random.default_rng(43), (1, 6, 6))
    for x, y in zip(fc.tree_leaves(a), fc.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0].w, c[0].w)


def test_float64_on_request_is_carried_through():
    net = fc.serial(fc.conv2d(2, 3), fc.relu(), fc.max_pool2d(2), fc.flatten(), fc.dense(3))
    _, p = net.init(np.random.default_rng(0), (1, 8, 8), dtype=np.float64)
    assert all(leaf.dtype == np.float64 for leaf in fc.tree_leaves(p))
    y, _ = net.forward(p, np.zeros((2, 1, 8, 8)))
    assert y.dtype == np.float64


def _leaf_layers(layer):
    return [layer] if not layer.children else [leaf for c in layer.children for leaf in _leaf_layers(c)]


def test_only_dropout_says_it_draws_from_its_rng():
    """Combinators spawn child generators only where a layer may draw (``Spec.draws``, True by default)."""
    from functional_cnn.layers._combinator import draws

    leaves = [leaf for case in CASES for leaf in _leaf_layers(case.layer)]
    assert "dropout" in {leaf.name for leaf in leaves} and len({leaf.name for leaf in leaves}) > 15
    assert [leaf.name for leaf in leaves if draws(leaf) != (leaf.name == "dropout")] == []
    for case in CASES:  # a combinator draws exactly when one of its layers does
        assert draws(case.layer) == any(draws(leaf) for leaf in _leaf_layers(case.layer)), case.id

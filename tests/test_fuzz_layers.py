"""Fuzzing every layer and combinator: random shapes, dtypes, empty batches, NaN/Inf, junk arguments.

Each call either computes the right thing (declared shape, the params' dtype, finite
values from finite inputs, pure) or raises a ValueError/TypeError whose message starts
with the layer's name. Budget: the hypothesis profile (``ci`` fixed seeds, ``--fuzz=long``).
"""
import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import functional_cnn as fc
from errors_doc import Case, assert_named
from functional_cnn.layers import BatchNormParams, BiasParams, Conv1DParams, Conv2DParams, DenseParams
from functional_cnn.tree import trainable, tree_leaves, tree_leaves_with_paths, tree_map, tree_structure

FLOATS = (np.float16, np.float32, np.float64)
SEEDS = st.integers(0, 2**32 - 1)
CONV_LIKE = ("conv2d", "conv1d", "max_pool2d", "avg_pool2d", "max_pool1d", "avg_pool1d")


def multi(shape):
    """True for a tuple of per-example shapes (multi-input or multi-output layers)."""
    return isinstance(shape, tuple) and len(shape) > 0 and isinstance(shape[0], tuple)


def make_x(shape, n, dtype, rng, scale=1.0):
    if multi(shape):
        return tuple(make_x(s, n, dtype, rng, scale) for s in shape)
    return (rng.standard_normal((n,) + tuple(shape)) * scale).astype(dtype)


def arrays(tree):
    return tree_leaves(tree) if isinstance(tree, tuple) else [tree]


# ----------------------------------------------------------------------------- layer specs
@st.composite
def pair_or_int(draw, lo, hi):
    return draw(st.one_of(st.integers(lo, hi), st.tuples(st.integers(lo, hi), st.integers(lo, hi))))


@st.composite
def conv2d_spec(draw):
    g = draw(st.integers(1, 2))
    c_in, c_out = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
    padding = draw(st.one_of(pair_or_int(0, 2), st.sampled_from(["same", "valid"])))
    layer = fc.conv2d(c_out, draw(pair_or_int(1, 3)), stride=draw(pair_or_int(1, 2)), padding=padding,
                      dilation=draw(pair_or_int(1, 2)), groups=g, use_bias=draw(st.booleans()))
    return "conv2d", layer, (c_in, draw(st.integers(1, 7)), draw(st.integers(1, 7)))


@st.composite
def conv1d_spec(draw):
    g = draw(st.integers(1, 2))
    layer = fc.conv1d(g * draw(st.integers(1, 2)), draw(st.integers(1, 3)), stride=draw(st.integers(1, 2)),
                      padding=draw(st.one_of(st.integers(0, 2), st.sampled_from(["same", "valid"]))),
                      dilation=draw(st.integers(1, 2)), groups=g, use_bias=draw(st.booleans()))
    return "conv1d", layer, (g * draw(st.integers(1, 2)), draw(st.integers(1, 8)))


@st.composite
def pool_spec(draw):
    name = draw(st.sampled_from(["max_pool2d", "avg_pool2d", "max_pool1d", "avg_pool1d", "global_avg_pool2d"]))
    c = draw(st.integers(1, 3))
    if name == "global_avg_pool2d":
        return name, fc.global_avg_pool2d(), (c, draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = draw(st.one_of(st.none(), st.integers(1, 3)))
    if name.endswith("1d"):
        return name, getattr(fc, name)(draw(st.integers(1, 3)), stride), (c, draw(st.integers(1, 7)))
    hw = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    return name, getattr(fc, name)(draw(pair_or_int(1, 3)), stride), (c,) + hw


@st.composite
def feature_shape(draw):
    return draw(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple))


@st.composite
def elementwise_spec(draw, names=("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "identity", "softmax",
                                  "log_softmax", "flatten", "dropout", "bias", "layer_norm")):
    name = draw(st.sampled_from(names))
    shape = draw(feature_shape())
    make = {
        "leaky_relu": lambda: fc.leaky_relu(draw(st.floats(0, 1))),
        "gelu": lambda: fc.gelu(draw(st.booleans())),
        "softmax": lambda: fc.softmax(draw(st.integers(1, len(shape)) | st.integers(-len(shape), -1))),
        "log_softmax": lambda: fc.log_softmax(draw(st.integers(-len(shape), -1))),
        "dropout": lambda: fc.dropout(draw(st.sampled_from([0.0, 0.3, 0.9]))),
        "bias": lambda: fc.bias(draw(st.sampled_from(["zeros", "he_normal"]))),
    }.get(name, lambda: getattr(fc, name)())
    return name, make(), shape


@st.composite
def dense_spec(draw):
    return "dense", fc.dense(draw(st.integers(1, 4)), draw(st.booleans())), (draw(st.integers(1, 5)),)


@st.composite
def reshape_spec(draw):
    shape = draw(feature_shape())
    total = int(np.prod(shape))
    divisors = [d for d in range(1, total + 1) if total % d == 0]
    d = draw(st.sampled_from(divisors))
    return "reshape", fc.reshape(draw(st.sampled_from([(d, -1), (-1, d), (total,), (d, total // d)]))), shape


@st.composite
def batch_norm_spec(draw):
    rank = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    return "batch_norm", fc.batch_norm(draw(st.floats(0, 0.99)), draw(st.sampled_from([1e-5, 1e-3]))), shape


@st.composite
def combinator_spec(draw, kinds=("serial", "residual", "parallel", "fan_out", "fan_in_sum", "fan_in_concat")):
    f = draw(st.integers(1, 4))
    kind = draw(st.sampled_from(kinds))
    if kind == "serial":
        body = draw(st.lists(st.sampled_from(["dense", "relu", "tanh", "layer_norm", "batch_norm"]), min_size=1,
                             max_size=3))
        layers = [fc.dense(draw(st.integers(1, 3))) if b == "dense" else getattr(fc, b)() for b in body]
        return kind, fc.serial(*layers), (f,)
    if kind == "residual":
        m = draw(st.integers(1, 3))
        if draw(st.booleans()):
            return kind, fc.residual(fc.dense(m), fc.dense(m)), (f,)
        return kind, fc.residual(fc.serial(fc.dense(f), fc.tanh())), (f,)
    if kind == "parallel":
        return kind, fc.parallel(fc.dense(draw(st.integers(1, 3))), fc.relu()), ((f,), (draw(st.integers(1, 3)),))
    k = draw(st.integers(1, 3))
    if kind == "fan_out":
        return kind, fc.fan_out(k), (f,)
    if kind == "fan_in_sum":
        return kind, fc.fan_in_sum(), ((f, 2),) * k
    axis = draw(st.sampled_from([1, 2, -1, -2]))
    ax = axis % 3 - 1  # per-example axis
    shapes = tuple(tuple(draw(st.integers(1, 3)) if i == ax else (2, 3)[i] for i in range(2)) for _ in range(k))
    return kind, fc.fan_in_concat(axis), shapes


FAMILIES = dict(conv2d=conv2d_spec(), conv1d=conv1d_spec(), pool=pool_spec(), elementwise=elementwise_spec(),
                dense=dense_spec(), reshape=reshape_spec(), batch_norm=batch_norm_spec(), combinator=combinator_spec())
LAYER_SPECS = st.one_of(*FAMILIES.values())
by_family = pytest.mark.parametrize("family", list(FAMILIES))  # every family gets the profile's full budget


def init_or_named_error(name, layer, in_shape, dtype, rng):
    """``(out_shape, params)``, or None after checking that init refused with a named error."""
    try:
        return layer.init(rng, in_shape, dtype)
    except (ValueError, TypeError) as err:  # e.g. a kernel larger than the padded input
        assert_named(err, name)
        return None


# ----------------------------------------------------------------------------- the contract
@by_family
@settings()
@given(n=st.integers(0, 3), dtype=st.sampled_from(FLOATS), train=st.booleans(), seed=SEEDS, data=st.data())
def test_forward_backward_contract(family, n, dtype, train, seed, data):
    """Declared shapes, the params' dtype, finite values, zero grads on an empty batch, purity."""
    name, layer, in_shape = data.draw(FAMILIES[family], label="spec")
    rng = np.random.default_rng(seed)
    got = init_or_named_error(name, layer, in_shape, dtype, rng)
    assume(got is not None)
    out_shape, params = got
    x = make_x(in_shape, n, dtype, rng)
    x_before = [a.copy() for a in arrays(x)]
    p_before = [a.copy() for a in tree_leaves(params)]
    fwd_rng = np.random.default_rng(seed + 1)
    if "batch_norm" in repr(layer) and train and n < 2 and (n == 0 or all(d == 1 for d in in_shape[1:])):
        with pytest.raises(ValueError, match=r"batch_norm: training needs at least 2 values per channel"):
            layer.forward(params, x, rng=fwd_rng, train=train)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0, no mean of an empty slice, no overflow
        y, cache = layer.forward(params, x, rng=fwd_rng, train=train)
        outs = (y,) if not multi(out_shape) else y
        for o, s in zip(outs, (out_shape,) if not multi(out_shape) else out_shape, strict=True):
            assert o.shape == (n,) + tuple(s) and o.dtype == dtype, (o.shape, o.dtype, s)
            assert np.isfinite(o).all()
        dy = make_x(out_shape, n, dtype, rng)
        grads, dx = layer.backward(params, cache, dy)
        for a, b in zip(arrays(dx), arrays(x), strict=True):
            assert a.shape == b.shape and a.dtype == dtype and np.isfinite(a).all()
        want = trainable(params)
        assert tree_structure(grads) == tree_structure(want)
        for (path, g), p in zip(tree_leaves_with_paths(grads), tree_leaves(want), strict=True):
            assert g.shape == p.shape and g.dtype == p.dtype and np.isfinite(g).all(), path
            if n == 0:
                assert not g.any(), f"{path}: an empty batch must give zero gradients"
        new = layer.update_state(params, cache)
        assert tree_structure(new) == tree_structure(params)
    assert all(np.array_equal(a, b) for a, b in zip(arrays(x), x_before, strict=True)), "forward/backward changed x"
    assert all(np.array_equal(a, b) for a, b in zip(tree_leaves(params), p_before, strict=True)), "params changed"


@by_family
@settings()
@given(seed=SEEDS, dtype=st.sampled_from([np.float16, np.float32]), data=st.data())
def test_low_precision_agrees_with_float64(family, seed, dtype, data):
    """float16/float32 compute the float64 result within a tolerance scaled by eps (float16: not refused)."""
    name, layer, in_shape = data.draw(FAMILIES[family], label="spec")
    rng = np.random.default_rng(seed)
    got = init_or_named_error(name, layer, in_shape, np.float64, rng)
    assume(got is not None)
    # normalizing by a small batch's spread is ill-conditioned in float16
    assume(dtype != np.float16 or not any(k in repr(layer) for k in ("batch_norm", "layer_norm")))
    _, p64 = got
    x64 = make_x(in_shape, 3, np.float64, rng)
    y64, _ = layer.forward(p64, x64, train=False)
    low = fc.tree_cast(p64, dtype)
    xl = tree_map(lambda a: a.astype(dtype), x64) if multi(in_shape) else x64.astype(dtype)
    yl, _ = layer.forward(low, xl, train=False)
    for a, b in zip(arrays(yl), arrays(y64), strict=True):
        assert a.dtype == dtype
        tol = 64 * np.finfo(dtype).eps * (1 + float(np.abs(b).max(initial=0)))
        np.testing.assert_allclose(a.astype(np.float64), b, rtol=tol, atol=tol)


@by_family
@settings()
@given(seed=SEEDS, value=st.sampled_from([np.nan, np.inf, -np.inf]), data=st.data())
def test_nan_and_inf_inputs_are_data(family, seed, value, data):
    """NaN/Inf inputs are not errors: the call succeeds with the right shapes, and a NaN is never hidden
    (debug mode, ``functional_cnn.debug``, is what locates them)."""
    name, layer, in_shape = data.draw(FAMILIES[family], label="spec")
    rng = np.random.default_rng(seed)
    got = init_or_named_error(name, layer, in_shape, np.float32, rng)
    assume(got is not None)
    out_shape, params = got
    x = make_x(in_shape, 2, np.float32, rng)
    first = arrays(x)[0]
    first.flat[int(rng.integers(first.size))] = value
    with np.errstate(all="ignore"):
        y, cache = layer.forward(params, x, train=False)
        grads, dx = layer.backward(params, cache, make_x(out_shape, 2, np.float32, rng))
    assert [a.shape for a in arrays(y)] == [(2,) + tuple(s) for s in (out_shape if multi(out_shape) else (out_shape,))]
    if value != value and not any(k in repr(layer) for k in CONV_LIKE):  # strided windows may skip the NaN
        assert any(np.isnan(a).any() for a in arrays(y)), "a NaN input vanished"


# ----------------------------------------------------------------------------- bad inputs
BAD_DTYPES = [np.uint8, np.int32, np.int64, bool, object, np.complex64, np.complex128, ">f4", "U1"]


@by_family
@settings()
@given(bad=st.sampled_from(BAD_DTYPES), seed=SEEDS, data=st.data())
def test_non_float_inputs_are_refused(family, bad, seed, data):
    name, layer, in_shape = data.draw(FAMILIES[family], label="spec")
    got = init_or_named_error(name, layer, in_shape, np.float32, np.random.default_rng(seed))
    assume(got is not None)
    x = make_x(in_shape, 2, np.float32, np.random.default_rng(seed))
    x = tuple(a.astype(bad) for a in x) if multi(in_shape) else x.astype(bad)
    with pytest.raises(TypeError) as info:
        layer.forward(got[1], x, rng=np.random.default_rng(0), train=True)
    assert_named(info.value, name)


@settings()
@given(spec=LAYER_SPECS, seed=SEEDS, other=st.sampled_from([np.float16, np.float64]))
def test_float_dtype_other_than_the_params(spec, seed, other):
    """A layer with params refuses x of another float dtype; a param-free layer computes in x's dtype."""
    name, layer, in_shape = spec
    got = init_or_named_error(name, layer, in_shape, np.float32, np.random.default_rng(seed))
    assume(got is not None)
    x = make_x(in_shape, 2, other, np.random.default_rng(seed))
    if tree_leaves(got[1]):
        with pytest.raises(TypeError) as info:
            layer.forward(got[1], x, rng=np.random.default_rng(0), train=True)
        assert_named(info.value, name)
        assert "dtype" in str(info.value)
    else:
        y, _ = layer.forward(got[1], x, rng=np.random.default_rng(0), train=True)
        assert all(a.dtype == other for a in arrays(y))


@by_family
@settings()
@given(seed=SEEDS, data=st.data())
def test_zero_length_axes_are_refused(family, seed, data):
    """An example must hold at least one value: a 0 in in_shape or in x.shape[1:] is a named ValueError."""
    name, layer, in_shape = data.draw(FAMILIES[family], label="spec")
    rng = np.random.default_rng(seed)
    got = init_or_named_error(name, layer, in_shape, np.float32, rng)
    assume(got is not None)
    shapes = in_shape if multi(in_shape) else (in_shape,)
    which = data.draw(st.integers(0, len(shapes) - 1))
    axis = data.draw(st.integers(0, len(shapes[which]) - 1))
    bad = list(shapes)
    bad[which] = tuple(0 if i == axis else d for i, d in enumerate(shapes[which]))
    bad_shape = tuple(bad) if multi(in_shape) else bad[0]
    with pytest.raises(ValueError) as info:
        layer.init(rng, bad_shape, np.float32)
    assert_named(info.value, name)
    with pytest.raises(ValueError) as info:
        layer.forward(got[1], make_x(bad_shape, 2, np.float32, rng), rng=rng, train=True)
    assert_named(info.value, name)


NOT_ARRAYS = [None, "x", {"x": 1}, object(), 3 + 1j, [[1.0, 2.0], [1.0]], np.float32(1.0)]


@settings()
@given(spec=LAYER_SPECS, bad=st.sampled_from(NOT_ARRAYS), seed=SEEDS)
def test_non_arrays_are_refused(spec, bad, seed):
    name, layer, in_shape = spec
    got = init_or_named_error(name, layer, in_shape, np.float32, np.random.default_rng(seed))
    assume(got is not None)
    with pytest.raises((TypeError, ValueError)) as info:
        layer.forward(got[1], bad, rng=np.random.default_rng(0), train=True)
    assert_named(info.value, name)


@settings()
@given(spec=LAYER_SPECS, seed=SEEDS, change=st.sampled_from(["batch", "rank", "shape"]))
def test_wrong_dy_is_refused(spec, seed, change):
    name, layer, in_shape = spec
    rng = np.random.default_rng(seed)
    got = init_or_named_error(name, layer, in_shape, np.float32, rng)
    assume(got is not None)
    out_shape, params = got
    y, cache = layer.forward(params, make_x(in_shape, 2, np.float32, rng), rng=rng, train=False)

    def spoil(a):
        return {"batch": a[:1], "rank": a[..., None], "shape": np.concatenate([a, a], axis=-1)}[change]

    dy = tuple(spoil(a) for a in y) if multi(out_shape) else spoil(y)
    with pytest.raises((ValueError, TypeError)) as info:
        layer.backward(params, cache, dy)
    assert_named(info.value, name)


@settings()
@given(spec=LAYER_SPECS, seed=SEEDS, bad=st.sampled_from([np.int64, np.complex64, bool, object]))
def test_non_float_dy_is_refused(spec, seed, bad):
    name, layer, in_shape = spec
    rng = np.random.default_rng(seed)
    got = init_or_named_error(name, layer, in_shape, np.float32, rng)
    assume(got is not None)
    y, cache = layer.forward(got[1], make_x(in_shape, 2, np.float32, rng), rng=rng, train=True)
    dy = tuple(a.astype(bad) for a in y) if multi(got[0]) else y.astype(bad)
    with pytest.raises(TypeError) as info:
        layer.backward(got[1], cache, dy)
    assert_named(info.value, name)


# ----------------------------------------------------------------------------- params structure
# The layers that have params (a parameter-free layer such as relu or a pool ignores them).
WITH_PARAMS = dict(conv2d=conv2d_spec(), conv1d=conv1d_spec(), dense=dense_spec(), batch_norm=batch_norm_spec(),
                   elementwise=elementwise_spec(names=("bias", "layer_norm")),
                   combinator=combinator_spec(kinds=("serial", "residual", "parallel")))


@pytest.mark.parametrize("family", list(WITH_PARAMS))
@settings()
@given(seed=SEEDS, wrong=st.sampled_from(["none", "other record", "tuple", "short", "long"]), data=st.data())
def test_params_of_another_structure_show_both(family, seed, wrong, data):
    """Wrong record type or tuple length: a TypeError naming the layer and listing what was passed by path."""
    name, layer, in_shape = data.draw(WITH_PARAMS[family], label="spec")
    rng = np.random.default_rng(seed)
    got = init_or_named_error(name, layer, in_shape, np.float32, rng)
    assume(got is not None)
    params = got[1]
    assert params is not None, name
    other = BiasParams(np.ones(3, np.float32)) if not isinstance(params, BiasParams) else DenseParams(np.ones((2, 2)))
    if isinstance(params, tuple):
        bad = {"none": None, "other record": other, "tuple": [*params], "short": params[:-1],
               "long": params + (None,)}[wrong]
    else:
        bad = {"none": None, "other record": other, "tuple": (params,), "short": (), "long": (params, params)}[wrong]
    with pytest.raises(TypeError) as info:
        layer.forward(bad, make_x(in_shape, 2, np.float32, rng), rng=rng, train=True)
    assert_named(info.value, name, "params")
    msg = str(info.value)
    if bad is not None and tree_leaves(bad):  # what was passed, leaf by leaf with its path
        path = tree_leaves_with_paths(bad)[0][0]
        assert f"{path or '<root>'}: " in msg, msg


# ----------------------------------------------------------------------------- hyperparameters
JUNK = st.one_of(
    st.integers(-3, 9), st.sampled_from([2**31, 10**30, np.int64(2), np.int64(-1)]),
    st.floats(-1e3, 1e3), st.sampled_from([math.nan, math.inf, -math.inf, np.float32(0.5), 1e-300]),
    st.booleans(), st.none(), st.sampled_from(["", "a", "same", "valid", "zeros", "he_normal"]),
    st.tuples(st.integers(-1, 3)), st.tuples(st.integers(-1, 3), st.integers(-1, 3)),
    st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)), st.lists(st.integers(1, 3), max_size=2),
    st.sampled_from([np.array(2), np.array([1, 2]), object(), 1 + 2j, {"a": 1}]),
)

FACTORIES = {  # name: (factory, valid kwargs, a valid per-example input shape)
    "conv2d": (fc.conv2d, dict(out_channels=2, kernel_size=3, stride=1, padding=0, dilation=1, groups=1,
                               use_bias=True, w_init="he_normal", b_init="zeros"), (2, 7, 7)),
    "conv1d": (fc.conv1d, dict(out_channels=2, kernel_size=3, stride=1, padding=0, dilation=1, groups=1,
                               use_bias=True, w_init="he_normal", b_init="zeros"), (2, 9)),
    "max_pool2d": (fc.max_pool2d, dict(size=2, stride=None), (2, 7, 7)),
    "avg_pool2d": (fc.avg_pool2d, dict(size=2, stride=None), (2, 7, 7)),
    "max_pool1d": (fc.max_pool1d, dict(size=2, stride=None), (2, 9)),
    "avg_pool1d": (fc.avg_pool1d, dict(size=2, stride=None), (2, 9)),
    "dense": (fc.dense, dict(out_features=2, use_bias=True, w_init="he_normal", b_init="zeros"), (3,)),
    "bias": (fc.bias, dict(b_init="zeros"), (3,)),
    "reshape": (fc.reshape, dict(shape=(3, 2)), (6,)),
    "leaky_relu": (fc.leaky_relu, dict(negative_slope=0.1), (3,)),
    "gelu": (fc.gelu, dict(approximate=False), (3,)),
    "softmax": (fc.softmax, dict(axis=-1), (3,)),
    "log_softmax": (fc.log_softmax, dict(axis=-1), (3,)),
    "dropout": (fc.dropout, dict(drop_rate=0.5), (3,)),
    "batch_norm": (fc.batch_norm, dict(momentum=0.9, eps=1e-5), (3,)),
    "layer_norm": (fc.layer_norm, dict(eps=1e-5), (3,)),
    "fan_out": (fc.fan_out, dict(n=2), (3,)),
    "fan_in_concat": (fc.fan_in_concat, dict(axis=1), ((3,), (2,))),
    "residual": (fc.residual, dict(block=fc.relu(), projection=None), (3,)),
    "serial": (lambda argument: fc.serial(argument), dict(argument=fc.relu()), (3,)),
    "parallel": (lambda argument: fc.parallel(argument, fc.relu()), dict(argument=fc.relu()), ((3,), (2,))),
}
HYPER = [(name, arg) for name, (_, kw, _) in FACTORIES.items() for arg in kw]


# Sizes far beyond the inputs: construction must cost nothing, init must refuse the window.
LARGE = st.sampled_from([3000, 10**6])
GEOMETRY = ("size", "stride", "kernel_size", "dilation")


@settings()
@given(which=st.sampled_from(HYPER), data=st.data(), seed=SEEDS)
def test_junk_hyperparameters(which, data, seed):
    """Any value for any argument: a working layer, or a TypeError/ValueError naming the factory and argument."""
    name, arg = which
    factory, kwargs, in_shape = FACTORIES[name]
    value = data.draw(st.one_of(JUNK, LARGE) if arg in GEOMETRY else JUNK, label="value")
    try:
        layer = factory(**{**kwargs, arg: value})
    except (ValueError, TypeError) as err:
        assert_named(err, name, arg)
        return
    rng = np.random.default_rng(seed)
    try:
        out_shape, params = layer.init(rng, in_shape, np.float32)
    except (ValueError, TypeError) as err:  # e.g. a kernel of 9 on a 7x7 input
        assert_named(err, name)
        return
    x = make_x(in_shape, 2, np.float32, rng)
    with np.errstate(over="ignore"):  # a finite eps of 1e300 overflows float32: documented
        y, _ = layer.forward(params, x, rng=rng, train=True)
    assert [a.shape for a in arrays(y)] == [(2,) + tuple(s) for s in (out_shape if multi(out_shape) else (out_shape,))]


# ----------------------------------------------------------------------------- documented cases
def _p(layer, shape, dtype=np.float32):
    return layer.init(np.random.default_rng(0), shape, dtype)[1]


F32 = np.float32
X4 = np.zeros((2, 3, 5, 5), F32)
BN = fc.batch_norm()
SER = fc.serial(fc.dense(3), fc.relu())
SER_P = _p(SER, (4,))


def _bn_params(**over):
    fields = dict(gamma=np.ones(3, F32), beta=np.zeros(3, F32), mean=np.zeros(3, F32), var=np.ones(3, F32))
    fields.update(over)
    return BatchNormParams(**fields)


ERROR_CASES = [
    Case("layers", "conv2d(0, 3)", lambda: fc.conv2d(0, 3), ValueError, "conv2d: out_channels must be an integer >= 1"),
    Case("layers", "conv2d(2, 3, stride=10**30)", lambda: fc.conv2d(2, 3, stride=10**30), ValueError,
         "conv2d: stride must be an integer <= 2147483647"),
    Case("layers", "conv2d(2, 3, padding='full')", lambda: fc.conv2d(2, 3, padding="full"), ValueError,
         "conv2d: padding must be an int, a pair of ints, 'valid' or 'same'"),
    Case("layers", "conv1d(2, 3, use_bias=1)", lambda: fc.conv1d(2, 3, use_bias=1), TypeError,
         "conv1d: use_bias must be a bool"),
    Case("layers", "conv1d(3, 3, groups=2)", lambda: fc.conv1d(3, 3, groups=2), ValueError,
         "conv1d: out_channels (=3) must be divisible by groups (=2)"),
    Case("layers", "max_pool2d(2.0)", lambda: fc.max_pool2d(2.0), TypeError, "max_pool2d: size must be an integer"),
    Case("layers", "dense(True)", lambda: fc.dense(True), TypeError, "dense: out_features must be an integer"),
    Case("layers", "leaky_relu(nan)", lambda: fc.leaky_relu(math.nan), ValueError,
         "leaky_relu: negative_slope must be finite"),
    Case("layers", "softmax(axis=0)", lambda: fc.softmax(0), ValueError, "softmax: axis 0 is the batch axis"),
    Case("layers", "dropout(1.0)", lambda: fc.dropout(1.0), ValueError, "dropout: drop_rate must be in [0.0, 1.0)"),
    Case("layers", "batch_norm(momentum='0.9')", lambda: fc.batch_norm("0.9"), TypeError,
         "batch_norm: momentum must be a real number"),
    Case("layers", "reshape((0,))", lambda: fc.reshape((0,)), ValueError,
         "reshape: shape may hold one -1 and otherwise sizes >= 1"),
    Case("layers", "fan_out(2**31)", lambda: fc.fan_out(2**31), ValueError, "fan_out: n must be an integer <= "),
    Case("layers", "residual(block=3)", lambda: fc.residual(3), TypeError, "residual: argument 0 must be a Layer"),
    Case("layers", "serial()", lambda: fc.serial(), ValueError, "serial: needs at least one layer"),
    Case("layers", "conv2d init, in_shape (3, 0, 5)", lambda: fc.conv2d(2, 3).init(None, (3, 0, 5)), ValueError,
         "conv2d: in_shape[1] must be in [1, 2147483647], got 0"),
    Case("layers", "dense init, dtype=np.int32", lambda: fc.dense(2).init(np.random.default_rng(0), (3,), np.int32),
         TypeError, "dense: dtype must be float16, float32 or float64"),
    Case("layers", "serial init, in_shape None", lambda: SER.init(np.random.default_rng(0), None), TypeError,
         "serial[0] (dense) -> dense: in_shape must be a tuple of ints"),
    Case("layers", "conv2d forward, uint8 x", lambda: fc.conv2d(2, 3).forward(_p(fc.conv2d(2, 3), (3, 5, 5)),
                                                                               X4.astype(np.uint8)),
         TypeError, "conv2d: x must have a floating dtype (float16/32/64), got uint8"),
    Case("layers", "conv2d forward, float64 x, float32 params",
         lambda: fc.conv2d(2, 3).forward(_p(fc.conv2d(2, 3), (3, 5, 5)), X4.astype(np.float64)), TypeError,
         "conv2d: x has dtype float64 but params have dtype float32"),
    Case("layers", "relu forward, x of shape (2, 0)", lambda: fc.relu().forward(None, np.zeros((2, 0), F32)),
         ValueError, "relu: x must hold at least one value per example"),
    Case("layers", "softmax forward, a 0-d x", lambda: fc.softmax().forward(None, np.float32(1.0)), ValueError,
         "softmax: x must have a batch axis (rank >= 1)"),
    Case("layers", "relu forward, ragged list", lambda: fc.relu().forward(None, [[1.0, 2.0], [1.0]]), ValueError,
         "relu: x must be an array of one shape, got a ragged list"),
    Case("layers", "dense forward, big-endian '>f4' x", lambda: fc.dense(2).forward(_p(fc.dense(2), (3,)),
                                                                                      np.zeros((2, 3), ">f4")),
         TypeError, "dense: x must have a floating dtype (float16/32/64), got >f4; it is float32 in non-native"),
    Case("layers", "batch_norm forward, train=True on one example", lambda: BN.forward(_p(BN, (3,)),
                                                                                       np.ones((1, 3), F32),
                                                                                       train=True),
         ValueError, "batch_norm: training needs at least 2 values per channel"),
    Case("layers", "batch_norm forward, train=True on N=0", lambda: BN.forward(_p(BN, (3,)), np.ones((0, 3), F32),
                                                                               train=True),
         ValueError, "batch_norm: training needs at least 2 values per channel"),
    Case("layers", "batch_norm forward, mean of shape (2,) for 3 channels",
         lambda: BN.forward(_bn_params(mean=np.zeros(2, F32)), np.ones((2, 3), F32)), ValueError,
         "batch_norm: params.mean must have shape (3,)"),
    Case("layers", "batch_norm forward, negative running var",
         lambda: BN.forward(_bn_params(var=-np.ones(3, F32)), np.ones((2, 3), F32)), ValueError,
         "batch_norm: params.var (running variance) must be >= 0"),
    Case("layers", "dropout forward, train=True, rng=None",
         lambda: fc.dropout(0.5).forward(None, np.ones((2, 3), F32), train=True), ValueError,
         "dropout: needs rng=np.random.Generator when train=True"),
    Case("layers", "conv2d forward, DenseParams", lambda: fc.conv2d(2, 3).forward(_p(fc.dense(2), (3,)), X4),
         TypeError, "conv2d: params must be Conv2DParams, got DenseParams"),
    Case("layers", "conv1d forward, w of shape (4, 3)",
         lambda: fc.conv1d(4, 3).forward(Conv1DParams(np.ones((4, 3), F32), np.ones(4, F32)), np.ones((2, 3, 6), F32)),
         ValueError, "conv1d: params.w must have shape (4, 3, 3)"),
    Case("layers", "serial forward, params tuple one short", lambda: SER.forward(SER_P[:1], np.ones((2, 4), F32)),
         TypeError, "serial: params must be a tuple of 2 child params (one per layer), got tuple of length 1"),
    Case("layers", "serial forward, params of another layer in slot 0",
         lambda: SER.forward((Conv2DParams(np.ones((1, 1, 1, 1), F32)), None), np.ones((2, 4), F32)), TypeError,
         "serial[0] (dense) -> dense: params must be DenseParams, got Conv2DParams"),
    Case("layers", "serial backward, cache tuple one short",
         lambda: SER.backward(SER_P, SER.forward(SER_P, np.ones((2, 4), F32))[1][:1], np.ones((2, 3), F32)),
         TypeError, "serial: cache must be the tuple of 2 child caches"),
    Case("layers", "conv2d backward, dy of another shape",
         lambda: fc.conv2d(2, 3).backward(_p(fc.conv2d(2, 3), (3, 5, 5)),
                                          fc.conv2d(2, 3).forward(_p(fc.conv2d(2, 3), (3, 5, 5)), X4)[1],
                                          np.ones((2, 2, 3), F32)),
         ValueError, "conv2d: dy must have shape (2, 2, 3, 3), got (2, 2, 3)"),
    Case("layers", "layer_norm backward, complex dy",
         lambda: fc.layer_norm().backward(_p(fc.layer_norm(), (3,)),
                                          fc.layer_norm().forward(_p(fc.layer_norm(), (3,)), np.ones((2, 3), F32))[1],
                                          np.ones((2, 3), np.complex64)),
         TypeError, "layer_norm: dy must have dtype float32 (the forward output's), got complex64"),
    Case("layers", "fan_in_concat forward, inputs of different ranks",
         lambda: fc.fan_in_concat(1).forward(None, (np.ones((2, 3), F32), np.ones((2, 3, 1), F32))), ValueError,
         "fan_in_concat: all inputs must have the same rank"),
    Case("layers", "parallel forward, one array instead of a tuple",
         lambda: fc.parallel(fc.relu(), fc.relu()).forward((None, None), np.ones((2, 3), F32)), TypeError,
         "parallel: x must be a non-empty tuple of arrays"),
]


NET = fc.serial(fc.flatten(), fc.dense(3))
NET_P = _p(NET, (2, 2))
XS = np.random.default_rng(0).standard_normal((8, 2, 2)).astype(F32)
YS = np.arange(8) % 3


def _fit(**kw):
    args = dict(net=NET, params=NET_P, loss=fc.softmax_cross_entropy, optimizer=fc.sgd(0.1), data=(XS, YS),
                epochs=1, batch_size=4, seed=0)
    return next(fc.fit(**{**args, **kw}))


def _step(loss=fc.softmax_cross_entropy, batch=(XS, YS)):
    return fc.make_step(NET, loss, fc.sgd(0.1))(NET_P, fc.sgd(0.1).init(NET_P), batch)


ERROR_CASES += [
    Case("training", "fit(..., data=None)", lambda: _fit(data=None), TypeError,
         "fit: data must be a pair (x, y), got NoneType"),
    Case("training", "fit(..., data=(x,))", lambda: _fit(data=(XS,)), TypeError,
         "fit: data must be a pair (x, y), got tuple of length 1"),
    Case("training", "fit(..., data=(int x, y))", lambda: _fit(data=(XS.astype(int), YS)), TypeError,
         "fit: x must have a floating dtype"),
    Case("training", "fit(..., seed=-1)", lambda: _fit(seed=-1), ValueError, "fit: seed must be an integer >= 0"),
    Case("training", "fit(..., shuffle='yes')", lambda: _fit(shuffle="yes"), TypeError,
         "fit: shuffle must be a bool"),
    Case("training", "fit(..., eval_batch_size=0)", lambda: _fit(eval_batch_size=0), ValueError,
         "fit: eval_batch_size must be an integer >= 1"),
    Case("training", "fit(..., test_data='t')", lambda: _fit(test_data="t"), TypeError,
         "fit: test_data must be a pair (x, y), got str"),
    Case("training", "fit(..., opt_state='s')", lambda: _fit(opt_state="s"), TypeError,
         "fit: opt_state must be a state made by optimizer.init"),
    Case("training", "make_step(...) with a loss returning a float", lambda: _step(loss=lambda a, b: 1.0), TypeError,
         "make_step: loss must return (value, dpred), got float"),
    Case("training", "step(params, state, (x,))", lambda: _step(batch=(XS,)), TypeError,
         "make_step: batch must be a pair (x, y), got tuple of length 1"),
    Case("training", "predict('net', params, x)", lambda: fc.predict("net", NET_P, XS), TypeError,
         "predict: net must be a Layer, got str"),
    Case("training", "evaluate(net, params, data, loss='ce')", lambda: fc.evaluate(NET, NET_P, (XS, YS), loss="ce"),
         TypeError, "evaluate: loss must be callable"),
    Case("training", "evaluate(net, params, (x[:0], y[:0]))", lambda: fc.evaluate(NET, NET_P, (XS[:0], YS[:0])),
         ValueError, "evaluate: the dataset is empty"),
    Case("training", "check_layer(dense(2), rng, (3,), batch_size=-1)",
         lambda: fc.check_layer(fc.dense(2), np.random.default_rng(0), (3,), batch_size=-1), ValueError,
         "check_layer: batch_size must be an integer >= 1"),
    Case("training", "check_loss('loss', rng, pred, target)",
         lambda: fc.check_loss("loss", np.random.default_rng(0), np.zeros((2, 3)), np.array([0, 1])), TypeError,
         "check_loss: loss must be callable"),
    Case("training", "summary(net, (2, 0))", lambda: fc.summary(NET, (2, 0)), ValueError,
         "summary: in_shape[1] must be in [1, 2147483647], got 0"),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.what)
def test_documented_bad_inputs(case):
    case.check()

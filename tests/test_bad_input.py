"""Bad input to layers and combinators: a ValueError/TypeError naming the layer, the argument, got and expected."""
import numpy as np
import pytest

import functional_cnn as fc

RNG = np.random.default_rng(0)


def params_of(layer, in_shape, dtype=np.float32):
    return layer.init(np.random.default_rng(0), in_shape, dtype=dtype)[1]


@pytest.mark.parametrize("factory, kwargs, exc, match", [
    (fc.conv2d, dict(out_channels=0, kernel_size=3), ValueError, r"conv2d: out_channels must be an integer >= 1, got 0"),
    (fc.conv2d, dict(out_channels=2, kernel_size=0), ValueError, r"conv2d: kernel_size must be an integer >= 1, got 0"),
    (fc.conv2d, dict(out_channels=2, kernel_size=3, stride=0), ValueError, r"conv2d: stride must be an integer >= 1, got 0"),
    (fc.conv2d, dict(out_channels=2, kernel_size=3, stride=-1), ValueError, r"conv2d: stride must be .* got -1"),
    (fc.conv2d, dict(out_channels=2, kernel_size=3, stride=1.5), TypeError, r"conv2d: stride must be an integer .* got 1.5 \(float\)"),
    (fc.conv2d, dict(out_channels=2, kernel_size=(3, 3, 3)), ValueError, r"conv2d: kernel_size must be an int or a pair"),
    (fc.conv2d, dict(out_channels=2, kernel_size=3, padding=-1), ValueError, r"conv2d: padding must be an integer >= 0, got -1"),
    (fc.conv2d, dict(out_channels=2, kernel_size=3, padding="full"), ValueError, r"conv2d: padding must be .* 'valid' or 'same', got 'full'"),
    (fc.conv2d, dict(out_channels=2, kernel_size=3, dilation=0), ValueError, r"conv2d: dilation must be an integer >= 1"),
    (fc.conv2d, dict(out_channels=3, kernel_size=3, groups=2), ValueError, r"conv2d: out_channels \(=3\) must be divisible by groups \(=2\)"),
    (fc.conv2d, dict(out_channels=2, kernel_size=3, use_bias="yes"), TypeError, r"conv2d: use_bias must be a bool"),
    (fc.conv2d, dict(out_channels=2, kernel_size=3, w_init="magic"), ValueError, r"conv2d: w_init must be a callable or one of"),
    (fc.max_pool2d, dict(size=0), ValueError, r"max_pool2d: size must be an integer >= 1, got 0"),
    (fc.max_pool2d, dict(size=2, stride=-2), ValueError, r"max_pool2d: stride must be an integer >= 1, got -2"),
    (fc.avg_pool2d, dict(size=2.0), TypeError, r"avg_pool2d: size must be an integer >= 1, got 2.0 \(float\)"),
    (fc.dense, dict(out_features=-3), ValueError, r"dense: out_features must be an integer >= 1, got -3"),
    (fc.dense, dict(out_features=True), TypeError, r"dense: out_features must be an integer"),
    (fc.leaky_relu, dict(negative_slope=float("nan")), ValueError, r"leaky_relu: negative_slope must be finite"),
    (fc.softmax, dict(axis=0), ValueError, r"softmax: axis 0 is the batch axis"),
    (fc.reshape, dict(shape=(-1, -1)), ValueError, r"reshape: shape may hold one -1"),
    (fc.reshape, dict(shape="3x4"), TypeError, r"reshape: shape must be a tuple of ints"),
])
def test_bad_hyperparameters(factory, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        factory(**kwargs)


def test_wrong_rank():
    conv = fc.conv2d(2, 3)
    p = params_of(conv, (1, 5, 5))
    with pytest.raises(ValueError, match=r"conv2d: x must have rank 4 \(N, C, H, W\), got shape \(1, 5, 5\) \(rank 3\)"):
        conv.forward(p, np.zeros((1, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"conv2d: in_shape must be \(C, H, W\) per example, got \(5, 5\)"):
        conv.init(RNG, (5, 5))
    with pytest.raises(ValueError, match=r"max_pool2d: x must have rank 4"):
        fc.max_pool2d(2).forward(None, np.zeros((4, 4), np.float32))
    d = fc.dense(3)
    with pytest.raises(ValueError, match=r"dense: x must have rank 2 .*put flatten\(\) before dense"):
        d.forward(params_of(d, (4,)), np.zeros((2, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"dense: in_shape must be \(F_in,\)"):
        d.init(RNG, (1, 2, 2))


def test_channel_count_that_does_not_match_the_params():
    conv = fc.conv2d(2, 3)
    p = params_of(conv, (3, 5, 5))
    with pytest.raises(ValueError, match=r"conv2d: x has 1 channels \(shape \(2, 1, 5, 5\)\), params expect 3"):
        conv.forward(p, np.zeros((2, 1, 5, 5), np.float32))
    d = fc.dense(3)
    with pytest.raises(ValueError, match=r"dense: x has 5 features .* params expect 4"):
        d.forward(params_of(d, (4,)), np.zeros((2, 5), np.float32))


def test_kernel_larger_than_the_padded_input():
    with pytest.raises(ValueError, match=r"conv2d: kernel .* is larger than the padded input \(4, 4\)"):
        fc.conv2d(2, 5).init(RNG, (1, 4, 4))
    with pytest.raises(ValueError, match=r"conv2d: kernel \(effective size \(5, 5\) with dilation \(2, 2\)\)"):
        fc.conv2d(2, 3, dilation=2, padding=0).init(RNG, (1, 4, 4))
    conv = fc.conv2d(2, 3)
    p = params_of(conv, (1, 5, 5))
    with pytest.raises(ValueError, match=r"conv2d: kernel .* larger than the padded input \(2, 2\)"):
        conv.forward(p, np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"max_pool2d: window \(3, 3\) is larger than the input's spatial size \(2, 2\)"):
        fc.max_pool2d(3).forward(None, np.zeros((1, 1, 2, 2), np.float32))


@pytest.mark.parametrize("bad, exc, match", [
    (np.zeros((1, 1, 5, 5), dtype=object), TypeError, r"conv2d: x must have a floating dtype .* got object"),
    (np.zeros((1, 1, 5, 5), dtype=complex), TypeError, r"conv2d: x must have a floating dtype .* got complex128"),
    (np.zeros((1, 1, 5, 5), dtype=np.uint8), TypeError, r"conv2d: x must have a floating dtype .* got uint8.*astype"),
    (np.zeros((1, 1, 5, 5), dtype=bool), TypeError, r"got bool"),
    ("image", TypeError, r"conv2d: x must be a numpy array, got str"),
    (np.zeros((1, 1, 5, 5), dtype=np.float64), TypeError, r"conv2d: x has dtype float64 but params have dtype float32"),
])
def test_bad_dtypes(bad, exc, match):
    conv = fc.conv2d(2, 3)
    with pytest.raises(exc, match=match):
        conv.forward(params_of(conv, (1, 5, 5)), bad)


def test_wrong_params_record_or_dy_shape():
    conv = fc.conv2d(2, 3)
    dense_params = params_of(fc.dense(2), (3,))
    with pytest.raises(TypeError, match="conv2d: params must be Conv2DParams, got DenseParams"):
        conv.forward(dense_params, np.zeros((1, 1, 5, 5), np.float32))
    p = params_of(conv, (1, 5, 5))
    y, cache = conv.forward(p, np.zeros((1, 1, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"conv2d: dy must have shape \(1, 2, 3, 3\), got \(1, 2, 3\)"):
        conv.backward(p, cache, np.zeros((1, 2, 3), np.float32))


def test_serial_errors_name_the_position_and_child():
    net = fc.serial(fc.conv2d(2, 3), fc.relu(), fc.flatten(), fc.dense(4))
    _, p = net.init(RNG, (1, 6, 6))
    with pytest.raises(ValueError, match=r"serial\[0\] \(conv2d\) -> conv2d: x has 3 channels"):
        net.forward(p, np.zeros((1, 3, 6, 6), np.float32))
    with pytest.raises(TypeError, match=r"serial: params must be a tuple of 4 child params \(one per layer\), got tuple of length 3"):
        net.forward(p[:3], np.zeros((1, 1, 6, 6), np.float32))
    with pytest.raises(TypeError, match=r"serial: argument 1 must be a Layer, got function \(did you forget to call"):
        fc.serial(fc.dense(2), fc.relu)
    with pytest.raises(ValueError, match="serial: needs at least one layer"):
        fc.serial()
    with pytest.raises(TypeError, match="serial: rng must be a numpy.random.Generator, got int"):
        net.forward(p, np.zeros((1, 1, 6, 6), np.float32), rng=0)


def test_init_rejects_bad_shapes_and_dtypes():
    with pytest.raises(TypeError, match=r"dense: in_shape\[0\] must be an int, got 2.5"):
        fc.dense(2).init(RNG, (2.5,))
    with pytest.raises(TypeError, match=r"conv2d: dtype must be float16, float32 or float64, got int32"):
        fc.conv2d(2, 3).init(RNG, (1, 5, 5), dtype=np.int32)
    with pytest.raises(ValueError, match=r"reshape: cannot reshape in_shape \(2, 3\) \(6 values\) to \(4, -1\)"):
        fc.reshape((4, -1)).init(RNG, (2, 3))


def test_empty_batch_flows_without_nan():
    net = fc.serial(fc.conv2d(2, 3), fc.relu(), fc.max_pool2d(2), fc.flatten(), fc.dense(3))
    _, p = net.init(RNG, (1, 8, 8))
    y, cache = net.forward(p, np.zeros((0, 1, 8, 8), np.float32))
    assert y.shape == (0, 3)
    grads, dx = net.backward(p, cache, y)
    assert dx.shape == (0, 1, 8, 8)
    assert all(np.all(g == 0) for g in fc.tree_leaves(grads))


@pytest.mark.parametrize("layer, in_shape", [
    (fc.conv2d(2, 3), (1, 5, 5)), (fc.conv2d(4, 3, groups=2), (2, 5, 5)), (fc.dense(3), (4,)),
    (fc.max_pool2d(2), (1, 4, 4)), (fc.avg_pool2d(2), (1, 4, 4)), (fc.global_avg_pool2d(), (1, 4, 4)),
    (fc.relu(), (3,)), (fc.sigmoid(), (3,)), (fc.identity(), (3,)),
], ids=lambda v: getattr(v, "name", ""))
def test_backward_refuses_a_non_float_or_misshapen_dy(layer, in_shape):
    _, p = layer.init(np.random.default_rng(0), in_shape)
    y, cache = layer.forward(p, np.ones((2,) + in_shape, np.float32))
    with pytest.raises(TypeError, match=rf"{layer.name}: dy must have dtype .* got int64"):
        layer.backward(p, cache, np.ones(y.shape, dtype=np.int64))
    with pytest.raises(ValueError, match=rf"{layer.name}: dy must have shape"):
        layer.backward(p, cache, np.ones(y.shape[:-1] + (y.shape[-1] + 1,), np.float32))


def test_grouped_conv_on_an_empty_batch():
    conv = fc.conv2d(4, 3, groups=2, padding=1)
    _, p = conv.init(RNG, (2, 5, 5))
    y, cache = conv.forward(p, np.zeros((0, 2, 5, 5), np.float32))
    grads, dx = conv.backward(p, cache, y)
    assert y.shape == (0, 4, 5, 5) and dx.shape == (0, 2, 5, 5) and not grads.w.any()

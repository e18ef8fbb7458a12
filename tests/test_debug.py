"""Debug mode names the first layer and direction where NaN or Inf appears."""
import attrs
import numpy as np
import pytest

import functional_cnn as fc
from functional_cnn.debug import NonFiniteError, count_nonfinite, debug
from functional_cnn.optim import sgd
from functional_cnn.train import fingerprint


def log_layer():
    """log(x): NaN for negative inputs in forward."""
    def forward(params, x, *, rng=None, train=False):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.log(x), x
    return fc.Layer("log", lambda rng, s, dtype=np.float32: (s, None), forward, lambda p, x, dy: (None, dy / x))


def exploding_backward():
    """Identity forward; backward multiplies by 1e39, which overflows float32."""
    base = fc.identity()
    def backward(params, cache, dy):
        with np.errstate(over="ignore"):
            return None, dy * np.float32(1e30) * np.float32(1e30)
    return attrs.evolve(base, name="explode", backward=backward)


def test_forward_nan_names_the_layer():
    net = debug(fc.serial(fc.dense(4), log_layer(), fc.dense(2)))
    _, p = net.init(np.random.default_rng(0), (3,))
    with pytest.raises(NonFiniteError,
                       match=r"forward of layer 1 log\(\): output has \d+ NaN .*input was finite") as info:
        net.forward(p, np.array([[1, 2, 3], [-1, -2, -3]], np.float32))  # outputs of opposite signs
    assert info.value.layer == "1" and info.value.direction == "forward"


def test_backward_inf_names_the_layer_and_tensor():
    net = debug(fc.serial(fc.dense(3), exploding_backward(), fc.dense(2)))
    _, p = net.init(np.random.default_rng(0), (3,))
    y, cache = net.forward(p, np.ones((2, 3), np.float32))
    with pytest.raises(NonFiniteError,
                       match=r"backward of layer 1 explode\(\): dx has 0 NaN and \d+ Inf \(dy was finite\)"):
        net.backward(p, cache, np.ones_like(y))


def test_nested_paths_follow_params_paths():
    inner = fc.residual(fc.serial(fc.dense(3), log_layer()))
    net = debug(fc.serial(fc.dense(3), inner))
    _, p = net.init(np.random.default_rng(1), (3,))
    with pytest.raises(NonFiniteError) as info:
        net.forward(p, -np.ones((4, 3), np.float32))  # some dense outputs are negative -> log gives NaN
    assert info.value.layer == "1.0.1"


def test_debug_network_computes_exactly_the_same_thing():
    net = fc.serial(fc.conv2d(2, 3), fc.batch_norm(), fc.relu(), fc.flatten(), fc.dropout(0.3), fc.dense(3))
    _, p = net.init(np.random.default_rng(0), (1, 6, 6))
    x = np.random.default_rng(1).random((4, 1, 6, 6), dtype=np.float32)
    y1, c1 = net.forward(p, x, rng=np.random.default_rng(2), train=True)
    y2, c2 = debug(net).forward(p, x, rng=np.random.default_rng(2), train=True)
    np.testing.assert_array_equal(y1, y2)
    g1, _ = net.backward(p, c1, y1)
    g2, _ = debug(net).backward(p, c2, y2)
    assert fingerprint(g1) == fingerprint(g2)
    assert fingerprint(net.update_state(p, c1)) == fingerprint(debug(net).update_state(p, c2))


def test_fit_debug_names_the_layer_and_plain_fit_names_the_step():
    net = fc.serial(fc.dense(4), log_layer(), fc.dense(2))
    _, p = net.init(np.random.default_rng(0), (3,))
    x = np.abs(np.random.default_rng(0).standard_normal((8, 3))).astype(np.float32)
    x[5, 0] = -1.0
    y = np.zeros(8, dtype=np.int64)
    with pytest.raises(NonFiniteError, match="forward of layer 1 log"):
        list(fc.fit(net, p, fc.softmax_cross_entropy, sgd(0.0), (x, y), epochs=1, batch_size=4, seed=0,
                    shuffle=False, debug=True))
    from functional_cnn.train import NonFiniteLossError
    with pytest.raises(NonFiniteLossError, match=r"at step \d"):
        list(fc.fit(net, p, fc.softmax_cross_entropy, sgd(0.0), (x, y), epochs=1, batch_size=4, seed=0,
                    shuffle=False))


def test_count_nonfinite_and_bad_argument():
    assert count_nonfinite((np.array([np.nan, np.inf, -np.inf, 1.0]), None, np.arange(3))) == (1, 2)
    with pytest.raises(TypeError, match="debug: net must be a Layer, got tuple"):
        debug((fc.relu(),))

"""Property tests: conv2d and pooling agree with naive references over random geometry."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import functional_cnn as fc
from layer_references import conv_reference, pool_reference

SETTINGS = settings()  # budget from the profile chosen in conftest.py (ci or --fuzz=long)


@st.composite
def conv_geometry(draw):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.just("same"), st.just("valid"), st.tuples(st.integers(0, 2), st.integers(0, 2))))
    groups = draw(st.sampled_from([1, 2]))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    eff = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
    h = draw(st.integers(eff[0], eff[0] + 5))
    w = draw(st.integers(eff[1], eff[1] + 5))
    n = draw(st.integers(1, 3))
    return dict(k=k, s=s, d=d, padding=padding, groups=groups, c_in=c_in, c_out=c_out, h=h, w=w, n=n)


@SETTINGS
@given(conv_geometry(), st.integers(0, 2**31 - 1))
def test_conv2d_matches_reference_and_gradient_shapes(g, seed):
    rng = np.random.default_rng(seed)
    layer = fc.conv2d(g["c_out"], g["k"], stride=g["s"], padding=g["padding"], dilation=g["d"], groups=g["groups"])
    out_shape, params = layer.init(rng, (g["c_in"], g["h"], g["w"]), dtype=np.float64)
    x = rng.standard_normal((g["n"], g["c_in"], g["h"], g["w"]))
    y, cache = layer.forward(params, x)
    assert y.shape == (g["n"],) + out_shape
    pad = "same" if g["padding"] == "same" else (0 if g["padding"] == "valid" else g["padding"])
    expect = conv_reference(stride=g["s"], padding=pad, dilation=g["d"], groups=g["groups"])(params, x)
    np.testing.assert_allclose(y, expect, rtol=1e-10, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    grads, dx = layer.backward(params, cache, dy)
    assert dx.shape == x.shape and grads.w.shape == params.w.shape
    # Adjoint identity: <conv(x), dy> - bias part == <x, dx> (the backward is the exact transpose).
    lhs = np.sum((y - params.b[None, :, None, None]) * dy)
    np.testing.assert_allclose(lhs, np.sum(x * dx), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(lhs, np.sum(params.w * grads.w), rtol=1e-9, atol=1e-9)


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 4), st.integers(0, 6), st.integers(0, 6), st.integers(0, 2**31 - 1),
       st.booleans())
def test_pooling_matches_reference(k, s, extra_h, extra_w, seed, use_max):
    rng = np.random.default_rng(seed)
    h, w = k + extra_h, k + extra_w
    layer = fc.max_pool2d(k, s) if use_max else fc.avg_pool2d(k, s)
    x = rng.standard_normal((2, 3, h, w))
    y, cache = layer.forward(None, x)
    ref = pool_reference(k, s, op=np.max if use_max else np.mean)(None, x)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    _, dx = layer.backward(None, cache, dy)
    # Both poolings are linear in dy with their selection fixed: <y, dy> == <x, dx>.
    np.testing.assert_allclose(np.sum(y * dy), np.sum(x * dx), rtol=1e-9, atol=1e-9)
    if use_max:
        # Each output's gradient lands on exactly one input.
        _, ones = layer.backward(None, cache, np.ones_like(y))
        assert ones.sum() == y.size

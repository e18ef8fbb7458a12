"""The speed paths of conv2d, pooling and the activations agree with the plain ones.

Each fast path (chunked inference, wide rows, staged pooling, boolean
ReLU mask, sigmoid without ``np.where``) is compared with a slower way of computing the
same thing, on shapes that force the path to be taken.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import special

import functional_cnn as fc
import functional_cnn.layers.conv as conv_mod

EPS32 = np.finfo(np.float32).eps


def _conv_case(layer, in_shape, n, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    _, params = layer.init(rng, in_shape, dtype=dtype)
    x = rng.standard_normal((n,) + in_shape).astype(dtype)
    return params, x, rng


def test_conv2d_chunked_inference_matches_training_forward_and_backward(monkeypatch):
    layer = fc.conv2d(3, 3, padding=1)
    params, x, rng = _conv_case(layer, (2, 7, 6), n=9)
    y_train, cache_train = layer.forward(params, x, train=True)
    monkeypatch.setattr(conv_mod, "INFERENCE_CHUNK_BYTES", 1)  # one example per chunk
    y_infer, cache_infer = layer.forward(params, x, train=False)
    assert cache_infer.cols is None and cache_infer.xp is not None  # chunked: keeps the input only
    np.testing.assert_allclose(y_infer, y_train, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y_train.shape)
    g_train, dx_train = layer.backward(params, cache_train, dy)
    g_infer, dx_infer = layer.backward(params, cache_infer, dy)
    np.testing.assert_allclose(dx_infer, dx_train, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g_infer.w, g_train.w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("in_shape", [(2, 9, 9), (2, 5, 5)])
def test_conv2d_wide_rows_and_exact_rows_agree(in_shape):
    """(2, 9, 9): wide rows are chosen; (2, 5, 5) with a 3x3 kernel and padding 0: Wp/OW = 5/3, exact rows."""
    wide = fc.conv2d(3, 3)
    params, x, rng = _conv_case(wide, in_shape, n=2)
    y, cache = wide.forward(params, x, train=True)
    expected_pitch = in_shape[2] if 2 * in_shape[2] <= 3 * (in_shape[2] - 2) else in_shape[2] - 2
    assert cache.pitch == expected_pitch
    w = params.w  # reference: the definition, one output position at a time
    ref = np.zeros_like(y)
    for i in range(y.shape[2]):
        for j in range(y.shape[3]):
            ref[:, :, i, j] = np.einsum("ncpq,ocpq->no", x[:, :, i : i + 3, j : j + 3], w) + params.b
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_conv2d_gradients_are_read_only_without_copies():
    layer = fc.conv2d(2, 3)
    params, x, rng = _conv_case(layer, (1, 5, 5), n=2, dtype=np.float32)
    y, cache = layer.forward(params, x, train=True)
    grads, dx = layer.backward(params, cache, np.ones_like(y))
    assert not grads.w.flags.writeable and not grads.b.flags.writeable
    assert dx.flags.c_contiguous and dx.dtype == np.float32


def _first_max_reference(x, k, s):
    n, c, h, w = x.shape
    oh, ow = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
    y = np.empty((n, c, oh, ow), x.dtype)
    dx = np.zeros_like(x)
    for i in range(oh):
        for j in range(ow):
            win = x[:, :, i * s[0] : i * s[0] + k[0], j * s[1] : j * s[1] + k[1]].reshape(n, c, -1)
            arg = win.argmax(axis=-1)  # numpy: first maximum, row-major
            y[:, :, i, j] = win.max(axis=-1)
            for a in range(n):
                for b in range(c):
                    p, q = divmod(int(arg[a, b]), k[1])
                    dx[a, b, i * s[0] + p, j * s[1] + q] += 1.0
    return y, dx


@pytest.mark.parametrize("size, stride, hw", [
    (2, None, (6, 8)), (2, None, (7, 9)), ((2, 3), None, (6, 9)), (3, None, (9, 10)), ((1, 2), None, (3, 4)),
    (3, 2, (7, 7)), (2, 3, (8, 8)),
])
def test_max_pool_paths_route_to_the_first_maximum_with_ties(size, stride, hw):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, (2, 3) + hw).astype(np.float64)  # many ties, as after a ReLU
    layer = fc.max_pool2d(size, stride)
    k = (size, size) if isinstance(size, int) else size
    s = k if stride is None else (stride, stride)
    y, cache = layer.forward(None, x)
    _, dx = layer.backward(None, cache, np.ones_like(y))
    y_ref, dx_ref = _first_max_reference(x, k, s)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(dx, dx_ref)
    assert cache.argmax.dtype == np.uint8


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block", [1, 200, 1 << 20])  # bytes: one image per block, a few, the whole batch
@pytest.mark.parametrize("hw", [(6, 8), (7, 9), (2, 2), (3, 5)])
def test_max_pool_2x2_contiguous_path_matches_the_window_path_bit_for_bit(monkeypatch, dtype, block, hw):
    from functional_cnn.layers import pool

    rng = np.random.default_rng(4)
    x = rng.integers(-2, 3, (5, 3) + hw).astype(dtype)  # ties everywhere
    x[0, 0, 0, :2] = np.nan
    x[1, 1, -1, -1] = np.inf
    x[2, 2, 0, 0] = -np.inf
    out_hw = (hw[0] // 2, hw[1] // 2)
    y_ref = np.empty((5, 3) + out_hw, dtype)
    idx_ref = np.empty(y_ref.shape, np.uint8)
    pool._max_pool_blocks(x, (2, 2), out_hw, y_ref, idx_ref)
    monkeypatch.setattr(pool, "POOL_BLOCK_BYTES", block)
    y = np.full_like(y_ref, 7.0)
    idx = np.full(y_ref.shape, 9, np.uint8)
    pool._max_pool_2x2(x, y, idx)
    np.testing.assert_array_equal(y, y_ref)  # NaN where the reference has NaN
    np.testing.assert_array_equal(idx, idx_ref)
    assert idx.max() == 3 and idx.min() == 0


def test_max_pool_2x2_takes_non_contiguous_input():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 8, 6)).transpose(0, 1, 3, 2)  # (3, 4, 6, 8), not C-contiguous
    layer = fc.max_pool2d(2)
    y, cache = layer.forward(None, x)
    _, dx = layer.backward(None, cache, np.ones_like(y))
    y_ref, dx_ref = _first_max_reference(np.ascontiguousarray(x), (2, 2), (2, 2))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(dx, dx_ref)


def test_max_pool_with_more_than_256_window_positions_uses_wide_indices():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 17, 17))
    layer = fc.max_pool2d(17)
    y, cache = layer.forward(None, x)
    _, dx = layer.backward(None, cache, np.ones_like(y))
    y_ref, dx_ref = _first_max_reference(x, (17, 17), (17, 17))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(dx, dx_ref)
    assert cache.argmax.dtype == np.intp


@pytest.mark.parametrize("size, stride", [(2, None), (3, 1), ((2, 3), (2, 2))])
def test_avg_pool_paths_match_window_means(size, stride):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 7, 8))
    layer = fc.avg_pool2d(size, stride)
    y, cache = layer.forward(None, x)
    k = (size, size) if isinstance(size, int) else size
    s = k if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
    oh, ow = (7 - k[0]) // s[0] + 1, (8 - k[1]) // s[1] + 1
    ref = np.array([[[[x[a, b, i * s[0] : i * s[0] + k[0], j * s[1] : j * s[1] + k[1]].mean() for j in range(ow)]
                      for i in range(oh)] for b in range(2)] for a in range(2)])
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    _, dx = layer.backward(None, cache, dy)
    assert np.sum(dx * x) == pytest.approx(np.sum(dy * y), rel=1e-12)  # adjoint identity


def test_relu_caches_a_boolean_mask_of_one_byte_per_element():
    layer = fc.relu()
    x = np.array([[-1.0, 0.0, 2.0]], dtype=np.float32)
    y, cache = layer.forward(None, x)
    assert cache.saved.dtype == np.bool_ and cache.saved.tolist() == [[False, False, True]]
    assert layer.cache_bytes((3,), 4) == 3
    _, dx = layer.backward(None, cache, np.array([[5.0, 6.0, 7.0]], dtype=np.float32))
    assert dx.dtype == np.float32 and dx.tolist() == [[0.0, 0.0, 7.0]]


def test_leaky_relu_slopes_and_dtype():
    layer = fc.leaky_relu(0.25)
    x = np.array([[-4.0, 0.0, 3.0]], dtype=np.float32)
    y, cache = layer.forward(None, x)
    _, dx = layer.backward(None, cache, np.ones_like(x))
    assert y.dtype == dx.dtype == np.float32
    assert y.tolist() == [[-1.0, 0.0, 3.0]] and dx.tolist() == [[0.25, 0.25, 1.0]]


def test_sigmoid_keeps_relative_accuracy_far_in_the_tails():
    x = np.linspace(-80.0, 80.0, 4001, dtype=np.float32)
    y, _ = fc.sigmoid().forward(None, x[None, :])
    ref = special.expit(x.astype(np.float64))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[0], ref, rtol=8 * EPS32, atol=0)


@pytest.mark.parametrize("c_in, n, padding", [(1, 1, 0), (1, 4, 0), (3, 4, 1), (3, 1, 2)])
def test_conv2d_results_never_alias_the_reused_scratch_buffers(c_in, n, padding):
    """y, the cache, dw, db and dx stay as they were after later calls reuse the scratch buffers."""
    from functional_cnn.layers import _patches

    layer = fc.conv2d(4, 3, padding=padding)
    params, x, rng = _conv_case(layer, (c_in, 7, 6), n=n, dtype=np.float32)
    y, cache = layer.forward(params, x, train=True)
    grads, dx = layer.backward(params, cache, rng.standard_normal(y.shape).astype(np.float32))
    kept = [a.copy() for a in (y, cache.cols, grads.w, grads.b, dx)]
    scratch = list(vars(_patches._SCRATCH).values())
    assert scratch, "the wide-row path should have used its scratch buffers"
    for a in (y, cache.cols, grads.w, grads.b, dx):
        assert not any(np.shares_memory(a, buf) for buf in scratch)
    for _ in range(2):  # same shapes, other data: every scratch buffer is overwritten
        y2, cache2 = layer.forward(params, x * 3 + 1, train=True)
        layer.backward(params, cache2, rng.standard_normal(y2.shape).astype(np.float32))
    for before, now in zip(kept, (y, cache.cols, grads.w, grads.b, dx)):
        assert np.array_equal(before, now)


@pytest.mark.parametrize("size, stride, hw", [(2, None, (6, 8)), (3, None, (7, 9)), (2, 3, (8, 8)), (3, 2, (7, 7))])
def test_max_pool_backward_sends_dy_only_to_the_chosen_input_and_exact_zeros_elsewhere(size, stride, hw):
    rng = np.random.default_rng(6)
    x = rng.integers(0, 3, (3, 2) + hw).astype(np.float32)  # ties: the first maximum is chosen
    layer = fc.max_pool2d(size, stride)
    y, cache = layer.forward(None, x)
    dy = -rng.random(y.shape).astype(np.float32) - 0.5  # negative: dy * 0 would give -0.0
    dy[0, 0, 0, 0] = np.nan
    _, dx = layer.backward(None, cache, dy)
    k = (size, size)
    s = k if stride is None else (stride, stride)
    _, chosen = _first_max_reference(x.astype(np.float64), k, s)  # 1 at each chosen input (summed if overlapping)
    assert not np.signbit(dx[chosen == 0]).any()  # +0.0, never -0.0
    assert (dx[chosen == 0] == 0).all()
    assert np.isnan(dx).sum() == 1  # the NaN reaches its window's maximum only
    assert np.array_equal(np.isnan(dx), np.isnan(dx) & (chosen > 0))

"""Layers split across threads give the same bits as on one thread (functional_cnn._parallel).

Every comparison forces the split (``MIN_PARALLEL_BYTES`` set to 0) and checks that it really
happened, by counting the ranges handed to the pool, so no test here can pass on the serial
path alone.
"""
from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest

import functional_cnn as fc
from functional_cnn import _parallel
from functional_cnn.layers import conv as conv_mod

THREADS = (2, 3, 5)


@pytest.fixture
def split(monkeypatch):
    """Force every layer to split (any size of work), count the ranges sent to other threads,
    and restore the thread count afterwards."""
    monkeypatch.setattr(_parallel, "MIN_PARALLEL_BYTES", 0)
    sent = []
    real = _parallel._get_pool

    def counting(workers):
        pool = real(workers)

        class Counting:
            def submit(self, fn, *args):
                sent.append(args)
                return pool.submit(fn, *args)

        return Counting()

    monkeypatch.setattr(_parallel, "_get_pool", counting)
    before = _parallel.get_num_threads()
    yield sent
    _parallel.set_num_threads(before)


def _bits(tree):
    return [np.asarray(leaf).tobytes() for leaf in fc.tree_leaves(tree)]


def _run_layer(layer, in_shape, n, dtype, train, need_dx, seed=0):
    rng = np.random.default_rng(seed)
    _, params = layer.init(rng, in_shape, dtype=dtype)
    x = rng.standard_normal((n,) + in_shape).astype(dtype)
    y, cache = layer.forward(params, x, train=train)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dy[dy < 0.3] = 0  # exact zeros, as after a ReLU: signed zeros would show in the bytes
    grads, dx = layer.backward(params, cache, dy, need_dx=need_dx)
    return _bits((y, grads, dx))


LAYERS = [
    ("conv wide rows", lambda: fc.conv2d(4, 3), (3, 9, 9)),
    ("conv padded", lambda: fc.conv2d(5, 5, padding=2), (2, 8, 7)),
    ("conv dilated same", lambda: fc.conv2d(3, 3, padding="same", dilation=2), (2, 9, 9)),
    ("conv grouped", lambda: fc.conv2d(4, 3, padding=1, groups=2), (4, 6, 6)),
    ("conv depthwise", lambda: fc.conv2d(3, 3, groups=3), (3, 7, 7)),
    ("conv strided (exact rows)", lambda: fc.conv2d(4, 3, stride=2, padding=1), (3, 9, 8)),
    ("conv no bias", lambda: fc.conv2d(4, 2, use_bias=False), (2, 6, 6)),
    ("max pool", lambda: fc.max_pool2d(2), (3, 8, 8)),
    ("max pool uneven", lambda: fc.max_pool2d(3), (2, 10, 11)),
    ("relu", lambda: fc.relu(), (3, 5, 5)),
]
SERIAL_ONLY = {"max pool overlapping": (lambda: fc.max_pool2d(3, stride=2), (2, 9, 9))}  # never split


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("train,need_dx", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("name,make,in_shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_layer_bits_do_not_depend_on_the_thread_count(split, monkeypatch, name, make, in_shape, train, need_dx,
                                                      dtype):
    monkeypatch.setattr(conv_mod, "INFERENCE_CHUNK_BYTES", 1)  # inference: one image per step
    layer = make()
    _parallel.set_num_threads(1)
    one = _run_layer(layer, in_shape, 7, dtype, train, need_dx)
    assert not split  # one thread: nothing was handed over
    for t in THREADS:
        _parallel.set_num_threads(t)
        assert _run_layer(layer, in_shape, 7, dtype, train, need_dx) == one, f"{name}: {t} threads differ"
    assert split  # the split happened


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_two_threads_share_a_stride_1_conv_backward_as_products_and_input_gradient(split, dtype):
    layer = fc.conv2d(4, 3, padding=1)
    rng = np.random.default_rng(0)
    _, params = layer.init(rng, (3, 9, 9), dtype=dtype)
    x = rng.standard_normal((7, 3, 9, 9)).astype(dtype)
    dy = rng.standard_normal((7, 4, 9, 9)).astype(dtype)
    _parallel.set_num_threads(1)
    y, cache = layer.forward(params, x, train=True)
    one = _bits(layer.backward(params, cache, dy))
    _parallel.set_num_threads(2)
    split.clear()
    two = _bits(layer.backward(params, cache, dy))
    assert split == [(1, 2)]  # one hand-off: the second of the two tasks (the products) went to the pool
    assert two == one


@pytest.mark.parametrize("name", sorted(SERIAL_ONLY))
def test_layers_without_a_split_run_on_the_calling_thread(split, name):
    make, in_shape = SERIAL_ONLY[name]
    _parallel.set_num_threads(3)
    _run_layer(make(), in_shape, 7, np.float64, True, True)
    assert not split


def test_training_steps_are_bit_identical_at_every_thread_count(split):
    net = fc.serial(fc.conv2d(6, 5, padding=2), fc.relu(), fc.max_pool2d(2), fc.conv2d(16, 5), fc.relu(),
                    fc.max_pool2d(2), fc.flatten(), fc.dense(32), fc.relu(), fc.dense(10))
    rng = np.random.default_rng(3)
    x = rng.random((13, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 13)
    _, params0 = net.init(np.random.default_rng(0), (1, 28, 28))

    def train(threads):
        _parallel.set_num_threads(threads)
        opt = fc.sgd(0.05, momentum=0.9)
        step = fc.make_step(net, fc.softmax_cross_entropy, opt)
        params, state = params0, opt.init(params0)
        for _ in range(3):
            params, state, _ = step(params, state, (x, y))
        return fc.fingerprint((params, state))

    one = train(1)
    assert not split
    assert [train(t) for t in THREADS] == [one] * len(THREADS)
    assert len(split) >= 3 * 2 * 4  # every conv, pool and ReLU forward and backward was split


def test_every_range_is_covered_once_and_in_contiguous_pieces():
    seen = []
    lock = threading.Lock()

    def record(lo, hi):
        with lock:
            seen.append((lo, hi))

    before = _parallel.get_num_threads()
    try:
        for threads in (1, 2, 3, 8):
            for n in (1, 2, 5, 17):
                seen.clear()
                _parallel.set_num_threads(threads)
                _parallel.for_chunks(record, n, 1 << 40)
                ranges = sorted(seen)
                assert ranges[0][0] == 0 and ranges[-1][1] == n
                assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
                assert len(ranges) == min(threads, n)
    finally:
        _parallel.set_num_threads(before)


def test_an_error_in_any_range_is_raised_after_every_range_ended():
    ended = []

    def work(lo, hi):
        if lo > 0:
            raise ValueError(f"range {lo}..{hi} failed")
        ended.append((lo, hi))

    before = _parallel.get_num_threads()
    try:
        _parallel.set_num_threads(2)
        with pytest.raises(ValueError, match="range 5..10 failed"):
            _parallel.for_chunks(work, 10, 1 << 40)
        assert ended == [(0, 5)]
    finally:
        _parallel.set_num_threads(before)


def test_a_range_that_splits_again_runs_it_on_its_own_thread():
    inner = []

    def outer(lo, hi):
        _parallel.for_chunks(lambda a, b: inner.append((threading.current_thread().name, a, b)), 4, 1 << 40)

    before = _parallel.get_num_threads()
    try:
        _parallel.set_num_threads(2)
        _parallel.for_chunks(outer, 2, 1 << 40)
    finally:
        _parallel.set_num_threads(before)
    # the range that ran on the pool's thread did its inner work whole, on that thread
    assert any(entry[0].startswith("functional_cnn") and entry[1:] == (0, 4) for entry in inner)
    assert sum(b - a for _, a, b in inner) == 8  # both outer ranges did all 4 inner items, no deadlock


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_set_num_threads_refuses_what_is_not_a_positive_int(bad):
    with pytest.raises(ValueError, match="set_num_threads: n must be a positive int"):
        fc.set_num_threads(bad)


def test_the_thread_count_comes_from_the_environment(monkeypatch):
    for var in (_parallel.ENV, "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    assert _parallel._default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert _parallel._default_threads() == 2  # OMP_NUM_THREADS before OPENBLAS_NUM_THREADS
    monkeypatch.setenv(_parallel.ENV, "5")
    assert _parallel._default_threads() == 5  # ours first
    monkeypatch.setenv(_parallel.ENV, "many")
    with pytest.raises(ValueError, match="FUNCTIONAL_CNN_NUM_THREADS must be a positive integer, got 'many'"):
        _parallel._default_threads()
    monkeypatch.setenv(_parallel.ENV, "0")
    with pytest.raises(ValueError, match="FUNCTIONAL_CNN_NUM_THREADS must be a positive integer, got '0'"):
        _parallel._default_threads()


def test_others_unreadable_thread_variables_are_skipped(monkeypatch):
    monkeypatch.delenv(_parallel.ENV, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "lots")
    value = _parallel._default_threads()
    assert isinstance(value, int) and 1 <= value <= _parallel._MAX_DEFAULT


def _child(queue):
    layer = fc.conv2d(4, 3)
    _, params = layer.init(np.random.default_rng(0), (2, 30, 30))
    x = np.random.default_rng(1).random((16, 2, 30, 30), dtype=np.float32)
    y, _ = layer.forward(params, x)
    queue.put(float(y.sum()))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_forked_child_gets_a_working_pool(split):
    _parallel.set_num_threads(2)
    _child(multiprocessing.Queue())  # the parent's pool has threads now
    assert split
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0, "the forked child hung or failed"
    assert np.isfinite(queue.get(timeout=5))


@pytest.fixture
def fresh_blas(monkeypatch):
    """OpenBLAS at 3 threads, and functional_cnn not yet having set it; both restored afterwards."""
    from functional_cnn import _blas

    if _blas.blas_threads() is None:
        pytest.skip("numpy is not linked to an OpenBLAS this process can find")  # nothing to coordinate
    original = _blas.blas_threads()
    monkeypatch.setattr(_parallel, "_blas_checked", False)
    assert _blas.set_blas_threads(3) and _blas.blas_threads() == 3
    yield _blas
    _blas.set_blas_threads(original)


@pytest.mark.parametrize("threads", [1, 2])
def test_blas_goes_to_one_thread_at_a_networks_first_call_at_any_thread_count(fresh_blas, threads):
    before = _parallel.get_num_threads()
    try:
        _parallel.set_num_threads(threads)
        layer = fc.dense(4)
        _, params = layer.init(np.random.default_rng(0), (3,))
        assert fresh_blas.blas_threads() == 3  # nothing ran yet
        layer.forward(params, np.ones((2, 3), np.float32))
        assert fresh_blas.blas_threads() == 1
        _parallel.set_num_threads(1)
        assert fresh_blas.blas_threads() == 1  # and stays there
    finally:
        _parallel.set_num_threads(before)


def test_dense_bits_do_not_depend_on_the_thread_count_where_openblas_threads_would_change_them(fresh_blas, split):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((16, 4222)).astype(np.float32)
    b = rng.standard_normal((4222, 72)).astype(np.float32)
    by_blas = {}
    for t in (1, 2):  # the premise: OpenBLAS itself gives other bits on 2 threads for this product
        fresh_blas.set_blas_threads(t)
        by_blas[t] = np.dot(a, b).tobytes()
    if by_blas[1] == by_blas[2]:
        pytest.skip("this OpenBLAS gives the same bits on 1 and 2 threads for the product")
    fresh_blas.set_blas_threads(3)
    net = fc.serial(fc.relu(), fc.dense(72))  # the ReLU splits at 2 threads (split forces it), the gemm never
    _, (_, p) = net.init(np.random.default_rng(0), (4222,))
    params = (None, type(p)(b, p.b))
    outs = []
    for t in (1, 2):  # one thread first: before, BLAS kept its 3 threads until a layer split
        _parallel.set_num_threads(t)
        outs.append(net.forward(params, a)[0].tobytes())
    assert split  # the ReLU did split at 2 threads
    assert outs[0] == outs[1]

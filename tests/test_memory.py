"""make_step keeps freed memory for reuse (glibc), so a warmed-up training step faults almost no pages in."""
import platform
import resource

import numpy as np
import pytest

import functional_cnn as fc
from functional_cnn import _memory
from functional_cnn.models import lenet5

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def test_the_environment_variable_leaves_malloc_alone(monkeypatch):
    monkeypatch.setattr(_memory, "_applied", None)
    monkeypatch.setenv(_memory.ENV, "0")
    assert _memory.keep_freed_memory() is False
    monkeypatch.setenv(_memory.ENV, "1")
    assert _memory.keep_freed_memory() is False, "the answer is decided once per process"


def test_applies_on_glibc_once(monkeypatch):
    monkeypatch.setattr(_memory, "_applied", None)
    monkeypatch.delenv(_memory.ENV, raising=False)
    assert _memory.keep_freed_memory() is GLIBC
    assert _memory._applied is GLIBC


@pytest.mark.skipif(not GLIBC, reason="the page-fault behaviour measured here is glibc's")
def test_a_warm_lenet_step_faults_few_pages_in():
    """Without reuse a LeNet batch-64 step faulted 100 to 2,400 pages in (docs/performance.md)."""
    net = lenet5()
    _, params = net.init(np.random.default_rng(0), (1, 28, 28))
    opt = fc.sgd(0.01, momentum=0.9)
    step = fc.make_step(net, fc.softmax_cross_entropy, opt)
    state = opt.init(params)
    rng = np.random.default_rng(1)
    x, y = rng.random((64, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 64)
    for _ in range(5):
        params, state, _ = step(params, state, (x, y))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        params, state, _ = step(params, state, (x, y))
    per_step = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
    assert per_step < 50, f"{per_step} minor page faults per warm step"

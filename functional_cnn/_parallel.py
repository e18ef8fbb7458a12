"""Split a layer's batch across threads, with the same arithmetic for every thread count.

Convolutions and poolings treat each example on its own: the patch products are one small gemm
per image, which BLAS runs on one thread, and the copies, maxima and adds around them are
single-threaded numpy. :func:`for_chunks` runs such work over contiguous ranges of the batch on a
small pool of threads (numpy and BLAS release the GIL inside these calls), the calling thread
taking the first range.

**Determinism.** A caller hands :func:`for_chunks` only work whose result for an element does not
depend on how the batch is cut: per-image gemms, element-wise ufuncs, copies, and adds that follow
a fixed order per element. Reductions over the batch (a weight gradient's sum over images, a bias
gradient) are done after the chunks, over the whole batch, as before. So one thread and eight give
the same bits; ``tests/test_parallel.py`` checks whole training steps at several thread counts.

The thread count is :func:`get_num_threads`: ``FUNCTIONAL_CNN_NUM_THREADS``, else
``OMP_NUM_THREADS``, else ``OPENBLAS_NUM_THREADS``, else the CPUs this process may run on; change
it with :func:`set_num_threads`. A process forked after the pool started gets a fresh pool.

From a network's first call on, numpy's OpenBLAS runs on one thread (:mod:`functional_cnn._blas`),
at every functional_cnn thread count. OpenBLAS's gemm does not always give the same bits on one
thread as on several (a 16x4222 by 4222x72 product differs), so a dense layer's result would
otherwise depend on BLAS's thread count, that is on the machine; and its spinning workers take the
cores the layer threads need. Its gemms here are small or per image, which it does not thread anyway.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, List, Optional

from ._blas import blas_threads, set_blas_threads

__all__ = ["get_num_threads", "set_num_threads", "for_chunks", "MIN_PARALLEL_BYTES", "ENV"]

ENV = "FUNCTIONAL_CNN_NUM_THREADS"
#: Work smaller than this runs on the calling thread. Callers state a job's size in bytes of its
#: main operand, scaled by how costly each byte is for that job (a max-pooling byte ~3x a
#: patch-matrix byte, a ReLU byte half), so that this threshold is about 200 us of work on the
#: 2-core box of docs/performance.md. Handing a range to another thread and getting it back
#: costs ~60 us there (thread wake-ups and GIL hand-offs), so smaller jobs lose.
MIN_PARALLEL_BYTES = 2 << 20
_MAX_DEFAULT = 8

_threads: Optional[int] = None
_blas_checked = False  # quiet_blas has run in this process
_pool: Optional[ThreadPoolExecutor] = None
_pool_size = 0
_lock = threading.Lock()
_local = threading.local()


def _from_env() -> Optional[int]:
    """The first thread count set in the environment: ours (a bad value is an error), then
    OpenMP's and OpenBLAS's (a value we cannot read there is theirs to judge, and skipped)."""
    for var in (ENV, "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        text = os.environ.get(var, "").strip()
        if not text:
            continue
        try:
            value = int(text.split(",")[0])  # OpenMP allows a list, one count per nesting level
        except ValueError:
            value = 0
        if value >= 1:
            return value
        if var == ENV:
            raise ValueError(f"functional_cnn: {var} must be a positive integer, got {text!r}")
    return None


def _default_threads() -> int:
    value = _from_env()
    if value is not None:
        return value
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, _MAX_DEFAULT))


def get_num_threads() -> int:
    """How many threads a layer may split its batch across (1: everything on the calling thread)."""
    global _threads
    if _threads is None:
        _threads = _default_threads()
    return _threads


def set_num_threads(n: int) -> None:
    """Let layers split their batch across ``n`` threads (``n >= 1``); results do not depend on ``n``."""
    global _threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _threads = n


def quiet_blas() -> None:
    """Put OpenBLAS on one thread, once per process (see the module docstring); later calls cost a
    global read. Called where a network's forward and backward start (:mod:`functional_cnn.boundary`)
    and before every split."""
    global _blas_checked
    if _blas_checked:
        return
    _blas_checked = True
    current = blas_threads()
    if current is not None and current > 1:
        set_blas_threads(1)


def _reset_after_fork() -> None:
    global _pool, _pool_size, _lock
    _pool, _pool_size, _lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _get_pool(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < workers:
            old = _pool
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="functional_cnn",
                                       initializer=_mark_worker)
            _pool_size = workers
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def _mark_worker() -> None:
    _local.worker = True


def for_chunks(fn: Callable[[int, int], None], n: int, nbytes: int) -> None:
    """Call ``fn(lo, hi)`` over contiguous ranges covering ``range(n)``, on several threads if worth it.

    ``nbytes`` is the size of the work, in the scaled bytes :data:`MIN_PARALLEL_BYTES` describes;
    below that threshold, with one thread, with one item, or when called from one of the pool's
    own threads, ``fn(0, n)`` runs here. ``fn`` must write only its own range's part of any
    shared output. The first error raised by any range is raised here, after every range ended.
    """
    quiet_blas()
    threads = get_num_threads()
    if threads < 2 or n < 2 or nbytes < MIN_PARALLEL_BYTES or getattr(_local, "worker", False):
        fn(0, n)
        return
    parts = min(threads, n)
    bounds = [n * i // parts for i in range(parts + 1)]
    pool = _get_pool(parts - 1)
    futures: List[Future] = [pool.submit(fn, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    try:
        fn(bounds[0], bounds[1])
    finally:
        errors = [f.exception() for f in futures]  # waits for every range
    for err in errors:
        if err is not None:
            raise err

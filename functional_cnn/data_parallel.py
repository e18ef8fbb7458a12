"""Data-parallel training on MPI, bit-identical to gradient accumulation in one process.

``make_step(net, loss, opt, comm=MPI.COMM_WORLD, accumulate=K)`` (or ``fit(...,
comm=...)``, or ``mpiexec -n R functional-cnn train --data-parallel``) runs the
accumulating step of :mod:`functional_cnn.accumulate` on ``R`` ranks:

* every rank holds the same params and sees the same global batch (each loads the
  data once, from the same seed);
* the batch is cut into ``K`` micro-batches (``K`` a multiple of ``R``; default
  ``K = R``) and rank ``r`` computes micro-batches ``r, r + R, r + 2R, ...``;
* each rank sends its micro-batch results (size, loss, accuracy, gradient and
  batch-norm state leaves, as raw bytes) to every other rank: an all-gather made of
  point-to-point messages, not ``Allreduce(SUM)``, whose summation order MPI does not
  fix;
* every rank then sums the ``K`` results in micro-batch order with the same code as
  the one-process step (:func:`functional_cnn.accumulate.combine`) and applies the
  same update. So after any number of steps the params equal, bit for bit, those of
  ``make_step(..., accumulate=K)`` in one process.

Every wait has a deadline (``timeout`` seconds, default 120): if a rank dies or
hangs, the ranks still waiting print which step and which rank they are missing
and call ``comm.Abort``, so the job ends instead of hanging.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .accumulate import MicroResult
from .tree import state_paths, trainable, tree_leaves, tree_leaves_with_paths

__all__ = ["DEFAULT_TIMEOUT", "LaunchError", "AgreedError", "import_mpi", "world", "Exchange", "check_ranks"]

DEFAULT_TIMEOUT = 120.0
_TAG_GRADS, _TAG_AGREE = 0x6663, 0x6664
_LAUNCHER_ENV = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")
_HEADER = 3  # float64s before the leaves of a record: n, loss, accuracy (NaN for None)
_AGREE_BYTES = 1024


class LaunchError(ValueError):
    """Data-parallel training was asked for in a way that cannot run (one line, for the CLI)."""


class AgreedError(ValueError):
    """An error that every rank has agreed on; rank 0 reports it, the others exit quietly."""


def import_mpi() -> Any:
    """``mpi4py.MPI``, or an ImportError naming the extra to install."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ImportError('data-parallel training needs mpi4py: pip install "functional_cnn[distributed]"') from err
    return MPI


def world() -> Any:
    """``MPI.COMM_WORLD`` of a job started by ``mpiexec``; :class:`LaunchError` otherwise."""
    comm = import_mpi().COMM_WORLD
    if comm.Get_size() == 1 and not any(name in os.environ for name in _LAUNCHER_ENV):
        raise LaunchError("--data-parallel needs a job started by mpiexec, e.g. "
                          "mpiexec -n 2 functional-cnn train --data-parallel (this process is alone in "
                          "COMM_WORLD and no MPI launcher variables are set)")
    return comm


def _layout(params: Any) -> List[Tuple[np.dtype, Tuple[int, ...]]]:
    """(dtype, shape) of every gradient leaf, then of every state leaf, in flatten order."""
    state = set(state_paths(params))
    grads = [(np.asarray(a).dtype, np.shape(a)) for a in tree_leaves(trainable(params))]
    return grads + [(np.asarray(a).dtype, np.shape(a)) for p, a in tree_leaves_with_paths(params) if p in state]


def _record_bytes(layout: Sequence[Tuple[np.dtype, Tuple[int, ...]]]) -> int:
    return 8 * _HEADER + sum(dt.itemsize * int(np.prod(shape)) for dt, shape in layout)


def _pack(result: Optional[MicroResult], layout: Sequence[Tuple[np.dtype, Tuple[int, ...]]],
          out: np.ndarray) -> None:
    """Write one micro-batch result (or an empty one) into the byte buffer ``out``."""
    out[:] = 0
    if result is None:
        return
    acc = np.nan if result.accuracy is None else result.accuracy
    out[: 8 * _HEADER] = np.array([result.n, result.loss, acc], np.float64).view(np.uint8)
    pos = 8 * _HEADER
    for leaf, (dt, shape) in zip(list(result.grads) + list(result.state), layout):
        a = np.asarray(leaf)
        if a.dtype != dt or a.shape != shape:
            raise TypeError(f"make_step (data-parallel): a gradient or state leaf has dtype {a.dtype} and shape "
                            f"{a.shape}, the params' leaf has {dt} and {shape}; backward must return gradients "
                            f"like the params")
        nb = a.nbytes
        out[pos : pos + nb] = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
        pos += nb


def _unpack(buf: np.ndarray, layout: Sequence[Tuple[np.dtype, Tuple[int, ...]]], n_grads: int
            ) -> Optional[MicroResult]:
    n, loss, acc = buf[: 8 * _HEADER].copy().view(np.float64)
    if n == 0:
        return None
    leaves, pos = [], 8 * _HEADER
    for dt, shape in layout:
        nb = dt.itemsize * int(np.prod(shape))
        leaves.append(buf[pos : pos + nb].copy().view(dt).reshape(shape))
        pos += nb
    return MicroResult(int(n), float(loss), None if np.isnan(acc) else float(acc), leaves[:n_grads],
                       leaves[n_grads:])


class Exchange:
    """All-gathers of byte buffers over ``comm`` with a deadline, in a fixed order.

    Args:
        comm: an mpi4py communicator (every rank of it takes part in every step).
        timeout: seconds a rank waits for the others at one exchange before it
            aborts the job, naming the step and the missing ranks.

    Attributes:
        seconds: wall time spent in gradient exchanges so far (for benchmarks).
        count: gradient exchanges so far.
    """

    def __init__(self, comm: Any, timeout: float = DEFAULT_TIMEOUT):
        if not all(hasattr(comm, a) for a in ("Get_rank", "Get_size", "Isend", "Irecv", "Abort")):
            raise TypeError(f"make_step: comm must be an mpi4py communicator such as MPI.COMM_WORLD, "
                            f"got {type(comm).__name__}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"make_step: exchange_timeout must be a number of seconds > 0, got {timeout!r}")
        self.comm, self.timeout = comm, float(timeout)
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.seconds, self.count = 0.0, 0

    def gather(self, mine: Dict[int, Optional[MicroResult]], params: Any, k: int,
               t: Optional[int]) -> List[Optional[MicroResult]]:
        """Every rank's micro-batch results, as a list indexed by micro-batch ``0..k-1``."""
        layout = _layout(params)
        n_grads = len(tree_leaves(trainable(params)))
        rec = _record_bytes(layout)
        per = k // self.size
        payload = np.empty(per * rec, np.uint8)
        for j in range(per):
            _pack(mine[j * self.size + self.rank], layout, payload[j * rec : (j + 1) * rec])
        t0 = time.perf_counter()
        table = self.allgather(payload, _TAG_GRADS, f"step {t}" if t is not None else "a step", "gradients")
        self.seconds += time.perf_counter() - t0
        self.count += 1
        out: List[Optional[MicroResult]] = [None] * k
        for r in range(self.size):
            for j in range(per):
                out[j * self.size + r] = _unpack(table[r, j * rec : (j + 1) * rec], layout, n_grads)
        return out

    def allgather(self, payload: np.ndarray, tag: int, when: str, what: str, detail: str = "") -> np.ndarray:
        """``(size, nbytes)``: row ``r`` is rank ``r``'s ``payload`` (the same length on every rank)."""
        table = np.empty((self.size, payload.size), np.uint8)
        table[self.rank] = payload
        peers = [p for p in range(self.size) if p != self.rank]
        recvs = {p: self.comm.Irecv(table[p], source=p, tag=tag) for p in peers}
        sends = [self.comm.Isend(payload, dest=p, tag=tag) for p in peers]
        everything = list(recvs.values()) + sends
        test_all = import_mpi().Request.Testall
        deadline = time.monotonic() + self.timeout
        polls, pause = 0, 2e-5
        while not test_all(everything):  # each test drives MPI's progress engine
            polls += 1
            if polls < 50:  # a short spin first: most exchanges finish within microseconds of the last send
                continue
            if time.monotonic() > deadline:
                missing = [p for p, r in recvs.items() if not r.Test()] or "(its sends were never received)"
                self._abort(f"functional-cnn: data-parallel {when}: rank {self.rank} waited {self.timeout:g} s "
                            f"for the {what} of rank(s) {missing}; a rank died or hangs, aborting the job{detail}")
            time.sleep(pause)
            pause = min(2 * pause, 1e-3)
        return table

    def _abort(self, message: str) -> None:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
        # mpiexec forwards each rank's stderr asynchronously and Abort kills every process at once: give the
        # launcher a moment to pass the message on, or it can be lost on a busy machine.
        time.sleep(0.5)
        self.comm.Abort(1)

    def agree(self, error: Optional[str]) -> None:
        """Share each rank's setup outcome; if any rank failed, every rank stops.

        Raises:
            AgreedError: on rank 0, the first failing rank's message (prefixed with
            its rank unless it is rank 0's own).
            SystemExit: status 2 on the other ranks, silently (rank 0 reports).
        """
        buf = np.zeros(_AGREE_BYTES, np.uint8)
        if error is not None:
            text = error.encode("utf-8", "replace")[: _AGREE_BYTES - 1]
            buf[0] = 1
            buf[1 : 1 + len(text)] = np.frombuffer(text, np.uint8)
        detail = "" if error is None else f" (this rank's error: {error})"
        table = self.allgather(buf, _TAG_AGREE, "setup", "status", detail)
        failed = [r for r in range(self.size) if table[r, 0]]
        if not failed:
            return
        if self.rank != 0:
            raise SystemExit(2)
        r = failed[0]
        text = bytes(table[r, 1:]).rstrip(b"\0").decode("utf-8", "replace")
        raise AgreedError(text if r == 0 else f"rank {r}: {text}")


def check_ranks(accumulate: int, size: int, where: str) -> None:
    """``accumulate`` must be a multiple of the rank count, so every rank has as many micro-batches."""
    if accumulate % size:
        raise ValueError(f"{where}: accumulate (={accumulate}) must be a multiple of the number of ranks "
                         f"(={size}) so every rank computes as many micro-batches")

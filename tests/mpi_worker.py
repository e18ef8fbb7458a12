"""Run by tests/test_mpi.py, under ``mpiexec -n R`` or alone: a few steps of a small net with batch norm
and dropout through ``fit``; writes the params (and the step losses) of rank 0 to an .npz.

    python tests/mpi_worker.py OUT.npz MODE ACCUMULATE [STEPS]

MODE: ``single`` (one process, ``fit(accumulate=K)``), ``mpi`` (``fit(comm=COMM_WORLD, accumulate=K)``),
``hang`` / ``die`` (as ``mpi``, but rank 1 stops itself with SIGSTOP / SIGKILL inside step 2).
"""
import os
import signal
import sys

import numpy as np

import functional_cnn as fc
from functional_cnn.datasets import load_dataset
from functional_cnn.train import StepRecord


def small_net():
    """conv, batch norm, relu, pool, dropout, dense: every kind of per-micro-batch behaviour."""
    return fc.serial(fc.conv2d(4, 3, padding=1), fc.batch_norm(momentum=0.8), fc.relu(), fc.max_pool2d(2),
                     fc.flatten(), fc.dropout(0.3), fc.dense(10))


def data():
    d = load_dataset("digits", seed=0)
    return d.x_train[:300], d.y_train[:300], d.image_shape


def main():
    out, mode, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    steps = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    x, y, shape = data()
    net = small_net()
    _, params = net.init(np.random.default_rng(np.random.SeedSequence([0, 2])), shape)
    comm, rank, loss = None, 0, fc.softmax_cross_entropy
    if mode != "single":
        from mpi4py import MPI

        comm, rank = MPI.COMM_WORLD, MPI.COMM_WORLD.Get_rank()
    if mode in ("hang", "die") and rank == 1:
        calls = []

        def loss(pred, target):  # noqa: F811 - rank 1's loss stops the process in its second step
            calls.append(1)
            if len(calls) > k // 2:
                os.kill(os.getpid(), signal.SIGSTOP if mode == "hang" else signal.SIGKILL)
            return fc.softmax_cross_entropy(pred, target)

    if comm is not None:
        comm.Barrier()  # start together, so only a stopped rank can make the other wait long
    losses, last = [], None
    timeout = 3.0 if mode in ("hang", "die") else 60.0
    for rec in fc.fit(net, params, loss, fc.adam(1e-2), (x, y), epochs=1, batch_size=64, seed=0,
                      max_steps=steps, accumulate=k, comm=comm, exchange_timeout=timeout):
        if isinstance(rec, StepRecord):
            losses.append(rec.loss)
        else:
            last = rec
    if rank == 0:
        leaves = dict(zip(fc.tree_paths(last.params), fc.tree_leaves(last.params)))
        np.savez(out, losses=np.array(losses), **leaves)


if __name__ == "__main__":
    main()

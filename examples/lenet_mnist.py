"""LeNet-5 on MNIST digits with Adam: the everyday workflow in one page.

Load a data set, build the network, train with ``fc.fit`` while printing one line per
epoch, test, and optionally save a checkpoint (params + optimizer state, reloadable
bit for bit) and a PNG of the training curves.

Run it::

    python examples/lenet_mnist.py                                   # mnist-sample, 5 epochs
    python examples/lenet_mnist.py --checkpoint lenet.npz --plot lenet.png
    python examples/lenet_mnist.py --dataset mnist --epochs 3        # full MNIST (IDX files)
    python examples/lenet_mnist.py --epochs 1 --limit 64             # a quick smoke run

The plot needs matplotlib (``pip install "functional_cnn[plot]"``); without it the
script says so and carries on.
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

import functional_cnn as fc
from functional_cnn.checkpoint import load_checkpoint, save_checkpoint
from functional_cnn.datasets import DATASETS, load_dataset
from functional_cnn.models import lenet5
from functional_cnn.reporting import PlotUnavailable, epoch_line, plot_curves
from functional_cnn.train import EpochRecord

ROW_KEYS = ("epoch", "step", "loss", "accuracy", "test_loss", "test_accuracy", "learning_rate", "seconds")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train LeNet-5 with Adam and report test accuracy.")
    p.add_argument("--dataset", choices=list(DATASETS), default="mnist-sample", help="(default mnist-sample)")
    p.add_argument("--epochs", type=int, default=5, help="(default 5)")
    p.add_argument("--batch-size", type=int, default=32, help="(default 32)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--limit", type=int, default=None, help="train on the first N training images only")
    p.add_argument("--seed", type=int, default=0, help="one seed for the split, the weights and the shuffles")
    p.add_argument("--checkpoint", metavar="PATH", help="save params and optimizer state to PATH (.npz)")
    p.add_argument("--plot", metavar="PATH", help="draw the loss and accuracy curves into PATH (.png)")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    t0 = time.perf_counter()

    data = load_dataset(args.dataset, seed=args.seed)
    x_train, y_train = data.x_train[: args.limit], data.y_train[: args.limit]
    net = lenet5(data.num_classes)
    _, params = net.init(np.random.default_rng(args.seed), data.image_shape)
    optimizer = fc.adam(args.lr)
    print(f"LeNet-5 on {data!r}, training on {len(x_train)}; adam lr={args.lr:g}, batch {args.batch_size}")

    rows: List[Dict[str, Any]] = []     # one plain dict per epoch: what epoch_line and plot_curves read
    last = None
    for rec in fc.fit(net, params, fc.softmax_cross_entropy, optimizer, (x_train, y_train), epochs=args.epochs,
                      batch_size=args.batch_size, seed=args.seed, test_data=(data.x_test, data.y_test)):
        if isinstance(rec, EpochRecord):   # step records are there for progress bars; skip them
            rows.append({k: getattr(rec, k) for k in ROW_KEYS})
            print(epoch_line(rows[-1], args.epochs))
            last = rec
    seconds = time.perf_counter() - t0
    print(f"test accuracy {last.test_accuracy:.4f} on {len(data.x_test)} images; wall time {seconds:.1f}s")
    result: Dict[str, Any] = {"rows": rows, "test_accuracy": last.test_accuracy, "seconds": seconds}

    if args.checkpoint:
        # Params and optimizer state are plain trees of arrays: they save as they are.
        path = save_checkpoint(args.checkpoint, params=last.params, opt_state=last.opt_state, step=last.step,
                               config=vars(args))
        # Reload into the structure of fresh ones and check: the same params, bit for bit.
        back = load_checkpoint(path, params_like=params, opt_state_like=optimizer.init(params))
        same = fc.fingerprint(back.params) == fc.fingerprint(last.params)
        print(f"checkpoint written to {path} (step {back.step}; reloads bit-identical: {same})")
        result.update(checkpoint=str(path), reload_identical=same)

    if args.plot:
        try:
            path = plot_curves(rows, args.plot, title=f"LeNet-5 on {args.dataset}")
            print(f"curves written to {path}")
            result["plot"] = str(path)
        except PlotUnavailable as err:
            print(f"skipped plot: {err}")
            result["plot"] = None
    return result


if __name__ == "__main__":
    main()

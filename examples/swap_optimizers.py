"""Optimizers are values: train one network three times, changing only the optimizer.

``train(optimizer)`` below is the whole experiment; SGD, SGD with momentum and Adam
are three values passed to it. Same data, same initial weights (same seed), same
shuffles: the curves differ only by the optimizer. The script prints a table of the
final figures and draws the three runs in one PNG.

Run it::

    python examples/swap_optimizers.py                       # LeNet-5, 1,000 digits, 5 epochs
    python examples/swap_optimizers.py --model seed1 --plot seed1_optimizers.png
    python examples/swap_optimizers.py --epochs 1 --limit 64   # a quick smoke run
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

import functional_cnn as fc
from functional_cnn.datasets import load_dataset
from functional_cnn.models import build_model
from functional_cnn.reporting import PlotUnavailable, plot_curves
from functional_cnn.train import EpochRecord

# The three contenders. Each is a GradientTransformation: a pair of pure functions (init, update).
OPTIMIZERS = {
    "sgd": fc.sgd(0.05),
    "momentum": fc.sgd(0.01, momentum=0.9),
    "adam": fc.adam(1e-3),
}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train one network with SGD, momentum and Adam; compare.")
    p.add_argument("--model", choices=("lenet", "seed1"), default="lenet", help="(default lenet)")
    p.add_argument("--epochs", type=int, default=5, help="(default 5)")
    p.add_argument("--limit", type=int, default=1000, help="training digits (default 1000)")
    p.add_argument("--batch-size", type=int, default=32, help="(default 32)")
    p.add_argument("--seed", type=int, default=0, help="one seed for the split, the weights and the shuffles")
    p.add_argument("--plot", metavar="PATH", default="optimizers.png", help="(default optimizers.png)")
    p.add_argument("--no-plot", action="store_true", help="do not draw the curves")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    data = load_dataset("mnist-sample", seed=args.seed)
    train_data = (data.x_train[: args.limit], data.y_train[: args.limit])
    test_data = (data.x_test, data.y_test)
    net = build_model(args.model, data.num_classes)
    _, params = net.init(np.random.default_rng(args.seed), data.image_shape)   # shared by all three runs

    def train(optimizer: fc.optim.GradientTransformation) -> List[Dict[str, Any]]:
        """One run: a row per epoch. Everything but `optimizer` is fixed above."""
        rows = []
        for rec in fc.fit(net, params, fc.softmax_cross_entropy, optimizer, train_data, epochs=args.epochs,
                          batch_size=args.batch_size, seed=args.seed, test_data=test_data):
            if isinstance(rec, EpochRecord):
                rows.append({"epoch": rec.epoch, "loss": rec.loss, "accuracy": rec.accuracy,
                             "test_loss": rec.test_loss, "test_accuracy": rec.test_accuracy})
        return rows

    print(f"{args.model} on {len(train_data[0])} mnist-sample digits, batch {args.batch_size}, "
          f"{args.epochs} epochs, tested on {len(test_data[0])}")
    runs: Dict[str, List[Dict[str, Any]]] = {}
    seconds: Dict[str, float] = {}
    for name, optimizer in OPTIMIZERS.items():
        t0 = time.perf_counter()
        runs[name] = train(optimizer)
        seconds[name] = time.perf_counter() - t0

    width = max(len(opt.name) for opt in OPTIMIZERS.values())
    print(f"{'optimizer':<{width}} {'loss':>7} {'acc':>7} {'test loss':>10} {'test acc':>9} {'time':>6}")
    table = {}
    for name, rows in runs.items():
        end = rows[-1]
        print(f"{OPTIMIZERS[name].name:<{width}} {end['loss']:7.4f} {end['accuracy']:7.2%} "
              f"{end['test_loss']:10.4f} {end['test_accuracy']:9.2%} {seconds[name]:5.1f}s")
        table[name] = dict(end, seconds=seconds[name])

    plot = None
    if not args.no_plot:
        try:
            plot = str(plot_curves([], args.plot, title=f"{args.model}: optimizers compared", series=runs))
            print(f"curves written to {plot}")
        except PlotUnavailable as err:
            print(f"skipped plot: {err}")
    return {"table": table, "runs": runs, "plot": plot}


if __name__ == "__main__":
    main()

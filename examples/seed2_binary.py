"""Seed notebook 002, rebuilt: zeros against ones with a sigmoid CNN, one image per step.

The network and recipe are the notebook's (``models.seed2_net``): conv 5@3x3 with one
bias per output position, sigmoid, dense 3380->100, sigmoid, dense 100->2, sigmoid,
with Glorot-normal weights (``--init notebook`` draws every weight and bias N(0, 1) as
the notebook did; those saturate the 3380->100 sigmoid layer and, over 20 seeds, reached
99.4% on average but 97.5% on seed 0). The loss is binary cross-entropy of the two
sigmoid outputs against the one-hot label, averaged over both outputs as the notebook's
``np.mean`` did (``fc.one_hot_binary_cross_entropy``); plain SGD with learning rate
0.1, batch size 1, 20 epochs.

Data: the notebook took the first 100 zeros and 100 ones of MNIST's training and test
files. Offline we draw them from ``mnist-sample`` instead: ``load_dataset`` splits it
by class and shuffles by the seed, and we keep the first 100 zeros and 100 ones of the
training split to train on and of the held-out split to test on (disjoint by
construction; the held-out split has 100 of each digit).

Run it::

    python examples/seed2_binary.py
    python examples/seed2_binary.py --epochs 1 --per-class 10     # a quick smoke run

It prints ``k/20, error=...`` (the mean loss per image of epoch k) like the notebook,
a few of the test predictions, and the test accuracy.
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

import functional_cnn as fc
from functional_cnn.datasets import load_dataset
from functional_cnn.models import seed2_net
from functional_cnn.train import EpochRecord


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Seed notebook 002's sigmoid CNN on zeros and ones.")
    p.add_argument("--epochs", type=int, default=20, help="passes over the training images (default 20)")
    p.add_argument("--per-class", type=int, default=100, help="images of each digit, train and test (default 100)")
    p.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="one seed for the draw, the weights and the shuffles")
    p.add_argument("--show", type=int, default=10, help="test predictions to print (default 10)")
    p.add_argument("--init", choices=("glorot", "notebook"), default="glorot",
                   help="weights: glorot (default) or the notebook's N(0, 1)")
    args = p.parse_args(argv)
    if not 1 <= args.per_class <= 100:
        p.error(f"--per-class must be in [1, 100] (the held-out split has 100 of each digit), got {args.per_class}")
    return args


def zeros_and_ones(x: np.ndarray, y: np.ndarray, k: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """The first ``k`` zeros and ``k`` ones of (x, y), mixed in a random order; labels stay 0 and 1."""
    idx = np.concatenate([np.flatnonzero(y == 0)[:k], np.flatnonzero(y == 1)[:k]])
    idx = rng.permutation(idx)
    return x[idx], y[idx]


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)

    # 1. Data: 0s and 1s only, a two-class problem (labels 0 and 1 index the two outputs).
    data = load_dataset("mnist-sample", seed=args.seed)
    x_train, y_train = zeros_and_ones(data.x_train, data.y_train, args.per_class, rng)
    x_test, y_test = zeros_and_ones(data.x_test, data.y_test, args.per_class, rng)

    # 2. The network, with two sigmoid outputs.
    net = seed2_net(num_classes=2, init=args.init)
    _, params = net.init(rng, data.image_shape)

    # 3. Train, printing the notebook's line after every epoch.
    loss = fc.one_hot_binary_cross_entropy
    print(f"seed 002's CNN: {len(x_train)} training and {len(x_test)} test images of 0 and 1, "
          f"SGD lr={args.lr:g}, batch 1, {args.epochs} epochs")
    errors: List[float] = []
    last = None
    for rec in fc.fit(net, params, loss, fc.sgd(args.lr), (x_train, y_train),
                      epochs=args.epochs, batch_size=1, seed=args.seed):
        if isinstance(rec, EpochRecord):
            print(f"{rec.epoch}/{args.epochs}, error={rec.loss}")
            errors.append(rec.loss)
            last = rec

    # 4. Test: the predicted class is the larger of the two outputs.
    pred = fc.predict(net, last.params, x_test).argmax(axis=1)
    for p, t in zip(pred[: args.show], y_test[: args.show]):
        print(f"pred: {p}, true: {t}")
    right = int((pred == y_test).sum())
    accuracy = right / len(y_test)
    seconds = time.perf_counter() - t0
    print(f"Test accuracy: {accuracy:.4f} ({right}/{len(y_test)} right)")
    print(f"wall time {seconds:.1f}s")
    return {"errors": errors, "test_accuracy": accuracy, "test_right": right, "test_n": len(y_test),
            "seconds": seconds}


if __name__ == "__main__":
    main()

"""Seed notebook 000, rebuilt: a tiny CNN on 1,000 MNIST digits, one digit per step.

The network and recipe are the notebook's: conv 4@3x3, ReLU, max-pool 2, dense 10
(weights N(0, 0.1^2), zero biases), softmax cross-entropy, plain SGD with learning
rate 0.01, batch size 1, 5 epochs, 1,000 digits split 80/20. What changed is how it
is written: the network is a value, training is ``fc.fit`` folding a pure step over
the data, and every random draw comes from ``--seed``.

Data: the notebook took the first 1,000 digits of the full MNIST download and split
them with ``train_test_split(test_size=0.2, random_state=0)``. Offline we have the
5,000-digit ``mnist-sample`` (500 per class). ``load_dataset`` splits it by class,
80/20, and shuffles each split by the seed; we keep the first 800 shuffled training
digits and the first 200 shuffled held-out digits. That is a random draw of 1,000
digits with the same 80/20 ratio, reproducible from the seed, and the test digits are
never trained on.

Run it::

    python examples/seed1_cnn.py                  # the notebook's settings
    python examples/seed1_cnn.py --epochs 1 --limit 60   # a quick smoke run

It prints one line per epoch like the notebook (the loss is the *sum* over the epoch,
the accuracy the running training accuracy), then the test accuracy.
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

import functional_cnn as fc
from functional_cnn.datasets import load_dataset
from functional_cnn.models import seed1_net
from functional_cnn.train import EpochRecord


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Seed notebook 000's CNN trained with functional_cnn.")
    p.add_argument("--epochs", type=int, default=5, help="passes over the training digits (default 5)")
    p.add_argument("--limit", type=int, default=1000, help="digits in all, split 80/20 (default 1000)")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    p.add_argument("--batch-size", type=int, default=1, help="digits per step (default 1, as the notebook)")
    p.add_argument("--seed", type=int, default=0, help="one seed for the split, the weights and the shuffles")
    args = p.parse_args(argv)
    if args.limit < 10:
        p.error(f"--limit must be at least 10 digits, got {args.limit}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    t0 = time.perf_counter()

    # 1. Data: `limit` digits, 80% to train on and 20% to test on (see the module docstring).
    data = load_dataset("mnist-sample", seed=args.seed)
    n_train = int(round(0.8 * args.limit))
    x_train, y_train = data.x_train[:n_train], data.y_train[:n_train]
    x_test, y_test = data.x_test[: args.limit - n_train], data.y_test[: args.limit - n_train]

    # 2. The network is a value; init infers every shape from the input shape (1, 28, 28).
    net = seed1_net(num_classes=10)
    _, params = net.init(np.random.default_rng(args.seed), data.image_shape)

    # 3. Train: fit yields a record after every step and every epoch; we print the epochs.
    print(f"seed 000's CNN: {len(x_train)} training digits, {len(x_test)} test digits, "
          f"SGD lr={args.lr:g}, batch {args.batch_size}, {args.epochs} epochs")
    epochs: List[Dict[str, float]] = []
    last = None
    for rec in fc.fit(net, params, fc.softmax_cross_entropy, fc.sgd(args.lr), (x_train, y_train),
                      epochs=args.epochs, batch_size=args.batch_size, seed=args.seed):
        if isinstance(rec, EpochRecord):
            # rec.loss is the mean over the epoch; the notebook printed the sum.
            loss_sum = rec.loss * len(x_train)
            print(f"Epoch {rec.epoch}: Loss = {loss_sum:.4f}, Accuracy={rec.accuracy:.4f}")
            epochs.append({"epoch": rec.epoch, "loss_sum": loss_sum, "loss": rec.loss, "accuracy": rec.accuracy})
            last = rec

    # 4. Test on digits the network never saw (inference mode, in batches).
    test = fc.evaluate(net, last.params, (x_test, y_test))
    seconds = time.perf_counter() - t0
    print(f"Test accuracy: {test.accuracy:.4f} ({test.n} digits)")
    print(f"wall time {seconds:.1f}s")
    return {"epochs": epochs, "train_accuracy": last.accuracy, "test_accuracy": test.accuracy,
            "test_loss": test.loss, "seconds": seconds}


if __name__ == "__main__":
    main()

"""Write your own layer: swish with a learnable slope per channel, checked and trained.

``swish(x) = x * sigmoid(beta * x)``, with one ``beta`` per channel (axis 1 of an
(N, C) or (N, C, H, W) batch). A layer is a :class:`functional_cnn.Layer` holding pure
functions: ``init`` (shapes and params, no data), ``forward`` (output and a cache) and
``backward`` (gradients of the params, and of the input). This script

1. writes the layer from scratch (params declared with ``fc.param_field``, so they are
   stored read-only);
2. proves it with the public gradient checker ``fc.check_layer`` (central differences in
   float64 for the input and every parameter, output shape, purity);
3. shows the checker catching a classic mistake: a backward that treats the gate
   ``sigmoid(beta * x)`` as a constant;
4. trains a small network with the new layer inside ``fc.serial``.

Run it::

    python examples/custom_layer.py
    python examples/custom_layer.py --epochs 1 --limit 60      # a quick smoke run
"""
from __future__ import annotations

import argparse
from typing import Any, Dict, Optional, Sequence, Tuple

import attrs
import numpy as np

import functional_cnn as fc
from functional_cnn.datasets import load_dataset
from functional_cnn.train import EpochRecord

Array = np.ndarray


# ----------------------------------------------------------------------------- 1. the layer
@attrs.frozen(eq=False)
class SwishParams:
    """Parameters of :func:`swish`."""

    beta: Array = fc.param_field()   # (C,): the slope of each channel's gate


@attrs.frozen(eq=False)
class SwishCache:
    """What backward needs from forward."""

    x: Array   # the input, (N, C, ...)
    s: Array   # the gate sigmoid(beta * x), same shape


def _beta(params: SwishParams, ndim: int) -> Array:
    """beta as (1, C, 1, ...), to broadcast over a batch of rank ``ndim``."""
    return params.beta.reshape((1, -1) + (1,) * (ndim - 2))


def swish_forward(params: SwishParams, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, SwishCache]:
    """``y = x * sigmoid(beta * x)``; the sigmoid via tanh, which cannot overflow."""
    if x.ndim < 2 or x.shape[1] != params.beta.shape[0]:
        raise ValueError(f"swish: x must be (N, {params.beta.shape[0]}, ...) with channels on axis 1, "
                         f"got shape {x.shape}")
    s = 0.5 * (1.0 + np.tanh(0.5 * _beta(params, x.ndim) * x))
    return x * s, SwishCache(x, s)


def swish_backward(params: SwishParams, cache: SwishCache, dy: Array) -> Tuple[SwishParams, Array]:
    """dy/dx = s + beta x s (1 - s);  dy/dbeta = x^2 s (1 - s), summed over all but the channel axis."""
    x, s = cache.x, cache.s
    ds = s * (1.0 - s)                                    # sigmoid' at beta * x
    dx = dy * (s + _beta(params, x.ndim) * x * ds)
    not_channel = tuple(i for i in range(x.ndim) if i != 1)
    dbeta = (dy * x * x * ds).sum(axis=not_channel)
    return SwishParams(dbeta), dx                         # grads: the same record class as params


def swish(beta_init: float = 1.0) -> fc.Layer:
    """Swish with a learnable ``beta`` per channel, starting at ``beta_init``."""

    def init(rng: np.random.Generator, in_shape: Tuple[int, ...], dtype: Any = np.float32):
        return tuple(in_shape), SwishParams(np.full(in_shape[0], beta_init, dtype=dtype))

    return fc.Layer("swish", init, swish_forward, swish_backward, config={"beta_init": beta_init})


def swish_backward_broken(params: SwishParams, cache: SwishCache, dy: Array) -> Tuple[SwishParams, Array]:
    """A classic slip: dx = dy * s, as if the gate did not depend on x. dbeta is still right."""
    grads, _ = swish_backward(params, cache, dy)
    return grads, dy * cache.s


# ----------------------------------------------------------------------------- the demo
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="A custom layer: gradient-checked, then trained.")
    p.add_argument("--epochs", type=int, default=5, help="training epochs (default 5)")
    p.add_argument("--limit", type=int, default=None, help="train on the first N digits only")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)

    # 2. Check the layer at a generic point: 3 channels with different slopes.
    print("== 2. gradient check of swish ==")
    params = SwishParams(rng.uniform(0.5, 2.0, size=3))
    report = fc.check_layer(swish(), rng, (3, 4, 4), params=params)
    print(report.table())

    # 3. The same layer with the broken backward: a Layer is a record, so swap one function.
    print("\n== 3. the same check with a broken backward ==")
    broken = attrs.evolve(swish(), name="swish_broken", backward=swish_backward_broken)
    failures = []
    try:
        fc.check_layer(broken, rng, (3, 4, 4), params=params)
        print("the broken layer passed?!")
    except fc.GradCheckError as err:
        failures = [row.name for row in err.report.failures]
        print(f"caught GradCheckError; failing rows: {', '.join(failures)}")
        for row in err.report.failures:
            print(f"  {row.name:<6} {row.detail:<28} max|num-ana| {row.max_abs_err:.2e}  rel err {row.rel_err:.2e}")

    # 4. Use it like any built-in layer.
    print("\n== 4. training a network with swish inside ==")
    data = load_dataset("digits", seed=args.seed)    # 8x8 digits: seconds, not minutes
    net = fc.serial(fc.conv2d(8, 3, padding=1), swish(), fc.max_pool2d(2), fc.flatten(), fc.dense(10))
    _, net_params = net.init(rng, data.image_shape)
    train = (data.x_train[: args.limit], data.y_train[: args.limit])
    epochs = []
    for rec in fc.fit(net, net_params, fc.softmax_cross_entropy, fc.adam(1e-2), train, epochs=args.epochs,
                      batch_size=32, seed=args.seed, test_data=(data.x_test, data.y_test)):
        if isinstance(rec, EpochRecord):
            print(f"epoch {rec.epoch}: loss {rec.loss:.4f}  acc {rec.accuracy:.4f}  test_acc {rec.test_accuracy:.4f}")
            epochs.append({"epoch": rec.epoch, "loss": rec.loss, "accuracy": rec.accuracy,
                           "test_accuracy": rec.test_accuracy})
            trained = rec.params
    betas = np.asarray(trained[1].beta)   # params of serial: a tuple, one entry per layer
    print(f"learned beta per channel: {np.array2string(betas, precision=3)}")
    return {"gradcheck_ok": report.ok, "max_rel_err": max(row.rel_err for row in report.rows),
            "broken_failures": failures, "epochs": epochs, "betas": betas.tolist()}


if __name__ == "__main__":
    main()

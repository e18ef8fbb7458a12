"""Training: a pure step, a loop that yields immutable records, batched evaluation.

* ``step = make_step(net, loss, optimizer)`` is pure:
  ``step(params, opt_state, (x, y), rng) -> (params, opt_state, StepMetrics)``.
* ``fit(...)`` is the only place where time passes. It yields a
  :class:`StepRecord` after every step and an :class:`EpochRecord` (with the
  params and optimizer state) after every epoch; progress bars, logs,
  checkpoints and early stopping consume that stream.
* Randomness is derived from one seed: epoch ``e``'s shuffle uses
  ``SeedSequence([seed, 0, e])`` and global step ``t``'s forward rng (dropout)
  uses ``SeedSequence([seed, 1, t])``. So a run is a function of
  ``(params, opt_state, data, seed)``, and resuming from any step needs only the
  step number: ``k`` steps, a restart, then ``k`` more equal ``2k`` steps bit for bit.
"""
from __future__ import annotations

import hashlib
import math
import time
from typing import Any, Callable, Iterator, Optional, Tuple, Union

import attrs
import numpy as np

from ._checks import float_array, positive_int
from ._memory import keep_freed_memory
from .accumulate import micro_rngs as _micro_rngs
from .debug import debug as debug_layers
from .layer import Layer
from .layers._combinator import draws
from .losses import accuracy as _accuracy
from .losses import softmax_cross_entropy
from .optim import GradientTransformation, learning_rate
from .optim.base import update_and_apply
from .optim.transforms import learning_rate_reader
from .tracking import LayerNorms, layer_norms
from .tree import tree_leaves_with_paths

__all__ = [
    "StepMetrics", "StepRecord", "EpochRecord", "EvalResult", "NonFiniteLossError",
    "make_step", "fit", "evaluate", "predict", "fingerprint", "epoch_order", "step_rng", "batches",
]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the step."""


def _record_html(record: Any) -> str:
    """A record as an HTML table in notebooks (see functional_cnn.display)."""
    from .display import fields_html

    return fields_html(record)


@attrs.frozen
class StepMetrics:
    """What one step measured: its loss, the batch accuracy (None when undefined), the rate it used."""

    loss: float
    accuracy: Optional[float]
    learning_rate: float
    layer_norms: Optional[Tuple[LayerNorms, ...]] = None  # with track_layers=True (functional_cnn.tracking)


@attrs.frozen
class StepRecord:
    """Emitted by :func:`fit` after each step."""

    _repr_html_ = _record_html

    epoch: int
    step: int  # global steps done, counting this one
    batch: int  # index of the batch within the epoch
    batches_per_epoch: int
    loss: float
    accuracy: Optional[float]
    learning_rate: float
    layer_norms: Optional[Tuple[LayerNorms, ...]] = attrs.field(default=None, repr=False)  # track_layers=True


@attrs.frozen
class EpochRecord:
    """Emitted by :func:`fit` after each epoch (or when ``max_steps`` stops it early)."""

    _repr_html_ = _record_html

    epoch: int
    step: int
    loss: float  # mean training loss over the epoch's examples seen in this run
    accuracy: Optional[float]
    learning_rate: float  # the rate of the epoch's last step
    seconds: float
    test_loss: Optional[float]
    test_accuracy: Optional[float]
    params: Any = attrs.field(repr=False)
    opt_state: Any = attrs.field(repr=False)
    complete: bool = True  # False when max_steps ended the epoch early


@attrs.frozen
class EvalResult:
    """Loss and accuracy over a whole dataset."""

    _repr_html_ = _record_html

    loss: float
    accuracy: Optional[float]
    n: int


def _batch_accuracy(out: np.ndarray, target: Any) -> Optional[float]:
    if out.ndim != 2 or out.shape[1] < 2:
        return None
    return float(_accuracy(out, target))


def make_step(net: Layer, loss: Callable, optimizer: GradientTransformation, *, debug: bool = False,
              accumulate: Optional[int] = None, comm: Any = None, exchange_timeout: float = 120.0,
              track_layers: bool = False) -> Callable:
    """Build the pure training step for ``net``, ``loss`` and ``optimizer``.

    The step runs forward (``train=True``), the loss, backward, the optimizer, and
    finally ``net.update_state`` so stateful layers (batch norm) take the statistics
    of this batch. Nothing is modified in place. With ``debug=True`` every layer's
    outputs and gradients are checked and the first NaN/Inf raises
    :class:`functional_cnn.debug.NonFiniteError` naming the layer and direction.

    With ``accumulate=K > 1`` the batch is cut into ``K`` micro-batches whose
    size-weighted gradients make one update (see :mod:`functional_cnn.accumulate`);
    the step then also takes ``rng`` as ``K`` generators (``accumulate.micro_rngs``) and
    a keyword ``t`` (the global step, for messages). With an mpi4py ``comm`` the
    micro-batches are shared among its ranks (``K`` defaults to, and must be a
    multiple of, the rank count) and the result is bit-identical to ``accumulate=K``
    in one process; a rank waits at most ``exchange_timeout`` seconds for the others
    (see :mod:`functional_cnn.data_parallel`). ``accumulate=1`` without ``comm`` is
    exactly the plain step.

    With ``track_layers=True`` the metrics carry per-layer gradient, update and param
    norms (:func:`functional_cnn.tracking.layer_norms`); off, nothing is computed.
    """
    if not isinstance(net, Layer):
        raise TypeError(f"make_step: net must be a Layer, got {type(net).__name__}")
    if not callable(loss):
        raise TypeError(f"make_step: loss must be callable (pred, target) -> (value, dpred), got {loss!r}")
    if not isinstance(optimizer, GradientTransformation):
        raise TypeError(f"make_step: optimizer must be a GradientTransformation, got {type(optimizer).__name__}")
    if not isinstance(track_layers, (bool, np.bool_)):
        raise TypeError(f"make_step: track_layers must be a bool, got {track_layers!r}")
    if debug:
        net = debug_layers(net)
    keep_freed_memory()  # reuse freed pages across steps (see functional_cnn._memory)
    if comm is not None or (accumulate is not None and accumulate != 1):
        return _accumulating_step(net, loss, optimizer, accumulate, comm, exchange_timeout, bool(track_layers))
    if accumulate is not None:
        positive_int(accumulate, "make_step", "accumulate")
    read_lr: Optional[Callable[[Any], float]] = None

    def step(params: Any, opt_state: Any, batch: Tuple[np.ndarray, Any],
             rng: Optional[np.random.Generator] = None) -> Tuple[Any, Any, StepMetrics]:
        nonlocal read_lr
        x, y = _pair(batch, "make_step", "batch")
        if read_lr is None:  # where the state keeps its rate, found once: optimizer.update checks the state
            read_lr = learning_rate_reader(opt_state)
        lr = read_lr(opt_state)
        out, cache, value, grads = forward_backward(net, loss, params, x, y, rng)
        applied, new_state, updates = update_and_apply(optimizer, grads, opt_state, params)
        new_params = net.update_state(applied, cache)
        norms = layer_norms(params, grads, updates()) if track_layers else None
        return new_params, new_state, StepMetrics(float(value), _batch_accuracy(out, y), lr, norms)

    return step


def forward_backward(net: Layer, loss: Callable, params: Any, x: np.ndarray, y: Any,
                     rng: Optional[np.random.Generator], where: str = "make_step") -> Tuple[Any, Any, Any, Any]:
    """``(out, cache, loss value, grads)`` of one training-mode pass; dx of the input is not computed."""
    out, cache = net.forward(params, x, rng=rng, train=True)
    result = loss(out, y)
    if not isinstance(result, tuple) or len(result) != 2:
        raise TypeError(f"{where}: loss must return (value, dpred), got {type(result).__name__}")
    value, dout = result
    grads, _ = net.backward(params, cache, dout, need_dx=False)  # nobody reads dx of the input batch
    return out, cache, value, grads


def _accumulating_step(net: Layer, loss: Callable, optimizer: GradientTransformation, accumulate: Optional[int],
                       comm: Any, exchange_timeout: float, track_layers: bool = False) -> Callable:
    from .accumulate import make_accumulating_step

    exchange = None
    if comm is not None:
        from .data_parallel import Exchange, check_ranks

        exchange = Exchange(comm, exchange_timeout)
        accumulate = exchange.size if accumulate is None else accumulate
    k = positive_int(accumulate, "make_step", "accumulate")
    if exchange is not None:
        check_ranks(k, exchange.size, "make_step")
    return make_accumulating_step(net, loss, optimizer, k, exchange, track_layers)


def epoch_order(seed: int, epoch: int, n: int, shuffle: bool = True) -> np.ndarray:
    """The example order of ``epoch``: a permutation drawn from ``SeedSequence([seed, 0, epoch])``."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng(np.random.SeedSequence([seed, 0, epoch])).permutation(n)


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The generator handed to forward at global step ``step`` (for dropout and the like)."""
    return np.random.default_rng(np.random.SeedSequence([seed, 1, step]))


def batches(order: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Index arrays of consecutive ``batch_size`` chunks of ``order`` (the last may be short), each a fresh copy."""
    order = np.asarray(order)
    return (order[i : i + batch_size].astype(np.int_) for i in range(0, order.shape[0], batch_size))


def _pair(value: Any, where: str, arg: str) -> Tuple[Any, Any]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        is_seq = isinstance(value, (tuple, list))
        got = f"{type(value).__name__} of length {len(value)}" if is_seq else type(value).__name__
        raise TypeError(f"{where}: {arg} must be a pair (x, y), got {got}")
    return value[0], value[1]


def _check_layer(net: Any, where: str) -> None:
    if not isinstance(net, Layer):
        raise TypeError(f"{where}: net must be a Layer, got {type(net).__name__}")


def _check_data(where: str, data: Any, arg: str = "data") -> Tuple[np.ndarray, np.ndarray]:
    x, y = _pair(data, where, arg)
    x = float_array(x, where, "x")
    y = np.asarray(y)
    if x.ndim < 1 or y.ndim < 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"{where}: x and y must have the same number of examples, got {np.shape(x)} and {y.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{where}: the dataset is empty (0 examples)")
    return x, y


def fit(net: Layer, params: Any, loss: Callable, optimizer: GradientTransformation, data: Tuple[Any, Any], *,
        epochs: int, batch_size: int, seed: int, opt_state: Any = None, test_data: Optional[Tuple[Any, Any]] = None,
        start_step: int = 0, max_steps: Optional[int] = None, shuffle: bool = True,
        eval_batch_size: int = 1000, debug: bool = False, accumulate: Optional[int] = None, comm: Any = None,
        exchange_timeout: float = 120.0, track_layers: bool = False) -> Iterator[Union[StepRecord, EpochRecord]]:
    """Train ``net`` and yield a record after every step and every epoch.

    Args:
        net: the network to train.
        params: its initial params.
        loss: ``(pred, target) -> (value, dpred)``.
        optimizer: a GradientTransformation.
        data: ``(x, y)`` training arrays.
        epochs: total epochs (counting those before ``start_step``).
        batch_size: examples per step; the last batch of an epoch may be smaller.
        seed: the one seed for shuffling and forward randomness.
        opt_state: the optimizer state to continue from (default: ``optimizer.init(params)``).
        test_data: ``(x, y)`` evaluated after each epoch, or None.
        start_step: global steps already done (to resume; the data order is recomputed).
        max_steps: stop after this many global steps.
        shuffle: shuffle each epoch (by the seed).
        debug: check every layer's outputs and gradients for NaN/Inf (see ``functional_cnn.debug``).
        accumulate: micro-batches per step (see :func:`make_step`); micro-batch ``m`` of
            global step ``t`` draws from ``SeedSequence([seed, 1, t, m])``. Default 1, or
            the rank count with ``comm``.
        comm: an mpi4py communicator for data-parallel training (see :func:`make_step`); every
            rank calls ``fit`` with the same arguments.
        exchange_timeout: with ``comm``, seconds to wait for the other ranks before aborting.
        track_layers: attach per-layer gradient/update/param norms to every StepRecord
            (see ``functional_cnn.tracking``); params are the same bit for bit either way.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite; names the step.
        NonFiniteError: with ``debug``, the first layer and direction where NaN/Inf appeared.
    """
    where = "fit"
    x, y = _check_data(where, data)
    if test_data is not None:
        _check_data(where, test_data, "test_data")
    positive_int(seed, where, "seed", minimum=0, maximum=2**64 - 1)
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"{where}: shuffle must be a bool, got {shuffle!r}")
    positive_int(eval_batch_size, where, "eval_batch_size")
    epochs = positive_int(epochs, where, "epochs")
    batch_size = positive_int(batch_size, where, "batch_size")
    start_step = positive_int(start_step, where, "start_step", minimum=0)
    if max_steps is not None:
        max_steps = positive_int(max_steps, where, "max_steps", minimum=0)
    if accumulate is not None:
        accumulate = positive_int(accumulate, where, "accumulate")
    if not isinstance(track_layers, (bool, np.bool_)):
        raise TypeError(f"{where}: track_layers must be a bool, got {track_layers!r}")
    step_fn = make_step(net, loss, optimizer, debug=debug, accumulate=accumulate, comm=comm,
                        exchange_timeout=exchange_timeout, track_layers=bool(track_layers))
    plain = comm is None and accumulate in (None, 1)
    random = draws(net)
    state = optimizer.init(params) if opt_state is None else opt_state
    try:
        learning_rate(state)
    except ValueError as err:
        raise TypeError(f"{where}: opt_state must be a state made by optimizer.init; {err}") from None
    per_epoch = -(-x.shape[0] // batch_size)
    first_epoch, skip = divmod(start_step, per_epoch)
    step = start_step
    for epoch in range(first_epoch, epochs):
        if max_steps is not None and step >= max_steps:
            return
        t0 = time.perf_counter()
        order = epoch_order(seed, epoch, x.shape[0], shuffle)
        loss_sum, correct, seen, lr = 0.0, 0.0, 0, learning_rate(state)
        done = True
        for b, idx in enumerate(batches(order, batch_size)):
            if epoch == first_epoch and b < skip:
                continue
            if max_steps is not None and step >= max_steps:
                done = False
                break
            if plain:  # a network that never draws gets no generator (making one costs ~10 us)
                params, state, m = step_fn(params, state, (x[idx], y[idx]), step_rng(seed, step) if random else None)
            else:
                params, state, m = step_fn(params, state, (x[idx], y[idx]),
                                           _micro_rngs(seed, step, step_fn.accumulate), t=step + 1)
            step += 1
            if not math.isfinite(m.loss):
                raise NonFiniteLossError(
                    f"fit: loss is {m.loss} at step {step} (epoch {epoch + 1}, batch {b + 1} of {per_epoch}); "
                    f"lower the learning rate or check the data for NaN/Inf")
            n = len(idx)
            loss_sum += m.loss * n
            correct += (m.accuracy or 0.0) * n
            seen += n
            lr = m.learning_rate
            yield StepRecord(epoch + 1, step, b + 1, per_epoch, m.loss, m.accuracy, lr, m.layer_norms)
        if seen == 0:
            return
        test = evaluate(net, params, test_data, eval_batch_size, loss) if test_data is not None else None
        acc = correct / seen if m.accuracy is not None else None
        yield EpochRecord(epoch + 1, step, loss_sum / seen, acc, lr, time.perf_counter() - t0,
                          test.loss if test else None, test.accuracy if test else None, params, state, done)
        if not done:
            return


def predict(net: Layer, params: Any, x: Any, batch_size: int = 1000) -> np.ndarray:
    """Inference (``train=False``) in batches, so memory stays bounded."""
    _check_layer(net, "predict")
    x = float_array(x, "predict", "x")
    batch_size = positive_int(batch_size, "predict", "batch_size")
    if x.shape[0] == 0:
        raise ValueError("predict: x is empty (0 examples)")
    outs = [net.forward(params, x[i : i + batch_size], train=False)[0] for i in range(0, x.shape[0], batch_size)]
    return np.concatenate(outs)


def evaluate(net: Layer, params: Any, data: Tuple[Any, Any], batch_size: int = 1000,
             loss: Optional[Callable] = None) -> EvalResult:
    """Mean loss and accuracy of ``net`` on ``data`` in inference mode, batch by batch."""
    _check_layer(net, "evaluate")
    loss = softmax_cross_entropy if loss is None else loss
    if not callable(loss):
        raise TypeError(f"evaluate: loss must be callable (pred, target) -> (value, dpred), got {loss!r}")
    x, y = _check_data("evaluate", data)
    batch_size = positive_int(batch_size, "evaluate", "batch_size")
    total, correct, acc_ok = 0.0, 0.0, True
    for i in range(0, x.shape[0], batch_size):
        out = net.forward(params, x[i : i + batch_size], train=False)[0]
        value, _ = loss(out, y[i : i + batch_size])
        total += float(value) * out.shape[0]
        a = _batch_accuracy(out, y[i : i + batch_size])
        acc_ok = acc_ok and a is not None
        correct += (a or 0.0) * out.shape[0]
    n = x.shape[0]
    return EvalResult(total / n, correct / n if acc_ok else None, n)


def fingerprint(tree: Any) -> str:
    """sha256 over every leaf's path, dtype, shape and bytes: equal iff bit-identical."""
    h = hashlib.sha256()
    for path, leaf in tree_leaves_with_paths(tree):
        a = np.ascontiguousarray(leaf)
        h.update(f"{path}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


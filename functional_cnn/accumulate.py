"""Gradient accumulation: one optimizer update from K micro-batches.

``make_step(net, loss, optimizer, accumulate=K)`` builds the step defined here. A
batch of ``N`` examples is cut, in order, into ``K`` micro-batches whose sizes are
as equal as possible: the first ``N mod K`` hold ``ceil(N / K)`` examples and the
rest ``floor(N / K)`` (:func:`split_sizes`, the rule of ``numpy.array_split``).
``K`` need not divide ``N``; when ``N < K`` (a short last batch of an epoch) the
trailing micro-batches are empty and are skipped.

Each micro-batch ``m`` of ``n_m`` examples runs forward (``train=True``), the loss,
backward and ``net.update_state`` on its own, from the params the step started
with. The step then combines, in micro-batch order ``m = 0, 1, ..., K-1``:

* gradients: ``g = sum_m (n_m / N) * g_m``. Every loss of this package is a mean
  over the batch (``softmax_cross_entropy``) or over all elements, each example
  having the same number of them (the binary cross-entropies, MSE), so ``g`` is
  the gradient of the whole batch's mean loss. A custom loss must be such a mean
  for this to hold.
* loss and accuracy: the same size-weighted sum, i.e. the whole batch's values.
* non-trainable state (batch-norm running statistics): each micro-batch's
  ``update_state`` gives the state it would leave from the step's starting params;
  the step keeps their size-weighted mean. For batch norm that is
  ``momentum * old + (1 - momentum) * sum_m (n_m / N) * stat_m``: the running
  statistics move once per optimizer step, towards the size-weighted mean of the
  micro-batch statistics (which are computed per micro-batch, as in a plain step of
  batch ``n_m``).

Then the optimizer makes one update. The sums run in micro-batch order with the
first term as the start (no ``0 +``), so the result depends only on the
micro-batch results, never on which process computed them: the data-parallel step
(:mod:`functional_cnn.data_parallel`) gathers the same terms from its ranks and
calls the same :func:`combine`, which is why it is bit-identical to this one.

Randomness: micro-batch ``m`` of global step ``t`` gets the generator of
``SeedSequence([seed, 1, t, m])`` (:func:`micro_rngs`); with ``K = 1`` that is
``SeedSequence([seed, 1, t])``, the plain step's, and ``make_step`` keeps the plain
step itself, so ``accumulate=1`` is exactly the unaccumulated run.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import attrs
import numpy as np

from .layer import Layer
from .optim import GradientTransformation, learning_rate
from .optim.base import update_and_apply
from .optim.leaves import freeze
from .tree import state_paths, trainable, tree_flatten, tree_leaves_with_paths, tree_structure, tree_unflatten

__all__ = ["split_sizes", "micro_rngs", "MicroResult", "run_micro_batch", "combine", "with_state",
           "make_accumulating_step"]


def split_sizes(n: int, k: int) -> List[int]:
    """Sizes of the ``k`` micro-batches of a batch of ``n``: the first ``n % k`` get one more.

    >>> split_sizes(10, 4), split_sizes(3, 5)
    ([3, 3, 2, 2], [1, 1, 1, 0, 0])
    """
    q, r = divmod(n, k)
    return [q + 1 if m < r else q for m in range(k)]


def micro_rngs(seed: int, step: int, k: int) -> List[np.random.Generator]:
    """The forward generators of step ``step``'s ``k`` micro-batches.

    Micro-batch ``m`` uses ``SeedSequence([seed, 1, step, m])``; for ``k = 1`` the one
    generator is the plain step's, ``SeedSequence([seed, 1, step])``.
    """
    if k == 1:
        return [np.random.default_rng(np.random.SeedSequence([seed, 1, step]))]
    return [np.random.default_rng(np.random.SeedSequence([seed, 1, step, m])) for m in range(k)]


@attrs.frozen(eq=False)
class MicroResult:
    """What one micro-batch contributes: its size, loss, accuracy, gradient and state leaves."""

    n: int  # examples in the micro-batch (0: skipped)
    loss: float  # its mean loss
    accuracy: Optional[float]  # its accuracy, None when undefined
    grads: List[np.ndarray]  # leaves of trainable(params)'s structure, in flatten order
    state: List[np.ndarray]  # the state leaves update_state gives, in params' flatten order


def _accuracy(out: np.ndarray, y: Any) -> Optional[float]:
    from .train import _batch_accuracy

    return _batch_accuracy(out, y)


def run_micro_batch(net: Layer, loss: Callable, params: Any, x: np.ndarray, y: Any,
                    rng: Optional[np.random.Generator], where: str = "make_step") -> MicroResult:
    """Forward, loss, backward and ``update_state`` of one micro-batch from ``params``."""
    from .train import forward_backward  # lazy: train imports this module

    out, cache, value, grads = forward_backward(net, loss, params, x, y, rng, where)
    new = net.update_state(params, cache)
    state = set(state_paths(params))
    state_leaves = [leaf for path, leaf in tree_leaves_with_paths(new) if path in state]
    return MicroResult(int(x.shape[0]), float(value), _accuracy(out, y), tree_flatten(grads)[0], state_leaves)


def _weighted_sum(terms: Sequence[Tuple[float, np.ndarray]]) -> np.ndarray:
    """``sum_m w_m * a_m`` in the given order, in each array's dtype, starting from the first term."""
    (w0, a0), rest = terms[0], terms[1:]
    total = a0 * a0.dtype.type(w0)
    for w, a in rest:
        total = total + a * a.dtype.type(w)
    return total


def combine(results: Sequence[MicroResult]) -> Tuple[List[np.ndarray], List[np.ndarray], float, Optional[float]]:
    """Size-weighted sums, in the order given, of the non-empty micro-batch results.

    Returns:
        ``(grad_leaves, state_leaves, loss, accuracy)``; the weights are ``n_m / N``
        with ``N`` the examples over all micro-batches.
    """
    used = [r for r in results if r.n > 0]
    for leaf in used[0].state:
        if not np.issubdtype(np.asarray(leaf).dtype, np.floating):
            raise TypeError(f"make_step: with accumulate > 1 the state of stateful layers is folded as a "
                            f"size-weighted mean of the micro-batches', which needs floating-point state, got a "
                            f"state leaf of dtype {np.asarray(leaf).dtype}")
    total = sum(r.n for r in used)
    weights = [r.n / total for r in used]
    grads = [_weighted_sum([(w, r.grads[i]) for w, r in zip(weights, used)]) for i in range(len(used[0].grads))]
    state = [_weighted_sum([(w, r.state[i]) for w, r in zip(weights, used)]) for i in range(len(used[0].state))]
    value = weights[0] * used[0].loss
    for w, r in zip(weights[1:], used[1:]):
        value = value + w * r.loss
    accuracy = None
    if all(r.accuracy is not None for r in used):
        accuracy = weights[0] * used[0].accuracy
        for w, r in zip(weights[1:], used[1:]):
            accuracy = accuracy + w * r.accuracy
    return grads, state, value, accuracy


def with_state(params: Any, state_leaves: Sequence[np.ndarray]) -> Any:
    """``params`` with its state leaves (in flatten order) replaced by ``state_leaves``."""
    if not state_leaves:
        return params
    state = set(state_paths(params))
    it = iter(state_leaves)
    leaves = [next(it) if path in state else leaf for path, leaf in tree_leaves_with_paths(params)]
    return tree_unflatten(tree_structure(params), leaves)


def _micro_generators(rng: Any, k: int, where: str) -> List[Optional[np.random.Generator]]:
    """One generator per micro-batch from what the caller passed as ``rng``."""
    if rng is None:
        return [None] * k
    if isinstance(rng, np.random.Generator):
        return [rng] if k == 1 else list(rng.spawn(k))
    if isinstance(rng, (list, tuple)) and len(rng) == k and all(isinstance(g, np.random.Generator) for g in rng):
        return list(rng)
    got = f"a {type(rng).__name__} of length {len(rng)}" if isinstance(rng, (list, tuple)) else type(rng).__name__
    raise TypeError(f"{where}: rng must be None, a numpy Generator or a sequence of accumulate={k} Generators "
                    f"(one per micro-batch, e.g. micro_rngs(seed, step, {k})), got {got}")


def make_accumulating_step(net: Layer, loss: Callable, optimizer: GradientTransformation, accumulate: int,
                           exchange: Any = None, track_layers: bool = False) -> Callable:
    """The step of ``make_step(..., accumulate=K)``; with ``exchange``, its data-parallel form.

    Args:
        net, loss, optimizer: as for :func:`functional_cnn.train.make_step` (already checked).
        accumulate: ``K >= 1`` micro-batches per step.
        exchange: None (one process computes every micro-batch) or an object with
            ``rank``, ``size`` and ``gather(mine, params, k, t) -> list of K MicroResult``
            (:class:`functional_cnn.data_parallel.Exchange`); rank ``r`` computes the
            micro-batches ``m`` with ``m % size == r``.

    Returns:
        ``step(params, opt_state, (x, y), rng=None, *, t=None) -> (params, opt_state, StepMetrics)``.
        ``rng`` is None, one Generator (split with ``spawn(K)``) or ``K`` Generators;
        ``t`` (the global step) only labels error messages.
    """
    from .tracking import layer_norms
    from .train import StepMetrics, _pair

    k = accumulate
    rank, size = (0, 1) if exchange is None else (exchange.rank, exchange.size)

    def step(params: Any, opt_state: Any, batch: Tuple[np.ndarray, Any], rng: Any = None, *,
             t: Optional[int] = None) -> Tuple[Any, Any, StepMetrics]:
        x, y = _pair(batch, "make_step", "batch")
        n = int(np.shape(x)[0]) if np.ndim(x) else 0
        n_y = int(np.shape(y)[0]) if np.ndim(y) else None
        if n == 0 or n_y != n:
            got = f"{n_y} targets" if n_y is not None else f"a target of shape {np.shape(y)} (no batch axis)"
            raise ValueError(f"make_step: batch must hold at least one example with as many targets, got x of "
                             f"shape {np.shape(x)} and {got}")
        gens = _micro_generators(rng, k, "make_step")
        lr = learning_rate(opt_state)
        starts = np.cumsum([0] + split_sizes(n, k))
        mine = {}
        for m in range(rank, k, size):
            lo, hi = int(starts[m]), int(starts[m + 1])
            mine[m] = run_micro_batch(net, loss, params, x[lo:hi], y[lo:hi], gens[m]) if hi > lo else None
        results = [mine[m] for m in range(k)] if exchange is None else exchange.gather(mine, params, k, t)
        grad_leaves, state_leaves, value, acc = combine([r for r in results if r is not None])
        grads = tree_unflatten(tree_structure(trainable(params)), [freeze(g) for g in grad_leaves])
        applied, new_state, updates = update_and_apply(optimizer, grads, opt_state, params)
        new_params = with_state(applied, [freeze(s) for s in state_leaves])
        norms = layer_norms(params, grads, updates()) if track_layers else None  # the summed grads, one update
        return new_params, new_state, StepMetrics(value, acc, lr, norms)

    step.accumulate = k  # type: ignore[attr-defined]
    step.exchange = exchange  # type: ignore[attr-defined]  # its .seconds and .count time the exchanges
    return step

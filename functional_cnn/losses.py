"""Losses: pure pairs ``value, dpred = loss(pred, target)``.

Conventions shared by every loss here:

* ``value`` is a Python ``float``; ``dpred`` is a new array with ``pred``'s shape and
  dtype (float32 in, float32 out). Arithmetic runs in ``pred``'s dtype; float16 is
  promoted to float32 for the arithmetic only, nothing is silently promoted to float64.
* Reduction: :func:`softmax_cross_entropy` averages over the batch (one loss per row);
  :func:`binary_cross_entropy`, :func:`binary_cross_entropy_with_logits` and
  :func:`mean_squared_error` average over *all* elements, like ``np.mean`` in the seed
  notebooks (so with an output of size 1 per example this is also the batch mean).
* Inputs are never modified. ``pred`` must be a float array; ``target`` may be any real
  array (cast to ``pred``'s dtype). Bad shapes, ranges, empty batches: ``ValueError``;
  bad dtypes: ``TypeError``; each message names the loss, the argument, got and expected.
* Non-finite entries of ``pred`` are not an error: they propagate to ``value`` and
  ``dpred`` (NaN/inf), so the training loop can report the divergence with its step.
  Non-finite *targets* are data errors and raise ``ValueError``.

>>> import numpy as np
>>> value, dz = softmax_cross_entropy(np.array([[0.0, 0.0]]), np.array([1]))
>>> round(value, 6), dz.tolist()
(0.693147, [[0.5, -0.5]])
"""
from __future__ import annotations

from typing import Any, Callable, Tuple

import numpy as np

from ._checks import float_array, real_number

Array = np.ndarray
Loss = Callable[[Array, Array], Tuple[float, Array]]

__all__ = [
    "Loss",
    "softmax_cross_entropy",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "one_hot_binary_cross_entropy",
    "mean_squared_error",
    "accuracy",
]


# ----------------------------------------------------------------------------- checks
def _pred(pred: Any, where: str, arg: str, *, ndim: int | None = None) -> Array:
    """``pred`` as a float array with a non-empty batch axis (rank ``ndim`` if given)."""
    if isinstance(pred, np.ndarray) and pred.ndim >= 1 and pred.size == 0:  # before float_array: one message
        raise ValueError(f"{where}: {arg} must hold at least one example and element, got shape {pred.shape}")
    pred = float_array(pred, where, arg, ndim=ndim, layout="(N, K)" if ndim == 2 else "")
    if pred.ndim == 0:
        raise ValueError(f"{where}: {arg} must have a batch axis (rank >= 1), got a scalar of shape ()")
    if pred.shape[0] == 0 or pred.size == 0:
        raise ValueError(f"{where}: {arg} must hold at least one example and element, got shape {pred.shape}")
    return pred


def _work(dtype: np.dtype) -> np.dtype:
    """The dtype arithmetic runs in: ``dtype``, except float16 -> float32."""
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def _real_target(target: Any, where: str) -> Array:
    """``target`` as a real (bool, integer or float) array; complex/object raise TypeError."""
    if not isinstance(target, np.ndarray):
        if isinstance(target, (list, tuple)) or np.isscalar(target):
            target = np.asarray(target)
        else:
            raise TypeError(f"{where}: target must be a numpy array, got {type(target).__name__}")
    if target.dtype.kind not in "biuf":
        raise TypeError(f"{where}: target must have a real (bool, integer or float) dtype, got {target.dtype}")
    return target


def _same_shape(pred: Array, target: Array, where: str, arg: str) -> None:
    if target.ndim >= 1 and pred.ndim >= 1 and target.shape[0] != pred.shape[0]:
        raise ValueError(
            f"{where}: batch sizes differ: {arg} has {pred.shape[0]} examples (shape {pred.shape}), "
            f"target has {target.shape[0]} (shape {target.shape})"
        )
    if target.shape != pred.shape:
        raise ValueError(f"{where}: target must have the same shape as {arg}, {pred.shape}, got {target.shape}")


def _labels(target: Array, n: int, k: int, where: str) -> Array:
    """Validate integer class labels of shape (n,) with values in [0, k)."""
    if target.ndim != 1:
        raise ValueError(f"{where}: class labels must have shape (N,), got {target.shape}")
    if target.dtype.kind not in "iu":
        raise TypeError(
            f"{where}: 1-D target holds class labels and must have an integer dtype, got {target.dtype}; "
            f"cast it, e.g. target.astype(np.int64), or pass (N, K) probability targets"
        )
    if target.shape[0] != n:
        raise ValueError(f"{where}: batch sizes differ: pred has {n} examples, target has {target.shape[0]} labels")
    # One reduction: seen as unsigned, a negative label is larger than any class count.
    if int(target.view(target.dtype.str.replace("i", "u")).max()) >= k:
        lo, hi = int(target.min()), int(target.max())
        bad = int(np.flatnonzero((target < 0) | (target >= k))[0])
        raise ValueError(
            f"{where}: labels must be in [0, {k}) for {k} classes, got {int(target[bad])} at index {bad} "
            f"(min {lo}, max {hi})"
        )
    return target


def _mean(values: Array) -> float:
    """``float(values.mean())`` of a float32 or float64 array, the same arithmetic without ``np.mean``'s per-call
    overhead: the sum in the array's dtype, divided by the count in float64, cast back to the dtype."""
    total = np.add.reduce(values, axis=None)
    return float(total.dtype.type(float(total) / values.size))


def _probabilities(target: Array, shape: Tuple[int, ...], dtype: np.dtype, where: str) -> Array:
    """Validate (N, K) probability targets: finite, >= 0, rows summing to 1."""
    if target.shape[0] != shape[0]:
        raise ValueError(f"{where}: batch sizes differ: logits has {shape[0]} examples, target has {target.shape[0]}")
    if target.shape != shape:
        raise ValueError(f"{where}: probability targets must have the logits' shape {shape}, got {target.shape}")
    t = target.astype(dtype, copy=False)
    if not np.isfinite(t).all():
        raise ValueError(f"{where}: probability targets must be finite, got NaN or inf")
    if (t < 0).any():
        i, j = np.argwhere(t < 0)[0]
        raise ValueError(f"{where}: probability targets must be >= 0, got {t[i, j]} at [{i}, {j}]")
    sums = t.sum(axis=1)
    tol = float(np.sqrt(np.finfo(dtype).eps))
    off = np.abs(sums - 1) > tol
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"{where}: each row of probability targets must sum to 1 (within {tol:.1e}), "
            f"got row {i} summing to {sums[i]}"
        )
    return t


def _unit_interval(x: Array, where: str, arg: str, hint: str = "", *, allow_nan: bool = True) -> None:
    """Raise unless every entry of ``x`` lies in [0, 1] (NaN is let through when ``allow_nan``)."""
    bad = (x < 0) | (x > 1)
    if not allow_nan:
        bad |= np.isnan(x)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{where}: {arg} must lie in [0, 1], got {x[idx]} at index {idx}{hint}")


# ----------------------------------------------------------------------------- losses
def softmax_cross_entropy(logits: Array, target: Array, *, label_smoothing: float = 0.0) -> Tuple[float, Array]:
    """Cross entropy of softmax(logits) against labels or probabilities, mean over the batch.

    ``loss_i = -sum_k t_ik log softmax(z_i)_k``, computed from log-sum-exp of the
    max-shifted logits, so logits of +-1e4 give finite, exact values and gradients.

    Args:
        logits: (N, K) float scores.
        target: (N,) integer labels in [0, K), or (N, K) probabilities (rows >= 0
            summing to 1 within sqrt(eps) of ``logits``' dtype). Float labels of shape
            (N,) are refused (TypeError) rather than rounded.
        label_smoothing: ``ls`` in [0, 1); the target becomes ``(1 - ls) t + ls / K``.

    Returns:
        ``(value, dlogits)``: the mean loss as a float and its gradient, (N, K), dtype of
        ``logits``: ``(softmax(z) * sum_k t_k - t) / N`` (the row sums are 1).

    Raises:
        ValueError: wrong ranks, empty batch, K == 0, differing batch sizes, labels out of
            range, invalid probability targets, label_smoothing outside [0, 1).
        TypeError: non-float logits, non-integer labels, complex/object targets.
    """
    where = "softmax_cross_entropy"
    logits = _pred(logits, where, "logits", ndim=2)
    ls = real_number(label_smoothing, where, "label_smoothing", low=0.0, high=1.0, high_open=True)
    n, k = logits.shape
    target = _real_target(target, where)
    dt = _work(logits.dtype)
    z = logits.astype(dt, copy=False)
    # np.maximum/np.add.reduce: what z.max and e.sum compute, without the method wrappers
    zs = z - np.maximum.reduce(z, axis=1, keepdims=True)  # fresh; max entry of each row is 0
    e = np.exp(zs)
    sum_e = np.add.reduce(e, axis=1)                 # in [1, K]: no overflow, log is safe
    lse = np.log(sum_e)                              # (N,) log-sum-exp of the shifted row
    p = e
    p /= sum_e[:, None]                              # softmax, in place on our own buffer
    if target.ndim == 1:
        y = _labels(target, n, k, where)
        rows = np.arange(n)
        picked = zs[rows, y]
        loss = lse - ((1 - ls) * picked if ls else picked)  # x * 1.0 is x: skipped
        grad = p
        grad[rows, y] -= dt.type(1 - ls)
        if ls:
            loss -= ls * zs.mean(axis=1)
            grad -= dt.type(ls / k)
    elif target.ndim == 2:
        t = _probabilities(target, logits.shape, dt, where)
        if ls:
            t = dt.type(1 - ls) * t + dt.type(ls / k)
        s = t.sum(axis=1)
        loss = s * lse - (t * zs).sum(axis=1)
        grad = p
        grad *= s[:, None]
        grad -= t
    else:
        raise ValueError(
            f"{where}: target must be (N,) integer labels or (N, K) probabilities, "
            f"got shape {target.shape} (rank {target.ndim})"
        )
    grad /= dt.type(n)
    return _mean(loss), grad.astype(logits.dtype, copy=False)


def binary_cross_entropy(probs: Array, target: Array) -> Tuple[float, Array]:
    """Binary cross entropy on probabilities, mean over all elements (as seed 002).

    ``-mean(t log p + (1 - t) log(1 - p))`` with ``p`` clipped to ``[eps, 1 - eps]``,
    ``eps = np.finfo(probs.dtype).eps`` (1.2e-7 for float32), so p = 0 or 1 is safe:
    the value per element is at most ``-log(eps)`` (15.9 for float32, 36.0 for float64).
    The gradient is ``(p - t) / (p (1 - p)) / size`` evaluated at the *clipped* p: at or
    beyond the boundary it is the boundary's derivative (about ``1/(eps size)``, finite),
    not the zero derivative of the clip, so a saturated wrong prediction still gets pushed.
    Prefer :func:`binary_cross_entropy_with_logits` when the logits are at hand.

    Args:
        probs: float probabilities in [0, 1], any shape with the batch axis first.
        target: same shape, values in [0, 1] (bool, integer or float).

    Returns:
        ``(value, dprobs)``, ``dprobs`` with ``probs``' shape and dtype.

    Raises:
        ValueError: empty input, shape mismatch, probs or target outside [0, 1].
        TypeError: non-float probs, complex/object target.
    """
    where = "binary_cross_entropy"
    probs = _pred(probs, where, "probs")
    target = _real_target(target, where)
    _same_shape(probs, target, where, "probs")
    _unit_interval(probs, where, "probs", "; for raw scores use binary_cross_entropy_with_logits")
    _unit_interval(target, where, "target", allow_nan=False)
    dt = _work(probs.dtype)
    eps = np.finfo(probs.dtype).eps
    p = np.clip(probs.astype(dt, copy=False), eps, 1 - eps)   # fresh array
    t = target.astype(dt, copy=False)
    value = -(t * np.log(p) + (1 - t) * np.log1p(-p)).mean()
    grad = p - t
    grad /= p * (1 - p) * dt.type(p.size)
    return float(value), grad.astype(probs.dtype, copy=False)


def one_hot_binary_cross_entropy(probs: Array, labels: Array) -> Tuple[float, Array]:
    """:func:`binary_cross_entropy` of ``probs`` (N, K) against one-hot ``labels`` (N,).

    Seed 002 trained its sigmoid outputs this way (its targets were one-hot columns).

    >>> v, d = one_hot_binary_cross_entropy(np.array([[0.9, 0.1]]), np.array([0]))
    >>> round(v, 4)
    0.1054
    """
    where = "one_hot_binary_cross_entropy"
    probs = _pred(probs, where, "probs", ndim=2)
    _unit_interval(probs, where, "probs")
    labels = _labels(_real_target(labels, where), probs.shape[0], probs.shape[1], where)
    target = np.zeros(probs.shape, dtype=probs.dtype)
    target[np.arange(probs.shape[0]), labels] = 1
    return binary_cross_entropy(probs, target)


def binary_cross_entropy_with_logits(logits: Array, target: Array) -> Tuple[float, Array]:
    """Binary cross entropy of sigmoid(logits), mean over all elements.

    Uses ``max(z, 0) - z t + log1p(exp(-|z|))`` and a sigmoid built from ``exp(-|z|)``,
    so nothing overflows: z = +-1e4 gives 0 or 1e4 per element and a finite gradient.

    Args:
        logits: float scores, any shape with the batch axis first.
        target: same shape, probabilities in [0, 1].

    Returns:
        ``(value, dlogits)`` with ``dlogits = (sigmoid(z) - t) / size``.

    Raises:
        ValueError: empty input, shape mismatch, target outside [0, 1].
        TypeError: non-float logits, complex/object target.
    """
    where = "binary_cross_entropy_with_logits"
    logits = _pred(logits, where, "logits")
    target = _real_target(target, where)
    _same_shape(logits, target, where, "logits")
    _unit_interval(target, where, "target", allow_nan=False)
    dt = _work(logits.dtype)
    z = logits.astype(dt, copy=False)
    t = target.astype(dt, copy=False)
    e = np.exp(-np.abs(z))                            # in (0, 1]
    value = (np.maximum(z, 0) - z * t + np.log1p(e)).mean()
    grad = np.where(z >= 0, 1, e) / (1 + e)           # sigmoid(z), stable on both sides
    grad -= t
    grad /= dt.type(z.size)
    return float(value), grad.astype(logits.dtype, copy=False)


def mean_squared_error(pred: Array, target: Array) -> Tuple[float, Array]:
    """Mean over all elements of ``(pred - target)**2`` (no factor 1/2).

    Args:
        pred: float array, any shape with the batch axis first.
        target: same shape, finite real values.

    Returns:
        ``(value, dpred)`` with ``dpred = 2 (pred - target) / size``.

    Raises:
        ValueError: empty input, shape mismatch, non-finite target.
        TypeError: non-float pred, complex/object target.
    """
    where = "mean_squared_error"
    pred = _pred(pred, where, "pred")
    target = _real_target(target, where)
    _same_shape(pred, target, where, "pred")
    dt = _work(pred.dtype)
    t = target.astype(dt, copy=False)
    if not np.isfinite(t).all():
        raise ValueError(f"{where}: target must be finite, got NaN or inf")
    diff = pred.astype(dt, copy=False) - t
    value = np.vdot(diff, diff) / diff.size        # diff is fresh and contiguous: one BLAS dot
    diff *= dt.type(2 / diff.size)
    return float(value), diff.astype(pred.dtype, copy=False)


def accuracy(pred: Array, target: Array) -> float:
    """Fraction of rows whose argmax of ``pred`` matches the target class.

    Args:
        pred: (N, K) float scores (logits or probabilities).
        target: (N,) integer labels in [0, K), or (N, K) one-hot/probabilities (argmax taken).

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: empty batch, wrong ranks, differing batch sizes, labels out of range.
        TypeError: non-float pred, non-integer labels.

    >>> accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1]))
    0.5
    """
    where = "accuracy"
    pred = _pred(pred, where, "pred", ndim=2)
    n, k = pred.shape
    target = _real_target(target, where)
    if target.ndim == 2:
        _same_shape(pred, target, where, "pred")
        if target.dtype.kind == "f" and not np.isfinite(target).all():
            raise ValueError(f"{where}: target must be finite, got NaN or inf")
        labels = target.argmax(axis=1)
    elif target.ndim == 1:
        labels = _labels(target, n, k, where)
    else:
        raise ValueError(f"{where}: target must be (N,) labels or (N, K) one-hot, got shape {target.shape}")
    return np.count_nonzero(pred.argmax(axis=1) == labels) / n  # exactly np.mean of the bools

"""Ready-made optimizers. Each is nothing but a :func:`chain` of transformations.

``learning_rate`` is a number >= 0 or a schedule ``step -> lr``; read the rate in
force with :func:`~functional_cnn.optim.learning_rate`.

>>> import numpy as np
>>> from functional_cnn.optim import apply_updates
>>> opt = sgd(0.1)
>>> params = (np.array([1.0, -2.0]),)
>>> state = opt.init(params)
>>> updates, state = opt.update((np.array([1.0, 1.0]),), state, params)
>>> apply_updates(params, updates)[0]
array([ 0.9, -2.1])
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, List, Union

import numpy as np

from .._checks import real_number
from .base import GradientTransformation, chain
from .constraints import add_decayed_weights
from .masks import Mask
from .transforms import scale_by_adagrad, scale_by_adam, scale_by_learning_rate, scale_by_rms, trace

__all__ = ["sgd", "adam", "adamw", "rmsprop", "adagrad"]

LearningRate = Union[float, Callable[[int], float]]


@contextlib.contextmanager
def _named(where: str) -> Iterator[None]:
    """Prefix the alias's name to argument errors raised by the parts it builds."""
    try:
        yield
    except (TypeError, ValueError) as err:
        if str(err).startswith(f"{where}:"):
            raise
        raise type(err)(f"{where}: {err}") from None


def _check_nesterov(where: str, nesterov: bool, momentum: float) -> None:
    if not isinstance(nesterov, (bool, np.bool_)):
        raise TypeError(f"{where}: nesterov must be a bool, got {nesterov!r} ({type(nesterov).__name__})")
    if nesterov and momentum == 0.0:
        raise ValueError(f"{where}: nesterov=True needs momentum > 0, got momentum={momentum:g}")


def _lr_text(lr: LearningRate) -> str:
    return repr(lr) if callable(lr) else f"{lr:g}"


def sgd(learning_rate: LearningRate, momentum: float = 0.0, nesterov: bool = False,
        weight_decay: float = 0.0, mask: Mask = None) -> GradientTransformation:
    """Stochastic gradient descent, with optional momentum and L2 weight decay.

    ``chain(add_decayed_weights(weight_decay, mask), trace(momentum, nesterov),
    scale_by_learning_rate(learning_rate))``, leaving out the parts that would do
    nothing (``weight_decay=0``, ``momentum=0``). The decay is added to the
    gradient before momentum, as PyTorch's SGD does.

    Args:
        learning_rate: >= 0, or a schedule.
        momentum: in [0, 1).
        nesterov: Nesterov momentum (needs ``momentum > 0``).
        weight_decay: >= 0.
        mask: leaves that decay (default: all).
    """
    with _named("sgd"):
        momentum = real_number(momentum, "sgd", "momentum", low=0.0, high=1.0, high_open=True)
        weight_decay = real_number(weight_decay, "sgd", "weight_decay", low=0.0)
        _check_nesterov("sgd", nesterov, momentum)
        if mask is not None and weight_decay == 0.0:
            raise ValueError("sgd: mask selects the leaves that decay, but weight_decay=0; set weight_decay > 0")
        parts: List[GradientTransformation] = []
        if weight_decay > 0.0:
            parts.append(add_decayed_weights(weight_decay, mask))
        if momentum > 0.0:
            parts.append(trace(momentum, nesterov))
        parts.append(scale_by_learning_rate(learning_rate))
        extra = f", momentum={momentum:g}" if momentum else ""
        extra += ", nesterov=True" if nesterov else ""
        extra += f", weight_decay={weight_decay:g}" if weight_decay else ""
        return chain(*parts, name=f"sgd({_lr_text(learning_rate)}{extra})")


def adam(learning_rate: LearningRate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         eps_root: float = 0.0) -> GradientTransformation:
    """Adam: ``chain(scale_by_adam(b1, b2, eps, eps_root), scale_by_learning_rate(lr))``.

    Args:
        learning_rate: >= 0, or a schedule.
        b1: decay rate of the first moment, in [0, 1).
        b2: decay rate of the second moment, in [0, 1).
        eps: > 0, added to the denominator.
        eps_root: >= 0, added inside the square root.
    """
    with _named("adam"):
        return chain(
            scale_by_adam(b1, b2, eps, eps_root),
            scale_by_learning_rate(learning_rate),
            name=f"adam({_lr_text(learning_rate)}, b1={b1:g}, b2={b2:g}, eps={eps:g})",
        )


def adamw(learning_rate: LearningRate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          eps_root: float = 0.0, weight_decay: float = 1e-4, mask: Mask = None) -> GradientTransformation:
    """Adam with decoupled weight decay (Loshchilov & Hutter).

    ``chain(scale_by_adam(...), add_decayed_weights(weight_decay, mask),
    scale_by_learning_rate(lr))``: the step is ``-lr * (adam_direction +
    weight_decay * param)``, so the decay is scaled by the learning rate but not
    by Adam's normalization.

    Args:
        learning_rate: as for :func:`adam`.
        b1: as for :func:`adam`.
        b2: as for :func:`adam`.
        eps: as for :func:`adam`.
        eps_root: as for :func:`adam`.
        weight_decay: >= 0.
        mask: leaves that decay, e.g. ``exclude_paths("*.b")`` to spare biases.
    """
    with _named("adamw"):
        return chain(
            scale_by_adam(b1, b2, eps, eps_root),
            add_decayed_weights(weight_decay, mask),
            scale_by_learning_rate(learning_rate),
            name=f"adamw({_lr_text(learning_rate)}, b1={b1:g}, b2={b2:g}, eps={eps:g}, "
            f"weight_decay={weight_decay:g})",
        )


def rmsprop(learning_rate: LearningRate, decay: float = 0.9, eps: float = 1e-8, momentum: float = 0.0,
            nesterov: bool = False) -> GradientTransformation:
    """RMSProp: ``chain(scale_by_rms(decay, eps), [trace(momentum, nesterov)], scale_by_learning_rate(lr))``.

    Args:
        learning_rate: >= 0, or a schedule.
        decay: in [0, 1), of the running mean of squared gradients.
        eps: > 0.
        momentum: in [0, 1); 0 leaves the trace out.
        nesterov: Nesterov momentum (needs ``momentum > 0``).
    """
    with _named("rmsprop"):
        momentum = real_number(momentum, "rmsprop", "momentum", low=0.0, high=1.0, high_open=True)
        _check_nesterov("rmsprop", nesterov, momentum)
        parts = [scale_by_rms(decay, eps)]
        if momentum > 0.0:
            parts.append(trace(momentum, nesterov))
        parts.append(scale_by_learning_rate(learning_rate))
        extra = f", momentum={momentum:g}" if momentum else ""
        return chain(*parts, name=f"rmsprop({_lr_text(learning_rate)}, decay={decay:g}, eps={eps:g}{extra})")


def adagrad(learning_rate: LearningRate, initial_accumulator: float = 0.1, eps: float = 1e-7) -> GradientTransformation:
    """Adagrad: ``chain(scale_by_adagrad(initial_accumulator, eps), scale_by_learning_rate(lr))``.

    Args:
        learning_rate: >= 0, or a schedule.
        initial_accumulator: >= 0, starting sum of squared gradients.
        eps: > 0.
    """
    with _named("adagrad"):
        return chain(
            scale_by_adagrad(initial_accumulator, eps),
            scale_by_learning_rate(learning_rate),
            name=f"adagrad({_lr_text(learning_rate)}, initial_accumulator={initial_accumulator:g}, eps={eps:g})",
        )

"""The moment arithmetic that momentum, Adam, RMSProp and Adagrad share, on lists of leaves.

Every moment estimate in this package is one recurrence,
``m = decay * m + weight * g**order``:

=========================  =========  ==============  =====
transformation             decay      weight          order
=========================  =========  ==============  =====
``trace`` (momentum)       ``decay``  1               1
``scale_by_adam``: ``mu``  ``b1``     ``1 - b1``      1
``scale_by_adam``: ``nu``  ``b2``     ``1 - b2``      2
``scale_by_rms``           ``decay``  ``1 - decay``   2
``scale_by_adagrad``       1          1               2
=========================  =========  ==============  =====

followed, for Adam, by the bias correction ``m / (1 - decay**count)``, and for the
adaptive methods by the division ``g / (sqrt(v) + eps)``. optax factors the same
pieces (``tree_update_moment``, ``tree_bias_correction``); here they work on the flat
lists of leaves an update takes apart once. Gradients are first widened to the
moment's dtype (float16 gradients, float32 moments: in float16 ``g * g`` overflows
above 256 and vanishes below 2.4e-4). New moments keep their dtype; directions take
the gradient's. The operations and their order are what they were when each
transformation did its own arithmetic, so the numbers are bit for bit the same
(``tests/optim/test_optim_fingerprint.py``).

>>> import numpy as np
>>> update_moments([np.array([2.0])], [np.array([1.0])], decay=0.5, order=2)
[array([2.5])]
>>> bias_correction(0.5, 1)
0.5
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

__all__ = ["widen", "update_moments", "bias_correction", "bias_corrected", "root_scaled"]

Array = np.ndarray


def widen(g: Array, like: Array) -> Array:
    """``g`` in ``like``'s dtype when that is wider (float16 grads, float32 moments); else ``g`` itself."""
    if g.dtype == like.dtype:
        return g
    return g.astype(np.promote_types(g.dtype, like.dtype), copy=False)


def update_moments(grads: Sequence[Array], moments: Sequence[Array], decay: float, order: int,
                   weight: Optional[float] = None) -> List[Array]:
    """``decay * m + weight * g**order`` for each pair, in each moment's dtype.

    Args:
        grads: the gradients (any float dtype), one per leaf.
        moments: the moments, one per leaf, of the leaf's shape.
        decay: how much of the old moment stays, in [0, 1].
        order: 1 (mean of ``g``) or 2 (mean of ``g * g``).
        weight: the weight of the new gradient; ``1 - decay`` (an exponential moving
            average) by default. A factor of exactly 1 is left out, not multiplied.

    Returns:
        The new moments (fresh arrays; freeze them before they go into a state).
    """
    w = 1.0 - decay if weight is None else weight
    out = []
    for g, m in zip(grads, moments):
        gw = widen(g, m)
        term = gw if order == 1 else gw * gw
        if w != 1.0:
            term = w * term
        new = m + term if decay == 1.0 else decay * m + term
        out.append(new if new.dtype == m.dtype else new.astype(m.dtype))
    return out


def bias_correction(decay: float, count: int) -> float:
    """``1 - decay**count``: what a moment started at zero is short of after ``count`` updates."""
    return 1.0 - decay**count


def bias_corrected(moments: Sequence[Array], decay: float, count: int) -> List[Array]:
    """Each moment divided by :func:`bias_correction` ``(decay, count)``."""
    c = bias_correction(decay, count)
    return [m / c for m in moments]


def root_scaled(numerators: Sequence[Array], second_moments: Sequence[Array], eps: float,
                eps_root: Optional[float] = None, like: Optional[Sequence[Array]] = None) -> List[Array]:
    """``n / (sqrt(v [+ eps_root]) + eps)`` for each pair, in the dtype of ``like`` (default: ``n``'s).

    Args:
        numerators: the gradients (widened) or first moments.
        second_moments: running means or sums of squared gradients.
        eps: added to the root, > 0.
        eps_root: added inside the root; left out when ``None``.
        like: arrays whose dtypes the results take, e.g. the incoming gradients.
    """
    out = []
    for i, (n, v) in enumerate(zip(numerators, second_moments)):
        root = np.sqrt(v) if eps_root is None else np.sqrt(v + eps_root)
        u = n / (root + eps)
        out.append(u.astype((like[i] if like is not None else n).dtype, copy=False))
    return out

"""Inverted dropout: in training, zero each unit with probability ``drop_rate``.

Kept units are scaled by ``1 / (1 - drop_rate)`` so that the expected output equals
the input and inference (``train=False``) is the identity. The mask is drawn only
from the ``rng`` passed to ``forward``; there is no hidden random state, so the same
generator state gives the same mask.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import attrs
import numpy as np

from .._checks import check_rng, real_number, shape_tuple
from ..boundary import Spec
from ..layer import Array, Layer, Shape

__all__ = ["DropoutCache", "dropout"]


@attrs.frozen(eq=False)
class DropoutCache:
    """The kept-unit mask and the scale applied to kept units."""

    mask: Optional[Array]  # (N, ...) bool, True where kept; None when nothing was dropped
    scale: float  # 1 / (1 - drop_rate) in training, 1.0 otherwise
    x_shape: Tuple[int, ...]
    dtype: np.dtype  # the input's (and the output's)


def dropout(drop_rate: float) -> Layer:
    """Inverted dropout.

    Args:
        drop_rate: probability of *dropping* a unit, in ``[0, 1)``. (Not the keep
            probability: ``dropout(0.1)`` drops one unit in ten.)

    Returns:
        A Layer with no params mapping any ``(N, ...)`` batch to the same shape.
        ``forward(params, x, rng=..., train=True)`` draws the mask from ``rng`` and
        raises ``ValueError`` when ``rng`` is None; ``train=False`` is the identity.
        ``cache_bytes`` gives the training-mode figure (one byte of mask per unit).

    >>> layer = dropout(0.5)
    >>> x = np.ones((1, 4), dtype=np.float32)
    >>> y, _ = layer.forward(None, x, rng=np.random.default_rng(0), train=True)
    >>> sorted(set(y.ravel().tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
    """
    where = "dropout"
    p = real_number(drop_rate, where, "drop_rate", low=0.0, high=1.0, high_open=True)

    def init(rng: Any, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, None]:
        return shape_tuple(in_shape, where), None

    def forward(params: None, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, DropoutCache]:
        check_rng(rng, where, required=train)  # the rng is checked where it is used
        if not train or p == 0.0:
            return x, DropoutCache(None, 1.0, x.shape, x.dtype)
        mask = rng.random(x.shape, dtype=np.float32) >= np.float32(p)
        scale = 1.0 / (1.0 - p)
        y = x * mask
        y *= x.dtype.type(scale)
        return y, DropoutCache(mask, scale, x.shape, x.dtype)

    def backward(params: None, cache: DropoutCache, dy: Array, *, need_dx: bool = True
                 ) -> Tuple[None, Optional[Array]]:
        if not need_dx or cache.mask is None:
            return None, dy if need_dx else None
        dx = dy * cache.mask
        dx *= dx.dtype.type(cache.scale)
        return None, dx

    def cache_bytes(in_shape: Shape, itemsize: int) -> int:
        return 0 if p == 0.0 else int(np.prod(in_shape))

    spec = Spec(lambda s, arg: tuple(s), cache=DropoutCache, out_of_cache=lambda p_, c: (c.x_shape, c.dtype))
    return Layer(where, init, forward, backward, cache_bytes=cache_bytes, config=dict(drop_rate=p), spec=spec)

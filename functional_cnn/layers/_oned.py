"""What the 1-D layers (``conv1d``, ``max_pool1d``, ``avg_pool1d``) share: each views ``(N, C, L)`` as
``(N, C, 1, L)`` and runs the 2-D layer's math, so the numerics are exactly the 2-D layers'."""
from __future__ import annotations

from typing import Any, Tuple

import attrs
import numpy as np

from .._checks import shape_tuple
from ..layer import Shape

__all__ = ["OneDCache", "shape_cl"]


@attrs.frozen(eq=False)
class OneDCache:
    """Cache of the 1-D layers: the 2-D layer's cache and the 1-D shapes, so errors speak in 1-D terms."""

    inner: Any  # the cache of the wrapped conv2d / pooling layer
    x_shape: Tuple[int, ...]  # (N, C, L)
    y_shape: Tuple[int, ...]  # (N, C_out, OL)
    dtype: np.dtype  # the output's


def shape_cl(where: str, in_shape: Any, arg: str = "in_shape") -> Shape:
    """A per-example ``(C, L)`` shape."""
    in_shape = shape_tuple(in_shape, where, arg)
    if len(in_shape) != 2:
        raise ValueError(f"{where}: {arg} must be (C, L) per example, got {in_shape}")
    return in_shape

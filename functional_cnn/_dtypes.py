"""The floating dtypes the package accepts, and the check that names the caller.

Kept apart from ``_checks`` so that low-level modules (``tree``) can use it without
importing the validators, which import them back.
"""
from __future__ import annotations

from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def float_dtype(dtype: Any, where: str, arg: str = "dtype") -> np.dtype:
    """``dtype`` as a ``np.dtype`` if it is float16, float32 or float64, else ``TypeError``.

    >>> float_dtype("float32", "tree_cast")
    dtype('float32')
    """
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"{where}: {arg} must be a floating dtype, got {dtype!r}") from err
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{where}: {arg} must be float16, float32 or float64, got {dt}")
    return dt

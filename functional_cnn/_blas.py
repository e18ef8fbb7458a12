"""Read and set the thread count of the OpenBLAS that numpy loaded (Linux; elsewhere a no-op).

Used by :mod:`functional_cnn._parallel`, which keeps BLAS on one thread from a network's first call
on: its gemm's bits can depend on its thread count, and two pools on the same cores slow each other
down: after
each threaded gemm the OpenBLAS workers spin, waiting for the next one, on the cores the layer
threads need (measured on the 2-core box: with both pools at 2 threads a LeNet-5 step was 5%
slower than on one thread, with BLAS on one thread 1.3x faster; docs/performance.md).

The library is found among the shared objects this process has mapped (``/proc/self/maps``), as
threadpoolctl does, and its ``openblas_set_num_threads`` is called through ctypes (scipy-openblas
wheels prefix the symbols ``scipy_`` and suffix them ``64_``). When no OpenBLAS is found,
:func:`blas_threads` is None and nothing is changed.
"""
from __future__ import annotations

import ctypes
import re
from typing import Any, Optional, Tuple

__all__ = ["blas_threads", "set_blas_threads"]

_PREFIXES = ("scipy_openblas_", "openblas_")
_SUFFIXES = ("64_", "")
_lib: Any = None  # (get, set) or False once looked up and not found


def _functions() -> Optional[Tuple[Any, Any]]:
    global _lib
    if _lib is None:
        _lib = False
        try:
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
                paths = sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", f.read())))
        except OSError:  # not Linux
            paths = []
        for path in paths:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix in _PREFIXES:
                for suffix in _SUFFIXES:
                    get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                    put = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                    if get is not None and put is not None:
                        get.restype, get.argtypes = ctypes.c_int, []
                        put.restype, put.argtypes = None, [ctypes.c_int]
                        _lib = (get, put)
                        return _lib
    return _lib or None


def blas_threads() -> Optional[int]:
    """OpenBLAS's current thread count, or None when no OpenBLAS is loaded."""
    fns = _functions()
    return None if fns is None else int(fns[0]())


def set_blas_threads(n: int) -> bool:
    """Set OpenBLAS's thread count; False (and nothing done) when no OpenBLAS is loaded."""
    fns = _functions()
    if fns is None:
        return False
    fns[1](int(n))
    return True

"""Keep freed memory in the process for reuse, so training steps do not fault their pages in again.

Every training step allocates the same large temporaries (im2col columns, activations, gradients) and frees
them. With glibc's defaults a block over 128 KiB is mmapped and handed back to the kernel when freed, and the
top of the heap is trimmed, so the next step touches fresh pages. That costs thousands of minor page faults per
step and made LeNet and seed 000's network train up to 3x slower at 2 threads (docs/performance.md).

:func:`keep_freed_memory` asks glibc, once per process, to serve blocks up to 32 MiB from the heap and not to
trim it, so freed memory is reused. PyTorch's caching allocator makes the same trade: the process keeps the
memory it freed, at its high-water mark, instead of handing it back. :func:`functional_cnn.make_step` calls it,
because training is where the cost shows. Set ``FUNCTIONAL_CNN_KEEP_FREED_MEMORY=0`` to leave malloc as it is.
On other C libraries (macOS, musl) nothing changes.
"""
from __future__ import annotations

import ctypes
import os
import platform
from typing import Optional

__all__ = ["keep_freed_memory", "ENV"]

ENV = "FUNCTIONAL_CNN_KEEP_FREED_MEMORY"
_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_MMAP_MAX = 32 * 1024 * 1024  # the largest threshold glibc accepts on 64-bit systems
_TRIM = 1 << 30

_applied: Optional[bool] = None


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse; True when it did (once per process, then cached)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(ENV, "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        _applied = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_MAX) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM) == 1
    except (OSError, AttributeError):  # no such library or no mallopt in it
        _applied = False
    return _applied

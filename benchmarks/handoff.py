"""What a second thread gains on one memory-bound pass, by size (docs/performance.md).

    python -m benchmarks.handoff

ReLU (``np.maximum(x, zeros, out=y)``, as the layer computes it) over float32 arrays of several sizes,
once on the calling thread and once split in two halves by :func:`functional_cnn._parallel.for_chunks`
(the split every layer uses), best wall time of ``--repeats`` calls each. The difference at small sizes is the cost of
handing a range to the pool's worker and getting it back.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.thread_gain import best_of  # noqa: E402

SIZES_MB = (16.0, 4.0, 1.2, 0.4, 0.12)


def compare(x: np.ndarray, repeats: int) -> Tuple[float, float]:
    """Best microseconds of ReLU over ``x`` on the calling thread, and split in two by ``for_chunks``."""
    from functional_cnn import _parallel

    y = np.empty_like(x)
    zeros = np.zeros_like(x)  # against an array, as the ReLU layer computes it (the scalar 0 is ~2x slower)
    n = x.shape[0]

    def part(lo: int, hi: int) -> None:
        np.maximum(x[lo:hi], zeros[lo:hi], out=y[lo:hi])

    one = best_of(lambda: part(0, n), 1, repeats)
    two = best_of(lambda: _parallel.for_chunks(part, n, 1 << 62), 2, repeats)  # far above the threshold: always split
    return one, two


def main(argv: Optional[Sequence[str]] = None) -> int:
    from functional_cnn import _parallel

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args(argv)
    before = _parallel.get_num_threads()
    rng = np.random.default_rng(0)
    print("| array | 1 thread | 2 threads | gain |\n|---|---:|---:|---:|")
    try:
        for mb in SIZES_MB:
            one, two = compare(rng.standard_normal(int(mb * 1e6) // 4, dtype=np.float32), args.repeats)
            print(f"| {mb:g} MB | {one:,.0f} us | {two:,.0f} us | {one / two:.2f}x |")
    finally:
        _parallel.set_num_threads(before)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmarks: ``python -m benchmarks.bench`` (see bench.py and docs/performance.md)."""

"""The checks every layer goes through; test tables call ``run_all`` per case.

A case names a layer, a per-example input shape and optionally a naive reference
``reference(params, x) -> y`` written with loops or scipy, independent of the
layer's own implementation.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import attrs
import numpy as np
import pytest

from functional_cnn import check_layer
from functional_cnn.layer import Layer
from functional_cnn.tree import trainable, tree_cast, tree_leaves, tree_nbytes


@attrs.frozen
class LayerCase:
    id: str  # starts with the factory it tests, e.g. "conv2d-stride2", "debug-serial"
    layer: Layer
    in_shape: Tuple[int, ...]
    reference: Callable[[Any, np.ndarray], np.ndarray]
    batch: int = 3
    train: bool = True
    # Positive inputs keep max-pool/relu kinks away from the finite-difference step.
    x_fn: Optional[Callable[[np.random.Generator, Tuple[int, ...]], np.ndarray]] = None
    # Values a cache holds whatever the batch size (batch norm's (C,) statistics); cache_bytes
    # declares only the per-example part.
    cache_overhead: int = 0


def make_x(case: LayerCase, rng: np.random.Generator, dtype: Any = np.float64) -> np.ndarray:
    shape = (case.batch,) + tuple(case.in_shape)
    x = case.x_fn(rng, shape) if case.x_fn else rng.standard_normal(shape)
    return np.asarray(x, dtype=dtype)


def check_gradients(case: LayerCase, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = make_x(case, rng)
    report = check_layer(case.layer, rng, case.in_shape, batch_size=case.batch, x=x, train=case.train)
    assert report.ok, report.table()
    assert any(r.name == "x" for r in report.rows)


def check_shapes_and_dtype(case: LayerCase, dtype: Any = np.float32) -> None:
    rng = np.random.default_rng(1)
    out_shape, params = case.layer.init(rng, case.in_shape, dtype=dtype)
    x = make_x(case, rng, dtype)
    y, cache = case.layer.forward(params, x, rng=np.random.default_rng(2), train=case.train)
    assert y.shape == (case.batch,) + tuple(out_shape), f"declared {out_shape}, got {y.shape[1:]}"
    assert y.dtype == np.dtype(dtype), f"{dtype} in gave {y.dtype} out"
    grads, dx = case.layer.backward(params, cache, np.ones_like(y))
    assert dx.shape == x.shape and dx.dtype == np.dtype(dtype)
    for g in tree_leaves(grads):
        assert g.dtype == np.dtype(dtype)
    assert type(grads) is type(trainable(params))


def check_purity(case: LayerCase) -> None:
    rng = np.random.default_rng(3)
    _, params = case.layer.init(rng, case.in_shape, dtype=np.float64)
    x = make_x(case, rng)
    x_copy = x.copy()
    leaves_copy = [np.array(a, copy=True) for a in tree_leaves(params)]
    y1, cache = case.layer.forward(params, x, rng=np.random.default_rng(4), train=case.train)
    y1_copy = y1.copy()
    dy = rng.standard_normal(y1.shape)
    dy_copy = dy.copy()
    case.layer.backward(params, cache, dy)
    case.layer.update_state(params, cache)
    y2, _ = case.layer.forward(params, x, rng=np.random.default_rng(4), train=case.train)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dy, dy_copy)
    np.testing.assert_array_equal(y1, y1_copy)
    np.testing.assert_array_equal(y1, y2)
    for a, b in zip(tree_leaves(params), leaves_copy, strict=True):
        np.testing.assert_array_equal(a, b)
        assert not a.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            a[...] = 0


def check_reference(case: LayerCase) -> None:
    rng = np.random.default_rng(5)
    _, params = case.layer.init(rng, case.in_shape, dtype=np.float64)
    params = tree_cast(params, np.float64)
    x = make_x(case, rng)
    y, _ = case.layer.forward(params, x, train=False)
    expected = case.reference(params, x)
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)


def check_cache_bytes(case: LayerCase) -> None:
    """The declared per-example cache size (what summary reports) is what forward keeps per example.

    Exact at two batch sizes: ``cache_bytes * batch`` plus the case's per-batch constant.
    """
    assert case.layer.cache_bytes is not None, f"{case.id}: the layer declares no cache_bytes"
    rng = np.random.default_rng(6)
    _, params = case.layer.init(rng, case.in_shape, dtype=np.float32)
    per_example = case.layer.cache_bytes(tuple(case.in_shape), 4)
    for batch in (case.batch, case.batch + 3):
        x = make_x(attrs.evolve(case, batch=batch), rng, np.float32)
        _, cache = case.layer.forward(params, x, rng=np.random.default_rng(7), train=case.train)
        assert tree_nbytes(cache) == per_example * batch + 4 * case.cache_overhead, (batch, tree_nbytes(cache))


def run_all(case: LayerCase) -> None:
    check_gradients(case)
    check_shapes_and_dtype(case)
    check_purity(case)
    check_reference(case)
    check_cache_bytes(case)

"""Shared fixtures for the optimizer tests: a small params tree and gradient streams.

The tree mixes an attrs record, a tuple, a ``None`` (a parameter-free layer) and
non-trainable state fields (``mean``/``var``), like a real network's params.
"""
from __future__ import annotations

from typing import Dict, List

import attrs
import numpy as np

from functional_cnn.layer import param_field, state_field
from functional_cnn.tree import trainable, tree_leaves_with_paths, tree_map_with_path


@attrs.frozen(eq=False)
class Dense:
    w: np.ndarray = param_field()
    b: np.ndarray = param_field()


@attrs.frozen(eq=False)
class Norm:
    gamma: np.ndarray = param_field()
    beta: np.ndarray = param_field()
    mean: np.ndarray = state_field()
    var: np.ndarray = state_field()


TRAINABLE = ["0.b", "0.w", "2.0.beta", "2.0.gamma"]
STATE = ["2.0.mean", "2.0.var"]


def make_params(seed: int = 0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (
        Dense(rng.normal(size=(3, 4)).astype(dtype), rng.normal(size=4).astype(dtype)),
        None,
        (Norm(rng.normal(size=5).astype(dtype), rng.normal(size=5).astype(dtype),
              rng.normal(size=5).astype(dtype), rng.uniform(1, 2, size=5).astype(dtype)),),
    )


def mixed(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Random signs and magnitudes spread over 1e-4 .. 1e3."""
    return (rng.choice([-1.0, 1.0], size=shape) * 10.0 ** rng.uniform(-4, 3, size=shape)).astype(dtype)


def grads_like(params, rng: np.random.Generator):
    """A gradient tree for ``params``: ``None`` at state fields, mixed magnitudes elsewhere."""
    return tree_map_with_path(lambda path, p: mixed(rng, p.shape, p.dtype), trainable(params))


def grad_stream(params, steps: int, seed: int = 1) -> List:
    rng = np.random.default_rng(seed)
    return [grads_like(params, rng) for _ in range(steps)]


def as_dict(tree) -> Dict[str, np.ndarray]:
    """``{path: copy of leaf}``: the plain-numpy view the reference loops work on."""
    return {path: np.array(leaf, copy=True) for path, leaf in tree_leaves_with_paths(tree)}


def snapshot(tree) -> Dict[str, np.ndarray]:
    return as_dict(tree)


def assert_unchanged(tree, snap: Dict[str, np.ndarray]) -> None:
    """Every leaf of ``tree`` is read-only and equal to the copy taken before."""
    now = dict(tree_leaves_with_paths(tree))
    assert sorted(now) == sorted(snap)
    for path, leaf in now.items():
        if isinstance(leaf, np.ndarray):
            assert not leaf.flags.writeable, path
        np.testing.assert_array_equal(leaf, snap[path], err_msg=path)

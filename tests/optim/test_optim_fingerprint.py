"""The numbers every optimizer produces are pinned bit for bit.

Each case runs an optimizer for a few steps on fixed params and fixed gradients and
hashes every update, the final params and the final state (path, dtype, shape and
bytes of every leaf). The stored hashes were computed with the optimizers as they were
before they moved to flat lists of leaves (main at c1f1981): any change to the
arithmetic, its order, a dtype or the layout of the state fails here.

The params are records defined below with the shapes of seed 000's network (conv2d(4, 3),
relu, max_pool2d(2), flatten, dense(10) on 1x28x28) and of a batch-norm net with float16
and float64 leaves, so that layer code cannot move the pins. To recompute after an
intended change of numerics: ``python tests/optim/test_optim_fingerprint.py``.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Dict

import numpy as np
import pytest

from functional_cnn.optim import (
    adagrad,
    adam,
    adamw,
    apply_updates,
    chain,
    clip_by_global_norm,
    clip_by_value,
    cosine_decay_schedule,
    exclude_paths,
    masked,
    rmsprop,
    scale_by_adam,
    scale_by_learning_rate,
    sgd,
)
from functional_cnn.tree import trainable, tree_leaves_with_paths, tree_map_with_path
from optim_testlib import Dense, Norm

STEPS = 4
# Param records: optim_testlib's Dense (w, b; conv and dense alike) and Norm (with state fields).


def seed000_params() -> tuple:
    """Params shaped like seed 000's net, float32."""
    rng = np.random.default_rng(0)
    f = np.float32
    return (Dense(rng.normal(0, 0.1, (4, 1, 3, 3)).astype(f), np.zeros(4, f)), None, None, None,
            Dense(rng.normal(0, 0.05, (676, 10)).astype(f), np.zeros(10, f)))


def mixed_params() -> tuple:
    """A float64 batch-norm record with state fields and a float16 dense layer."""
    rng = np.random.default_rng(1)
    return (Norm(rng.normal(size=6), rng.normal(size=6), rng.normal(size=6), rng.uniform(1, 2, 6)),
            None,
            [Dense(rng.normal(size=(6, 3)).astype(np.float16), rng.normal(size=3).astype(np.float16))])


OPTIMIZERS: Dict[str, Callable[[], object]] = {
    "sgd": lambda: sgd(0.01),
    "momentum": lambda: sgd(0.01, momentum=0.9),
    "nesterov": lambda: sgd(0.01, momentum=0.9, nesterov=True),
    "sgd_weight_decay": lambda: sgd(0.01, momentum=0.9, weight_decay=1e-3),
    "adam": lambda: adam(1e-3),
    "adam_eps_root": lambda: adam(1e-3, b1=0.8, eps_root=1e-8),
    "adamw": lambda: adamw(1e-3, weight_decay=1e-2, mask=exclude_paths("*.b")),
    "rmsprop": lambda: rmsprop(1e-3),
    "rmsprop_nesterov": lambda: rmsprop(1e-3, momentum=0.9, nesterov=True),
    "adagrad": lambda: adagrad(0.01),
    "clipped_masked_adam": lambda: chain(clip_by_global_norm(1.0), clip_by_value(-0.05, 0.05),
                                         masked(scale_by_adam(), "*.w"),
                                         scale_by_learning_rate(cosine_decay_schedule(0.1, 10))),
}
NETS = {"seed000": seed000_params, "mixed": mixed_params}


def _hash_into(h, tree) -> None:
    for path, leaf in tree_leaves_with_paths(tree):
        a = np.ascontiguousarray(leaf)
        h.update(f"{path}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())


def run(net: str, name: str) -> str:
    """sha256 of every update, the final params and the final state of ``STEPS`` updates."""
    params = NETS[net]()
    opt = OPTIMIZERS[name]()
    state = opt.init(params)
    rng = np.random.default_rng(7)
    h = hashlib.sha256()
    for _ in range(STEPS):
        grads = tree_map_with_path(lambda path, p: (rng.standard_normal(p.shape) * 0.5).astype(p.dtype),
                                   trainable(params))
        updates, state = opt.update(grads, state, params)
        params = apply_updates(params, updates)
        _hash_into(h, updates)
    _hash_into(h, params)
    _hash_into(h, state)
    return h.hexdigest()[:32]


EXPECTED = {
    "mixed/adagrad": "960dd1cf89d7b7f9bb4e7a653a773fd4",
    "mixed/adam": "2450352836d94d9f23ff7cae37038240",
    "mixed/adam_eps_root": "113e3792e631daa9305786f9efc91a64",
    "mixed/adamw": "bb25e405dcee639fa752e1773d4af93d",
    "mixed/clipped_masked_adam": "f75d830af7abaa1b8c3e2e08926e0fb8",
    "mixed/momentum": "cfffe0b55770575669b446fde1924214",
    "mixed/nesterov": "f22db02891d8a72f1cbf77b997584a41",
    "mixed/rmsprop": "c19634ad3b394ec0686891fe8d11cf91",
    "mixed/rmsprop_nesterov": "c191403a2779b00048fbef996545f215",
    "mixed/sgd": "f1408a5b6756ab33f5c2bf731508c80f",
    "mixed/sgd_weight_decay": "284136c75a77d3e7df996f9e77a27d5c",
    "seed000/adagrad": "4c658e039b119ea1a48bf72c8cff9173",
    "seed000/adam": "1f01dd30750184cd56b6c498f88b6409",
    "seed000/adam_eps_root": "f530e6967054c72ccc1c09e439b46cce",
    "seed000/adamw": "36b7ebb66695171b7c0283dbebfd09a1",
    "seed000/clipped_masked_adam": "0ac378deac9404e8536623b9043e8f90",
    "seed000/momentum": "f0d0cb12e4a301f5dd77305aee4720aa",
    "seed000/nesterov": "ffa8c04cacd94d06090bbc1178edfc35",
    "seed000/rmsprop": "fcc4bb6c8ade3db0d8b3339fa0b2fb46",
    "seed000/rmsprop_nesterov": "2e431f5aea47fa2aa129aecc2343cbac",
    "seed000/sgd": "b4a0823e1f8e91e122c89370ee9c2c9c",
    "seed000/sgd_weight_decay": "a6729f92f3612e0af98287b97dfde97f",
}


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_updates_are_bit_identical_to_the_pinned_ones(net, name):
    assert run(net, name) == EXPECTED[f"{net}/{name}"], f"{net}/{name}: the optimizer's numbers changed"


def test_every_optimizer_is_pinned():
    assert sorted(EXPECTED) == sorted(f"{n}/{o}" for n in NETS for o in OPTIMIZERS)


if __name__ == "__main__":
    for n in sorted(NETS):
        for o in sorted(OPTIMIZERS):
            print(f'    "{n}/{o}": "{run(n, o)}",')

# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Swap optimizers, reproducibly
#
# An optimizer here is a value: a pair of pure functions `(init, update)`. To compare SGD, SGD with
# momentum and Adam you pass three different values to the same experiment, and nothing else
# changes. Because every random draw comes from one seed, each run can be repeated bit for bit, and
# several seeds give an honest spread.
#
# Set `FCNN_NOTEBOOK_QUICK=1` in the environment for a short run (the test suite does).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import functional_cnn as fc
from functional_cnn.datasets import load_dataset
from functional_cnn.models import build_model
from functional_cnn.train import EpochRecord

QUICK = os.environ.get("FCNN_NOTEBOOK_QUICK") == "1"
SEEDS = (0, 1) if QUICK else (0, 1, 2)
EPOCHS = 1 if QUICK else 3
LIMIT = 300 if QUICK else 1000

OPTIMIZERS = {
    "sgd": fc.sgd(0.05),
    "momentum": fc.sgd(0.01, momentum=0.9),
    "adam": fc.adam(1e-3),
}
OPTIMIZERS["adam"]

# %% [markdown]
# ## One experiment, a function of its inputs
#
# `run(optimizer, seed)` loads the data split by the seed, draws the initial weights from the seed,
# and trains with `fit`. It returns the epoch records and the final params. Nothing outside it
# changes.

# %%
def run(optimizer, seed):
    data = load_dataset("mnist-sample", seed=seed)
    net = build_model("lenet", data.num_classes)
    _, params = net.init(np.random.default_rng(seed), data.image_shape)
    epochs = [rec for rec in fc.fit(net, params, fc.softmax_cross_entropy, optimizer,
                                    (data.x_train[:LIMIT], data.y_train[:LIMIT]), epochs=EPOCHS,
                                    batch_size=32, seed=seed, test_data=(data.x_test[:500], data.y_test[:500]))
              if isinstance(rec, EpochRecord)]
    return epochs, epochs[-1].params


results = {(name, seed): run(opt, seed) for name, opt in OPTIMIZERS.items() for seed in SEEDS}
len(results)

# %% [markdown]
# ## Mean ± std over seeds

# %%
print(f"{'optimizer':<10} {'test acc (mean ± std)':>22} {'min':>7} {'max':>7}  runs")
for name in OPTIMIZERS:
    acc = np.array([results[name, s][0][-1].test_accuracy for s in SEEDS])
    print(f"{name:<10} {acc.mean():>13.2%} ± {acc.std():.2%} {acc.min():>7.2%} {acc.max():>7.2%}  {len(acc)}")

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for name in OPTIMIZERS:
    curves = np.array([[r.test_accuracy for r in results[name, s][0]] for s in SEEDS])
    x = np.arange(1, curves.shape[1] + 1)
    mean, std = curves.mean(axis=0), curves.std(axis=0)
    ax.plot(x, mean, "o-", label=name)
    ax.fill_between(x, mean - std, mean + std, alpha=0.2)
ax.set(title=f"Test accuracy over {len(SEEDS)} seeds (band: ± 1 std)", xlabel="epoch", ylabel="test accuracy")
ax.legend()
ax.grid(alpha=0.3)
fig.tight_layout()

# %% [markdown]
# With the `distributed` extra, `functional-cnn sweep --optimizer sgd,momentum,adam --seeds 0-2` runs
# the same grid on a Dask cluster and writes this table as CSV and markdown; see `docs/distributed.md`.
#
# ## Two runs of the same config are identical
#
# `fc.fingerprint` hashes every leaf's path, dtype, shape and bytes. Running the Adam experiment with
# seed 0 a second time gives the same fingerprint: the same bits, not merely close numbers.

# %%
first = fc.fingerprint(results["adam", SEEDS[0]][1])
again = fc.fingerprint(run(OPTIMIZERS["adam"], SEEDS[0])[1])
other_seed = fc.fingerprint(results["adam", SEEDS[1]][1])
print("first run :", first)
print("second run:", again)
print("seed", SEEDS[1], " :", other_seed)
assert first == again and first != other_seed

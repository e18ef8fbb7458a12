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
# # Seed notebook 002, rebuilt: why one init trains and the other stalls
#
# The second seed notebook tells zeros from ones with a small sigmoid CNN: a 5@3x3 convolution with one
# bias per output position, sigmoid, a dense layer of 100 sigmoids, and 2 sigmoid outputs trained with
# binary cross-entropy. It drew every weight and bias from N(0, 1).
#
# Here we train that network twice, with the notebook's N(0, 1) init and with Glorot init, and record
# per-layer gradient and update norms at every step (`fit(..., track_layers=True)`). The norms show
# what the accuracy alone hides. Under N(0, 1) the big dense layer's sigmoids start saturated, and its
# relative updates are about a hundred times smaller than under Glorot: that layer stalls. Zeros
# against ones is easy enough that the output layer, sitting on top of frozen random features, still
# separates them, so the accuracy looks fine.
#
# Set `FCNN_NOTEBOOK_QUICK=1` in the environment for a short run (the test suite does).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import functional_cnn as fc
from functional_cnn.datasets import load_dataset
from functional_cnn.models import seed2_net
from functional_cnn.train import StepRecord

QUICK = os.environ.get("FCNN_NOTEBOOK_QUICK") == "1"
PER_CLASS, EPOCHS = (20, 1) if QUICK else (100, 2)

# %% [markdown]
# ## The data: zeros and ones
#
# `PER_CLASS` images of each digit from the bundled MNIST sample, in an order drawn from the seed. A
# held-out set of the same size checks that the model generalizes.

# %%
data = load_dataset("mnist-sample", seed=0)
rng = np.random.default_rng(0)


def zeros_and_ones(x, y, k):
    idx = rng.permutation(np.concatenate([np.flatnonzero(y == 0)[:k], np.flatnonzero(y == 1)[:k]]))
    return x[idx], y[idx]


x_train, y_train = zeros_and_ones(data.x_train, data.y_train, PER_CLASS)
x_test, y_test = zeros_and_ones(data.x_test, data.y_test, PER_CLASS)
print(x_train.shape, np.bincount(y_train))

# %% [markdown]
# ## The network, under two inits

# %%
nets = {"notebook N(0, 1)": seed2_net(num_classes=2, init="notebook"),
        "Glorot": seed2_net(num_classes=2, init="glorot")}
nets["Glorot"]

# %% [markdown]
# Before training: the share of hidden sigmoids in the dense 3380->100 layer whose slope
# $\sigma'(z) = \sigma(z)(1-\sigma(z))$ is below 0.01, i.e. saturated. A network is a value, so the first
# six layers (up to that sigmoid) are a network too: `fc.serial(*net.children[:6])` with `params[:6]`.

# %%
inits = {}
for name, net in nets.items():
    _, params = net.init(np.random.default_rng(np.random.SeedSequence([0, 2])), x_train.shape[1:])
    inits[name] = params
    hidden, _ = fc.serial(*net.children[:6]).forward(params[:6], x_train[:50])
    slope = hidden * (1 - hidden)
    print(f"{name:<18} saturated hidden units: {np.mean(slope < 0.01):.0%}")

# %% [markdown]
# ## Training with layer tracking
#
# The notebook's recipe: plain SGD with learning rate 0.1, one image per step. With
# `track_layers=True` every `StepRecord` carries a `LayerNorms` per layer: the gradient norm, the
# update norm, the param norm and the update/param ratio. Tracking changes nothing else: the params
# are the same bit for bit with it off.

# %%
history = {}
for name, net in nets.items():
    steps, epochs = [], []
    for record in fc.fit(net, inits[name], fc.one_hot_binary_cross_entropy, fc.sgd(0.1), (x_train, y_train),
                         epochs=EPOCHS, batch_size=1, seed=0, test_data=(x_test, y_test), track_layers=True):
        (steps if isinstance(record, StepRecord) else epochs).append(record)
    history[name] = (steps, epochs)
    print(f"{name:<18} test accuracy after {EPOCHS} epochs: {epochs[-1].test_accuracy:.1%}")

# %%
LAYERS = {"0": "conv 5@3x3", "1": "bias per position", "4": "dense 3380->100", "6": "dense 100->2"}


def series(steps, layer, key):
    values = np.array([getattr(next(n for n in s.layer_norms if n.layer == layer), key) for s in steps])
    return np.where(np.isfinite(values), values, np.nan)   # the ratio is inf while a zero bias is still 0


def smooth(v, window=10):
    window = max(1, min(window, len(v)))
    return np.convolve(v, np.ones(window) / window, mode="valid")


fig, axes = plt.subplots(2, 2, figsize=(11, 6.5), sharex=True, sharey="row")
for col, (name, (steps, _)) in enumerate(history.items()):
    for row, (key, label) in enumerate((("grad_norm", "gradient norm"), ("ratio", "update / param norm"))):
        ax = axes[row, col]
        for i, (layer, title) in enumerate(LAYERS.items()):
            ax.plot(smooth(series(steps, layer, key)), color=f"C{i}", label=title)
        ax.set_yscale("log")
        ax.set(ylabel=f"{label} (log)", xlabel="step" if row else None, title=f"init: {name}" if row == 0 else None)
        ax.grid(alpha=0.3, which="both")
axes[0, 1].legend(title="layer", fontsize=8)
fig.suptitle("Per-layer gradient norm and relative update, running mean of 10 steps")
fig.tight_layout()

# %% [markdown]
# ## What the numbers say
#
# The median over all steps of each layer's gradient norm and update/param ratio:

# %%
print(f"{'layer':<20}" + "".join(f"{'gradient norm, ' + n:>32}" for n in history)
      + "".join(f"{'ratio, ' + n:>24}" for n in history))
for layer, title in LAYERS.items():
    grads = [np.nanmedian(series(history[n][0], layer, "grad_norm")) for n in history]
    ratios = [np.nanmedian(series(history[n][0], layer, "ratio")) for n in history]
    print(f"{title:<20}" + "".join(f"{g:>32.3g}" for g in grads) + "".join(f"{r:>24.3g}" for r in ratios))

# %% [markdown]
# Read the `dense 3380->100` row. Under N(0, 1) the layer's huge weights push its sigmoids into their
# flat tails. Its raw gradient is not small, because the same big weights scale the backward signal up.
# But relative to its weights each update is tiny (the ratio column): the layer barely moves off its
# random, saturated start. Glorot scales the weights by the layer's fan-in and fan-out, so the sigmoids
# start in their steep middle, and every layer learns at a relative rate near the usual 1e-3 to 1e-2.
#
# The test accuracies above are the other half of the lesson. On zeros against ones the stalled network
# can still score well, because the output layer alone separates the two digits on top of random
# features. Accuracy says the run worked; the per-layer norms say which layers did the work.
# `functional-cnn train --model seed2 --track-layers` followed by `functional-cnn inspect RUN_DIR` draws the
# same picture for a command-line run.

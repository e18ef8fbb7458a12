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
# # Write your own layer
#
# A layer is a `fc.Layer(name, init, forward, backward)`: three pure functions and a name. This
# notebook grows the README's `channel_scale` into a complete layer, an affine map per channel
# $y_{n,c,\dots} = s_c\, x_{n,c,\dots} + t_c$, and then does what the library does for each of its own
# layers:
#
# 1. write it, with its params in a frozen record;
# 2. prove its gradients with `fc.check_layer`;
# 3. run it through a small table of cases, the way the test suite checks every built-in layer:
#    gradients, output shape, purity and a naive reference;
# 4. train a network that uses it.
#
# Set `FCNN_NOTEBOOK_QUICK=1` in the environment for a short run (the test suite does).

# %%
import os

import attrs
import numpy as np

import functional_cnn as fc
from functional_cnn.datasets import load_dataset
from functional_cnn.train import EpochRecord

QUICK = os.environ.get("FCNN_NOTEBOOK_QUICK") == "1"

# %% [markdown]
# ## 1. The layer
#
# The params record declares its arrays with `fc.param_field()`, which stores them read-only, so
# `params.s[0] = 2` raises instead of silently changing a shared array. The gradients come back in
# the same record class, which is what lets an optimizer map over them.
#
# $$\frac{\partial E}{\partial x} = s_c \frac{\partial E}{\partial y},\qquad
#   \frac{\partial E}{\partial s_c} = \sum_{n,\dots} x \frac{\partial E}{\partial y},\qquad
#   \frac{\partial E}{\partial t_c} = \sum_{n,\dots} \frac{\partial E}{\partial y}$$

# %%
@attrs.frozen(eq=False)
class ChannelAffineParams:
    s: np.ndarray = fc.param_field()   # (C,) scale
    t: np.ndarray = fc.param_field()   # (C,) shift


def channel_affine():
    """y[n, c, ...] = s[c] * x[n, c, ...] + t[c], on (N, C) or (N, C, H, W) batches."""

    def per_channel(v, ndim):
        return v.reshape((1, -1) + (1,) * (ndim - 2))

    def init(rng, in_shape, dtype=np.float32):
        c = in_shape[0]
        return tuple(in_shape), ChannelAffineParams(np.ones(c, dtype), np.zeros(c, dtype))

    def forward(params, x, *, rng=None, train=False):
        if x.ndim < 2 or x.shape[1] != params.s.shape[0]:
            raise ValueError(f"channel_affine: x must have {params.s.shape[0]} channels on axis 1, got shape {x.shape}")
        return per_channel(params.s, x.ndim) * x + per_channel(params.t, x.ndim), x

    def backward(params, x, dy):
        others = (0,) + tuple(range(2, x.ndim))
        grads = ChannelAffineParams((dy * x).sum(axis=others), dy.sum(axis=others))
        return grads, dy * per_channel(params.s, x.ndim)

    return fc.Layer("channel_affine", init, forward, backward)


layer = channel_affine()
_, params = layer.init(np.random.default_rng(0), (3, 4, 4))
params

# %%
try:
    params.s[0] = 2.0
except ValueError as err:
    print("params are read-only:", err)

# %% [markdown]
# ## 2. The gradient check
#
# `check_layer` evaluates the layer in float64, compares `dx` and every parameter gradient with
# central differences, checks the declared output shape and checks purity (the inputs and params
# are unchanged, and the same inputs give the same outputs). At `s = 1, t = 0` a wrong `ds` could
# hide, so we check at random params.

# %%
rng = np.random.default_rng(1)
random_params = ChannelAffineParams(rng.uniform(0.5, 2.0, 3), rng.standard_normal(3))
fc.check_layer(layer, rng, (3, 4, 4), params=random_params)

# %% [markdown]
# A slip that is easy to make, summing `ds` over the channel axis too, is caught and named:

# %%
def broken_backward(params, x, dy):
    grads, dx = layer.backward(params, x, dy)
    wrong_s = np.full_like(grads.s, (dy * x).sum() / grads.s.size)
    return ChannelAffineParams(wrong_s, grads.t), dx


try:
    fc.check_layer(attrs.evolve(layer, backward=broken_backward), rng, (3, 4, 4), params=random_params)
except fc.GradCheckError as err:
    print("failing tensors:", [r.name for r in err.report.failures])

# %% [markdown]
# ## 3. A table of cases, as the test suite does it
#
# Every built-in layer sits in one table that the tests run through the same checks. Here is that
# idea for our layer: each row is an input shape and a dtype; each check can fail.

# %%
def naive(params, x):
    """The same map with explicit loops over examples and channels."""
    y = np.empty_like(x)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            y[n, c] = params.s[c] * x[n, c] + params.t[c]
    return y


CASES = [((3,), np.float32), ((3, 4, 4), np.float32), ((5, 2, 7), np.float64), ((1, 1, 1), np.float64)]
rows = []
for in_shape, dtype in CASES:
    rng = np.random.default_rng(len(in_shape))
    out_shape, p = layer.init(rng, in_shape, dtype)
    p = ChannelAffineParams(rng.uniform(0.5, 2, in_shape[0]).astype(dtype),
                            rng.standard_normal(in_shape[0]).astype(dtype))
    x = rng.standard_normal((4,) + in_shape).astype(dtype)
    y, _ = layer.forward(p, x)
    report = fc.check_layer(layer, rng, in_shape, params=p)
    tol = 10 * np.finfo(dtype).eps
    rows.append((in_shape, np.dtype(dtype).name, y.shape[1:] == tuple(out_shape), y.dtype == dtype,
                 np.allclose(y, naive(p, x), rtol=tol, atol=tol), report.ok))
print(f"{'in_shape':<12} {'dtype':<8} {'shape':>6} {'dtype':>6} {'naive':>6} {'grads':>6}")
for row in rows:
    print(f"{str(row[0]):<12} {row[1]:<8}" + "".join(f"{'ok' if ok else 'FAIL':>7}" for ok in row[2:]))
assert all(all(row[2:]) for row in rows)

# %% [markdown]
# ## 4. Train a network that uses it
#
# The layer goes into `fc.serial` like any other. Its params sit at index 1 of the network's params
# tuple, and `fit` trains them along with the rest.

# %%
data = load_dataset("digits", seed=0)      # 8x8 digits: seconds, not minutes
net = fc.serial(fc.conv2d(8, 3, padding=1), channel_affine(), fc.relu(), fc.max_pool2d(2), fc.flatten(),
                fc.dense(10))
_, net_params = net.init(np.random.default_rng(0), data.image_shape)
limit, epochs = (300, 2) if QUICK else (None, 8)
for record in fc.fit(net, net_params, fc.softmax_cross_entropy, fc.adam(1e-2),
                     (data.x_train[:limit], data.y_train[:limit]), epochs=epochs, batch_size=32, seed=0,
                     test_data=(data.x_test, data.y_test)):
    if isinstance(record, EpochRecord):
        print(f"epoch {record.epoch}: loss {record.loss:.4f}  test acc {record.test_accuracy:.1%}")
trained = record.params[1]
print("learned scale per channel:", np.round(trained.s, 3))
print("learned shift per channel:", np.round(trained.t, 3))

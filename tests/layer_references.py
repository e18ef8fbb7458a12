"""Naive references for the layer table, written with loops, scipy and plain numpy.

Each is independent of the layer it checks: ``reference(params, x) -> y`` in float64.
The ``x_fn`` helpers make inputs that keep kinks (relu, max pooling) away from the
finite-difference step of the gradient check.
"""
from __future__ import annotations

import numpy as np
from scipy import signal

EPS = 1e-5  # the default eps of batch_norm and layer_norm


def positive(rng, shape):
    """Distinct positive values: keeps relu/max-pool kinks far from the difference step."""
    return rng.permutation(np.prod(shape)).reshape(shape) / np.prod(shape) + 0.1


def signed(rng, shape):
    """Distinct values in (-0.5, 0.5), none near the kink at 0 (offset 0.3 of a grid step)."""
    return positive(rng, shape) - 0.6 + 0.3 / np.prod(shape)


def conv_reference(stride=1, padding=0, dilation=1, groups=1):
    """2-D: loops over samples and channel pairs with scipy.signal.correlate2d."""
    s = (stride, stride) if isinstance(stride, int) else stride
    d = (dilation, dilation) if isinstance(dilation, int) else dilation

    def ref(params, x):
        w, b = params.w, params.b
        c_out, cg, kh, kw = w.shape
        eff = (d[0] * (kh - 1) + 1, d[1] * (kw - 1) + 1)
        if padding == "same":
            pads = []
            for size, e, ss in zip(x.shape[2:], eff, s, strict=True):
                out = -(-size // ss)
                tot = max((out - 1) * ss + e - size, 0)
                pads.append((tot // 2, tot - tot // 2))
        else:
            p = (padding, padding) if isinstance(padding, int) else padding
            pads = [(p[0], p[0]), (p[1], p[1])]
        xp = np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]))
        out_per_group = c_out // groups
        ys = []
        for n in range(x.shape[0]):
            chans = []
            for o in range(c_out):
                grp = o // out_per_group
                acc = 0.0
                for j in range(cg):
                    k = np.zeros(eff)
                    k[:: d[0], :: d[1]] = w[o, j]  # dilated kernel
                    acc = acc + signal.correlate2d(xp[n, grp * cg + j], k, mode="valid")
                acc = acc[:: s[0], :: s[1]]
                chans.append(acc + (b[o] if b is not None else 0.0))
            ys.append(np.stack(chans))
        return np.stack(ys)

    return ref


def conv2d_stride1_reference(p, x, pad=0):
    """Stride-1 conv2d by scipy.signal.correlate over (C, H, W) volumes."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    return np.stack([np.stack([signal.correlate(xp[n], p.w[o], mode="valid")[0] + p.b[o]
                               for o in range(p.w.shape[0])]) for n in range(x.shape[0])])


def conv1d_reference(stride=1, padding=0, dilation=1, groups=1):
    """1-D: loops over samples and channel pairs with np.correlate on a dilated kernel."""

    def ref(params, x):
        w, b = params.w, params.b
        c_out, cg, k = w.shape
        eff, length = dilation * (k - 1) + 1, x.shape[2]
        if padding == "same":
            total = max((-(-length // stride) - 1) * stride + eff - length, 0)
            pads = (total // 2, total - total // 2)
        else:
            pads = (padding, padding)
        xp = np.pad(x, ((0, 0), (0, 0), pads))
        per_group = c_out // groups
        y = np.zeros((x.shape[0], c_out, (xp.shape[2] - eff) // stride + 1))
        for n in range(x.shape[0]):
            for o in range(c_out):
                kern = np.zeros(eff)
                for j in range(cg):
                    kern[::dilation] = w[o, j]
                    full = np.correlate(xp[n, (o // per_group) * cg + j], kern, mode="valid")
                    y[n, o] += full[::stride]
                y[n, o] += 0.0 if b is None else b[o]
        return y

    return ref


def pool_reference(size, stride=None, op=np.max):
    """2-D square windows, by a loop over output positions."""
    k = size
    s = stride or size

    def ref(params, x):
        n, c, h, w = x.shape
        oh, ow = (h - k) // s + 1, (w - k) // s + 1
        y = np.empty((n, c, oh, ow))
        for i in range(oh):
            for j in range(ow):
                y[:, :, i, j] = op(x[:, :, i * s : i * s + k, j * s : j * s + k], axis=(2, 3))
        return y

    return ref


def pool1d_reference(size, stride=None, op=np.max):
    s = stride or size

    def ref(params, x):
        out = (x.shape[2] - size) // s + 1
        return np.stack([op(x[:, :, i * s : i * s + size], axis=2) for i in range(out)], axis=2)

    return ref


def dense_reference(params, x):
    y = np.einsum("nf,fo->no", x, params.w)
    return y + params.b if params.b is not None else y


def batch_norm_eval_reference(p, x):
    y = np.empty_like(x)
    for c in range(x.shape[1]):
        y[:, c] = p.gamma[c] * (x[:, c] - p.mean[c]) / np.sqrt(p.var[c] + EPS) + p.beta[c]
    return y


def batch_norm_train_reference(p, x):
    y = np.empty_like(x)
    for c in range(x.shape[1]):
        v = x[:, c]
        y[:, c] = p.gamma[c] * (v - v.mean()) / np.sqrt(((v - v.mean()) ** 2).mean() + EPS) + p.beta[c]
    return y


def layer_norm_reference(p, x):
    return np.stack([(e - e.mean()) / np.sqrt(e.var() + EPS) * p.gamma + p.beta for e in x])

"""2-D convolution (cross-correlation) over NCHW batches, by im2col and one matmul.

``y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * xpad[n, c, i*sh + p*dh, j*sw + q*dw]``

This is cross-correlation, as in every deep-learning framework; seed notebook 000
wrote the forward pass with a true convolution but the filter gradient with a
correlation, so its filter gradient was flipped. The gradient checker catches that.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import attrs
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._checks import check_params_type, float_array, same_dtype, float_dtype, int_pair, positive_int, shape_tuple
from ..initializers import get_initializer
from ..layer import Array, Layer, Shape, param_field

__all__ = ["Conv2DParams", "Conv2DCache", "conv2d", "conv_output_size", "resolve_padding"]

Pad = Tuple[Tuple[int, int], Tuple[int, int]]


@attrs.frozen(eq=False)
class Conv2DParams:
    """Parameters of :func:`conv2d`."""

    w: Array = param_field()  # (C_out, C_in, KH, KW)
    b: Optional[Array] = param_field(default=None)  # (C_out,) or None when use_bias=False


@attrs.frozen(eq=False)
class Conv2DCache:
    """What backward needs: the im2col matrix and the padded input's shape."""

    cols: Array  # (N*OH*OW, C_in*KH*KW)
    xp_shape: Tuple[int, ...]  # (N, C_in, H + pads, W + pads): the padded input's shape
    pads: Pad  # ((top, bottom), (left, right))
    out_hw: Tuple[int, int]  # (OH, OW)


def conv_output_size(size: int, kernel: int, stride: int, dilation: int, pad: Tuple[int, int]) -> int:
    """Output length along one axis; may be <= 0 when the kernel does not fit."""
    eff = dilation * (kernel - 1) + 1
    return (size + pad[0] + pad[1] - eff) // stride + 1


def resolve_padding(padding: Any, where: str) -> Any:
    """Validate ``padding``: an int, a pair of ints, ``"valid"`` or ``"same"``."""
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise ValueError(f"{where}: padding must be an int, a pair of ints, 'valid' or 'same', got {padding!r}")
        return padding
    return int_pair(padding, where, "padding", minimum=0)


def _pads(padding: Any, hw: Tuple[int, int], k: Tuple[int, int], s: Tuple[int, int], d: Tuple[int, int]) -> Pad:
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        out = []
        for size, kk, ss, dd in zip(hw, k, s, d):
            target = -(-size // ss)  # ceil(size / stride)
            total = max((target - 1) * ss + dd * (kk - 1) + 1 - size, 0)
            out.append((total // 2, total - total // 2))
        return out[0], out[1]
    ph, pw = padding
    return (ph, ph), (pw, pw)


def im2col(xp: Array, k: Tuple[int, int], s: Tuple[int, int], d: Tuple[int, int], out_hw: Tuple[int, int]) -> Array:
    """Patches of a padded NCHW batch as rows: ``(N*OH*OW, C*KH*KW)``."""
    n, c = xp.shape[:2]
    oh, ow = out_hw
    eh, ew = d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1
    win = sliding_window_view(xp, (eh, ew), axis=(2, 3))  # (N, C, H', W', eh, ew), a view
    win = win[:, :, : (oh - 1) * s[0] + 1 : s[0], : (ow - 1) * s[1] + 1 : s[1], :: d[0], :: d[1]]
    # (N, OH, OW, C, KH, KW): one copy into the matmul-friendly layout.
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * k[0] * k[1])


def col2im(dcols: Array, xp_shape: Tuple[int, ...], k: Tuple[int, int], s: Tuple[int, int], d: Tuple[int, int],
           out_hw: Tuple[int, int]) -> Array:
    """Adjoint of :func:`im2col`: scatter-add rows back into a padded NCHW array.

    Loops over the KH*KW kernel offsets only; each iteration is one strided add.
    """
    n, c, hp, wp = xp_shape
    oh, ow = out_hw
    d6 = dcols.reshape(n, oh, ow, c, k[0], k[1])
    dxp = np.zeros((n, c, hp, wp), dtype=dcols.dtype)
    for p in range(k[0]):
        r0 = p * d[0]
        for q in range(k[1]):
            c0 = q * d[1]
            dxp[:, :, r0 : r0 + (oh - 1) * s[0] + 1 : s[0], c0 : c0 + (ow - 1) * s[1] + 1 : s[1]] += (
                d6[:, :, :, :, p, q].transpose(0, 3, 1, 2)
            )
    return dxp


def _grouped(a: Array, groups: int) -> Array:
    """``(R, G*K)`` -> ``(G, R, K)`` view."""
    return a.reshape(a.shape[0], groups, -1).transpose(1, 0, 2)


def _ungrouped(a: Array) -> Array:
    """``(G, R, K)`` -> ``(R, G*K)``."""
    return a.transpose(1, 0, 2).reshape(a.shape[1], -1)


def conv2d(out_channels: int, kernel_size: Any, *, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
           groups: int = 1, use_bias: bool = True, w_init: Any = "he_normal", b_init: Any = "zeros") -> Layer:
    """2-D cross-correlation over NCHW batches.

    Args:
        out_channels: number of filters ``C_out``.
        kernel_size: ``k`` or ``(KH, KW)``.
        stride: ``s`` or ``(SH, SW)``, each >= 1.
        padding: ``p``, ``(PH, PW)`` (zeros on both sides), ``"valid"`` (none) or
            ``"same"`` (output size ``ceil(H / SH)``; the odd pixel goes at the end).
        dilation: ``d`` or ``(DH, DW)``, each >= 1.
        groups: split channels into this many independent groups; ``C_in`` and
            ``C_out`` must both be divisible by it (``groups == C_in`` is depthwise).
        use_bias: add a per-channel bias ``b`` of shape ``(C_out,)``.
        w_init, b_init: initializer names or callables (see ``functional_cnn.initializers``).

    Returns:
        A Layer mapping ``(N, C_in, H, W)`` to ``(N, C_out, OH, OW)``; params are
        :class:`Conv2DParams` with ``w`` of shape ``(C_out, C_in / groups, KH, KW)``.

    Raises:
        ValueError/TypeError: for invalid hyperparameters (here), and at init/forward
        for inputs of the wrong rank, channel count, or smaller than the kernel.
    """
    where = "conv2d"
    c_out = positive_int(out_channels, where, "out_channels")
    k = int_pair(kernel_size, where, "kernel_size")
    s = int_pair(stride, where, "stride")
    dil = int_pair(dilation, where, "dilation")
    pad_spec = resolve_padding(padding, where)
    g = positive_int(groups, where, "groups")
    if c_out % g:
        raise ValueError(f"{where}: out_channels (={c_out}) must be divisible by groups (={g})")
    w_init_fn = get_initializer(w_init, where, "w_init")
    b_init_fn = get_initializer(b_init, where, "b_init")
    if not isinstance(use_bias, bool):
        raise TypeError(f"{where}: use_bias must be a bool, got {use_bias!r}")

    def geometry(in_shape: Shape, arg: str) -> Tuple[Pad, Tuple[int, int]]:
        if len(in_shape) != 3:
            raise ValueError(f"{where}: {arg} must be (C, H, W) per example, got {tuple(in_shape)}")
        hw = (in_shape[1], in_shape[2])
        pads = _pads(pad_spec, hw, k, s, dil)
        out_hw = tuple(conv_output_size(hw[i], k[i], s[i], dil[i], pads[i]) for i in range(2))
        if min(out_hw) < 1:
            eff = (dil[0] * (k[0] - 1) + 1, dil[1] * (k[1] - 1) + 1)
            padded = (hw[0] + sum(pads[0]), hw[1] + sum(pads[1]))
            raise ValueError(
                f"{where}: kernel (effective size {eff} with dilation {dil}) is larger than the padded "
                f"input {padded} (input {hw}, padding {pads})"
            )
        return pads, out_hw  # type: ignore[return-value]

    def init(rng: np.random.Generator, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, Conv2DParams]:
        in_shape = shape_tuple(in_shape, where)
        dt = float_dtype(dtype, where)
        _, out_hw = geometry(in_shape, "in_shape")
        c_in = in_shape[0]
        if c_in < 1:
            raise ValueError(f"{where}: in_shape must have at least one channel, got {in_shape}")
        if c_in % g:
            raise ValueError(f"{where}: input channels (={c_in}) must be divisible by groups (={g})")
        fan_in, fan_out = (c_in // g) * k[0] * k[1], (c_out // g) * k[0] * k[1]
        w = w_init_fn(rng, (c_out, c_in // g, k[0], k[1]), fan_in, fan_out, dt)
        b = b_init_fn(rng, (c_out,), fan_in, fan_out, dt) if use_bias else None
        return (c_out, out_hw[0], out_hw[1]), Conv2DParams(w, b)

    def forward(params: Conv2DParams, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, Conv2DCache]:
        check_params_type(params, Conv2DParams, where)
        x = float_array(x, where, "x", ndim=4, layout="(N, C, H, W)")
        w = params.w
        same_dtype(x, w, where)
        if x.shape[1] != w.shape[1] * g:
            raise ValueError(
                f"{where}: x has {x.shape[1]} channels (shape {x.shape}), params expect {w.shape[1] * g} "
                f"(w shape {w.shape}, groups {g})"
            )
        pads, out_hw = geometry(x.shape[1:], "x.shape[1:]")
        xp = np.pad(x, ((0, 0), (0, 0)) + pads) if any(sum(p) for p in pads) else x
        cols = im2col(xp, k, s, dil, out_hw)
        w2 = w.reshape(w.shape[0], -1)
        if g == 1:
            y = cols @ w2.T  # (N*OH*OW, C_out)
        else:
            y = _ungrouped(_grouped(cols, g) @ w2.reshape(g, -1, w2.shape[1]).transpose(0, 2, 1))
        if params.b is not None:
            y += params.b
        n = x.shape[0]
        y = np.ascontiguousarray(y.reshape(n, out_hw[0], out_hw[1], w.shape[0]).transpose(0, 3, 1, 2))
        return y, Conv2DCache(cols, tuple(xp.shape), pads, out_hw)

    def backward(params: Conv2DParams, cache: Conv2DCache, dy: Array) -> Tuple[Conv2DParams, Array]:
        w = params.w
        n, _, hp, wp = cache.xp_shape
        expected = (n, w.shape[0]) + tuple(cache.out_hw)
        if tuple(np.shape(dy)) != expected:
            raise ValueError(f"{where}: dy must have shape {expected}, got {np.shape(dy)}")
        dy2 = dy.transpose(0, 2, 3, 1).reshape(-1, w.shape[0])  # (N*OH*OW, C_out)
        w2 = w.reshape(w.shape[0], -1)
        if g == 1:
            dw = (dy2.T @ cache.cols).reshape(w.shape)
            dcols = dy2 @ w2
        else:
            dyg = _grouped(dy2, g)  # (G, R, C_out/G)
            dw = (dyg.transpose(0, 2, 1) @ _grouped(cache.cols, g)).reshape(w.shape)
            dcols = _ungrouped(dyg @ w2.reshape(g, -1, w2.shape[1]))
        db = dy2.sum(axis=0) if params.b is not None else None
        dxp = col2im(dcols, cache.xp_shape, k, s, dil, cache.out_hw)
        (pt, pb), (pl, pr) = cache.pads
        dx = dxp[:, :, pt : hp - pb, pl : wp - pr]
        return Conv2DParams(dw, db), np.ascontiguousarray(dx)

    def cache_bytes(in_shape: Shape, itemsize: int) -> int:
        _, (oh, ow) = geometry(tuple(in_shape), "in_shape")
        return oh * ow * in_shape[0] * k[0] * k[1] * itemsize

    config = dict(out_channels=c_out, kernel_size=k)
    config.update({key: v for key, v, default in (("stride", s, (1, 1)), ("padding", pad_spec, (0, 0)),
                                                 ("dilation", dil, (1, 1)), ("groups", g, 1),
                                                 ("use_bias", use_bias, True))
                   if v != default})
    return Layer("conv2d", init, forward, backward, cache_bytes=cache_bytes, config=config)


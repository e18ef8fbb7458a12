"""2-D convolution (cross-correlation) over NCHW batches, by im2col and batched matmuls.

``y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * xpad[n, c, i*sh + p*dh, j*sw + q*dw]``

This is cross-correlation, as in every deep-learning framework; seed notebook 000
wrote the forward pass with a true convolution but the filter gradient with a
correlation, so its filter gradient was flipped. The gradient checker catches that.

Layout (chosen by measurement, see ``docs/performance.md``): the patch matrix is
``cols[n, (c, p, q), t]`` of shape ``(N, C*KH*KW, L)``, so ``w2 @ cols`` yields NCHW
directly and every copy has the long spatial axis innermost. With stride 1 the
patches are taken on the *flattened* padded image ("wide" rows of pitch ``Wp``):
kernel offset ``(p, q)`` is then one contiguous slice starting at ``p*dh*Wp + q*dw``.
The ``Wp - OW`` columns that wrap around a row are computed and dropped. Other strides
use ``L = OH*OW`` (pitch ``OW``).

Backward with stride 1 needs no patch gradient: on the same flattened grid the input
gradient is ``KH*KW`` matrix products of ``w[:, :, p, q].T`` with ``dy`` shifted by
``p*dh*Wp + q*dw`` (:func:`~functional_cnn.layers._patches.backward_wide`). Other strides
form the patch gradient and add it back with :func:`col2im`.

The batch is split across threads (:mod:`functional_cnn._parallel`) for the patch matrix, the
products and the copies; the weight and bias gradients are summed over the whole batch
afterwards, so the bits do not depend on the thread count.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import attrs
import numpy as np

from .._checks import float_dtype, int_pair, positive_int, shape_tuple
from .._parallel import for_chunks
from ..boundary import Spec
from ..initializers import get_initializer
from ..layer import Array, Layer, Shape, param_field
from ..params import freeze, params_record
from ._patches import _grouped_matmul, _pad, _rows, _scratch, _weight_grad, backward_wide, col2im, im2col

__all__ = ["Conv2DParams", "Conv2DCache", "conv2d", "conv_output_size", "resolve_padding", "im2col", "col2im"]

Pad = Tuple[Tuple[int, int], Tuple[int, int]]
#: Inference (``train=False``) builds the patch matrix this many bytes at a time per thread, in a
#: reused buffer (measured on LeNet at batch 1000: 4 MiB beat 0.5 and 8 MiB at 1 and 2 threads).
INFERENCE_CHUNK_BYTES = 1 << 22


@params_record
class Conv2DParams:
    """Parameters of :func:`conv2d`."""

    w: Array = param_field()  # (C_out, C_in, KH, KW)
    b: Optional[Array] = param_field(default=None)  # (C_out,) or None when use_bias=False


@attrs.frozen(eq=False)
class Conv2DCache:
    """What backward needs: the patch matrix (or, after a chunked inference pass, the padded input)."""

    cols: Optional[Array]  # (N, C_in*KH*KW, L); None when forward ran chunked (train=False)
    xp_shape: Tuple[int, ...]  # (N, C_in, H + pads, W + pads): the padded input's shape
    pads: Pad  # ((top, bottom), (left, right))
    out_hw: Tuple[int, int]  # (OH, OW)
    pitch: int  # distance between output rows in cols' last axis: Wp (stride 1) or OW
    xp: Optional[Array] = None  # the padded input, kept only when cols is None


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
        w_init: the weights' initializer, a name or a callable (see ``functional_cnn.initializers``).
        b_init: the bias's initializer, the same way.

    Returns:
        A Layer mapping ``(N, C_in, H, W)`` to ``(N, C_out, OH, OW)``; params are
        :class:`Conv2DParams` with ``w`` of shape ``(C_out, C_in / groups, KH, KW)``.

    Raises:
        ValueError: for invalid hyperparameter values (here), and at init/forward for
            inputs of the wrong rank, channel count, or smaller than the kernel.
        TypeError: for hyperparameters of the wrong type, and inputs of a non-float dtype.
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
    memo: Dict[Tuple[int, int], Tuple[Pad, Tuple[int, int], int]] = {}

    def geometry(in_shape: Shape, arg: str) -> Tuple[Pad, Tuple[int, int], int]:
        if len(in_shape) != 3:
            raise ValueError(f"{where}: {arg} must be (C, H, W) per example, got {tuple(in_shape)}")
        if in_shape[0] % g:
            raise ValueError(f"{where}: input channels (={in_shape[0]}) must be divisible by groups (={g})")
        hw = (in_shape[1], in_shape[2])
        if hw in memo:  # a pure function of (H, W): remembered, it costs nothing per step
            return memo[hw]
        pads = _pads(pad_spec, hw, k, s, dil)
        out_hw = tuple(conv_output_size(hw[i], k[i], s[i], dil[i], pads[i]) for i in range(2))
        if min(out_hw) < 1:
            eff = (dil[0] * (k[0] - 1) + 1, dil[1] * (k[1] - 1) + 1)
            padded = (hw[0] + sum(pads[0]), hw[1] + sum(pads[1]))
            raise ValueError(
                f"{where}: kernel (effective size {eff} with dilation {dil}) is larger than the padded "
                f"input {padded} (input {hw}, padding {pads})"
            )
        wp = hw[1] + sum(pads[1])
        # Wide rows cost (Wp / OW - 1) extra matmul work; worth it unless the rows are mostly border.
        pitch = wp if s == (1, 1) and 2 * wp <= 3 * out_hw[1] else out_hw[1]
        memo[hw] = (pads, out_hw, pitch)  # type: ignore[assignment]
        return memo[hw]

    def init(rng: np.random.Generator, in_shape: Shape, dtype: Any = np.float32) -> Tuple[Shape, Conv2DParams]:
        in_shape = shape_tuple(in_shape, where)
        dt = float_dtype(dtype, where)
        _, out_hw, _ = geometry(in_shape, "in_shape")
        c_in = in_shape[0]
        fan_in, fan_out = (c_in // g) * k[0] * k[1], (c_out // g) * k[0] * k[1]
        w = w_init_fn(rng, (c_out, c_in // g, k[0], k[1]), fan_in, fan_out, dt)
        b = b_init_fn(rng, (c_out,), fan_in, fan_out, dt) if use_bias else None
        return (c_out, out_hw[0], out_hw[1]), Conv2DParams(w, b)

    def emit(y_wide: Array, b: Optional[Array], out_hw: Tuple[int, int], pitch: int, out: Array) -> None:
        """Add the bias ``b`` (``(C_out, 1)`` or ``(C_out, L)``, in place, contiguous) and copy into ``out``,
        dropping wrapped columns.

        Measured: numpy ufuncs on strided 2-D operands run ~4x slower than on
        contiguous ones, while a strided copy does not; so add first, then copy.
        """
        if b is not None:
            y_wide += b
        if pitch == out_hw[1]:
            np.copyto(out, y_wide.reshape(y_wide.shape[:2] + tuple(out_hw)))
        else:
            np.copyto(out, _rows(y_wide, out_hw, pitch))

    def product(w2: Array, cols: Array, b: Optional[Array], out_hw: Tuple[int, int], pitch: int, out: Array) -> None:
        """``out = w2 @ cols + b`` for a range of the batch, in NCHW, wrapped columns dropped."""
        if g == 1 and pitch == out_hw[1]:  # the matmul's result is the output itself
            y3 = out.reshape(cols.shape[0], w2.shape[0], cols.shape[2])
            np.matmul(w2, cols, out=y3)
            if b is not None:
                y3 += b
        elif g == 1:  # wide rows: the matmul's result is a temporary, cropped into out
            y_wide = np.matmul(w2, cols, out=_scratch("y_wide", (cols.shape[0], w2.shape[0], cols.shape[2]), out.dtype))
            emit(y_wide, b, out_hw, pitch, out)
        else:
            emit(_grouped_matmul(w2, cols, g), b, out_hw, pitch, out)

    def forward(params: Conv2DParams, x: Array, *, rng: Any = None, train: bool = False) -> Tuple[Array, Conv2DCache]:
        w = params.w
        pads, out_hw, pitch = geometry(x.shape[1:], "x.shape[1:]")
        xp = _pad(x, pads)
        w2 = w.reshape(w.shape[0], -1)
        n = x.shape[0]
        length = (out_hw[0] - 1) * pitch + out_hw[1]
        rows = w2.shape[1] * g
        per_example = rows * length * x.itemsize
        y = np.empty((n, w.shape[0]) + tuple(out_hw), dtype=x.dtype)
        # Training keeps the whole patch matrix for backward. Inference builds it a cache-sized
        # chunk of the batch at a time in a reused buffer, and the cache keeps only the padded
        # input (backward rebuilds the patches if asked).
        keep = train or n * per_example <= INFERENCE_CHUNK_BYTES
        cols = np.empty((n, rows, length), dtype=x.dtype) if keep else None
        step = max(n, 1) if keep else max(1, INFERENCE_CHUNK_BYTES // per_example)

        b = None if params.b is None else params.b[:, None]
        if b is not None and n > 1:  # as a (C_out, L) array, numpy adds it ~2x faster than the column b[:, None]
            b = np.empty((w.shape[0], length), dtype=params.b.dtype)
            b[:] = params.b[:, None]

        def part(lo: int, hi: int) -> None:  # one thread's range of the batch (see _parallel)
            for i in range(lo, hi, step):
                j = min(i + step, hi)
                buf = cols[i:j] if cols is not None else _scratch("cols", (j - i, rows, length), x.dtype)
                product(w2, im2col(xp[i:j], k, s, dil, out_hw, pitch, out=buf), b, out_hw, pitch, y[i:j])

        for_chunks(part, n, n * per_example)
        if cols is not None:
            return y, Conv2DCache(cols, tuple(xp.shape), pads, out_hw, pitch)
        return y, Conv2DCache(None, tuple(xp.shape), pads, out_hw, pitch, xp)

    def backward(params: Conv2DParams, cache: Conv2DCache, dy: Array, *, need_dx: bool = True
                 ) -> Tuple[Conv2DParams, Optional[Array]]:
        w = params.w
        n = cache.xp_shape[0]
        oh, ow = cache.out_hw
        cols = cache.cols if cache.cols is not None else im2col(cache.xp, k, s, dil, cache.out_hw, cache.pitch)
        c_o = w.shape[0]
        w2 = w.reshape(c_o, -1)
        db = None
        if params.b is not None:  # one gemv over the batch's rows, then a small sum
            dy2 = np.ascontiguousarray(dy).reshape(n * c_o, oh * ow)
            db = np.dot(dy2, np.ones(oh * ow, dtype=dy2.dtype)).reshape(n, c_o).sum(axis=0)
        if s == (1, 1) and cache.pitch == cache.xp_shape[3]:  # wide rows
            dw2, dx = backward_wide(w, cols, dy, cache.xp_shape, cache.out_hw, cache.pads, dil, g, need_dx)
        else:
            dyw = np.ascontiguousarray(dy).reshape(n, c_o, oh * ow)
            dw2 = _weight_grad(dyw, cols, g)
            dx = None
            if need_dx:
                dxp = col2im(_grouped_matmul(w2, dyw, g, transpose=True), cache.xp_shape, k, s, dil, cache.out_hw,
                             cache.pitch)
                (pt, pb), (pl, pr) = cache.pads
                hp, wp = cache.xp_shape[2:]
                dx = np.ascontiguousarray(dxp[:, :, pt : hp - pb, pl : wp - pr])
        dw = np.ascontiguousarray(dw2).reshape(w.shape)
        return Conv2DParams(freeze(dw), freeze(db)), dx

    def cache_bytes(in_shape: Shape, itemsize: int) -> int:
        _, (oh, ow), pitch = geometry(tuple(in_shape), "in_shape")
        return in_shape[0] * k[0] * k[1] * ((oh - 1) * pitch + ow) * itemsize

    config = dict(out_channels=c_out, kernel_size=k)
    config.update({key: v for key, v, default in (("stride", s, (1, 1)), ("padding", pad_spec, (0, 0)),
                                                 ("dilation", dil, (1, 1)), ("groups", g, 1),
                                                 ("use_bias", use_bias, True))
                   if v != default})

    def out_shape(in_shape: Shape, arg: str) -> Shape:
        _, out_hw, _ = geometry(in_shape, arg)
        return (c_out,) + tuple(out_hw)

    def out_of_cache(params: Conv2DParams, cache: Conv2DCache) -> Tuple[Shape, np.dtype]:
        dtype = (cache.cols if cache.cols is not None else cache.xp).dtype
        return (cache.xp_shape[0], c_out) + tuple(cache.out_hw), dtype

    spec = Spec(out_shape, rank=4, layout="(N, C, H, W)", params=Conv2DParams,
                param_shapes=lambda shape: dict(w=(c_out, shape[0] // g) + k, b=(c_out,) if use_bias else None),
                in_size=(0, "channels", lambda p: p.w.shape[1] * g), cache=Conv2DCache, out_of_cache=out_of_cache,
                draws=False)
    return Layer("conv2d", init, forward, backward, cache_bytes=cache_bytes, config=config, spec=spec)


"""The built-in ONNX exporters, one per ``Layer.name`` (see :mod:`functional_cnn.onnx_export`).

Each is ``fn(ctx, layer, params, x, in_shape) -> y`` and reads only ``layer.config``,
``layer.children`` and the params records' field names, so it does not depend on where
a layer's code lives. Shapes exclude the batch axis; graphs are NCHW like the layers.
No onnx import here: nodes are made through ``ctx``.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Sequence, Tuple

import numpy as np

__all__ = ["BUILTIN_EXPORTERS"]


def _field(ctx: Any, params: Any, name: str, optional: bool = False) -> Any:
    """``params.<name>``, or an error naming what the layer's params should have been."""
    value = getattr(params, name, None)
    if value is None and not optional:
        raise ctx.fail(f"params must have an array field {name!r}, got {type(params).__name__}")
    return value


def _pair(v: Any) -> Tuple[int, ...]:
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else tuple(int(a) for a in v)


def _same_pads(size: int, k: int, s: int, d: int) -> Tuple[int, int]:
    """Padding of ``"same"``: output ``ceil(size / s)``, the odd pixel at the end (bottom/right)."""
    total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def _conv_pads(padding: Any, sizes: Sequence[int], k: Sequence[int], s: Sequence[int], d: Sequence[int]) -> list:
    """ONNX ``pads``: all the starts, then all the ends."""
    if padding == "valid":
        per_axis = [(0, 0)] * len(sizes)
    elif padding == "same":
        per_axis = [_same_pads(*a) for a in zip(sizes, k, s, d)]
    else:
        p = (int(padding),) * len(sizes) if isinstance(padding, (int, np.integer)) else tuple(padding)
        per_axis = [(int(a), int(a)) for a in p]
    return [a for a, _ in per_axis] + [b for _, b in per_axis]


def _conv(ctx: Any, params: Any, x: str, k: Sequence[int], s: Sequence[int], d: Sequence[int], pads: list,
          groups: int) -> str:
    w = ctx.param(_field(ctx, params, "w"), "w")
    b = _field(ctx, params, "b", optional=True)
    inputs = [x, w] + ([ctx.param(b, "b")] if b is not None else [])
    return ctx.op("Conv", inputs, kernel_shape=list(k), strides=list(s), dilations=list(d), pads=pads, group=groups)


def export_conv2d(ctx: Any, layer: Any, params: Any, x: str, in_shape: Any) -> str:
    cfg = layer.config
    k, s, d = _pair(cfg["kernel_size"]), _pair(cfg.get("stride", 1)), _pair(cfg.get("dilation", 1))
    pads = _conv_pads(cfg.get("padding", 0), in_shape[1:], k, s, d)
    return _conv(ctx, params, x, k, s, d, pads, int(cfg.get("groups", 1)))


def export_conv1d(ctx: Any, layer: Any, params: Any, x: str, in_shape: Any) -> str:
    cfg = layer.config
    k, s, d = (int(cfg["kernel_size"]),), (int(cfg.get("stride", 1)),), (int(cfg.get("dilation", 1)),)
    pads = _conv_pads(cfg.get("padding", 0), in_shape[1:], k, s, d)
    return _conv(ctx, params, x, k, s, d, pads, int(cfg.get("groups", 1)))


def _pool(op_type: str, rank: int) -> Any:
    """Max or average pooling: no padding, floor (incomplete windows dropped), stride default = size."""

    def export(ctx: Any, layer: Any, params: Any, x: str, in_shape: Any) -> str:
        size = layer.config["size"]
        k = _pair(size) if rank == 2 else (int(size),)
        stride = layer.config.get("stride", size)
        s = _pair(stride) if rank == 2 else (int(stride),)
        return ctx.op(op_type, [x], kernel_shape=list(k), strides=list(s), pads=[0] * (2 * rank), ceil_mode=0)

    return export


def export_global_avg_pool2d(ctx: Any, layer: Any, params: Any, x: str, in_shape: Any) -> str:
    return ctx.op("Flatten", [ctx.op("GlobalAveragePool", [x])], axis=1)  # (N, C, 1, 1) -> (N, C)


def export_dense(ctx: Any, layer: Any, params: Any, x: str, in_shape: Any) -> str:
    w = ctx.param(_field(ctx, params, "w"), "w")  # (F_in, F_out): y = x @ w + b, no transpose
    b = _field(ctx, params, "b", optional=True)
    return ctx.op("Gemm", [x, w] + ([ctx.param(b, "b")] if b is not None else []))


def export_bias(ctx: Any, layer: Any, params: Any, x: str, in_shape: Any) -> str:
    return ctx.op("Add", [x, ctx.param(_field(ctx, params, "b"), "b")])  # b: per-example shape, broadcast over N


def export_flatten(ctx: Any, layer: Any, params: Any, x: str, in_shape: Any) -> str:
    return ctx.op("Flatten", [x], axis=1)


def export_reshape(ctx: Any, layer: Any, params: Any, x: str, in_shape: Any) -> str:
    target = ctx.out_shape(layer, in_shape)  # -1 resolved; the leading 0 copies the (dynamic) batch size
    return ctx.op("Reshape", [x, ctx.const([0] + [int(t) for t in target], np.int64)])


def _unary(op_type: str, **fixed: Any) -> Any:
    def export(ctx: Any, layer: Any, params: Any, x: str, in_shape: Any) -> str:
        return ctx.op(op_type, [x], **fixed)

    return export


def export_leaky_relu(ctx: Any, layer: Any, params: Any, x: str, in_shape: Any) -> str:
    return ctx.op("LeakyRelu", [x], alpha=float(layer.config.get("negative_slope", 0.01)))


def export_gelu(ctx: Any, layer: Any, params: Any, x: str, in_shape: Any) -> str:
    """``0.5 x (1 + erf(x / sqrt 2))``, or with ``approximate`` ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    Opset 17 has no Gelu op (it came in 20), so the formula is spelled out.
    """
    if layer.config.get("approximate", False):
        cube = ctx.op("Mul", [ctx.op("Mul", [x, x]), x])
        inner = ctx.op("Add", [x, ctx.op("Mul", [cube, ctx.const(0.044715)])])
        t = ctx.op("Tanh", [ctx.op("Mul", [inner, ctx.const(math.sqrt(2.0 / math.pi))])])
    else:
        t = ctx.op("Erf", [ctx.op("Mul", [x, ctx.const(1.0 / math.sqrt(2.0))])])
    half_x = ctx.op("Mul", [x, ctx.const(0.5)])
    return ctx.op("Mul", [half_x, ctx.op("Add", [t, ctx.const(1.0)])])


def _softmax(op_type: str) -> Any:
    def export(ctx: Any, layer: Any, params: Any, x: str, in_shape: Any) -> str:
        # The layer's axis counts the batch axis (-1 by default, 0 refused), as ONNX's does.
        return ctx.op(op_type, [x], axis=int(layer.config.get("axis", -1)))

    return export


def export_pass_through(ctx: Any, layer: Any, params: Any, x: Any, in_shape: Any) -> Any:
    """Identity and inference-mode dropout: no node at all."""
    return x


def export_batch_norm(ctx: Any, layer: Any, params: Any, x: str, in_shape: Any) -> str:
    """Inference form: the running statistics, ``(x - mean) / sqrt(var + eps) * gamma + beta`` over axis 1."""
    names = [ctx.param(_field(ctx, params, f), f) for f in ("gamma", "beta", "mean", "var")]
    return ctx.op("BatchNormalization", [x] + names, epsilon=float(layer.config.get("eps", 1e-5)))


def export_layer_norm(ctx: Any, layer: Any, params: Any, x: str, in_shape: Any) -> str:
    """Statistics over every non-batch axis; ``gamma``, ``beta`` of the per-example shape."""
    gamma, beta = (ctx.param(_field(ctx, params, f), f) for f in ("gamma", "beta"))
    return ctx.op("LayerNormalization", [x, gamma, beta], axis=1, epsilon=float(layer.config.get("eps", 1e-5)))


def _children_params(ctx: Any, layer: Any, params: Any) -> Tuple[Any, ...]:
    n = len(layer.children)
    if not isinstance(params, tuple) or len(params) != n:
        got = f"a tuple of {len(params)}" if isinstance(params, tuple) else type(params).__name__
        raise ctx.fail(f"params must be a tuple of {n} (one per child layer), got {got}")
    return params


def export_serial(ctx: Any, layer: Any, params: Any, x: Any, in_shape: Any) -> Any:
    params = _children_params(ctx, layer, params)
    for i, (child, p) in enumerate(zip(layer.children, params)):
        x, in_shape = ctx.layer(child, p, x, in_shape, f"{layer.name}[{i}]", str(i))
    return x


def export_residual(ctx: Any, layer: Any, params: Any, x: str, in_shape: Any) -> str:
    params = _children_params(ctx, layer, params)
    y, _ = ctx.layer(layer.children[0], params[0], x, in_shape, f"{layer.name}.block", "0")
    shortcut = x
    if len(layer.children) == 2:
        shortcut, _ = ctx.layer(layer.children[1], params[1], x, in_shape, f"{layer.name}.projection", "1")
    return ctx.op("Add", [y, shortcut])


def _branches(ctx: Any, layer: Any, x: Any, n: int = 0) -> Tuple[str, ...]:
    if not isinstance(x, tuple) or (n and len(x) != n):
        want = f"{n} branches" if n else "branches"
        raise ctx.fail(f"expects a tuple of {want} as input (e.g. after fan_out), got {x!r}")
    return x


def export_parallel(ctx: Any, layer: Any, params: Any, x: Any, in_shape: Any) -> Tuple[str, ...]:
    params = _children_params(ctx, layer, params)
    xs = _branches(ctx, layer, x, len(layer.children))
    return tuple(ctx.layer(c, p, xi, si, f"{layer.name}[{i}]", str(i))[0]
                 for i, (c, p, xi, si) in enumerate(zip(layer.children, params, xs, in_shape)))


def export_fan_out(ctx: Any, layer: Any, params: Any, x: str, in_shape: Any) -> Tuple[str, ...]:
    return (x,) * int(layer.config["n"])


def export_fan_in_sum(ctx: Any, layer: Any, params: Any, x: Any, in_shape: Any) -> str:
    return ctx.op("Sum", list(_branches(ctx, layer, x)))


def export_fan_in_concat(ctx: Any, layer: Any, params: Any, x: Any, in_shape: Any) -> str:
    # The layer's axis counts the batch axis and may be negative, as ONNX's does.
    return ctx.op("Concat", list(_branches(ctx, layer, x)), axis=int(layer.config.get("axis", 1)))


BUILTIN_EXPORTERS: Dict[str, Any] = {
    "conv2d": export_conv2d,
    "conv1d": export_conv1d,
    "max_pool2d": _pool("MaxPool", 2),
    "avg_pool2d": _pool("AveragePool", 2),
    "max_pool1d": _pool("MaxPool", 1),
    "avg_pool1d": _pool("AveragePool", 1),
    "global_avg_pool2d": export_global_avg_pool2d,
    "dense": export_dense,
    "bias": export_bias,
    "flatten": export_flatten,
    "reshape": export_reshape,
    "relu": _unary("Relu"),
    "leaky_relu": export_leaky_relu,
    "sigmoid": _unary("Sigmoid"),
    "tanh": _unary("Tanh"),
    "gelu": export_gelu,
    "softmax": _softmax("Softmax"),
    "log_softmax": _softmax("LogSoftmax"),
    "identity": export_pass_through,
    "dropout": export_pass_through,
    "batch_norm": export_batch_norm,
    "layer_norm": export_layer_norm,
    "serial": export_serial,
    "residual": export_residual,
    "parallel": export_parallel,
    "fan_out": export_fan_out,
    "fan_in_sum": export_fan_in_sum,
    "fan_in_concat": export_fan_in_concat,
}

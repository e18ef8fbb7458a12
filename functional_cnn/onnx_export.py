"""Export a network and its params to an ONNX file (the ``onnx`` extra)::

    net = fc.serial(fc.conv2d(4, 3), fc.relu(), fc.flatten(), fc.dense(10))
    _, params = net.init(np.random.default_rng(0), (1, 28, 28))
    export_onnx(net, params, (1, 28, 28), "net.onnx")    # or to_onnx(...) for the ModelProto

The graph reads ``x`` of shape ``(N, *in_shape)`` and writes ``y`` of shape
``(N, *out_shape)``, where ``N`` is a symbolic (dynamic) batch dimension; networks whose
input or output is a tuple of arrays get ``x0, x1, ...`` / ``y0, y1, ...``. It uses
opset :data:`OPSET` of the default ``ai.onnx`` domain and float32 throughout: float64
params are rounded to float32, because ONNX Runtime's CPU provider has no float64 Conv,
AveragePool or Erf kernels. Inference semantics are exported (``train=False``): dropout
is the identity and batch norm uses its running statistics. Initializers are named by
the params' tree paths (``"0.w"``, ``"4.b"``), as :func:`functional_cnn.tree_paths` prints them.

Each layer is translated by the exporter registered under its ``Layer.name``::

    fn(ctx: OnnxContext, layer: Layer, params, x, in_shape) -> y

where ``x`` is the name of the input tensor (a tuple of names for a layer that takes a
tuple), ``in_shape`` the per-example input shape, and ``y`` the name(s) of the output.
The built-in exporters live in :mod:`functional_cnn._onnx_layers`; add your own with
:func:`register_onnx_exporter`. A layer without one stops the export with an
:class:`OnnxExportError` naming its place in the network, e.g. ``serial[3] (my_layer)``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from ._atomic import atomic_write
from ._onnx_layers import BUILTIN_EXPORTERS
from .layer import Layer
from .tree import tree_leaves_with_paths

__all__ = ["OPSET", "OnnxExportError", "OnnxUnavailable", "OnnxContext", "ExportFn", "register_onnx_exporter",
           "onnx_exporter", "to_onnx", "export_onnx", "require_onnx"]

#: The ``ai.onnx`` opset the graphs use: 17 has every op needed (LayerNormalization is
#: new in 17) and runs on ONNX Runtime 1.13 and later.
OPSET = 17
INSTALL_HINT = 'pip install "functional_cnn[onnx]"'

Value = Union[str, Tuple[str, ...]]
ExportFn = Callable[["OnnxContext", Layer, Any, Any, Any], Any]

_EXPORTERS: Dict[str, ExportFn] = dict(BUILTIN_EXPORTERS)


class OnnxExportError(ValueError):
    """A network cannot be exported: a layer without an exporter, or params that do not fit it."""


class OnnxUnavailable(ImportError):
    """The ``onnx`` package is not installed."""


def require_onnx(what: str = "export_onnx") -> Any:
    """The ``onnx`` module, or :class:`OnnxUnavailable` saying how to install it."""
    try:
        import onnx
    except ImportError as err:
        raise OnnxUnavailable(f"{what} needs onnx: {INSTALL_HINT}") from err
    return onnx


def register_onnx_exporter(name: str, fn: ExportFn, *, replace: bool = False) -> None:
    """Make layers named ``name`` exportable with ``fn(ctx, layer, params, x, in_shape) -> y``.

    ``fn`` adds nodes through ``ctx`` (see :class:`OnnxContext`) and returns the name of
    its output tensor, or a tuple of names for a layer that outputs a tuple.

    Args:
        name: the ``Layer.name`` the exporter handles.
        fn: the exporter.
        replace: allow replacing an exporter already registered under ``name``
            (built-in ones included); otherwise that is a ``ValueError``.

    Example::

        def export_channel_scale(ctx, layer, params, x, in_shape):
            s = ctx.param(params.s.reshape((-1,) + (1,) * (len(in_shape) - 1)), "s")
            return ctx.op("Mul", [x, s])

        register_onnx_exporter("channel_scale", export_channel_scale)
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_onnx_exporter: name must be a non-empty str, got {name!r}")
    if not callable(fn):
        raise TypeError(f"register_onnx_exporter: fn must be callable, got {type(fn).__name__}")
    if name in _EXPORTERS and not replace:
        raise ValueError(f"register_onnx_exporter: an exporter for {name!r} is already registered; "
                         f"pass replace=True to replace it")
    _EXPORTERS[name] = fn


def onnx_exporter(name: str) -> Optional[ExportFn]:
    """The exporter registered for layers named ``name``, or None."""
    return _EXPORTERS.get(name)


class OnnxContext:
    """What an exporter builds the graph with. One per export; exporters must not keep it.

    Attributes:
        dtype: the float dtype of the exported tensors (``np.float32``).
        opset: the ``ai.onnx`` opset in use.
        where: the current layer's place in the network, e.g. ``"serial[3] (conv2d)"``.
    """

    def __init__(self, onnx: Any, dtype: Any = np.float32) -> None:
        self._onnx = onnx
        self.dtype = np.dtype(dtype)
        self.opset = OPSET
        self.nodes: List[Any] = []
        self.initializers: List[Any] = []
        self._names: set = set()
        self._consts: Dict[Tuple[str, bytes, Tuple[int, ...]], str] = {}
        self._where: List[str] = []
        self._keys: List[str] = []

    @property
    def where(self) -> str:
        inner = self._where[1:] or self._where  # the root is named only when the error is its own
        return " -> ".join(inner) or "the network"

    def _fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def _prefix(self) -> str:
        return ".".join(self._keys)

    def fail(self, message: str) -> OnnxExportError:
        """An :class:`OnnxExportError` saying ``message`` about the current layer (raise it)."""
        return OnnxExportError(f"export_onnx: {self.where}: {message}")

    def param(self, array: Any, field: str) -> str:
        """Add ``array`` (a param of the current layer) as an initializer in :attr:`dtype`.

        Its name is the param's tree path, e.g. ``"0.w"``. Non-float arrays are refused.
        """
        arr = np.asarray(array)
        if arr.dtype.kind != "f":
            raise self.fail(f"param {field!r} must be a float array, got dtype {arr.dtype}")
        name = self._fresh(f"{self._prefix()}.{field}" if self._keys else field)
        self.initializers.append(self._onnx.numpy_helper.from_array(arr.astype(self.dtype), name))
        return name

    def const(self, value: Any, dtype: Any = None) -> str:
        """A constant initializer (shared between equal constants): float ones in :attr:`dtype`
        unless ``dtype`` is given (e.g. ``np.int64`` for shapes)."""
        arr = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        key = (arr.dtype.str, arr.tobytes(), arr.shape)
        if key not in self._consts:
            name = self._fresh(f"const_{len(self._consts)}")
            self.initializers.append(self._onnx.numpy_helper.from_array(arr, name))
            self._consts[key] = name
        return self._consts[key]

    def op(self, op_type: str, inputs: List[str], **attributes: Any) -> str:
        """Add one node with one output; returns the output's name. ``""`` skips an optional input."""
        out = self._fresh(f"{self._prefix() or 'net'}/{op_type}")
        self.nodes.append(self._onnx.helper.make_node(op_type, list(inputs), [out], name=out, **attributes))
        return out

    def _check_params(self, params: Any, template: Any) -> None:
        """``params`` must have the fields and shapes that ``layer.init`` gives for this input shape."""
        got, want = tree_leaves_with_paths(params), tree_leaves_with_paths(template)
        if [p for p, _ in got] != [p for p, _ in want]:
            raise self.fail(f"params must have the arrays {[p for p, _ in want]} (as layer.init makes them for "
                            f"this input), got {[p for p, _ in got]} ({type(params).__name__})")
        for (path, a), (_, b) in zip(got, want):
            if np.shape(a) != np.shape(b):
                raise self.fail(f"params.{path} has shape {np.shape(a)}, expected {np.shape(b)} for this input "
                                f"(as layer.init makes it)")

    def out_shape(self, layer: Layer, in_shape: Any) -> Any:
        """``layer``'s per-example output shape for ``in_shape`` (from ``layer.init``)."""
        return layer.init(np.random.default_rng(0), in_shape, self.dtype)[0]

    def layer(self, layer: Layer, params: Any, x: Value, in_shape: Any, label: Optional[str] = None,
              key: Optional[str] = None) -> Tuple[Value, Any]:
        """Export ``layer`` applied to ``x``; returns ``(y, out_shape)``.

        Combinators call this for each child, with ``label`` its place (e.g. ``"serial[2]"``)
        and ``key`` its index in the params tuple (e.g. ``"2"``), so errors and
        initializer names say where the child sits.
        """
        self._where.append(f"{label} ({layer.name})" if label else layer.name)
        if key is not None:
            self._keys.append(key)
        try:
            fn = _EXPORTERS.get(layer.name)
            if fn is None:
                raise self.fail(f"layer {layer.name!r} has no ONNX exporter; register one with "
                                f"functional_cnn.onnx_export.register_onnx_exporter({layer.name!r}, fn)")
            try:
                out_shape, template = layer.init(np.random.default_rng(0), in_shape, self.dtype)
                if not layer.children:  # a combinator's children are checked one by one
                    self._check_params(params, template)
                y = fn(self, layer, params, x, in_shape)
            except OnnxExportError:
                raise
            except (ValueError, TypeError) as err:
                raise self.fail(str(err)) from err
            if not _is_value(y):
                raise self.fail(f"the exporter returned {y!r}, expected a tensor name or a tuple of them")
            return y, out_shape
        finally:
            self._where.pop()
            if key is not None:
                self._keys.pop()


def _is_value(y: Any) -> bool:
    return isinstance(y, str) or (isinstance(y, tuple) and bool(y) and all(isinstance(v, str) for v in y))


def _is_multi(shape: Any) -> bool:
    """A tuple of per-example shapes (a network taking a tuple of arrays)."""
    return isinstance(shape, (tuple, list)) and bool(shape) and all(isinstance(s, (tuple, list)) for s in shape)


def _value_info(onnx: Any, name: str, shape: Any) -> Any:
    return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["N"] + [int(d) for d in shape])


def _bind_outputs(ctx: OnnxContext, y: Value) -> List[str]:
    """Name the graph outputs ``y`` (or ``y0, y1, ...``): the producing node's output is renamed,
    or an Identity added when ``y`` is a graph input, an initializer or already an output."""
    values = [y] if isinstance(y, str) else list(y)
    names = ["y"] if isinstance(y, str) else [f"y{i}" for i in range(len(values))]
    produced = {out for node in ctx.nodes for out in node.output}
    renamed: Dict[str, str] = {}
    for value, name in zip(values, names):
        value = renamed.get(value, value)
        if value in produced and value not in names:
            for node in ctx.nodes:
                node.input[:] = [name if v == value else v for v in node.input]
                node.output[:] = [name if v == value else v for v in node.output]
            renamed[value] = name
        else:
            ctx.nodes.append(ctx._onnx.helper.make_node("Identity", [value], [name], name=name))
    return names


def to_onnx(net: Layer, params: Any, in_shape: Any, *, check: bool = True) -> Any:
    """The ONNX model (an ``onnx.ModelProto``) of ``net`` with ``params``, for inference.

    Args:
        net: the network (any Layer).
        params: its params, as ``net.init`` made them (float32 or float64; exported as float32).
        in_shape: the per-example input shape, e.g. ``(1, 28, 28)``; a tuple of shapes
            for a network taking a tuple of arrays.
        check: run ``onnx.checker.check_model(model, full_check=True)`` on the result.

    Raises:
        OnnxExportError: a layer has no exporter, or its params do not fit it.
        OnnxUnavailable: onnx is not installed.
    """
    onnx = require_onnx()
    if not isinstance(net, Layer):
        raise TypeError(f"export_onnx: net must be a Layer, got {type(net).__name__}")
    multi = _is_multi(in_shape)
    shapes = [tuple(s) for s in in_shape] if multi else [in_shape]
    if not all(isinstance(s, (tuple, list)) and all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                                                    and d >= 1 for d in s) for s in shapes):
        raise ValueError(f"export_onnx: in_shape must be a per-example shape of positive ints such as (1, 28, 28) "
                         f"(batch axis excluded), or a tuple of them, got {in_shape!r}")
    shapes = [tuple(int(d) for d in s) for s in shapes]
    in_names = [f"x{i}" for i in range(len(shapes))] if multi else ["x"]
    ctx = OnnxContext(onnx)
    ctx._names.update(in_names + ["y"])
    x: Value = tuple(in_names) if multi else in_names[0]
    y, out_shape = ctx.layer(net, params, x, tuple(shapes) if multi else shapes[0])
    out_names = _bind_outputs(ctx, y)
    out_shapes = list(out_shape) if isinstance(y, tuple) else [out_shape]
    graph = onnx.helper.make_graph(
        ctx.nodes, "functional_cnn", [_value_info(onnx, n, s) for n, s in zip(in_names, shapes)],
        [_value_info(onnx, n, s) for n, s in zip(out_names, out_shapes)], initializer=ctx.initializers,
        doc_string=repr(net))
    opset = onnx.helper.make_opsetid("", OPSET)
    from . import __version__

    model = onnx.helper.make_model(graph, opset_imports=[opset], producer_name="functional_cnn",
                                   producer_version=__version__,
                                   ir_version=onnx.helper.find_min_ir_version_for([opset]))
    if check:
        try:
            onnx.checker.check_model(model, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            what = net.name if net.children else net.describe()
            raise OnnxExportError(f"export_onnx: the exported graph of {what} is not valid ONNX "
                                  f"(a bug in a layer exporter?): {first}") from err
    return model


def export_onnx(net: Layer, params: Any, in_shape: Any, path: Union[str, os.PathLike]) -> Path:
    """Write ``net`` with ``params`` to the ONNX file ``path``, atomically.

    The whole model is built and checked before anything is written, and the file is
    replaced all at once (see :mod:`functional_cnn._atomic`): on any error ``path`` is
    left as it was. See :func:`to_onnx` for the arguments and the module docstring for
    what the graph looks like.

    Returns:
        The absolute path written.

    Raises:
        OnnxExportError: a layer has no exporter, or its params do not fit it.
        OnnxUnavailable: onnx is not installed.
        FileNotFoundError / NotADirectoryError / PermissionError: ``path`` cannot be written.
    """
    target = Path(os.fspath(path))
    model = to_onnx(net, params, in_shape)
    if target.is_dir():
        raise IsADirectoryError(f"export_onnx: {target} is a folder; give a file name such as {target / 'model.onnx'}")
    if not target.absolute().parent.is_dir():
        parent = target.absolute().parent
        kind = NotADirectoryError if parent.exists() else FileNotFoundError
        raise kind(f"export_onnx: cannot write {target}: folder {parent} does not exist")
    data = model.SerializeToString()
    try:
        return atomic_write(target, lambda f: f.write(data))
    except PermissionError as err:
        raise PermissionError(f"export_onnx: cannot write {target}: permission denied") from err

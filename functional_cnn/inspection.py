"""Figures that show what a trained network holds: filters, feature maps, errors, layer norms.

Every ``*_figure`` function returns a matplotlib ``Figure`` (Agg backend), so it works in a
notebook as well as in ``functional-cnn inspect``; :mod:`functional_cnn.inspect_report`
puts them together into PNGs and one HTML page. matplotlib is imported lazily: without it
each function raises :class:`functional_cnn.reporting.PlotUnavailable`.

Layers are found by walking combinators (``Layer.children``) together with their params,
so nested ``serial``/``residual``/``parallel`` networks work; a layer's *path* is its
position, the same numbering as params paths (``"3"``, ``"4.0.0"``).

>>> import numpy as np, functional_cnn as fc
>>> net = fc.serial(fc.conv2d(2, 3), fc.relu(), fc.residual(fc.serial(fc.conv2d(2, 3, padding=1))))
>>> _, p = net.init(np.random.default_rng(0), (1, 8, 8))
>>> [path for path, _, _ in conv_layers(net, p)]
['0', '2.0.0']
>>> [(path, y.shape) for path, _, y in feature_maps(net, p, np.zeros((1, 1, 8, 8), np.float32))]
[('0', (1, 2, 6, 6)), ('2.0.0', (1, 2, 6, 6))]
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import attrs
import numpy as np

from .layer import Layer
from .reporting import _pyplot
from .tracking import ROOT

__all__ = ["conv_layers", "feature_maps", "confusion_matrix", "filters_figure", "filter_norms_figure",
           "feature_maps_figure", "confusion_figure", "misclassified_figure", "layer_norms_figure", "MAP_LAYERS"]

MAP_LAYERS = ("conv2d", "max_pool2d", "avg_pool2d")  # layers whose outputs are shown as feature maps


def _join(prefix: str, i: int) -> str:
    return f"{prefix}.{i}" if prefix else str(i)


def _walk(layer: Layer, params: Any, prefix: str = "") -> List[Tuple[str, Layer, Any]]:
    """(path, leaf layer, its params) for every non-combinator layer, in order."""
    if layer.children and isinstance(params, tuple) and len(params) == len(layer.children):
        found = []
        for i, (child, p) in enumerate(zip(layer.children, params)):
            found += _walk(child, p, _join(prefix, i))
        return found
    return [(prefix or ROOT, layer, params)]


def conv_layers(net: Layer, params: Any) -> List[Tuple[str, Layer, Any]]:
    """``(path, layer, params)`` of every ``conv2d`` in ``net``, in forward order."""
    if not isinstance(net, Layer):
        raise TypeError(f"conv_layers: net must be a Layer, got {type(net).__name__}")
    return [t for t in _walk(net, params) if t[1].name == "conv2d"]


def feature_maps(net: Layer, params: Any, x: np.ndarray,
                 names: Sequence[str] = MAP_LAYERS) -> List[Tuple[str, str, np.ndarray]]:
    """Inference-mode outputs of every layer named in ``names``: ``(path, description, y)``.

    Args:
        net: the network; combinators with ``rebuild`` are opened, so nested layers count.
        params: its params.
        x: (N, C, H, W) input batch.

    Returns:
        One entry per matching layer in execution order; ``y`` is (N, C', H', W').
    """
    if not isinstance(net, Layer):
        raise TypeError(f"feature_maps: net must be a Layer, got {type(net).__name__}")
    seen: List[Tuple[str, str, np.ndarray]] = []

    def wrap(layer: Layer, path: str) -> Layer:
        if layer.children and layer.rebuild is not None:
            return layer.rebuild(*(wrap(c, _join(path, i)) for i, c in enumerate(layer.children)))
        if layer.name not in names:
            return layer

        def forward(p: Any, h: Any, *, rng: Any = None, train: bool = False) -> Tuple[Any, Any]:
            y, cache = layer.forward(p, h, rng=rng, train=train)
            seen.append((path or ROOT, layer.describe(), np.asarray(y)))
            return y, cache

        return attrs.evolve(layer, forward=forward)

    wrap(net, "").forward(params, x, train=False)
    return seen


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts: row = true class, column = predicted class."""
    t, p = np.asarray(y_true).astype(np.int64).ravel(), np.asarray(y_pred).astype(np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"confusion_matrix: y_true and y_pred must have the same length, got {t.size} and {p.size}")
    bad = (t < 0) | (t >= num_classes) | (p < 0) | (p >= num_classes)
    if bad.any():
        raise ValueError(f"confusion_matrix: labels must lie in [0, {num_classes}), got "
                         f"{int(min(t.min(), p.min()))}..{int(max(t.max(), p.max()))}")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _image(img: np.ndarray) -> Tuple[np.ndarray, Optional[str]]:
    """A CHW image as something imshow takes: (H, W) grey or (H, W, 3) colour."""
    if img.shape[0] == 1:
        return img[0], "gray"
    return np.clip(np.moveaxis(img[:3], 0, -1), 0, 1), None


def filters_figure(net: Layer, params: Any, max_filters: int = 32) -> Any:
    """The first conv layer's filters as a grid, one row per output channel pair of input channels.

    Every tile shares one diverging colour scale centred on 0 (red positive, blue
    negative) with a colour bar. Up to ``max_filters`` output channels and 3 input
    channels are shown.
    """
    convs = conv_layers(net, params)
    if not convs:
        raise ValueError("filters_figure: net has no conv2d layer")
    path, layer, p = convs[0]
    w = np.asarray(p.w, dtype=np.float64)[:max_filters, :3]
    c_out, c_in = w.shape[:2]
    plt = _pyplot()
    cols = min(8, c_out) if c_in == 1 else c_in
    rows = -(-c_out // cols) if c_in == 1 else c_out
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols + 1.4, 1.5 * rows + 1.0), squeeze=False,
                             layout="constrained")
    lim = float(np.abs(w).max()) or 1.0
    im = None
    for k, ax in enumerate(axes.flat):
        o, i = (k, 0) if c_in == 1 else divmod(k, c_in)
        ax.set_xticks([])
        ax.set_yticks([])
        if o >= c_out:
            ax.axis("off")
            continue
        im = ax.imshow(w[o, i], cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"filter {o}" + (f", in {i}" if c_in > 1 else ""), fontsize=8)
    fig.suptitle(f"layer {path}: {layer.describe()} — weights")
    fig.supxlabel("kernel column")
    fig.supylabel("kernel row")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.9, label="weight (0 = white)")
    return fig


def filter_norms_figure(net: Layer, params: Any) -> Any:
    """For every conv layer after the first, a bar chart of each output filter's L2 norm."""
    convs = conv_layers(net, params)[1:]
    if not convs:
        raise ValueError("filter_norms_figure: net has no conv2d layer after the first")
    plt = _pyplot()
    fig, axes = plt.subplots(len(convs), 1, figsize=(8, 2.6 * len(convs) + 0.6), squeeze=False)
    for ax, (path, _layer, p) in zip(axes[:, 0], convs):
        w = np.asarray(p.w, dtype=np.float64)
        norms = np.sqrt((w.reshape(w.shape[0], -1) ** 2).sum(axis=1))
        ax.bar(np.arange(len(norms)), norms, color="C0")
        shape = "x".join(map(str, w.shape[1:]))
        ax.set(title=f"layer {path}: conv2d, {w.shape[0]} filters of {shape}", xlabel="output filter",
               ylabel="L2 norm")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("filter norms of the deeper conv layers")
    fig.tight_layout()
    return fig


def feature_maps_figure(net: Layer, params: Any, image: np.ndarray, max_channels: int = 8,
                        title: Optional[str] = None) -> Any:
    """One image's feature maps after every conv and pool layer: a row per layer, a column per channel.

    Args:
        image: one (C, H, W) input.
        max_channels: channels shown per layer (the first ones).
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"feature_maps_figure: image must be one (C, H, W) input, got shape {image.shape}")
    maps = feature_maps(net, params, image[None].astype(np.float32, copy=False))
    if not maps:
        raise ValueError(f"feature_maps_figure: net has no {', '.join(MAP_LAYERS)} layer")
    plt = _pyplot()
    cols = min(max_channels, max(y.shape[1] for _, _, y in maps)) + 1
    fig, axes = plt.subplots(len(maps), cols + 1, figsize=(1.25 * cols + 1.8, 1.35 * len(maps) + 0.9),
                             squeeze=False, gridspec_kw={"width_ratios": [1] * cols + [0.08]})
    pic, cmap = _image(image)
    for r, (path, desc, y) in enumerate(maps):
        row = axes[r]
        for ax in row[:-1]:
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].imshow(pic, cmap=cmap)
        row[0].set_ylabel(f"{path}: {desc.split('(')[0]}\n{'x'.join(map(str, y.shape[1:]))}", fontsize=8)
        if r == 0:
            row[0].set_title("input", fontsize=8)
        y = y[0, :max_channels]
        lo, hi = float(y.min()), float(y.max())
        im = None
        for c in range(cols - 1):
            ax = row[c + 1]
            if c >= y.shape[0]:
                ax.axis("off")
                continue
            im = ax.imshow(y[c], cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1)
            ax.set_title(f"ch {c}", fontsize=8)
        fig.colorbar(im, cax=row[-1])
        row[-1].tick_params(labelsize=7)
    fig.suptitle(title or "feature maps (one colour scale per layer)")
    fig.supxlabel("channel")
    fig.supylabel("layer")
    fig.tight_layout()
    return fig


def confusion_figure(y_true: Any, y_pred: Any, classes: Sequence[str], title: str = "test confusion matrix") -> Any:
    """Counts and row-normalized rates side by side, true class on the rows, with colour bars."""
    n = len(classes)
    cm = confusion_matrix(y_true, y_pred, n)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    plt = _pyplot()
    size = max(4.0, 0.45 * n + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1.5, size), layout="constrained")
    for ax, values, name, fmt in ((axes[0], cm, "counts", "d"), (axes[1], rates, "row-normalized", ".2f")):
        im = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if fmt == ".2f" else max(int(cm.max()), 1))
        fig.colorbar(im, ax=ax, shrink=0.85, label="examples" if fmt == "d" else "share of true class")
        ax.set(title=name, xlabel="predicted class", ylabel="true class", xticks=range(n), yticks=range(n))
        ax.set_xticklabels(classes, rotation=45 if max(map(len, classes)) > 2 else 0, ha="right" if
                           max(map(len, classes)) > 2 else "center")
        ax.set_yticklabels(classes)
        if n <= 15:
            top = values.max() or 1
            for (i, j), v in np.ndenumerate(values):
                ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7 if n > 10 else 8,
                        color="white" if v > 0.6 * top else "black")
    acc = np.trace(cm) / max(cm.sum(), 1)
    fig.suptitle(f"{title}: {cm.sum()} examples, accuracy {100 * acc:.2f}%")
    return fig


def misclassified_figure(x: np.ndarray, y_true: Any, probs: np.ndarray, classes: Sequence[str], n: int = 16) -> Any:
    """The ``n`` most confidently misclassified examples, each titled with prediction, confidence and truth.

    Args:
        x: (N, C, H, W) images.
        y_true: (N,) labels.
        probs: (N, classes) class probabilities (softmax or sigmoid outputs).
    """
    probs = np.asarray(probs)
    y_true = np.asarray(y_true)
    pred = probs.argmax(axis=1)
    conf = probs[np.arange(len(pred)), pred]
    wrong = np.flatnonzero(pred != y_true)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:n]
    plt = _pyplot()
    cols = 4 if len(wrong) > 4 else max(len(wrong), 1)
    rows = max(-(-len(wrong) // cols), 1)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols + 0.4, 2.1 * rows + 0.8), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if len(wrong) == 0:
        axes[0, 0].text(0.5, 0.5, "no misclassified examples", ha="center", va="center")
    for ax, i in zip(axes.flat, wrong):
        pic, cmap = _image(np.asarray(x[i]))
        ax.imshow(pic, cmap=cmap)
        ax.set_title(f"pred {classes[pred[i]]} ({100 * conf[i]:.0f}%)\ntrue {classes[y_true[i]]}", fontsize=9)
    for ax in list(axes.flat)[len(wrong):] if len(wrong) else []:
        ax.axis("off")
    fig.suptitle(f"most confident mistakes: {len(wrong)} of {int((pred != y_true).sum())} misclassified")
    fig.supxlabel("predicted class (confidence) / true class")
    fig.supylabel("ranked by confidence")
    fig.tight_layout()
    return fig


def _series(rows: Sequence[Dict[str, Any]], key: str) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """layer -> (steps, values) of one norm over ``layers.jsonl`` rows (missing or null values skipped)."""
    out: Dict[str, Tuple[List[int], List[float]]] = {}
    for row in rows:
        for layer, norms in row["layers"].items():
            v = norms.get(key)
            if v is not None:
                steps, values = out.setdefault(layer, ([], []))
                steps.append(row["step"])
                values.append(v)
    return {k: (np.asarray(out[k][0]), np.asarray(out[k][1], dtype=np.float64)) for k in sorted(out, key=_path_key)}


def _path_key(path: str) -> Tuple[Any, ...]:
    """Sort layer paths in params order: "2" before "11", "4.0.1" after "4"."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in path.split("."))


def layer_norms_figure(rows: Sequence[Dict[str, Any]], title: str = "per-layer norms over training",
                       layer_names: Optional[Dict[str, str]] = None) -> Any:
    """Gradient norm, update norm and update/param ratio per layer against the step, log scale.

    Beyond 120 steps each raw curve is drawn faint under its running geometric mean
    over ``steps // 60`` steps.

    Args:
        rows: ``layers.jsonl`` rows (:func:`functional_cnn.tracking.norms_row`).
        layer_names: optional labels per layer path, e.g. ``{"0": "0 conv2d"}``.
    """
    if not rows:
        raise ValueError("layer_norms_figure: no rows; train with track_layers=True (train --track-layers)")
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), layout="constrained")
    labels = layer_names or {}
    n_layers = len({layer for row in rows for layer in row["layers"]})
    colors = [plt.get_cmap("tab20")(i % 20) for i in range(n_layers)] if n_layers > 10 else [
        f"C{i}" for i in range(n_layers)]
    for ax, key, name in ((axes[0], "grad_norm", "gradient norm"), (axes[1], "update_norm", "update norm"),
                          (axes[2], "ratio", "update / param norm")):
        for i, (layer, (steps, values)) in enumerate(_series(rows, key).items()):
            keep = values > 0
            steps, values = steps[keep], values[keep]
            window = max(1, len(values) // 60)  # long runs: faint raw values under a running mean
            if window > 1:
                ax.plot(steps, values, color=colors[i], lw=0.5, alpha=0.25)
                steps = steps[window - 1:]
                values = np.exp(np.convolve(np.log(values), np.ones(window) / window, mode="valid"))
            ax.plot(steps, values, color=colors[i], lw=1.1, label=labels.get(layer, layer))
        ax.set_yscale("log")
        ax.set(title=name, xlabel="step", ylabel=f"{name} (log)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3, which="both")
    axes[2].axhline(1e-3, color="k", ls=":", lw=1, label="1e-3 rule of thumb")
    fig.legend(*axes[2].get_legend_handles_labels(), loc="outside right center", fontsize=8, title="layer")
    fig.suptitle(title)
    return fig

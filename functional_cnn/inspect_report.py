"""``functional-cnn inspect RUN_DIR``: the figures of a run as PNGs and one self-contained HTML page.

:func:`inspect_run` loads a run directory (its config, checkpoint, data set, metrics and,
when it was trained with ``--track-layers``, ``layers.jsonl``), draws the figures of
:mod:`functional_cnn.inspection` and writes::

    RUN_DIR/inspect/curves.png          loss and accuracy per epoch
    RUN_DIR/inspect/filters.png         the first conv layer's filters
    RUN_DIR/inspect/filter_norms.png    per-filter norms of the deeper conv layers (if any)
    RUN_DIR/inspect/feature_maps_K.png  feature maps of test image K after every conv and pool
    RUN_DIR/inspect/confusion.png       test confusion matrix, counts and row-normalized
    RUN_DIR/inspect/misclassified.png   the most confident test mistakes
    RUN_DIR/inspect/layer_norms.png     per-layer gradient/update norms (tracked runs only)
    RUN_DIR/report.html                 all of them, embedded as base64, plus the summary table

Every figure is drawn in memory first and each file is written atomically, so a
failure leaves no half-written file. From a notebook, :func:`run_figures` returns
the figures themselves.
"""
from __future__ import annotations

import base64
import html
import io
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import attrs
import numpy as np

from . import runs
from ._atomic import atomic_write
from .checkpoint import load_checkpoint
from .datasets import load_dataset
from .inspection import (
    _walk,
    confusion_figure,
    conv_layers,
    feature_maps_figure,
    filter_norms_figure,
    filters_figure,
    layer_norms_figure,
    misclassified_figure,
)
from .layer import Layer
from .layers.activations import softmax
from .models import build_model
from .reporting import _pyplot, curves_figure
from .summary import summary
from .tracking import read_layer_rows
from .train import predict

__all__ = ["LoadedRun", "load_run", "run_figures", "write_report", "inspect_run", "REPORT", "INSPECT_DIR",
           "NO_TRACKING_HINT"]

REPORT, INSPECT_DIR = "report.html", "inspect"
NO_TRACKING_HINT = ("This run was trained without layer tracking; for per-layer gradient and update norms, "
                    "train it with: functional-cnn train --track-layers")


@attrs.frozen(eq=False)
class LoadedRun:
    """What a run directory holds, loaded: config, network, params, data, epoch rows, layer rows."""

    run_dir: Path
    config: Dict[str, Any]
    net: Layer
    params: Any = attrs.field(repr=False)
    data: Any = attrs.field(repr=False)
    step: int
    metrics: List[Dict[str, Any]]
    layer_rows: List[Dict[str, Any]]


def load_run(run_dir: Any) -> LoadedRun:
    """Load the checkpoint, config and data of a run directory written by ``functional-cnn train``.

    Raises:
        FileNotFoundError: ``run_dir`` is not a directory, or holds no ``checkpoint.npz`` yet.
        ValueError: the checkpoint has no training config (it was not written by train).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"inspect: {run_dir} is not a run directory (no such folder)")
    path = run_dir / runs.CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"inspect: {run_dir} has no {runs.CHECKPOINT}; train it first "
                                f"(functional-cnn train --out {run_dir})")
    cfg = dict(load_checkpoint(path).config or {})
    if "model" not in cfg or "dataset" not in cfg:
        raise ValueError(f"inspect: {path} holds no training config (model, dataset); it was not written by "
                         f"functional-cnn train")
    data = load_dataset(cfg["dataset"], seed=cfg.get("seed", 0), data_dir=cfg.get("data_dir"),
                        test_fraction=cfg.get("test_fraction"))
    net = build_model(cfg["model"], data.num_classes)
    _, template = net.init(np.random.default_rng(0), data.image_shape)
    ck = load_checkpoint(path, params_like=template)
    rows = [r for r in runs.read_metrics(run_dir) if r.get("step", 0) <= ck.step]
    return LoadedRun(run_dir, cfg, net, ck.params, data, ck.step, rows, read_layer_rows(run_dir, max_step=ck.step))


def _probabilities(run: LoadedRun, out: np.ndarray) -> np.ndarray:
    """Class probabilities from the network outputs: sigmoid outputs as they are, logits through softmax."""
    if run.config.get("loss") == "bce-onehot":
        return out
    return softmax().forward(None, out)[0]


def run_figures(run: LoadedRun, n_images: int = 3) -> Dict[str, Tuple[Any, str]]:
    """The report's figures, by file stem, each with a caption: ``{"filters": (Figure, "..."), ...}``.

    ``layer_norms`` is present only when the run has ``layers.jsonl`` rows.
    """
    data, net, params = run.data, run.net, run.params
    classes = [str(c) for c in data.classes] or [str(i) for i in range(data.num_classes)]
    name = f"{run.config['model']} on {run.config['dataset']}"
    figs: Dict[str, Tuple[Any, str]] = {}
    if run.metrics:
        figs["curves"] = (curves_figure(run.metrics, title=f"{name}: training curves"),
                          "Loss and accuracy per epoch, train (solid) and test (dashed).")
    convs = conv_layers(net, params)
    if convs:
        figs["filters"] = (filters_figure(net, params),
                           "The first conv layer's filters on one diverging scale centred on 0.")
    if len(convs) > 1:
        figs["filter_norms"] = (filter_norms_figure(net, params),
                                "L2 norm of every filter of the deeper conv layers: dead or dominant filters "
                                "stand out.")
    for k in range(min(n_images, len(data.x_test))):
        figs[f"feature_maps_{k}"] = (
            feature_maps_figure(net, params, data.x_test[k],
                                title=f"feature maps of test image {k} (label {classes[data.y_test[k]]})"),
            f"Test image {k} after every conv and pool layer; one colour scale per row.")
    out = predict(net, params, data.x_test)
    probs = _probabilities(run, out)
    pred = probs.argmax(axis=1)
    figs["confusion"] = (confusion_figure(data.y_test, pred, classes),
                         "Rows are the true class, columns the prediction.")
    figs["misclassified"] = (misclassified_figure(data.x_test, data.y_test, probs, classes),
                             "The test images the network got wrong with the highest confidence.")
    if run.layer_rows:
        names = {path: f"{path} {layer.name}" for path, layer, _ in _walk(net, params)}
        figs["layer_norms"] = (layer_norms_figure(run.layer_rows, title=f"{name}: per-layer norms per step",
                                                  layer_names=names),
                               "Per step, for each layer: gradient norm, update norm and update/param ratio "
                               "(log scale).")
    return figs


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "img{max-width:100%;border:1px solid #ddd}figure{margin:1.5em 0}figcaption{color:#555}"
        "pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
        ".hint{background:#fff4d6;padding:.8em;border-left:4px solid #e0a800}")


def write_report(run: LoadedRun, figures: Dict[str, Tuple[Any, str]], path: Optional[Path] = None,
                 png_dir: Optional[Path] = None) -> Path:
    """Write every figure as ``png_dir/<stem>.png`` and one HTML page embedding them as base64.

    Args:
        run: the loaded run (for the config, step and summary table).
        figures: :func:`run_figures`' result.
        path: the HTML file (default ``RUN_DIR/report.html``).
        png_dir: where the PNGs go (default ``RUN_DIR/inspect``).

    Returns:
        The HTML path.
    """
    path = Path(path) if path is not None else run.run_dir / REPORT
    png_dir = Path(png_dir) if png_dir is not None else run.run_dir / INSPECT_DIR
    pngs = {stem: _png(fig) for stem, (fig, _) in figures.items()}  # all drawn before anything is written
    cfg = run.config
    keys = [k for k in ("model", "dataset", "optimizer", "lr", "schedule", "batch_size", "epochs", "seed", "loss")
            if k in cfg]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>inspect: {html.escape(str(run.run_dir))}"
             f"</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(str(cfg['model']))} on {html.escape(str(cfg['dataset']))}</h1>",
             f"<p>Run directory <code>{html.escape(str(run.run_dir))}</code>, checkpoint at step {run.step}.</p>",
             "<table>" + "".join(f"<tr><th>{k}</th><td>{html.escape(str(cfg[k]))}</td></tr>" for k in keys)
             + "</table>"]
    sections = [("Training curves", ["curves"]), ("Filters", ["filters", "filter_norms"]),
                ("Feature maps", sorted(s for s in pngs if s.startswith("feature_maps_"))),
                ("Errors on the test split", ["confusion", "misclassified"]),
                ("Per-layer gradient and update norms", ["layer_norms"])]
    for heading, stems in sections:
        parts.append(f"<h2>{heading}</h2>")
        if heading.startswith("Per-layer") and "layer_norms" not in pngs:
            parts.append(f"<p class='hint'>{html.escape(NO_TRACKING_HINT)}</p>")
        for stem in stems:
            if stem in pngs:
                b64 = base64.b64encode(pngs[stem]).decode()
                parts.append(f"<figure><img src='data:image/png;base64,{b64}' alt='{stem}'>"
                             f"<figcaption>{html.escape(figures[stem][1])} (<code>{INSPECT_DIR}/{stem}.png</code>)"
                             f"</figcaption></figure>")
    table = str(summary(run.net, run.data.image_shape, batch_size=int(cfg.get("batch_size", 1))))
    parts += ["<h2>Layers (fc.summary)</h2>", f"<pre>{html.escape(table)}</pre>", "</body></html>\n"]
    page = "\n".join(parts).encode()
    png_dir.mkdir(parents=True, exist_ok=True)
    for stem, data in pngs.items():
        atomic_write(png_dir / f"{stem}.png", lambda f, d=data: f.write(d))
    atomic_write(path, lambda f: f.write(page))
    return path


def inspect_run(run_dir: Any, n_images: int = 3) -> Tuple[Path, List[str]]:
    """Load ``run_dir``, draw its figures and write the PNGs and ``report.html``.

    Returns:
        The report's path and the PNG stems written.
    """
    run = load_run(run_dir)
    plt = _pyplot()
    figures = run_figures(run, n_images)
    try:
        path = write_report(run, figures)
    finally:
        for fig, _ in figures.values():
            plt.close(fig)
    return path, list(figures)


def cmd_inspect(args: Any, out: Any) -> int:
    """``functional-cnn inspect RUN_DIR``: a run's figures and report (exit 0; 2 without matplotlib)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print('functional-cnn inspect needs matplotlib: pip install "functional_cnn[plot]"', file=sys.stderr)
        return 2
    if args.images < 0:
        raise ValueError(f"--images must be >= 0, got {args.images}")
    path, stems = inspect_run(args.run, n_images=args.images)
    print(f"wrote {len(stems)} figures to {Path(args.run) / INSPECT_DIR} and the report {path}", file=out)
    if "layer_norms" not in stems:
        print(f"note: {NO_TRACKING_HINT}", file=out)
    return 0

"""The ``functional-cnn`` command: train, evaluate, summary, gradcheck, plot, export, sweep, inspect.

``functional-cnn train`` with no arguments trains LeNet-5 on the embedded
``mnist-sample`` digits and writes a run directory (see :mod:`functional_cnn.runs`).
Errors end the program with a one-line message and exit status 2.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from . import losses, optim, runs
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .datasets import DATASETS, DatasetError, load_dataset
from .gradcheck import GradCheckError, check_layer
from .inspect_report import cmd_inspect
from .layer import Layer
from .models import MODELS, build_model
from .reporting import PlotUnavailable, Progress, epoch_line, plot_curves
from .summary import summary
from .sweep_cli import add_sweep_parser, cmd_sweep
from .tracking import LayerLog
from .train import NonFiniteLossError, StepRecord, evaluate, fit

__all__ = ["main", "OPTIMIZERS", "LOSSES"]

# name -> (factory(lr), default learning rate)
OPTIMIZERS: Dict[str, Any] = {
    "sgd": (lambda lr: optim.sgd(lr), 0.05),
    "momentum": (lambda lr: optim.sgd(lr, momentum=0.9), 0.01),
    "nesterov": (lambda lr: optim.sgd(lr, momentum=0.9, nesterov=True), 0.01),
    "adam": (lambda lr: optim.adam(lr), 2e-3),
    "adamw": (lambda lr: optim.adamw(lr, mask=optim.exclude_paths("*.b")), 1e-3),
    "rmsprop": (lambda lr: optim.rmsprop(lr), 1e-3),
    "adagrad": (lambda lr: optim.adagrad(lr), 0.01),
}
LOSSES: Dict[str, Callable] = {
    "cross-entropy": losses.softmax_cross_entropy,
    "bce-onehot": losses.one_hot_binary_cross_entropy,
}
MODEL_LOSS = {"seed2": "bce-onehot"}
DEFAULTS = dict(model="lenet", dataset="mnist-sample", epochs=10, batch_size=32, optimizer="adam", schedule="cosine",
                seed=0)
SCHEDULES = ("cosine", "constant")


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _optimizer(cfg: Dict[str, Any], n_train: int) -> optim.GradientTransformation:
    """The configured optimizer; ``cosine`` decays the rate to 0 over all the run's steps."""
    lr: Any = cfg["lr"]
    if cfg.get("schedule", "constant") == "cosine":
        lr = optim.cosine_decay_schedule(lr, cfg["epochs"] * -(-n_train // cfg["batch_size"]))
    return OPTIMIZERS[cfg["optimizer"]][0](lr)


def _load_data(cfg: Dict[str, Any]) -> Any:
    return load_dataset(cfg["dataset"], seed=cfg["seed"], data_dir=cfg.get("data_dir"),
                        test_fraction=cfg.get("test_fraction"))


def _resolve_train_config(args: argparse.Namespace) -> Dict[str, Any]:
    if args.resume:
        run_dir = Path(args.resume)
        if (run_dir / runs.CONFIG).is_file():
            cfg = runs.read_config(run_dir)
        elif (run_dir / runs.CHECKPOINT).is_file():  # killed before config.json was written: use the copy inside
            cfg = dict(load_checkpoint(run_dir / runs.CHECKPOINT).config or {})
            if "model" not in cfg:
                raise CLIError(f"{run_dir / runs.CHECKPOINT} holds no training config; it was not written by train")
        else:
            raise FileNotFoundError(f"{run_dir} is not a run directory: it has neither {runs.CONFIG} nor "
                                    f"{runs.CHECKPOINT}")
        for key in ("epochs", "max_steps"):
            if getattr(args, key) is not None:
                cfg[key] = getattr(args, key)
        cfg.setdefault("accumulate", 1)  # runs from before --accumulate existed
        if args.accumulate is not None and args.accumulate != cfg["accumulate"]:
            raise CLIError(f"--accumulate {args.accumulate} would change the run in {run_dir}, which was started "
                           f"with --accumulate {cfg['accumulate']}; resume without --accumulate")
        return cfg
    cfg = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in DEFAULTS.items()}
    cfg["lr"] = args.lr if args.lr is not None else OPTIMIZERS[cfg["optimizer"]][1]
    cfg["loss"] = args.loss or MODEL_LOSS.get(cfg["model"], "cross-entropy")
    cfg.update(data_dir=args.data_dir, test_fraction=args.test_fraction, max_steps=args.max_steps)
    if cfg["lr"] < 0:
        raise CLIError(f"--lr must be >= 0, got {cfg['lr']}")
    for key in ("epochs", "batch_size"):
        if cfg[key] < 1:
            raise CLIError(f"--{key.replace('_', '-')} must be >= 1, got {cfg[key]}")
    if cfg["max_steps"] is not None and cfg["max_steps"] < 1:
        raise CLIError(f"--max-steps must be >= 1, got {cfg['max_steps']}")
    cfg["accumulate"] = args.accumulate if args.accumulate is not None else getattr(args, "ranks", 1)
    if cfg["accumulate"] < 1:
        raise CLIError(f"--accumulate must be >= 1, got {cfg['accumulate']}")
    return cfg


def cmd_train(args: argparse.Namespace, out: Any) -> int:
    if not args.data_parallel:
        return _train(args, out, None)
    from .data_parallel import AgreedError, Exchange, world

    timeout = args.exchange_timeout if args.exchange_timeout is not None and args.exchange_timeout > 0 else 120.0
    exchange = Exchange(world(), timeout)  # a bad --exchange-timeout is refused by _train, on every rank at once
    args.ranks = exchange.size
    try:  # rank 0 reports; the others stay quiet unless they alone fail
        return _train(args, out if exchange.rank == 0 else io.StringIO(), exchange)
    except AgreedError:
        raise
    except USER_ERRORS as err:
        exchange.agree(" ".join(str(err).split()))
        raise


def _train(args: argparse.Namespace, out: Any, exchange: Any) -> int:
    root = exchange is None or exchange.rank == 0
    if args.exchange_timeout is not None and not args.exchange_timeout > 0:
        raise CLIError(f"--exchange-timeout must be > 0 seconds, got {args.exchange_timeout}")
    cfg = _resolve_train_config(args)
    if exchange is not None:
        if cfg["accumulate"] % exchange.size:
            raise CLIError(f"--accumulate {cfg['accumulate']} must be a multiple of the {exchange.size} ranks")
        if cfg["batch_size"] % exchange.size:
            raise CLIError(f"--batch-size {cfg['batch_size']} must be divisible by the {exchange.size} ranks")
    data = _load_data(cfg)
    net = build_model(cfg["model"], data.num_classes)
    opt = _optimizer(cfg, len(data.x_train))
    loss = LOSSES[cfg["loss"]]
    _, params = net.init(np.random.default_rng(np.random.SeedSequence([cfg["seed"], 2])), data.image_shape)
    run_dir = Path(args.resume or args.out or f"runs/{cfg['model']}-{cfg['dataset']}-seed{cfg['seed']}")
    state, start, rows = None, 0, []
    if args.resume and (run_dir / runs.CHECKPOINT).exists():
        ck = load_checkpoint(run_dir / runs.CHECKPOINT, params_like=params, opt_state_like=opt.init(params))
        params, state, start = ck.params, ck.opt_state, ck.step
        rows = [r for r in runs.read_metrics(run_dir) if r["step"] <= start]  # rows past the checkpoint: redone
        print(f"resuming {run_dir} at step {start}", file=out)
    elif args.resume:
        print(f"resuming {run_dir}: no checkpoint yet, starting from step 0", file=out)
    elif (run_dir / runs.CHECKPOINT).exists() or (run_dir / runs.CONFIG).exists():
        raise CLIError(f"{run_dir} already holds a run; use --resume {run_dir} or another --out")
    elif run_dir.exists() and not run_dir.is_dir():
        raise CLIError(f"--out {run_dir} exists and is not a directory")
    cfg["track_layers"] = bool(args.track_layers or cfg.get("track_layers", False))  # kept on resume
    cfg["tensorboard"] = bool(args.tensorboard or cfg.get("tensorboard", False))
    layer_log = LayerLog(run_dir, start) if cfg["track_layers"] and root else None
    tb = None
    if cfg["tensorboard"] and root:  # one line naming the extra without tensorboardX, before any write
        from .tb_logging import TensorBoardLogger
        tb = TensorBoardLogger(run_dir / "tensorboard", purge_step=start)
    if exchange is not None:
        exchange.agree(None)  # every rank got this far, or all stop with the first error
    cfg["versions"] = runs.versions()
    print(f"training {cfg['model']} on {data!r} with {cfg['optimizer']} lr={cfg['lr']:g} ({cfg['schedule']}), "
          f"batch {cfg['batch_size']}, {cfg['epochs']} epochs, seed {cfg['seed']} -> {run_dir}", file=out)
    progress = Progress(enabled=not args.quiet and root)
    last = None
    try:
        for rec in fit(net, params, loss, opt, (data.x_train, data.y_train), epochs=cfg["epochs"],
                       batch_size=cfg["batch_size"], seed=cfg["seed"], opt_state=state, start_step=start,
                       max_steps=cfg.get("max_steps"), test_data=(data.x_test, data.y_test) if root else None,
                       accumulate=cfg["accumulate"], comm=exchange and exchange.comm,
                       exchange_timeout=exchange.timeout if exchange else 120.0,
                       track_layers=cfg["track_layers"]):
            if tb is not None:
                tb.log(rec)
            if isinstance(rec, StepRecord):
                if layer_log is not None:
                    layer_log.add(rec)
                progress.step(rec)
                continue
            progress.close()
            first, last = last is None, rec
            rows.append(runs.epoch_metrics(rec))
            if not root:  # only rank 0 writes the run directory
                continue
            # The directory appears only once there is a whole epoch to put in it. Metrics go first: a row
            # past the checkpoint's step is dropped and redone on resume, so a kill between the two loses
            # nothing. config.json follows the checkpoint, which carries a copy of the config anyway.
            run_dir.mkdir(parents=True, exist_ok=True)
            runs.write_metrics(run_dir / runs.METRICS, rows)
            if layer_log is not None:
                layer_log.write()
            save_checkpoint(run_dir / runs.CHECKPOINT, params=rec.params, opt_state=rec.opt_state, step=rec.step,
                            config={k: v for k, v in cfg.items() if k != "versions"})
            if first:
                runs.write_json(run_dir / runs.CONFIG, cfg)
            print(epoch_line(rows[-1], cfg["epochs"]), file=out, flush=True)
    finally:
        progress.close()
        if tb is not None:
            tb.close()
    if rows and root and not args.no_plot:
        try:
            plot_curves(rows, run_dir / runs.CURVES, title=f"{cfg['model']} on {cfg['dataset']}")
        except PlotUnavailable as err:
            print(f"note: no {runs.CURVES}: {err}", file=out)
    if last is not None and last.test_accuracy is not None:
        print(f"test accuracy {100 * last.test_accuracy:.2f}% after {last.step} steps; run saved in {run_dir}",
              file=out)
    return 0


def _checkpoint_path(target: Path) -> Path:
    return target / runs.CHECKPOINT if target.is_dir() else target


def _load_run(args: argparse.Namespace) -> tuple:
    """``(cfg, data, net, params)`` of the run directory or checkpoint ``args.run`` (evaluate, export)."""
    path = _checkpoint_path(Path(args.run))
    raw = load_checkpoint(path)
    cfg = dict(raw.config or {})
    if "model" not in cfg:
        raise CLIError(f"{path} has no model in its config; it was not written by functional-cnn train")
    cfg.update({k: v for k, v in (("dataset", args.dataset), ("data_dir", args.data_dir)) if v is not None})
    data = _load_data(cfg)
    net = build_model(cfg["model"], data.num_classes)
    _, template = net.init(np.random.default_rng(0), data.image_shape)
    return cfg, data, net, load_checkpoint(path, params_like=template).params


def cmd_evaluate(args: argparse.Namespace, out: Any) -> int:
    cfg, data, net, params = _load_run(args)
    res = evaluate(net, params, (data.x_test, data.y_test), args.batch_size, LOSSES[cfg.get("loss", "cross-entropy")])
    acc = "n/a" if res.accuracy is None else f"{100 * res.accuracy:.2f}%"
    print(f"{cfg['model']} on {cfg['dataset']} test ({res.n} examples): loss {res.loss:.4f}  accuracy {acc}", file=out)
    return 0


def _shape(text: str) -> tuple:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a shape like 1,28,28, got {text!r}") from err
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes like 1,28,28, got {text!r}")
    return dims


def cmd_summary(args: argparse.Namespace, out: Any) -> int:
    print(summary(build_model(args.model, args.classes), args.input_shape, batch_size=args.batch_size), file=out)
    return 0


def _leaves(layer: Layer, shape: tuple, rng: np.random.Generator) -> List[tuple]:
    """(layer, in_shape) for every non-combinator layer of a serial network, in order."""
    if layer.name == "serial":
        found = []
        for child in layer.children:
            found += _leaves(child, shape, rng)
            shape = tuple(child.init(rng, shape)[0])
        return found
    return [(layer, shape)]


def cmd_gradcheck(args: argparse.Namespace, out: Any) -> int:
    rng = np.random.default_rng(args.seed)
    failed = 0
    for i, (layer, shape) in enumerate(_leaves(build_model(args.model, args.classes), args.input_shape, rng)):
        report = check_layer(layer, rng, shape, batch_size=2, max_checks=args.max_checks, raise_on_fail=False,
                             x=rng.random((2,) + shape) + 0.05)
        failed += not report.ok
        print(f"[{i}] {report.table()}\n", file=out)
    print(f"{args.model}: {'all layers pass' if not failed else f'{failed} layer(s) FAILED'}", file=out)
    return 1 if failed else 0


def cmd_plot(args: argparse.Namespace, out: Any) -> int:
    run_dir = Path(args.run)
    cfg, rows = runs.read_config(run_dir), runs.read_metrics(run_dir)
    if not rows:
        raise CLIError(f"{run_dir} has no epochs in {runs.METRICS} yet")
    path = plot_curves(rows, Path(args.output) if args.output else run_dir / runs.CURVES,
                       title=f"{cfg.get('model')} on {cfg.get('dataset')}")
    print(f"wrote {path}", file=out)
    return 0


def cmd_export(args: argparse.Namespace, out: Any) -> int:
    from . import onnx_export  # the onnx extra: imported only by this command

    try:
        onnx_export.require_onnx()
    except onnx_export.OnnxUnavailable:
        print(f"functional-cnn export needs onnx: {onnx_export.INSTALL_HINT}", file=sys.stderr)
        return 2
    target = Path(args.onnx)
    if target.is_dir():
        raise CLIError(f"--onnx {target} is a folder; give a file name such as {target / 'model.onnx'}")
    cfg, data, net, params = _load_run(args)
    path = onnx_export.export_onnx(net, params, data.image_shape, target)
    print(f"wrote {path}: {cfg['model']} for input (N, {', '.join(map(str, data.image_shape))}), "
          f"opset {onnx_export.OPSET}, float32", file=out)
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): ``functional-cnn train: error: ...``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="functional-cnn", description="Pure-functional CNNs in NumPy.")
    commands = "{train,evaluate,summary,gradcheck,plot,export,sweep,inspect}"
    sub = p.add_subparsers(dest="command", required=True, metavar=commands, parser_class=_Parser)
    t = sub.add_parser("train", help="train a model and write a run directory")
    t.add_argument("--model", choices=sorted(MODELS), help="network (default lenet)")
    t.add_argument("--dataset", choices=list(DATASETS), help="data set (default mnist-sample)")
    t.add_argument("--epochs", type=int, help="epochs (default 10)")
    t.add_argument("--batch-size", type=int, help="examples per step (default 32)")
    t.add_argument("--optimizer", choices=sorted(OPTIMIZERS), help="optimizer (default adam)")
    t.add_argument("--lr", type=float, help="learning rate (default depends on the optimizer)")
    t.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule over the run (default cosine)")
    t.add_argument("--loss", choices=sorted(LOSSES), help="loss (default depends on the model)")
    t.add_argument("--seed", type=int, help="the one seed: init, split, shuffles (default 0)")
    t.add_argument("--out", help="run directory (default runs/MODEL-DATASET-seedN)")
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR bit-exactly")
    t.add_argument("--max-steps", type=int, help="stop after this many steps in total")
    t.add_argument("--data-dir", help="folder with the IDX files of mnist / fashion-mnist")
    t.add_argument("--test-fraction", type=float, help="held-out share for the bundled sets (default 0.2)")
    t.add_argument("--no-plot", action="store_true", help="do not write curves.png")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--accumulate", type=int, metavar="K",
                   help="micro-batches per step, one update from their gradients (default 1; the rank count "
                        "with --data-parallel, which needs a multiple of it)")
    t.add_argument("--data-parallel", action="store_true",
                   help="share each step's micro-batches among the ranks of mpiexec -n R (bit-identical to "
                        "--accumulate in one process)")
    t.add_argument("--exchange-timeout", type=float, metavar="S",
                   help="with --data-parallel: seconds to wait for the other ranks before aborting (default 120)")
    t.add_argument("--track-layers", action="store_true",
                   help="record per-layer gradient/update/param norms every step in RUN/layers.jsonl")
    t.add_argument("--tensorboard", action="store_true", help="write TensorBoard event files in RUN/tensorboard")
    e = sub.add_parser("evaluate", help="evaluate a run directory or checkpoint on a test set")
    e.add_argument("run", help="run directory or checkpoint.npz")
    e.add_argument("--dataset", choices=list(DATASETS), help="data set (default: the run's)")
    e.add_argument("--data-dir")
    e.add_argument("--batch-size", type=int, default=1000)
    for name, helptext in (("summary", "layers, shapes, parameters and cache sizes of a model"),
                           ("gradcheck", "run the gradient checker on every layer of a model")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--model", choices=sorted(MODELS), default="lenet")
        s.add_argument("--input-shape", type=_shape, default=(1, 28, 28), help="C,H,W (default 1,28,28)")
        s.add_argument("--classes", type=int, default=10)
        if name == "summary":
            s.add_argument("--batch-size", type=int, default=64)
        else:
            s.add_argument("--seed", type=int, default=0)
            s.add_argument("--max-checks", type=int, default=30, help="elements checked per tensor")
    x = sub.add_parser("export", help="write a run's model and params as an ONNX file")
    x.add_argument("run", help="run directory or checkpoint.npz")
    x.add_argument("--onnx", required=True, metavar="FILE", help="ONNX file to write (replaced atomically)")
    x.add_argument("--dataset", choices=list(DATASETS), help="data set giving the input shape (default: the run's)")
    x.add_argument("--data-dir")
    pl = sub.add_parser("plot", help="draw the training curves of a run directory")
    pl.add_argument("run", help="run directory")
    pl.add_argument("--output", help="PNG path (default RUN/curves.png)")
    ins = sub.add_parser("inspect", help="figures of a run (filters, feature maps, errors, layer norms) and an "
                                         "HTML report")
    ins.add_argument("run", help="run directory")
    ins.add_argument("--images", type=int, default=3, help="test images whose feature maps are drawn (default 3)")
    add_sweep_parser(sub, t)  # after every train flag: sweep takes them all, as lists
    return p


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "summary": cmd_summary, "gradcheck": cmd_gradcheck,
            "plot": cmd_plot, "export": cmd_export, "sweep": cmd_sweep,
            "inspect": cmd_inspect}
USER_ERRORS = (CLIError, ValueError, TypeError, FileNotFoundError, NotADirectoryError, PermissionError,
               CheckpointError, DatasetError, NonFiniteLossError, GradCheckError, ImportError)


def main(argv: Optional[Sequence[str]] = None, out: Any = None) -> int:
    """Entry point of ``functional-cnn`` and ``python -m functional_cnn``; returns the exit status."""
    out = sys.stdout if out is None else out
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args, out)
    except USER_ERRORS as err:
        message = " ".join(str(err).split())  # one line
        print(f"functional-cnn {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"functional-cnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

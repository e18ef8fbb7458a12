"""TensorBoard event files from the ``fit`` record stream (the ``tensorboard`` extra: tensorboardX).

:class:`TensorBoardLogger` consumes the records :func:`functional_cnn.fit` yields::

    logger = TensorBoardLogger("runs/my-run/tensorboard")
    for record in fc.fit(..., track_layers=True):
        logger.log(record)
    logger.close()

(or ``for record in logged(fc.fit(...), logdir): ...``). It writes, against the global step:

* every step: ``step/loss``, ``step/accuracy``, ``step/learning_rate``;
* every epoch: ``epoch/loss``, ``epoch/accuracy``, ``epoch/test_loss``,
  ``epoch/test_accuracy``, ``epoch/learning_rate`` (the x value is the global step
  at the end of the epoch, so step and epoch curves share an axis);
* with layer tracking (records carrying ``layer_norms``): every step,
  ``layers/grad_norm/<layer>``, ``layers/update_norm/<layer>`` and
  ``layers/update_ratio/<layer>``; every epoch, a histogram ``weights/<path>`` of each
  trainable params leaf (``histograms=True`` asks for them without tracking).

``functional-cnn train --tensorboard`` writes into ``RUN_DIR/tensorboard``, so the runs of
a sweep sit side by side and ``tensorboard --logdir SWEEP_OUT`` compares them. On
resume the logger is opened with ``purge_step`` = the checkpoint's step: TensorBoard
then hides the events past that step which an interrupted run had already written.
"""
from __future__ import annotations

import math
import secrets
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from .tree import trainable, tree_leaves_with_paths

__all__ = ["TensorBoardLogger", "TensorBoardUnavailable", "logged", "MISSING"]

MISSING = 'TensorBoard logging needs tensorboardX: pip install "functional_cnn[tensorboard]"'


class TensorBoardUnavailable(ImportError):
    """tensorboardX is not installed."""


def _summary_writer() -> Any:
    try:
        from tensorboardX import SummaryWriter
    except ImportError as err:
        raise TensorBoardUnavailable(MISSING) from err
    return SummaryWriter


class TensorBoardLogger:
    """Write the scalars and histograms of ``fit`` records to TensorBoard event files in ``logdir``.

    Args:
        logdir: the folder for the event files (created on the first record).
        histograms: log a weight histogram per trainable leaf at every epoch; ``None``
            (default) does so when the step records carry layer norms (tracking on).
        purge_step: on a resumed run, the step it resumes from; events already written
            at or past it are discarded by TensorBoard.

    Raises:
        TensorBoardUnavailable: tensorboardX is not installed (raised at construction).
    """

    def __init__(self, logdir: Any, *, histograms: Optional[bool] = None, purge_step: Optional[int] = None):
        self._writer_class = _summary_writer()
        if histograms is not None and not isinstance(histograms, bool):
            raise TypeError(f"TensorBoardLogger: histograms must be a bool or None, got {histograms!r}")
        if purge_step is not None and (not isinstance(purge_step, (int, np.integer)) or purge_step < 0):
            raise ValueError(f"TensorBoardLogger: purge_step must be an int >= 0, got {purge_step!r}")
        self.logdir = Path(logdir)
        self._histograms = histograms
        self._purge_step = None if not purge_step else int(purge_step)
        self._writer: Any = None
        self._tracked = False

    def _open(self) -> Any:
        if self._writer is None:
            self.logdir.mkdir(parents=True, exist_ok=True)
            # tensorboardX names files events.out.tfevents.<seconds>.<host><suffix>: two writers opened in the
            # same second (a quick resume) would share a name and the second would overwrite the first. The
            # suffix makes each name unique and, within one second, sorts files by their starting step.
            suffix = f".s{self._purge_step or 0:010d}.{secrets.token_hex(3)}"
            self._writer = self._writer_class(str(self.logdir), purge_step=self._purge_step, flush_secs=30,
                                              filename_suffix=suffix)
        return self._writer

    def _scalar(self, tag: str, value: Optional[float], step: int) -> None:
        if value is not None and math.isfinite(value):
            self._open().add_scalar(tag, float(value), step)

    def log(self, record: Any) -> None:
        """Log one :class:`~functional_cnn.train.StepRecord` or :class:`~functional_cnn.train.EpochRecord`."""
        from .train import EpochRecord, StepRecord

        if isinstance(record, StepRecord):
            self._log_step(record)
        elif isinstance(record, EpochRecord):
            self._log_epoch(record)
        else:
            raise TypeError(f"TensorBoardLogger.log: record must be a StepRecord or EpochRecord, "
                            f"got {type(record).__name__}")

    def _log_step(self, r: Any) -> None:
        self._scalar("step/loss", r.loss, r.step)
        self._scalar("step/accuracy", r.accuracy, r.step)
        self._scalar("step/learning_rate", r.learning_rate, r.step)
        if r.layer_norms is not None:
            self._tracked = True
            for n in r.layer_norms:
                self._scalar(f"layers/grad_norm/{n.layer}", n.grad_norm, r.step)
                self._scalar(f"layers/update_norm/{n.layer}", n.update_norm, r.step)
                self._scalar(f"layers/update_ratio/{n.layer}", n.ratio, r.step)

    def _log_epoch(self, r: Any) -> None:
        for key in ("loss", "accuracy", "test_loss", "test_accuracy", "learning_rate"):
            self._scalar(f"epoch/{key}", getattr(r, key), r.step)
        if self._histograms or (self._histograms is None and self._tracked):
            for path, leaf in tree_leaves_with_paths(trainable(r.params)):
                a = np.asarray(leaf)
                if a.size and a.dtype.kind == "f" and np.isfinite(a).all():
                    self._open().add_histogram(f"weights/{path}", a.astype(np.float64).ravel(), r.step)
        self.flush()

    def flush(self) -> None:
        """Push what is buffered to disk."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file (a later ``log`` opens a new one)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def logged(records: Iterable[Any], logdir: Any, **kwargs: Any) -> Iterator[Any]:
    """Pass ``fit``'s records through unchanged, logging each to TensorBoard in ``logdir``.

    ``kwargs`` go to :class:`TensorBoardLogger`; the event file is closed when the
    stream ends or the generator is closed.
    """
    logger = TensorBoardLogger(logdir, **kwargs)
    try:
        for record in records:
            logger.log(record)
            yield record
    finally:
        logger.close()

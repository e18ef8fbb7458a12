"""TensorBoard logging: the library consumer of the fit stream and ``train --tensorboard``.

The event files are read back without TensorBoard itself: each is a TFRecord stream
(``uint64 length, uint32 masked crc(length), data, uint32 masked crc(data)``) of
``Event`` protobufs, parsed with tensorboardX's own proto classes and crc; a bad
checksum fails the test.
"""
import io
import struct
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import functional_cnn as fc
from functional_cnn.cli import main
from functional_cnn.train import EpochRecord, StepRecord

pytest.importorskip("tensorboardX")
from tensorboardX.proto.event_pb2 import Event  # noqa: E402
from tensorboardX.record_writer import masked_crc32c  # noqa: E402

from functional_cnn.tb_logging import MISSING, TensorBoardLogger, TensorBoardUnavailable, logged  # noqa: E402

TINY = ["train", "--model", "seed1", "--dataset", "digits", "--batch-size", "64", "--quiet", "--no-plot"]


def read_events(logdir: Path):
    """Every Event of every event file under ``logdir``, in file order."""
    events = []
    files = sorted(Path(logdir).rglob("events.out.tfevents.*"))
    assert files, f"no event file under {logdir}"
    for path in files:
        data, i = path.read_bytes(), 0
        while i < len(data):
            header = data[i:i + 8]
            (length,) = struct.unpack("<Q", header)
            assert struct.unpack("<I", data[i + 8:i + 12])[0] == masked_crc32c(header)
            body = data[i + 12:i + 12 + length]
            assert struct.unpack("<I", data[i + 12 + length:i + 16 + length])[0] == masked_crc32c(body)
            events.append(Event.FromString(body))
            i += 16 + length
    return events


def scalars(events):
    """tag -> [(step, value)] of the scalar summaries."""
    out = {}
    for e in events:
        for v in e.summary.value:
            if v.HasField("simple_value"):
                out.setdefault(v.tag, []).append((e.step, v.simple_value))
    return out


def histograms(events):
    return Counter(v.tag for e in events for v in e.summary.value if v.HasField("histo"))


def tiny_fit(track, epochs=2):
    net = fc.serial(fc.conv2d(2, 3), fc.relu(), fc.flatten(), fc.dense(3))
    rng = np.random.default_rng(0)
    x, y = rng.random((20, 1, 6, 6), dtype=np.float32), rng.integers(0, 3, 20)
    _, params = net.init(rng, (1, 6, 6))
    return fc.fit(net, params, fc.softmax_cross_entropy, fc.sgd(0.1), (x, y), epochs=epochs, batch_size=8, seed=0,
                  test_data=(x, y), track_layers=track)


def test_logger_writes_step_epoch_layer_scalars_and_histograms(tmp_path):
    records = []
    with TensorBoardLogger(tmp_path / "tb") as logger:
        for rec in tiny_fit(track=True):
            logger.log(rec)
            records.append(rec)
    steps = [r for r in records if isinstance(r, StepRecord)]
    epochs = [r for r in records if isinstance(r, EpochRecord)]
    assert len(steps) == 6 and len(epochs) == 2
    s = scalars(read_events(tmp_path / "tb"))
    for tag in ("step/loss", "step/accuracy", "step/learning_rate"):
        assert [step for step, _ in s[tag]] == [1, 2, 3, 4, 5, 6], tag
    np.testing.assert_allclose([v for _, v in s["step/loss"]], [r.loss for r in steps], rtol=1e-6)
    for tag in ("epoch/loss", "epoch/accuracy", "epoch/test_loss", "epoch/test_accuracy", "epoch/learning_rate"):
        assert [step for step, _ in s[tag]] == [3, 6], tag
    np.testing.assert_allclose([v for _, v in s["epoch/test_accuracy"]], [r.test_accuracy for r in epochs], rtol=1e-6)
    for layer in ("0", "3"):
        for kind in ("grad_norm", "update_norm", "update_ratio"):
            assert len(s[f"layers/{kind}/{layer}"]) == 6
    np.testing.assert_allclose([v for _, v in s["layers/grad_norm/3"]],
                               [r.layer_norms[1].grad_norm for r in steps], rtol=1e-6)
    assert histograms(read_events(tmp_path / "tb")) == {"weights/0.w": 2, "weights/0.b": 2, "weights/3.w": 2,
                                                        "weights/3.b": 2}


def test_without_tracking_no_layer_scalars_and_no_histograms(tmp_path):
    seen = list(logged(tiny_fit(track=False), tmp_path / "tb"))
    assert len(seen) == 8  # the records pass through unchanged
    events = read_events(tmp_path / "tb")
    tags = set(scalars(events))
    assert "step/loss" in tags and "epoch/loss" in tags
    assert not any(t.startswith("layers/") for t in tags) and not histograms(events)


def test_histograms_on_request_without_tracking(tmp_path):
    list(logged(tiny_fit(track=False, epochs=1), tmp_path / "tb", histograms=True))
    assert histograms(read_events(tmp_path / "tb"))["weights/0.w"] == 1


def test_logger_rejects_other_records_and_bad_arguments(tmp_path):
    logger = TensorBoardLogger(tmp_path / "tb")
    with pytest.raises(TypeError, match=r"TensorBoardLogger.log: record must be a StepRecord or EpochRecord, got dict"):
        logger.log({"loss": 1.0})
    with pytest.raises(ValueError, match=r"TensorBoardLogger: purge_step must be an int >= 0, got -1"):
        TensorBoardLogger(tmp_path / "tb", purge_step=-1)
    with pytest.raises(TypeError, match=r"TensorBoardLogger: histograms must be a bool or None, got 'yes'"):
        TensorBoardLogger(tmp_path / "tb", histograms="yes")
    assert not (tmp_path / "tb").exists()  # nothing logged, nothing created


def test_train_tensorboard_writes_events_in_the_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    code = main(TINY + ["--epochs", "2", "--max-steps", "30", "--tensorboard", "--track-layers", "--out", str(run_dir)],
                out=io.StringIO())
    assert code == 0
    events = read_events(run_dir / "tensorboard")
    s = scalars(events)
    assert [step for step, _ in s["step/loss"]] == list(range(1, 31))
    assert [step for step, _ in s["epoch/test_accuracy"]] == [23, 30]  # a full epoch of 23 steps, then 7 more
    assert len(s["layers/grad_norm/0"]) == 30 and len(s["layers/update_ratio/4"]) == 30
    assert histograms(events)["weights/4.w"] == 2

    # resume: the new file starts with a purge at the checkpoint's step, then logs only the new steps
    code = main(["train", "--resume", str(run_dir), "--max-steps", "40", "--quiet", "--no-plot"], out=io.StringIO())
    assert code == 0
    files = sorted((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 2  # a resume within the same second must not overwrite the first file
    later = read_events(files[1].parent)[len(events):]
    assert [step for step, _ in scalars(later)["step/loss"]] == list(range(31, 41))
    assert any(e.session_log.status == e.session_log.START and e.step == 30 for e in later)


def test_missing_tensorboardx_one_line_exit_2_nothing_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    run_dir = tmp_path / "run"
    code = main(TINY + ["--max-steps", "2", "--tensorboard", "--out", str(run_dir)], out=io.StringIO())
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"functional-cnn train: error: {MISSING}"]
    assert 'pip install "functional_cnn[tensorboard]"' in MISSING
    assert not run_dir.exists()
    with pytest.raises(TensorBoardUnavailable, match=r"needs tensorboardX: pip install"):
        TensorBoardLogger(tmp_path / "tb")


def test_two_loggers_in_one_folder_never_share_a_file(tmp_path):
    # tensorboardX names files by the second they were opened: without a unique suffix the second
    # logger of the same second would overwrite the first one's file.
    records = list(tiny_fit(track=False, epochs=1))
    for purge in (0, 3):
        with TensorBoardLogger(tmp_path / "tb", purge_step=purge) as tb:
            for rec in records:
                tb.log(rec)
    files = sorted((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(files) == 2
    assert [step for step, _ in scalars(read_events(tmp_path / "tb"))["step/loss"]] == [1, 2, 3, 1, 2, 3]

"""Faults: divergence never reaches a checkpoint, and SIGKILL at random moments never costs more
than the epoch in flight.

* ``save_checkpoint`` refuses NaN/Inf leaves, naming the first path; the CLI exits 2 naming the
  step and leaves the last good checkpoint as it was.
* A writer saving ~2.6 MB checkpoints in a tight loop is SIGKILLed at seeded random moments,
  most of them mid-write: the checkpoint always loads and holds the last step it reported
  (or the one after), and the temporary files of killed writers are cleaned by the next save.
* ``python -m functional_cnn train`` is SIGKILLed at random moments and resumed until it
  finishes: the final params and optimizer state equal an uninterrupted run's bit for bit.
"""
import io
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import fuzz_scale
from functional_cnn import fingerprint
from functional_cnn._atomic import atomic_write, stale_temp_files, temp_name
from functional_cnn.checkpoint import load_checkpoint, save_checkpoint
from functional_cnn.cli import _optimizer, main
from functional_cnn.models import build_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def scale(request):
    return fuzz_scale(request.config.getoption("--fuzz"))


def temps(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp"))


# --- never a non-finite checkpoint ------------------------------------------------------------

@pytest.mark.parametrize("params, opt_state, needle", [
    ({"w": np.array([1.0, np.nan, np.inf], np.float32)}, None,
     r"params\.w holds 2 NaN/Inf value\(s\) of 3 \(first nan at index \(1,\)\) at step 7"),
    ((np.ones(2, np.float16), {"m": np.full((2, 2), np.inf)}), None,
     r"params\.1\.m holds 4 NaN/Inf value\(s\) of 4 \(first inf at index \(0, 0\)\)"),
    ({"w": np.ones(3)}, ({"mu": np.ones(3)}, {"nu": np.array([0, -np.inf])}),
     r"opt_state\.1\.nu holds 1 NaN/Inf value\(s\) of 2 \(first -inf at index \(1,\)\)"),
    ({"w": np.ones(3)}, {"count": float("nan")},
     r"opt_state\.count holds 1 NaN/Inf value\(s\) of 1 \(first nan at index \(\)\)"),
    ({"z": np.array([1 + 1j, complex(0, np.inf)])}, None, r"params\.z holds 1 .* at index \(1,\)"),
])
def test_save_refuses_nan_and_inf_naming_the_first_path(tmp_path, params, opt_state, needle):
    path = tmp_path / "c.npz"
    save_checkpoint(path, params={"w": np.zeros(1)}, step=3)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=needle + ".*allow_nonfinite=True"):
        save_checkpoint(path, params=params, opt_state=opt_state, step=7)
    assert path.read_bytes() == before and temps(tmp_path) == []  # nothing written, nothing left
    save_checkpoint(path, params=params, opt_state=opt_state, step=7, allow_nonfinite=True)
    assert load_checkpoint(path).step == 7


def test_integers_and_empty_arrays_are_never_non_finite(tmp_path):
    tree = {"i": np.array([2**62]), "e": np.zeros((0, 3)), "n": 5, "b": True}
    save_checkpoint(tmp_path / "c.npz", params=tree)
    assert load_checkpoint(tmp_path / "c.npz").params["n"] == 5


def test_allow_nonfinite_must_be_a_bool(tmp_path):
    with pytest.raises(TypeError, match="allow_nonfinite must be True or False, got 1"):
        save_checkpoint(tmp_path / "c.npz", params=None, allow_nonfinite=1)
    assert list(tmp_path.iterdir()) == []


TINY = ["train", "--model", "seed1", "--dataset", "digits", "--batch-size", "16", "--quiet", "--no-plot"]


def cli(capsys, argv):
    with np.errstate(all="ignore"):  # the diverging runs overflow on purpose
        code = main(argv, out=io.StringIO())
    return code, capsys.readouterr().err.strip().splitlines()


def templates(run_dir):
    """Fresh params and optimizer state shaped like the run's (seed1 on digits: 1,438 training examples)."""
    cfg = json.loads((Path(run_dir) / "config.json").read_text())
    _, params = build_model("seed1", 10).init(np.random.default_rng(0), (1, 8, 8))
    return params, _optimizer(cfg, 1438).init(params)


def test_diverging_resume_exits_2_naming_the_step_and_keeps_the_checkpoint(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli(capsys, TINY + ["--optimizer", "sgd", "--epochs", "1", "--out", str(run_dir)])[0] == 0
    ck_path = run_dir / "checkpoint.npz"
    before, metrics = ck_path.read_bytes(), (run_dir / "metrics.jsonl").read_text()
    cfg = json.loads((run_dir / "config.json").read_text())
    cfg["lr"] = 1e30  # as if edited by hand: the resumed run diverges at once
    (run_dir / "config.json").write_text(json.dumps(cfg))
    code, err = cli(capsys, ["train", "--resume", str(run_dir), "--epochs", "3", "--quiet", "--no-plot"])
    assert code == 2 and len(err) == 1
    assert "fit: loss is nan at step 92 (epoch 2, batch 2 of 90)" in err[0]
    assert ck_path.read_bytes() == before and (run_dir / "metrics.jsonl").read_text() == metrics
    params, opt_state = templates(run_dir)
    ck = load_checkpoint(ck_path, params_like=params, opt_state_like=opt_state)
    assert ck.step == 90 and np.isfinite(ck.params[0].w).all()
    assert temps(run_dir) == []


def test_a_fresh_run_that_diverges_writes_no_checkpoint(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, err = cli(capsys, TINY + ["--optimizer", "sgd", "--lr", "1e30", "--epochs", "2", "--out", str(run_dir)])
    assert code == 2 and len(err) == 1 and "loss is nan at step 2 (epoch 1" in err[0]
    assert not run_dir.exists()


def test_params_that_blow_up_on_the_last_step_are_not_saved(tmp_path, capsys):
    # The loss of step 1 is computed before its update, so fit cannot see the overflow;
    # save_checkpoint does, and the CLI reports it with the step.
    run_dir = tmp_path / "run"
    code, err = cli(capsys, TINY + ["--optimizer", "sgd", "--lr", "1e300", "--max-steps", "1", "--out", str(run_dir)])
    assert code == 2 and len(err) == 1
    assert "save_checkpoint: params.0.w holds 36 NaN/Inf value(s) of 36" in err[0] and "at step 1;" in err[0]
    assert not (run_dir / "checkpoint.npz").exists() and temps(run_dir) == []


# --- temporary files of killed writers ----------------------------------------------------------

def dead_pid():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_stale_temp_files_of_dead_writers_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "checkpoint.npz"
    mine = temp_name(target).name
    pid, host, _ = mine[len(".checkpoint.npz."):-len(".tmp")].split("-")
    assert pid == str(os.getpid())
    dead = f".checkpoint.npz.{dead_pid()}-{host}-abc123.tmp"
    keep = [f".checkpoint.npz.{os.getppid()}-{host}-abc123.tmp",  # a live writer
            f".checkpoint.npz.{os.getpid()}-{host}-abc123.tmp",  # this process (another thread?)
            f".checkpoint.npz.{dead_pid()}-00000000-abc123.tmp" if host != "00000000" else "x.tmp",  # other host
            f".metrics.jsonl.{dead_pid()}-{host}-abc123.tmp",  # another target
            ".checkpoint.npz.oldstyle.tmp", "notes.tmp"]
    for name in [dead] + keep:
        (tmp_path / name).write_bytes(b"partial")
    assert [p.name for p in stale_temp_files(target)] == [dead]
    atomic_write(target, lambda f: f.write(b"whole"))
    assert temps(tmp_path) == sorted(keep) and target.read_bytes() == b"whole"


def test_loading_ignores_and_keeps_temp_files(tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, params={"w": np.ones(2)}, step=1)
    junk = tmp_path / f".c.npz.{dead_pid()}-{temp_name(path).name.split('-')[1]}-ff.tmp"
    junk.write_bytes(b"PK\x03\x04 half a checkpoint")
    assert load_checkpoint(path).step == 1 and junk.exists()  # loading never writes or deletes


# --- SIGKILL during a tight loop of saves -------------------------------------------------------

BASE = {k: np.random.default_rng(i).standard_normal(shape).astype(np.float32)
        for i, (k, shape) in enumerate((("w", (512, 1024)), ("b", (1024,)), ("v", (256, 512))))}


def state_at(step):
    """Params and optimizer state of a fictitious run at ``step``: exact, so comparable bit for bit."""
    params = {k: v + np.float32(step) for k, v in BASE.items()}
    return params, (np.int64(step), {k: v * np.float32(0.5) for k, v in params.items()})


def _save_forever(path, fd, step):  # the child: save, report, repeat
    while True:
        step += 1
        params, opt_state = state_at(step)
        save_checkpoint(path, params=params, opt_state=opt_state, step=step)
        os.write(fd, f"{step}\n".encode())


def read_lines(fd, timeout):
    """Everything the child wrote before ``fd`` closed (or ``timeout`` passed), as ints."""
    data, end = b"", time.monotonic() + timeout
    while time.monotonic() < end and select.select([fd], [], [], max(0.0, end - time.monotonic()))[0]:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return [int(x) for x in data.split()]


def test_sigkill_mid_save_always_leaves_a_loadable_latest_checkpoint(tmp_path, scale):
    path = tmp_path / "checkpoint.npz"
    params_like, opt_like = state_at(0)
    save_checkpoint(path, params=params_like, opt_state=opt_like, step=0)
    rng = np.random.default_rng(20240601)
    kills, mid_write, step = 15 * scale, 0, 0
    for _ in range(kills):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child never returns)
            try:
                os.close(r)
                _save_forever(path, w, step)
            finally:
                os._exit(1)
        os.close(w)
        first = read_lines_until_one(r)
        time.sleep(rng.uniform(0.0, 0.05))  # ~3 saves of ~17 ms each
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        reported = first + read_lines(r, 5.0)
        os.close(r)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        left = temps(tmp_path)
        mid_write += bool(left)
        assert len(left) <= 1
        ck = load_checkpoint(path, params_like=params_like, opt_state_like=opt_like)
        assert ck.step in (reported[-1], reported[-1] + 1)  # the last reported save, or one whose report was cut
        assert fingerprint((ck.params, ck.opt_state)) == fingerprint(state_at(ck.step))
        step = ck.step
    assert mid_write >= max(1, kills // 10), f"only {mid_write} of {kills} kills landed mid-write"
    print(f"\n{kills} kills of a saving loop, {mid_write} mid-write (a temporary file left), last step {step}")
    params, opt_state = state_at(step + 1)
    save_checkpoint(path, params=params, opt_state=opt_state, step=step + 1)
    assert temps(tmp_path) == []  # the killed writers' temporary files are gone


def read_lines_until_one(fd):
    """Block until the child reports its first save (so the kill lands inside the loop)."""
    data = b""
    while b"\n" not in data:
        assert select.select([fd], [], [], 30)[0], "the writer reported nothing in 30 s"
        chunk = os.read(fd, 4096)
        assert chunk, "the writer died before its first save"
        data += chunk
    done, _, rest = data.rpartition(b"\n")
    assert not rest
    return [int(x) for x in done.split()]


# --- SIGKILL during `functional-cnn train`, then --resume ------------------------------------------

EPOCHS = 8
RUN = TINY + ["--epochs", str(EPOCHS), "--seed", "3"]


def start_cli(argv, cwd, stderr):
    """The CLI in a child process; its stdout a pipe to read line by line, its stderr into the open file ``stderr``
    (a second pipe could fill up and stall the child while the test blocks on stdout)."""
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path)
    return subprocess.Popen([sys.executable, "-m", "functional_cnn", *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=stderr, text=True)


def finish(proc, seconds=120):
    """The rest of ``proc``'s stdout, read through the same buffered pipe its earlier lines came from, once it
    exits. ``communicate()`` would read the raw descriptor and lose any lines ``readline()`` had already
    buffered (the last line of a run that printed its last two lines at once). Kills ``proc`` if it outlives
    ``seconds``; returns ``(rest, timed_out)``."""
    fired = threading.Event()

    def overdue():
        fired.set()
        proc.kill()

    timer = threading.Timer(seconds, overdue)
    timer.start()
    try:
        rest = proc.stdout.read()
        proc.stdout.close()
        proc.wait()
    finally:
        timer.cancel()
    return rest, fired.is_set()


def test_sigkill_during_training_then_resume_is_bit_exact(tmp_path, scale, capsys):
    ref = tmp_path / "reference"
    assert cli(capsys, RUN + ["--out", str(ref)])[0] == 0
    reference = load_checkpoint(ref / "checkpoint.npz")
    want = fingerprint((reference.params, reference.opt_state))
    total = reference.step
    assert total == EPOCHS * 90
    rng = np.random.default_rng(7)
    kills, finished, config_only, step_after_kill = 8 * scale, 0, 0, []
    run_dir, chain, last_step = None, 0, -1
    while kills or run_dir is not None:
        if run_dir is None:  # a new chain: fresh run directory
            chain += 1
            run_dir, last_step = tmp_path / f"run{chain}", -1
        ck_path = run_dir / "checkpoint.npz"
        if (run_dir / "config.json").exists() and not ck_path.exists():
            # Killed between config.json and the first checkpoint: the CLI can neither resume
            # this directory nor train into it again, so start it over (reported as a CLI gap).
            config_only += 1
            for p in run_dir.iterdir():
                p.unlink()
            run_dir.rmdir()
        argv = (["train", "--resume", str(run_dir), "--quiet", "--no-plot"] if ck_path.exists()
                else RUN + ["--out", str(run_dir)])
        err_path = tmp_path / "stderr.txt"
        err_file = open(err_path, "w")
        proc = start_cli(argv, tmp_path, err_file)
        first = proc.stdout.readline()
        assert first.startswith(("training", "resuming")), (first, err_path.read_text())
        consumed = []
        if kills:
            # Kill at a point tied to the run's progress, not to wall time (a busy machine slows every epoch):
            # after 0 to EPOCHS - 1 more epoch lines, then a random part of one epoch's duration.
            epochs_to_wait, seen, tick, epoch_seconds = int(rng.integers(0, EPOCHS)), 0, time.monotonic(), 0.1
            while seen < epochs_to_wait:
                line = proc.stdout.readline()
                if not line:  # the run finished first
                    break
                consumed.append(line)
                if line.startswith("epoch"):
                    seen += 1
                    epoch_seconds, tick = time.monotonic() - tick, time.monotonic()
            time.sleep(rng.uniform(0.0, 1.0) * epoch_seconds)
            proc.send_signal(signal.SIGKILL)
        rest, timed_out = finish(proc)
        err_file.close()
        err = err_path.read_text()
        assert not timed_out, f"the CLI ran past 120 s: {err}"
        out = "".join(consumed) + rest
        assert proc.returncode in (0, -signal.SIGKILL), err
        killed = proc.returncode == -signal.SIGKILL
        kills -= killed
        if ck_path.exists():
            params, opt_state = templates(run_dir)
            ck = load_checkpoint(ck_path, params_like=params, opt_state_like=opt_state)
            assert ck.step % 90 == 0 and last_step <= ck.step <= total  # whole epochs, never backwards
            last_step = ck.step
        if killed:
            step_after_kill.append(max(last_step, 0))
        if ck_path.exists() and last_step == total:
            if not killed:
                assert "test accuracy" in out
            got = load_checkpoint(ck_path)
            assert fingerprint((got.params, got.opt_state)) == want, f"chain {chain} differs from the reference"
            assert temps(run_dir) == []
            finished += 1
            run_dir = None
    assert finished >= 1 and len(step_after_kill) == 8 * scale
    assert len(set(step_after_kill)) >= 3, step_after_kill  # the kills landed at various points of the run
    print(f"\n{8 * scale} kills over {chain} chains, {finished} finished bit-exact; checkpoint steps after each kill: "
          f"{step_after_kill}; killed between config.json and the first checkpoint: {config_only}")

"""Checkpoints: bit-exact round trips, atomic writes, and every way a file can be bad."""
import io
import json
import os
import zipfile

import attrs
import numpy as np
import pytest

import functional_cnn.checkpoint as ck_mod
from functional_cnn._atomic import atomic_write
from functional_cnn.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from functional_cnn.layer import param_field, state_field
from functional_cnn.tree import tree_leaves, tree_paths, tree_structure


@attrs.frozen(eq=False)
class DenseP:
    w: np.ndarray = param_field()
    b: np.ndarray = param_field()


@attrs.frozen(eq=False)
class NormP:
    gamma: np.ndarray = param_field()
    beta: np.ndarray = param_field()
    mean: np.ndarray = state_field()
    var: np.ndarray = state_field()


@attrs.frozen(eq=False)
class MomentState:
    count: object
    mu: object
    nu: object


def make_params(rng, hidden=4, dtype=np.float32):
    return (
        DenseP(rng.standard_normal((3, hidden)).astype(dtype), rng.standard_normal(hidden).astype(dtype)),
        None,
        NormP(np.ones(hidden, dtype), np.zeros(hidden, dtype),
              rng.standard_normal(hidden).astype(dtype), rng.random(hidden).astype(dtype)),
    )


def make_opt_state(params):
    moments = (DenseP(params[0].w * 0.5, params[0].b * 0.5), None,
               NormP(params[2].gamma * 2, params[2].beta, None, None))
    return (MomentState(np.array(7, np.int32), moments, moments), np.int64(11), 3, 0.25, True)


@pytest.fixture
def setup(tmp_path):
    rng = np.random.default_rng(42)
    params = make_params(rng)
    opt_state = make_opt_state(params)
    path = tmp_path / "ckpt.npz"
    return path, params, opt_state


def assert_bit_exact(a, b):
    assert type(a) is type(b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    else:
        assert a == b


def test_round_trip_with_templates_is_bit_exact(setup):
    path, params, opt_state = setup
    rng = np.random.default_rng(7)
    rng.standard_normal(5)
    save_checkpoint(path, params=params, opt_state=opt_state, rng=rng, step=123,
                    config={"lr": 0.1, "layers": [3, 4], "beta": np.float32(0.5)}, extra={"acc": np.float64(0.75)})
    like_p, like_o = make_params(np.random.default_rng(0)), make_opt_state(make_params(np.random.default_rng(1)))
    ck = load_checkpoint(path, params_like=like_p, opt_state_like=like_o)
    assert isinstance(ck, Checkpoint)
    assert tree_structure(ck.params) == tree_structure(params)
    assert tree_structure(ck.opt_state) == tree_structure(opt_state)
    saved, loaded = tree_leaves(params) + tree_leaves(opt_state), tree_leaves(ck.params) + tree_leaves(ck.opt_state)
    for a, b in zip(saved, loaded, strict=True):
        assert_bit_exact(a, b)
        if isinstance(b, np.ndarray):
            assert not b.flags.writeable
    count = ck.opt_state[0].count
    assert isinstance(count, np.ndarray) and count.shape == () and count.dtype == np.int32  # 0-d stays 0-d
    assert ck.params[1] is None and ck.params[2].mean is not None  # state fields restored
    assert ck.step == 123
    assert ck.config == {"lr": 0.1, "layers": [3, 4], "beta": 0.5} and ck.extra == {"acc": 0.75}
    assert np.array_equal(ck.rng.standard_normal(100), rng.standard_normal(100))  # the stream continues
    assert ck.manifest["format"] == "functional_cnn.checkpoint" and ck.manifest["version"] == 1


def test_round_trip_without_templates_gives_dicts_by_path(setup):
    path, params, opt_state = setup
    save_checkpoint(path, params=params)
    ck = load_checkpoint(path)
    assert list(ck.params) == tree_paths(params)
    assert ck.params["0.w"].tobytes() == params[0].w.tobytes()
    assert ck.opt_state is None and ck.rng is None and ck.step == 0 and ck.config is None


def test_spawned_generators_also_continue(tmp_path):
    rng = np.random.default_rng(np.random.SeedSequence(5, spawn_key=(2,)))
    rng.spawn(1)
    save_checkpoint(tmp_path / "c.npz", params=None, rng=rng)
    restored = load_checkpoint(tmp_path / "c.npz").rng
    assert [g.random() for g in restored.spawn(2)] == [g.random() for g in rng.spawn(2)]


@pytest.mark.parametrize("bit_generator", ["PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"])
def test_every_bit_generator_continues(tmp_path, bit_generator):
    rng = np.random.Generator(getattr(np.random, bit_generator)(3))
    rng.integers(0, 10, 17)
    save_checkpoint(tmp_path / "c.npz", params=None, rng=rng)
    assert np.array_equal(load_checkpoint(tmp_path / "c.npz").rng.integers(0, 2**62, 50), rng.integers(0, 2**62, 50))


def test_unusual_arrays_round_trip(tmp_path):
    tree = {
        "f16": np.array([1.5, -0.0, np.inf], np.float16),
        "nan": np.frombuffer(np.array([0x7FF8000000000123], np.uint64).tobytes(), np.float64),  # NaN payload
        "big_endian": np.arange(4, dtype=">f4"),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "strided": np.arange(10)[::3],
        "empty": np.zeros((0, 3), np.float32),
        "complex": np.array([1 + 2j]),
        "bool": np.array([True, False]),
    }
    save_checkpoint(tmp_path / "c.npz", params=tree, allow_nonfinite=True)  # inf and NaN on purpose
    got = load_checkpoint(tmp_path / "c.npz", params_like=tree).params
    for key, arr in tree.items():
        assert got[key].dtype == arr.dtype and got[key].shape == arr.shape
        assert got[key].tobytes() == arr.tobytes(), key


def test_file_is_deterministic_and_a_plain_npz(setup, tmp_path):
    path, params, opt_state = setup
    save_checkpoint(path, params=params, opt_state=opt_state, step=3)
    save_checkpoint(tmp_path / "again.npz", params=params, opt_state=opt_state, step=3)
    assert path.read_bytes() == (tmp_path / "again.npz").read_bytes()
    with np.load(path, allow_pickle=False) as npz:
        assert "params/0.w" in npz.files and "opt_state/0.count" in npz.files
        manifest = json.loads(npz["manifest.json"].tobytes())
    assert manifest["step"] == 3 and len(manifest["sha256"]) == 64
    assert {"key": "params/0.w", "dtype": "<f4", "shape": [3, 4], "kind": "ndarray"} in manifest["arrays"]


# --- bad arguments to save ---------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(params={"a": "text"}), TypeError, "leaf params.a must be an array or a number, got str"),
    (dict(params=(np.array([{}], dtype=object),)), TypeError, "leaf params.0 has dtype object"),
    (dict(params=None, opt_state={"n": 2**70}), ValueError, "opt_state.n = 1180591620717411303424 does not fit"),
    (dict(params=None, config={"s": {1, 2}}), TypeError, "config must be JSON-serialisable: set"),
    (dict(params=None, extra=object()), TypeError, "extra must be JSON-serialisable"),
    (dict(params=None, rng=np.random.RandomState(0)), TypeError,
     "rng must be a numpy.random.Generator or None, got RandomState"),
    (dict(params=None, step=-1), ValueError, "save_checkpoint: step must be an integer >= 0, got -1"),
    (dict(params=None, step=1.0), TypeError, "step must be an integer"),
])
def test_save_rejects_bad_input(tmp_path, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        save_checkpoint(tmp_path / "c.npz", **kwargs)
    assert os.listdir(tmp_path) == []


# --- atomicity -----------------------------------------------------------------------

def test_failed_replace_leaves_previous_checkpoint_and_no_temp_file(setup, monkeypatch):
    path, params, opt_state = setup
    save_checkpoint(path, params=params, step=1)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, params=params, step=2)
    monkeypatch.undo()
    assert os.listdir(path.parent) == ["ckpt.npz"]
    assert path.read_bytes() == before and load_checkpoint(path).step == 1


def test_failure_mid_write_leaves_previous_checkpoint(setup, monkeypatch):
    path, params, opt_state = setup
    save_checkpoint(path, params=params, step=1)
    real = np.lib.format.write_array
    calls = []

    def fail_on_third(fp, arr, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # even an interrupt cleans up
        return real(fp, arr, **kw)

    monkeypatch.setattr(np.lib.format, "write_array", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, params=params, opt_state=opt_state, step=2)
    monkeypatch.undo()
    assert os.listdir(path.parent) == ["ckpt.npz"]
    assert load_checkpoint(path).step == 1


def test_missing_folder_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such file or directory"):
        save_checkpoint(tmp_path / "no" / "c.npz", params=None)
    assert os.listdir(tmp_path) == []


def test_atomic_write_fsyncs_file_and_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    atomic_write(tmp_path / "x.bin", lambda f: f.write(b"abc"))
    assert (tmp_path / "x.bin").read_bytes() == b"abc" and len(synced) == 2


# --- bad files ---------------------------------------------------------------------

def reason_of(path, **kwargs):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, **kwargs)
    assert info.value.reason in CheckpointError.REASONS
    assert str(path) in str(info.value)
    return info.value


def test_missing_and_empty(tmp_path):
    assert reason_of(tmp_path / "nope.npz").reason == "missing"
    (tmp_path / "empty.npz").write_bytes(b"")
    assert reason_of(tmp_path / "empty.npz").reason == "empty"


@pytest.mark.parametrize("keep", [0.5, 0.99, 3 / 4096])
def test_truncated(setup, keep):
    path, params, opt_state = setup
    save_checkpoint(path, params=params, opt_state=opt_state)
    data = path.read_bytes()
    path.write_bytes(data[: max(2, int(len(data) * keep))])
    assert reason_of(path).reason == "truncated"


def test_bit_flip_in_array_data_is_corrupt(setup):
    path, params, opt_state = setup
    save_checkpoint(path, params=params)
    data = bytearray(path.read_bytes())
    at = data.find(params[0].w.tobytes())
    assert at > 0
    data[at + 5] ^= 0x10
    path.write_bytes(bytes(data))
    err = reason_of(path)
    assert err.reason == "corrupt" and "CRC" in str(err)


def test_bit_flips_anywhere_never_pass_silently(setup):
    path, params, opt_state = setup
    save_checkpoint(path, params=params, opt_state=opt_state, step=4)
    good = path.read_bytes()
    for at in range(0, len(good), 37):
        data = bytearray(good)
        data[at] ^= 0x01
        path.write_bytes(bytes(data))
        try:
            ck = load_checkpoint(path)
        except CheckpointError as err:
            assert err.reason in ("corrupt", "truncated", "format", "pickle"), (at, err)
            continue
        # a flip in zip bookkeeping that changes no content is harmless: then every array must be intact
        assert ck.step == 4 and ck.params["0.w"].tobytes() == params[0].w.tobytes(), at


def rewrite_zip(path, change):
    """Rewrite the zip member by member (valid CRCs), letting change(name, bytes) alter each."""
    with zipfile.ZipFile(path) as z:
        items = [(i.filename, z.read(i)) for i in z.infolist()]
    with zipfile.ZipFile(path, "w") as z:
        for name, data in items:
            z.writestr(name, change(name, data))


def npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_changed_array_with_valid_crc_fails_the_sha256(setup):
    path, params, opt_state = setup
    save_checkpoint(path, params=params)
    rewrite_zip(path, lambda n, d: npy_bytes(params[0].b + 1) if n == "params/0.b.npy" else d)
    err = reason_of(path)
    assert err.reason == "corrupt" and "sha256 mismatch" in str(err)


def test_edited_manifest_fails_the_sha256(setup):
    path, params, opt_state = setup
    save_checkpoint(path, params=params, step=5)

    def edit(name, data):
        if name != "manifest.json.npy":
            return data
        manifest = json.loads(np.load(io.BytesIO(data)).tobytes())
        manifest["step"] = 6
        return npy_bytes(np.frombuffer(json.dumps(manifest).encode(), np.uint8))

    rewrite_zip(path, edit)
    assert "sha256 mismatch" in str(reason_of(path))


def test_members_disagreeing_with_manifest(setup):
    path, params, opt_state = setup
    save_checkpoint(path, params=params)
    rewrite_zip(path, lambda n, d: npy_bytes(np.zeros(2, np.float32)) if n == "params/0.b.npy" else d)
    err = reason_of(path)
    assert err.reason == "corrupt" and "wrong dtype/shape 1 [params/0.b]" in str(err)


def test_not_an_npz(tmp_path):
    (tmp_path / "t.npz").write_text("hello, I am text")
    err = reason_of(tmp_path / "t.npz")
    assert err.reason == "format" and "not an .npz (zip) file" in str(err)
    np.save(tmp_path / "a.npy", np.arange(3))
    assert reason_of(tmp_path / "a.npy").reason == "format"


def test_npz_that_is_not_a_checkpoint(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.arange(3), b=np.ones(2))
    err = reason_of(tmp_path / "plain.npz")
    assert err.reason == "format" and "without manifest.json" in str(err) and "a, b" in str(err)


UNPICKLED = []


def _side_effect():
    UNPICKLED.append("ran")
    return "payload"


class Payload:
    def __reduce__(self):
        return (_side_effect, ())


def test_pickled_object_array_is_refused_unread(tmp_path):
    np.savez(tmp_path / "evil.npz", x=np.array([Payload()], dtype=object), allow_pickle=True)
    err = reason_of(tmp_path / "evil.npz")
    assert err.reason == "pickle" and "member x.npy is an object array" in str(err)
    assert UNPICKLED == []


def test_newer_format_version_is_refused(setup):
    path, params, opt_state = setup
    save_checkpoint(path, params=params)

    def bump(name, data):
        if name != "manifest.json.npy":
            return data
        manifest = json.loads(np.load(io.BytesIO(data)).tobytes())
        manifest["version"] = 99
        return npy_bytes(np.frombuffer(json.dumps(manifest).encode(), np.uint8))

    rewrite_zip(path, bump)
    err = reason_of(path)
    assert err.reason == "format" and "version 99" in str(err)


# --- another architecture -------------------------------------------------------------

def test_other_architecture_names_the_keys(setup):
    path, params, opt_state = setup
    save_checkpoint(path, params=params, opt_state=opt_state)
    wider = make_params(np.random.default_rng(0), hidden=5)
    err = reason_of(path, params_like=wider)
    assert err.reason == "mismatch"
    assert "0.w saved (3, 4) float32 vs template (3, 5) float32" in str(err)

    longer = params + (DenseP(np.zeros((4, 2), np.float32), np.zeros(2, np.float32)),)
    assert "missing 2 [3.w, 3.b]" in str(reason_of(path, params_like=longer))

    shorter = params[:2]
    assert "unexpected 4 [2.beta, 2.gamma, 2.mean, +1 more]" in str(reason_of(path, params_like=shorter))

    doubles = make_params(np.random.default_rng(0), dtype=np.float64)
    assert "template (3, 4) float64" in str(reason_of(path, params_like=doubles))

    other_state = (MomentState(np.array(7, np.int64), None, None),)
    err = reason_of(path, opt_state_like=other_state)
    assert err.reason == "mismatch" and "opt_state does not fit" in str(err)


def test_template_for_a_tree_saved_as_none(setup):
    path, params, opt_state = setup
    save_checkpoint(path, params=params)
    err = reason_of(path, opt_state_like=opt_state)
    assert err.reason == "mismatch" and "missing" in str(err)
    assert load_checkpoint(path, opt_state_like=None).opt_state is None


def test_error_reasons_are_documented():
    for reason in CheckpointError.REASONS:
        assert f"``{reason}``" in CheckpointError.__doc__
    err = CheckpointError("p.npz", "corrupt", "bad")
    assert err.path == "p.npz" and err.reason == "corrupt" and str(err) == "load_checkpoint: p.npz: bad [corrupt]"
    assert ck_mod.FORMAT == "functional_cnn.checkpoint"

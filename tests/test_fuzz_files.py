"""Byte-level fuzzing of the two file readers: checkpoints (``load_checkpoint``) and IDX (``read_idx``).

Whatever the bytes, each reader either returns exactly what the file holds or raises its
documented error (``CheckpointError`` with a reason, ``DatasetError``) with a one-line message
naming the file; it never raises anything else, never hangs, and never allocates more than the
file justifies (measured with ``tracemalloc``). Seeded sweeps run in CI; ``--fuzz=long`` runs 25x
as many, and hypothesis many more examples.
"""
import gzip
import io
import json
import math
import os
import struct
import sys
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import functional_cnn.checkpoint as ck_mod
from conftest import fuzz_scale
from functional_cnn import fingerprint, optim
from functional_cnn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from functional_cnn.idx import IDX_DTYPES, DatasetError, idx_bytes, read_idx
from functional_cnn.models import build_model


@pytest.fixture
def scale(request):
    return fuzz_scale(request.config.getoption("--fuzz"))


def measured(call):
    """``(result or exception, peak bytes allocated)`` of ``call()``; every caller checks the exception's type.

    Memory, not time: a bomb or a runaway loop shows as allocation, and timings flake on a busy machine.
    """
    tracemalloc.start()
    try:
        try:
            result = call()
        except Exception as err:  # noqa: BLE001 (returned, and the caller asserts its exact type)
            result = err
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- checkpoints ------------------------------------------------------------------------------

def _trees():
    _, params = build_model("seed1", 10).init(np.random.default_rng(0), (1, 8, 8))
    return params, optim.adam(1e-3).init(params)


PARAMS, OPT_STATE = _trees()


def _checkpoint_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "c.npz"
    rng = np.random.default_rng(5)
    rng.random(3)
    save_checkpoint(path, params=PARAMS, opt_state=OPT_STATE, rng=rng, step=270, config={"model": "seed1"},
                    extra={"acc": 0.5})
    return path.read_bytes()


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return _checkpoint_bytes(tmp_path_factory)


def same_content(ck, reference):
    return (ck.step == reference.step and ck.config == reference.config and ck.extra == reference.extra
            and fingerprint((ck.params, ck.opt_state)) == fingerprint((reference.params, reference.opt_state))
            and ck.rng.bit_generator.state == reference.rng.bit_generator.state)


def load_bytes(path, data, **kw):
    """Write ``data`` to ``path`` and load it, checking the error contract on the way."""
    path.write_bytes(data)
    got, peak = measured(lambda: load_checkpoint(path, **kw))
    assert peak <= 3 * len(data) + (256 << 10), f"{peak} bytes allocated for a {len(data)}-byte file"
    if isinstance(got, Exception):
        assert isinstance(got, CheckpointError), repr(got)
        assert got.reason in CheckpointError.REASONS
        msg = str(got)
        assert msg.startswith(f"load_checkpoint: {path}: ") and msg.endswith(f"[{got.reason}]")
        assert "\n" not in msg and len(msg) < 600, msg
    return got


def test_truncated_at_many_offsets_is_always_truncated(tmp_path, good, scale):
    rng = np.random.default_rng(11)
    if scale > 1:
        offsets = range(len(good))
    else:
        offsets = sorted(set(range(96)) | set(range(len(good) - 96, len(good)))
                         | set(rng.integers(0, len(good), 200).tolist()))
    path = tmp_path / "c.npz"
    for n in offsets:
        err = load_bytes(path, good[:n])
        assert isinstance(err, CheckpointError) and err.reason == ("empty" if n == 0 else "truncated"), (n, err)


def test_single_bit_flips_are_corrupt_or_harmless(tmp_path, good, scale):
    path = tmp_path / "c.npz"
    reference = load_bytes(path, good)
    rng = np.random.default_rng(12)
    harmless = 0
    for at in rng.integers(0, 8 * len(good), 400 * scale).tolist():
        data = bytearray(good)
        data[at // 8] ^= 1 << (at % 8)
        got = load_bytes(path, bytes(data))
        if isinstance(got, CheckpointError):
            assert got.reason == "corrupt", (at // 8, got)
        else:  # zip bookkeeping (time stamps, version fields...) that changes no content
            assert same_content(got, reference), at // 8
            harmless += 1
    assert harmless < 150 * scale  # most bytes are content, guarded by CRCs and the sha256


def rezip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members:
            z.writestr(name, data)


def npy(arr, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def members(data):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def _other_members(path, good):
    rezip(path, [("README.txt", b"hello"), *members(good)])


def _object_member(path, good):  # a structured dtype with an object field, inside a real checkpoint
    rezip(path, [(n, npy(np.zeros(2, [("a", "<f4"), ("b", "O")]), True) if n == "params/0.w.npy" else d)
                 for n, d in members(good)])


def _claims_too_much(path, good):  # a member whose sizes claim 2 GiB in a ~12 KB file
    data = bytearray(good)
    at = data.rfind(b"PK\x01\x02")  # the last central-directory entry (the manifest)
    data[at + 24 : at + 28] = struct.pack("<I", 2 << 30)
    path.write_bytes(bytes(data))


def _deflated(path, good):  # the same members recompressed: still a valid checkpoint
    rezip(path, members(good), zipfile.ZIP_DEFLATED)


def _fifo(path, good):
    os.mkfifo(path)


def _folder(path, good):
    path.mkdir()


CASES = [
    ("empty file", lambda p, g: p.write_bytes(b""), "empty", "the file is empty (0 bytes)"),
    ("random bytes", lambda p, g: p.write_bytes(np.random.default_rng(3).bytes(5000).replace(b"PK", b"pk")),
     "format", "not an .npz (zip) file"),
    ("a plain .npy", lambda p, g: p.write_bytes(npy(np.arange(5))), "format", r"it starts with b'\x93NUM'"),
    ("a JSON file", lambda p, g: p.write_text(json.dumps({"params": [1, 2]})), "format", "it starts with b'{\"pa'"),
    ("an empty zip", lambda p, g: rezip(p, []), "format", "an .npz without manifest.json"),
    ("a zip with other members", _other_members, "format", "member README.txt is not an .npy array"),
    ("a pickled object array", _object_member, "pickle", "member params/0.w.npy is an object array"),
    ("a member claiming 2 GiB", _claims_too_much, "corrupt", "more than a 11"),
    ("a pipe (would block)", _fifo, "format", "not a regular file"),
    ("a folder", _folder, "format", "not a regular file"),
]


@pytest.mark.parametrize("name, make, reason, needle", CASES, ids=[c[0] for c in CASES])
def test_wrong_files(tmp_path, good, name, make, reason, needle):
    path = tmp_path / "c.npz"
    make(path, good)
    got, peak = measured(lambda: load_checkpoint(path, params_like=PARAMS))
    assert isinstance(got, CheckpointError), repr(got)
    assert got.reason == reason and needle in str(got), str(got)
    assert str(got).startswith(f"load_checkpoint: {path}: ") and "\n" not in str(got)
    assert peak < 256 << 10


def test_a_recompressed_checkpoint_still_loads(tmp_path, good):
    path = tmp_path / "c.npz"
    reference = load_bytes(path, good)
    _deflated(path, good)
    assert len(path.read_bytes()) < len(good) and same_content(load_checkpoint(path), reference)


def test_a_deflate_bomb_member_is_read_only_as_far_as_it_claims(tmp_path):
    # 16 MiB of zeros deflated to ~16 KB, whose sizes are then edited to claim 200 bytes.
    path = tmp_path / "bomb.npz"
    rezip(path, [("x.npy", npy(np.zeros(4 << 20, np.float32)))], zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 22, 200)  # uncompressed size in the local header
    struct.pack_into("<I", data, data.find(b"PK\x01\x02") + 24, 200)  # ... and in the central directory
    path.write_bytes(bytes(data))
    got, peak = measured(lambda: load_checkpoint(path))
    assert isinstance(got, CheckpointError) and got.reason == "corrupt", repr(got)
    assert peak < 1 << 20


def test_another_architecture_names_the_first_few_keys_with_counts(tmp_path, good):
    path = tmp_path / "c.npz"
    path.write_bytes(good)
    _, lenet = build_model("lenet", 10).init(np.random.default_rng(0), (1, 28, 28))
    err = load_bytes(path, good, params_like=lenet)
    msg = str(err)
    assert err.reason == "mismatch" and "params does not fit the template (another architecture?)" in msg
    assert "shape/dtype differ" in msg and "+" in msg and "more]" in msg and len(msg) < 600
    opt_wrong = optim.sgd(0.1, momentum=0.9).init(PARAMS)
    err = load_bytes(path, good, params_like=PARAMS, opt_state_like=opt_wrong)
    assert err.reason == "mismatch" and "opt_state does not fit" in str(err)
    assert str(err).count("[") <= 4  # missing / unexpected / differ lists, then the reason


# Forged manifests: the sha256 is recomputed after each change, as an attacker (or a careless
# tool) could, so the loader's checks of the manifest's meaning are reached.

def forge(good, change):
    items = members(good)
    manifest = json.loads(np.load(io.BytesIO(dict(items)["manifest.json.npy"])).tobytes())
    manifest = change(manifest)
    arrays = {n[:-4]: np.load(io.BytesIO(d)) for n, d in items if n != "manifest.json.npy"}
    try:
        keys = [e["key"] for e in manifest["arrays"]]
        manifest["sha256"] = ck_mod._digest([(k, arrays[k]) for k in keys], manifest)
    except (KeyError, TypeError, AttributeError):  # a manifest too broken to hash: the loader must say so
        pass
    blob = json.dumps(manifest).encode() if not isinstance(manifest, bytes) else manifest
    buf = io.BytesIO()
    rezip(buf, [(n, npy(np.frombuffer(blob, np.uint8)) if n == "manifest.json.npy" else d) for n, d in items])
    return buf.getvalue()


def _set(key, value):
    def change(m):
        m[key] = value
        return m
    return change


def _entry(i, key, value):
    def change(m):
        m["arrays"][i][key] = value
        return m
    return change


FORGED = [
    ("step is text", _set("step", "270"), "malformed field(s) step"),
    ("step is negative", _set("step", -1), "malformed field(s) step"),
    ("groups not a dict", _set("groups", [True]), "malformed field(s) groups"),
    ("arrays not a list", _set("arrays", {"a": 1}), "malformed field(s) arrays"),
    ("key not a string", _entry(0, "key", ["params/0.w"]), "malformed field(s) arrays"),
    ("unknown group", _entry(0, "key", "grads/0.w"), "malformed field(s) arrays"),
    ("shape not a list", _entry(0, "shape", 3), "malformed field(s) arrays"),
    ("bad dtype", _entry(0, "dtype", "<q9"), "bad dtype"),
    ("an int leaf that is an array", _entry(0, "kind", "int"), "of kind int cannot be"),
    ("a repeated key", lambda m: {**m, "arrays": m["arrays"] + m["arrays"][:1]}, "repeated 1 [params/0.w]"),
    ("params saved as None but present", lambda m: {**m, "groups": {"params": False, "opt_state": True}},
     "params is saved as None but has members"),
    ("a 10^9 SeedSequence pool", lambda m: {**m, "rng": {**m["rng"], "seed_seq": {**m["rng"]["seed_seq"],
                                                                               "pool_size": 10**9}}},
     "implausible SeedSequence pool_size"),
    ("an unknown bit generator", lambda m: {**m, "rng": {"state": {"bit_generator": "os.system"}}},
     "unknown bit generator"),
    ("a broken MT19937 state", lambda m: {**m, "rng": {"state": {"bit_generator": "MT19937", "state": {"key": [1]}}}},
     "saved rng state cannot be restored"),
    ("JSON nested 100,000 deep", lambda m: b"[" * 100_000 + b"]" * 100_000, "is not valid JSON"),
    ("not UTF-8", lambda m: b'{"format": "\xff"}', "is not valid JSON"),
]


@pytest.mark.parametrize("name, change, needle", FORGED, ids=[c[0] for c in FORGED])
def test_forged_manifests_are_corrupt(tmp_path, good, name, change, needle):
    err = load_bytes(tmp_path / "c.npz", forge(good, change), params_like=PARAMS)
    assert isinstance(err, CheckpointError) and err.reason == "corrupt" and needle in str(err), str(err)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
                    | st.text(max_size=8), lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)


def _json_paths(node, prefix=()):
    yield prefix
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in children:
        yield from _json_paths(v, prefix + (k,))


@given(data=st.data())
def test_fuzzed_manifests_load_or_raise_checkpoint_errors(tmp_path_factory, good, data):
    manifest = json.loads(np.load(io.BytesIO(dict(members(good))["manifest.json.npy"])).tobytes())
    paths = [p for p in _json_paths(manifest) if p and p[0] != "sha256"]
    where = data.draw(st.sampled_from(paths))
    value = data.draw(JSON)

    def change(m):
        node = m
        for k in where[:-1]:
            node = node[k]
        node[where[-1]] = value
        return m

    path = tmp_path_factory.mktemp("forged") / "c.npz"
    got = load_bytes(path, forge(good, change), params_like=PARAMS, opt_state_like=OPT_STATE)
    if not isinstance(got, CheckpointError):  # a change the format allows (config, extra, ...)
        assert got.step >= 0 and fingerprint(got.params) == fingerprint(PARAMS)


@given(blob=st.binary(max_size=3000) | st.builds(lambda a, b: b"PK\x03\x04" + a + b"PK\x05\x06" + b,
                                                 st.binary(max_size=500), st.binary(max_size=30)))
def test_random_bytes_raise_checkpoint_errors(tmp_path_factory, blob):
    got = load_bytes(tmp_path_factory.mktemp("rnd") / "c.npz", blob)
    assert isinstance(got, CheckpointError)


@pytest.fixture(scope="module")
def small_good(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "c.npz"
    save_checkpoint(path, params={"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, opt_state=(np.int64(3),), step=4)
    return path.read_bytes()


@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.none() | st.floats(0, 1))
def test_mutated_checkpoints_raise_checkpoint_errors_or_load_intact(tmp_path_factory, small_good, edits, cut):
    data = bytearray(small_good)
    for where, byte in edits:
        data[int(where * len(data))] = byte
    if cut is not None:
        data = data[: int(cut * len(data))]
    assume(bytes(data) != small_good)
    got = load_bytes(tmp_path_factory.mktemp("mut") / "c.npz", bytes(data))
    if not isinstance(got, CheckpointError):
        assert got.step == 4 and got.params["w"].tobytes() == np.arange(6, dtype=np.float32).tobytes()


# --- IDX ---------------------------------------------------------------------------------------

def header(code, dims):
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def oracle(raw):
    """What ``read_idx`` must return for uncompressed bytes ``raw``: the array, or None if invalid."""
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in IDX_DTYPES or not 1 <= raw[3] <= 32:
        return None
    rank, dtype = raw[3], IDX_DTYPES[raw[2]]
    if len(raw) < 4 + 4 * rank:
        return None
    dims = struct.unpack(f">{rank}I", raw[4 : 4 + 4 * rank])
    if len(raw) - 4 - 4 * rank != math.prod(dims) * dtype.itemsize:
        return None
    if math.prod(max(d, 1) for d in dims) * dtype.itemsize > sys.maxsize:
        return None
    return np.frombuffer(raw[4 + 4 * rank :], dtype).reshape(dims)


def inflate(data):
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return None


def check_idx(data):
    """``read_idx(data)`` agrees with the oracle, raises only DatasetError and stays within memory."""
    is_gz = data[:2] == b"\x1f\x8b"
    raw = inflate(data) if is_gz else data
    got, peak = measured(lambda: read_idx(data, name="fuzz"))
    want = oracle(raw) if raw is not None else None
    if want is None:
        assert isinstance(got, DatasetError), repr(got)
        assert str(got).startswith("read_idx: fuzz: ") and "\n" not in str(got)
    else:
        assert isinstance(got, np.ndarray), repr(got)
        assert got.shape == want.shape and got.dtype == want.dtype.newbyteorder("=")
        assert got.tobytes() == want.astype(got.dtype).tobytes() and not got.flags.writeable
    inflated = len(raw) if raw is not None else 1100 * len(data)
    assert peak <= 2 * inflated + (256 << 10), (peak, len(data))
    return got


@st.composite
def idx_files(draw):
    """A valid IDX file, then a few header or payload mutations, maybe gzipped before or after."""
    code = draw(st.sampled_from(sorted(IDX_DTYPES)))
    dims = draw(st.lists(st.integers(0, 5), min_size=1, max_size=4))
    payload = draw(st.binary(min_size=math.prod(dims) * IDX_DTYPES[code].itemsize,
                             max_size=math.prod(dims) * IDX_DTYPES[code].itemsize))
    data = bytearray(header(code, dims) + payload)
    gz = draw(st.sampled_from(["no", "before", "after"]))
    if gz == "before":
        data = bytearray(gzip.compress(bytes(data), mtime=0))
    for op in draw(st.lists(st.sampled_from(["byte", "dim", "code", "rank", "cut", "append"]), max_size=3)):
        if op == "byte" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif op == "dim" and len(data) >= 8:
            at = 4 + 4 * draw(st.integers(0, max(0, min(data[3], (len(data) - 8) // 4))))
            data[at : at + 4] = struct.pack(">I", draw(st.integers(0, 2**32 - 1)))
        elif op == "code" and len(data) > 2:
            data[2] = draw(st.integers(0, 255))
        elif op == "rank" and len(data) > 3:
            data[3] = draw(st.integers(0, 255))
        elif op == "cut":
            data = data[: draw(st.integers(0, len(data)))]
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=20))
    if gz == "after":
        data = bytearray(gzip.compress(bytes(data), mtime=0))
    return bytes(data)


@given(data=idx_files())
def test_mutated_idx_files(data):
    check_idx(data)


@given(data=st.binary(max_size=600) | st.builds(lambda a: b"\x1f\x8b" + a, st.binary(max_size=300))
       | st.builds(lambda a: b"\x00\x00" + a, st.binary(max_size=300)))
def test_random_bytes_as_idx(data):
    check_idx(data)


def test_gzip_header_and_trailer_damage(scale):
    good = gzip.compress(idx_bytes(np.arange(60, dtype=np.int16).reshape(3, 4, 5)), mtime=0)
    rng = np.random.default_rng(13)
    for at in rng.integers(0, 8 * len(good), 300 * scale).tolist():
        data = bytearray(good)
        data[at // 8] ^= 1 << (at % 8)
        check_idx(bytes(data))
    for flag in (0x02, 0x04, 0x08, 0x10, 0xE0):  # FHCRC, FEXTRA, FNAME, FCOMMENT, reserved bits
        data = bytearray(good)
        data[3] |= flag
        check_idx(bytes(data))
    for n in range(len(good)):
        check_idx(good[:n])


@pytest.mark.parametrize("declared, behind, gz_members", [
    (10, 64 << 20, 1),  # a 65 KB .gz whose 10-byte payload is followed by 64 MiB
    (1 << 20, 64 << 20, 1),  # 1 MiB declared, 64 MiB there
    (10, 64 << 20, 2),  # a valid member, then a second member of 64 MiB of zeros
])
def test_gzip_bombs_cost_what_the_header_declares(declared, behind, gz_members):
    body = header(8, [declared]) + bytes(declared)
    bomb = (gzip.compress(body + bytes(behind)) if gz_members == 1
            else gzip.compress(body) + gzip.compress(bytes(behind)))
    got, peak = measured(lambda: read_idx(bomb, name="bomb"))
    assert isinstance(got, DatasetError) and "trailing bytes" in str(got), repr(got)
    assert len(bomb) < 200_000 and peak < 2 * declared + (256 << 10), peak


def test_headers_numpy_cannot_hold_are_dataset_errors():
    for data, needle in [(header(8, [0, 2**32 - 1, 2**32 - 1]), "too large for any array"),
                         (header(8, [1] * 33) + b"\x07", "rank 33; at most 32 dimensions"),
                         (header(8, [0] + [2**32 - 1] * 254), "rank 255")]:
        with pytest.raises(DatasetError, match=needle):
            read_idx(data)
    assert read_idx(header(0x0E, [0, 7])).shape == (0, 7)


def test_idx_paths_that_are_not_files(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    for name in ("pipe", ""):
        with pytest.raises(DatasetError, match="not a regular file"):
            read_idx(tmp_path / name)
    with pytest.raises(TypeError, match="read_idx: source must be a path or bytes, got int"):
        read_idx(3)


def test_idx_memory_for_valid_files(tmp_path):
    for arr in (np.zeros((2000, 28, 28), np.uint8), np.ones((200, 28, 28), np.float64)):
        for gz in (False, True):
            data = idx_bytes(arr)
            data = gzip.compress(data, 1) if gz else data
            (tmp_path / "f").write_bytes(data)
            got, peak = measured(lambda: read_idx(tmp_path / "f"))
            # raw: one buffer, filled in place and byte-swapped there; gzip: one buffer grown by chunks
            bound = 1.25 * arr.nbytes + (768 << 10) if gz else arr.nbytes + (64 << 10)
            assert np.array_equal(got, arr) and peak <= bound, (gz, arr.dtype, peak)

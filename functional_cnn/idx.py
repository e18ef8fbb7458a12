"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a header and a payload, all multi-byte numbers big-endian::

    bytes 0-1   zero
    byte  2     element type: 0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int,
                0x0D float, 0x0E double
    byte  3     rank r
    4*r bytes   the r dimensions, unsigned 32-bit each
    payload     prod(dims) elements, C order

:func:`read_idx` checks all of it before it allocates anything: the declared size must
match the bytes actually there (and be possible at all for a gzip file of that size),
so a corrupt or hostile header cannot make it reserve gigabytes. Every problem is a
:class:`DatasetError` whose one-line message names the file and what was wrong.

>>> import numpy as np
>>> a = np.arange(6, dtype=np.uint8).reshape(2, 3)
>>> read_idx(idx_bytes(a)).tolist()
[[0, 1, 2], [3, 4, 5]]
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Optional, Tuple, Union

import numpy as np

__all__ = [
    "DatasetError",
    "IDX_DTYPES",
    "MAX_IDX_BYTES",
    "read_idx",
    "read_images_labels",
    "write_idx",
    "idx_bytes",
    "IDX_FILES",
    "find_idx_files",
    "idx_dirs_in_listing",
    "verify_idx_gzip",
]

PathOrBytes = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]

#: The four files of MNIST and Fashion-MNIST, each raw or with ``.gz`` appended.
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

#: IDX element-type codes and the big-endian dtypes they stand for.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}

#: Default ceiling on a payload (4 GiB): larger declared sizes are refused outright.
MAX_IDX_BYTES = 1 << 32

# deflate cannot expand data by more than about 1032:1, so a gzip file of n bytes can
# never hold more than this many times n bytes of payload.
_GZIP_MAX_RATIO = 1100
_CHUNK = 1 << 18
_MAX_RANK = 32  # numpy 1.x's limit on dimensions (numpy 2 allows 64)


class DatasetError(ValueError):
    """A data file or data set is missing, malformed or inconsistent."""


def _name(source: PathOrBytes, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return os.fspath(source)


def _read_header(f: BinaryIO, where: str) -> Tuple[np.dtype, Tuple[int, ...], int]:
    """Parse the header from ``f``; return (dtype, shape, header length)."""
    head = f.read(4)
    if len(head) < 4:
        raise DatasetError(f"read_idx: {where}: file too short for an IDX header ({len(head)} bytes, need 4)")
    if head[0] != 0 or head[1] != 0:
        raise DatasetError(
            f"read_idx: {where}: bad magic number 0x{head[:4].hex()}: an IDX file starts with two zero bytes"
        )
    code, rank = head[2], head[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DatasetError(f"read_idx: {where}: unknown element type code 0x{code:02X} (expected one of {known})")
    if rank == 0:
        raise DatasetError(f"read_idx: {where}: rank 0 in the header; an IDX file has at least one dimension")
    dims_raw = f.read(4 * rank)
    if len(dims_raw) < 4 * rank:
        raise DatasetError(
            f"read_idx: {where}: header declares rank {rank} but holds only {len(dims_raw) // 4} dimensions"
        )
    shape = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
    return IDX_DTYPES[code], shape, 4 + 4 * rank


def _declared_bytes(dtype: np.dtype, shape: Tuple[int, ...], where: str) -> int:
    """Payload size the header declares, after checking that numpy can hold such an array at all."""
    if len(shape) > _MAX_RANK:
        raise DatasetError(f"read_idx: {where}: header declares rank {len(shape)}; at most {_MAX_RANK} dimensions "
                           f"are supported")
    n = nonzero = dtype.itemsize
    for d in shape:  # Python ints: no overflow, however absurd the header
        n *= d
        nonzero *= max(d, 1)
    if n == 0 and nonzero > np.iinfo(np.intp).max:  # numpy refuses such a shape even with a zero dimension
        raise DatasetError(f"read_idx: {where}: header declares shape {shape}, too large for any array")
    return n


def _check_declared(declared: int, limit: int, where: str, shape: Tuple[int, ...]) -> None:
    if declared > limit:
        raise DatasetError(
            f"read_idx: {where}: header declares shape {shape}, {declared} bytes of payload, "
            f"more than this file can hold (at most {limit} bytes); refusing to read it"
        )


def _read_exact(f: BinaryIO, declared: int, where: str, shape: Tuple[int, ...], *, known: bool) -> Any:
    """Read exactly the payload, never a second copy of it.

    ``known``: the file size already matched ``declared`` (raw files), so the buffer is
    allocated once and filled in place. Otherwise (gzip) it grows chunk by chunk, so
    memory follows the bytes really there (about 1.1x the payload at the end).
    """
    if known:
        buf: Any = np.empty(declared, np.uint8)
        view, got = memoryview(buf), 0
        while got < declared:
            n = f.readinto(view[got:])
            if not n:
                break
            got += n
    else:
        buf = bytearray()
        while len(buf) < declared:
            chunk = f.read(min(_CHUNK, declared - len(buf)))
            if not chunk:
                break
            buf += chunk
        got = len(buf)
    if got < declared:
        raise DatasetError(
            f"read_idx: {where}: short payload: header declares shape {shape} ({declared} bytes), file has {got}"
        )
    if f.read(1):
        raise DatasetError(
            f"read_idx: {where}: trailing bytes after the {declared}-byte payload declared for shape {shape}"
        )
    return buf


def read_idx(source: PathOrBytes, *, name: str | None = None, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read one IDX file (raw or gzip-compressed) into a read-only array.

    Args:
        source: a path, or the file's bytes. Gzip is recognised by its magic bytes,
            not by the file name.
        name: what to call the source in error messages (default: the path).
        max_bytes: refuse payloads larger than this, whatever the file holds.

    Returns:
        A read-only array of the declared shape in native byte order
        (uint8, int8, int16, int32, float32 or float64).

    Raises:
        DatasetError: bad magic, unknown type code, rank 0 or above 32, a payload
            shorter or longer than declared, a declared size larger than the file could
            hold, a broken gzip stream, or a path that is not a regular file.
        TypeError: ``source`` is neither a path nor bytes.
    """
    if not isinstance(source, (bytes, bytearray, memoryview, str, os.PathLike)):
        raise TypeError(f"read_idx: source must be a path or bytes, got {type(source).__name__}")
    where = _name(source, name)
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            raw = bytes(source)
            size = len(raw)
            opener = lambda: io.BytesIO(raw)  # noqa: E731
        else:
            st = os.stat(source)
            if not stat.S_ISREG(st.st_mode):  # a folder, a pipe (would block), a device (endless)
                raise DatasetError(f"read_idx: {where}: not a regular file")
            size = st.st_size
            opener = lambda: open(source, "rb")  # noqa: E731
        with opener() as f:
            is_gzip = f.read(2) == b"\x1f\x8b"
            f.seek(0)
            if is_gzip:
                with gzip.GzipFile(fileobj=f, mode="rb") as g:
                    dtype, shape, _ = _read_header(g, where)
                    declared = _declared_bytes(dtype, shape, where)
                    _check_declared(declared, min(max_bytes, size * _GZIP_MAX_RATIO), where, shape)
                    payload = _read_exact(g, declared, where, shape, known=False)
            else:
                dtype, shape, head = _read_header(f, where)
                declared = _declared_bytes(dtype, shape, where)
                _check_declared(declared, max_bytes, where, shape)
                if declared != size - head:
                    kind = "short payload" if declared > size - head else "trailing bytes"
                    raise DatasetError(
                        f"read_idx: {where}: {kind}: header declares shape {shape} ({declared} bytes), "
                        f"file has {size - head} bytes after the header"
                    )
                payload = _read_exact(f, declared, where, shape, known=True)
    except (OSError, EOFError, zlib.error) as err:
        if isinstance(err, FileNotFoundError):
            raise DatasetError(f"read_idx: {where}: no such file") from err
        raise DatasetError(f"read_idx: {where}: cannot read: {err}") from err
    arr = np.frombuffer(payload, dtype=dtype.newbyteorder("=")).reshape(shape)
    if not dtype.isnative:  # big-endian bytes: swap them where they are, no second copy
        arr.byteswap(inplace=True)
    arr.flags.writeable = False
    return arr


def read_images_labels(
    images: PathOrBytes,
    labels: PathOrBytes,
    *,
    num_classes: int = 10,
    images_name: str | None = None,
    labels_name: str | None = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Read an image file and its label file and check that they agree.

    Args:
        images: IDX file of uint8 images, shape (N, H, W).
        labels: IDX file of uint8 labels, shape (N,).
        num_classes: labels must lie in ``[0, num_classes)``.
        images_name, labels_name: names for error messages.

    Returns:
        ``(x, y)``: read-only uint8 array (N, H, W) and read-only int64 array (N,).

    Raises:
        DatasetError: either file is malformed, has the wrong rank or type, the
            counts differ, or a label is out of range.
    """
    iname, lname = _name(images, images_name), _name(labels, labels_name)
    x = read_idx(images, name=iname)
    y = read_idx(labels, name=lname)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise DatasetError(
            f"read_images_labels: {iname}: expected uint8 images of rank 3 (N, H, W), got {x.dtype} shape {x.shape}"
        )
    if y.ndim != 1 or y.dtype != np.uint8:
        raise DatasetError(
            f"read_images_labels: {lname}: expected uint8 labels of rank 1 (N,), got {y.dtype} shape {y.shape}"
        )
    if len(x) != len(y):
        raise DatasetError(
            f"read_images_labels: {iname} holds {len(x)} images but {lname} holds {len(y)} labels"
        )
    if y.size and int(y.max()) >= num_classes:
        bad = int(np.argmax(y >= num_classes))
        raise DatasetError(
            f"read_images_labels: {lname}: label {int(y[bad])} at index {bad} is out of range "
            f"[0, {num_classes - 1}]"
        )
    y64 = y.astype(np.int64)
    y64.flags.writeable = False
    return x, y64


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding (uncompressed) of ``array``.

    Raises:
        TypeError: the dtype has no IDX type code.
        ValueError: rank 0, or more than 255 dimensions.
    """
    arr = np.asarray(array)
    code = _CODES.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise TypeError(
            f"write_idx: array dtype {arr.dtype} has no IDX type code "
            f"(expected uint8, int8, int16, int32, float32 or float64)"
        )
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"write_idx: array must have rank 1 to 255, got shape {arr.shape}")
    head = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return head + np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes()


def write_idx(path: Union[str, os.PathLike[str]], array: np.ndarray) -> None:
    """Write ``array`` as an IDX file; gzip-compressed when ``path`` ends in ``.gz``.

    The gzip header carries no time stamp, so equal arrays give equal files.
    """
    data = idx_bytes(array)
    if os.fspath(path).endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    with open(path, "wb") as f:
        f.write(data)


def find_idx_files(folder: Union[str, os.PathLike[str]]) -> Tuple[Dict[str, Path], List[str]]:
    """``({name: path}, [missing names])`` for :data:`IDX_FILES` in ``folder`` (raw first, then ``.gz``)."""
    found, missing = {}, []
    for base in IDX_FILES:
        for cand in (Path(folder) / base, Path(folder) / f"{base}.gz"):
            if cand.is_file():
                found[base] = cand
                break
        else:
            missing.append(base)
    return found, missing


def idx_dirs_in_listing(listing: str) -> List[Path]:
    """Folders named in a file listing (one path a line, e.g. ``dpkg -L``) that hold any of
    :data:`IDX_FILES`, in listing order."""
    dirs: List[Path] = []
    for line in listing.splitlines():
        path = Path(line.strip())
        if path.name.removesuffix(".gz") in IDX_FILES and path.parent not in dirs:
            dirs.append(path.parent)
    return dirs


def verify_idx_gzip(body: bytes, *, name: str, size: int, sha256: Optional[str] = None,
                    gz_md5: Optional[str] = None) -> None:
    """Check a downloaded ``.gz``: it inflates to exactly ``size`` bytes (inflating no
    more than ``size + 1``), with the given sha256 when known, else the gzip bytes with
    the given MD5 when known.

    Raises:
        DatasetError: naming ``name`` and the check that failed.
    """
    try:
        inflater = zlib.decompressobj(wbits=31)
        raw = inflater.decompress(body, size + 1)
    except zlib.error as err:
        raise DatasetError(f"download: {name}: not a valid gzip file ({err})") from err
    if len(raw) != size or not inflater.eof:
        got = f"{len(raw)}" if len(raw) <= size else f"more than {size}"
        raise DatasetError(f"download: {name}: inflates to {got} bytes, expected exactly {size}")
    if sha256 and hashlib.sha256(raw).hexdigest() != sha256:
        raise DatasetError(f"download: {name}: sha256 of the inflated file is not {sha256}")
    if not sha256 and gz_md5 and hashlib.md5(body).hexdigest() != gz_md5:
        raise DatasetError(f"download: {name}: md5 of the gzip file is not {gz_md5}")

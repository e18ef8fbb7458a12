"""Reading an ``.npz`` (a zip of ``.npy`` members) defensively, for :mod:`functional_cnn.checkpoint`.

Every way a file can be bad becomes a :class:`CheckpointError` with a ``reason``; nothing
is unpickled, and members that claim more bytes than the file could hold are refused
before anything is read, so memory stays within about twice the file size.
"""
from __future__ import annotations

import os
import stat
import struct
import zipfile
from typing import Any, BinaryIO, Dict, Optional, Sequence, Tuple

import numpy as np

__all__ = ["CheckpointError", "open_arrays", "some"]

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_MAX_RATIO = 1100  # deflate expands data at most ~1032:1
_MAX_MESSAGE = 400


class CheckpointError(Exception):
    """A checkpoint could not be loaded. ``reason`` is one of :attr:`REASONS`:

    ``missing`` no such file; ``empty`` zero bytes; ``truncated`` cut short;
    ``corrupt`` damaged (CRC or sha256 mismatch, inconsistent members); ``format`` not
    an npz, or an npz that is not a checkpoint; ``pickle`` holds an object array that
    would need unpickling; ``mismatch`` its trees do not fit the templates given
    (another architecture).
    """

    REASONS = ("missing", "empty", "truncated", "corrupt", "format", "pickle", "mismatch")

    def __init__(self, path: Any, reason: str, message: str) -> None:
        text = " ".join(str(message).split())  # one line, and a short one: zipfile may quote kilobytes
        text = text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 5] + " ..."
        super().__init__(f"load_checkpoint: {path}: {text} [{reason}]")
        self.path = path
        self.reason = reason


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Any) -> np.ndarray:
    """One ``.npy`` member as a read-only array; the header is checked before any data is read."""
    name = info.filename
    with zf.open(info) as member:
        try:
            version = np.lib.format.read_magic(member)
            reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            shape, fortran, dtype = reader[version](member)
        except (ValueError, KeyError, SyntaxError) as err:
            raise CheckpointError(path, "corrupt", f"member {name}: unreadable .npy header ({err})") from err
        if dtype.hasobject:
            raise CheckpointError(path, "pickle", f"member {name} is an object array ({dtype}); it would have to be "
                                  f"unpickled, which checkpoints never do")
        nbytes = dtype.itemsize * int(np.prod(shape, dtype=object))
        if nbytes != info.file_size - member.tell():
            raise CheckpointError(path, "corrupt", f"member {name}: header declares {shape} {dtype} ({nbytes} bytes), "
                                  f"the member holds {info.file_size - member.tell()}")
        data = member.read(nbytes)
        member.read()  # reach the end so that zipfile checks the CRC
    arr = np.frombuffer(data, dtype=dtype)
    return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)


def some(items: Sequence[str], show: int = 3) -> str:
    """``"5 [a, b, c, +2 more]"``: a count and the first few, so a message stays one short line."""
    more = f", +{len(items) - show} more" if len(items) > show else ""
    return f"{len(items)} [{', '.join(items[:show])}{more}]"


def _zip_end(f: BinaryIO, size: int) -> Tuple[str, Optional[int]]:
    """How the file ends, and the member count its end record states (None if unknown).

    ``"ok"``: in a whole end-of-central-directory record; ``"damaged"``: in one whose
    signature or comment length was altered (its offsets still add up to the file's
    length); ``"absent"``: before one, i.e. cut short.
    """
    f.seek(max(0, size - (1 << 16) - 22))
    tail = f.read()
    if len(tail) >= 22:
        sig, _, _, _, count, cd_size, cd_offset, comment = struct.unpack("<4s4H2LH", tail[-22:])
        if cd_offset + cd_size == size - 22:
            return ("ok" if sig == b"PK\x05\x06" and comment == 0 else "damaged"), count
    at = tail.rfind(b"PK\x05\x06")
    if at >= 0 and len(tail) - at >= 22:
        count, comment = struct.unpack("<H8xH", tail[at + 10 : at + 22])
        if at + 22 + comment <= len(tail):
            return ("ok" if at + 22 + comment == len(tail) else "damaged"), count
    return "absent", None


def open_arrays(path: str) -> Dict[str, np.ndarray]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(path, "missing", "no such file") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(path, "format", "not a regular file")
    size = st.st_size
    if size == 0:
        raise CheckpointError(path, "empty", "the file is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(4)
        end, count = _zip_end(f, size)
        f.seek(0)
        try:
            zf = zipfile.ZipFile(f)
        except Exception as err:  # noqa: BLE001 (whatever a damaged directory raises)
            if end != "absent":
                raise CheckpointError(path, "corrupt", f"damaged zip directory ({err})") from err
            if any(m.startswith(head) for m in _ZIP_MAGIC):
                raise CheckpointError(path, "truncated", f"cut short: {size} bytes that start like a zip but have no "
                                      f"end-of-directory record (e.g. a crash mid-copy)") from err
            raise CheckpointError(path, "format", f"not an .npz (zip) file: it starts with {head!r}") from err
        arrays = {}
        with zf:
            try:
                infos = zf.infolist()
                if count is not None and count != 0xFFFF and count != len(infos):  # 0xFFFF: see zip64
                    raise CheckpointError(path, "corrupt", f"damaged zip directory: it lists {len(infos)} "
                                          f"members, its end record {count}")
                claimed = sum(i.file_size for i in infos)
                if any(i.compress_size > size for i in infos) or claimed > size * _MAX_RATIO:
                    raise CheckpointError(path, "corrupt", f"members claim {claimed} bytes, more than a {size}-byte "
                                          f"file can hold")
                for info in infos:
                    if not info.filename.endswith(".npy"):
                        zf.open(info).close()  # a damaged directory entry fails here: its local header differs
                        raise CheckpointError(path, "format", f"member {info.filename} is not an .npy array")
                    arrays[info.filename[:-4]] = _read_member(zf, info, path)
            except CheckpointError:
                raise
            except Exception as err:  # noqa: BLE001 (a flipped bit can make zipfile raise almost anything)
                raise CheckpointError(path, "corrupt", f"damaged member: {err!r}") from err
    return arrays

"""All-or-nothing file replacement, and the clean-up of what killed writers left behind.

:func:`atomic_write` writes ``.<name>.<pid>-<host>-<random>.tmp`` beside the target,
fsyncs it, renames it over the target and fsyncs the folder. An exception removes the
temporary file; a ``SIGKILL`` or a power cut cannot, so one may be left behind. Such a
leftover is harmless to readers (nothing ever opens a ``.tmp`` file, and the target
itself is always a complete old or new version) but it holds a whole file's worth of
disk. So, after each successful write, temporary files of the *same* target whose
writer was a process of this machine that is no longer running are deleted. Files of
running processes (another writer mid-write, or this process), of other machines
(``<host>`` is a hash of the host name) and names that do not match the pattern are
never touched. The clean-up runs on POSIX only (checking a pid elsewhere is unsafe).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import socket
from pathlib import Path
from typing import BinaryIO, Callable, List

__all__ = ["atomic_write", "temp_name", "stale_temp_files"]

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temp_name(path: Path) -> Path:
    """A fresh temporary file name beside ``path``, naming this process and machine."""
    return path.with_name(f".{path.name}.{os.getpid()}-{_HOST}-{secrets.token_hex(6)}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def stale_temp_files(path: Path) -> List[Path]:
    """Temporary files of ``path`` left by writers of this machine that are no longer running."""
    if os.name != "posix":
        return []
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)-{_HOST}-[0-9a-f]+\.tmp")
    stale = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            m = pattern.fullmatch(entry.name)
            if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
                stale.append(Path(entry.path))
    return stale


def atomic_write(path: os.PathLike | str, write: Callable[[BinaryIO], None]) -> Path:
    """Create or replace ``path`` with what ``write(file)`` writes, all or nothing.

    Writes a temporary file beside ``path``, fsyncs it, renames it over ``path`` and
    fsyncs the folder. If anything fails the temporary file is deleted and ``path`` is
    untouched. Afterwards, temporary files of ``path`` left by killed writers are
    removed (see the module docstring).

    Returns:
        The absolute path written.
    """
    path = Path(os.fspath(path)).absolute()
    tmp = temp_name(path)
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the file is in place; Windows cannot open folders
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for stale in stale_temp_files(path):
        with contextlib.suppress(OSError):
            os.unlink(stale)
    return path

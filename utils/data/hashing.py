"""Content hashes: the identity of a data file is its bytes, not its name.

Every file is opened through ``open_regular``: non-blocking, and refused unless the opened
descriptor is a regular file, so a FIFO or a device (``/dev/zero``) in a data folder can
never make a read block or run forever. Reads also stop at a deadline (``read_timeout_s``).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20
DEFAULT_READ_TIMEOUT_S = 600.0


class SpecialFileError(OSError):
    """Not a regular file (FIFO, device, socket, link not followed...); the message says which."""


class ReadTimeoutError(OSError):
    """A file could not be read within the time bound; it is retried on the next run."""


def describe_mode(mode: int) -> str:
    """What a non-regular file is, in the words of the ingest record."""
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    return "not a regular file"


def open_regular(path: str | Path, follow_symlinks: bool = True) -> int:
    """A read-only descriptor of ``path``, guaranteed to be a regular file.

    O_NONBLOCK makes opening a FIFO return at once (instead of waiting for a writer);
    O_NOFOLLOW (unless ``follow_symlinks``) refuses a link; fstat on the opened descriptor
    (not on the name, which could be swapped in between) checks S_ISREG.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SpecialFileError(exc.errno, "symbolic link (not followed) or link loop",
                                   str(path)) from exc
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise SpecialFileError(errno.EINVAL, describe_mode(mode), str(path))
    os.set_blocking(fd, True)   # regular files never block on "no data"; plain reads from here on
    return fd


def sha256_file(path: str | Path, follow_symlinks: bool = True,
                read_timeout_s: float | None = DEFAULT_READ_TIMEOUT_S) -> str:
    """sha256 of a regular file, read in chunks; gives up past ``read_timeout_s``."""
    digest = hashlib.sha256()
    deadline = time.monotonic() + read_timeout_s if read_timeout_s else None
    with os.fdopen(open_regular(path, follow_symlinks), "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
            if deadline is not None and time.monotonic() > deadline:
                raise ReadTimeoutError(errno.ETIMEDOUT,
                                       f"not read within {read_timeout_s:g} s", str(path))
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    """Stable hash of a JSON-serialisable value (key order does not matter)."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def sha256_tree(paths: list[Path], root: Path, follow_symlinks: bool = True) -> str:
    """Hash of several files' relative names and contents: the version of a code tree."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(sha256_file(path, follow_symlinks).encode())
    return digest.hexdigest()


def regular_files(folder: Path) -> list[Path]:
    """The regular files under ``folder`` by lstat: links, FIFOs and devices are left out."""
    found = []
    for dirpath, _dirs, files in os.walk(folder):   # os.walk does not descend into linked folders
        for name in files:
            p = Path(dirpath) / name
            try:
                if stat.S_ISREG(os.lstat(p).st_mode):
                    found.append(p)
            except OSError:
                continue
    return found


def sha256_path(path: Path, follow_symlinks: bool = True) -> str:
    """sha256 of a file, or of a folder's regular files (names and contents): one data unit's identity."""
    if path.is_dir() and (follow_symlinks or not path.is_symlink()):
        return sha256_tree(regular_files(path), path, follow_symlinks=False)
    return sha256_file(path, follow_symlinks)

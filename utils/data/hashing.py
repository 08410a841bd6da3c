"""Content hashes: the identity of a data file is its bytes, not its name."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, read in chunks so large files do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    """Stable hash of a JSON-serialisable value (key order does not matter)."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def sha256_tree(paths: list[Path], root: Path) -> str:
    """Hash of several files' relative names and contents: the version of a code tree."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of a folder's files (names and contents): one data unit's identity."""
    if path.is_dir():
        return sha256_tree([p for p in path.rglob("*") if p.is_file()], path)
    return sha256_file(path)

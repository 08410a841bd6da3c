"""The ingest record (``ingested/ingestedfiles.csv``): which raw files were seen, and how.

Deliberately stdlib-only (csv, os): the cron tick decides "anything new?" from it without
importing pandas or mlflow. A file is "unchanged" when its path, size and mtime match a row,
so old files are never re-hashed; a changed or new path is hashed and matched by content.
"""
from __future__ import annotations

import csv
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from utils.data.hashing import sha256_path

@dataclass
class RecordRow:
    file: str
    sha256: str
    rows: int
    status: str
    reason: str
    time: str
    size: int
    mtime_ns: int
    rows_dropped: int = 0      # tabular, data.bad_rows=drop_rows: bad rows left out of the dataset


@dataclass(frozen=True)
class SourceEntry:
    """One unit of raw data: a file, or a BIO dataset folder (NLU)."""

    path: Path
    size: int
    mtime_ns: int

    @property
    def is_dir(self) -> bool:
        return self.path.is_dir()

    def sha256(self) -> str:
        return sha256_path(self.path)


def _entry(path: Path) -> SourceEntry:
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file()]
        stats = [p.stat() for p in files]
        return SourceEntry(path, sum(s.st_size for s in stats),
                           max((s.st_mtime_ns for s in stats), default=0))
    stat = path.stat()
    return SourceEntry(path, stat.st_size, stat.st_mtime_ns)


def scan_source_dir(source_dir: Path) -> list[SourceEntry]:
    """Top-level files and folders of the source dir, hidden ones skipped, sorted by name."""
    with os.scandir(source_dir) as it:
        names = sorted(e.name for e in it if not e.name.startswith("."))
    return [_entry(source_dir / name) for name in names]


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class IngestRecord:
    """In-memory view of the record with the lookups ingestion and the cron tick need."""

    def __init__(self, path: Path, rows: list[RecordRow]):
        self.path = path
        self.rows = rows
        self._by_stat = {(r.file, r.size, r.mtime_ns) for r in rows}
        self._status_by_hash: dict[str, str] = {}
        for r in rows:
            self._status_by_hash.setdefault(r.sha256, r.status)
            if r.status == "ingested":
                self._status_by_hash[r.sha256] = "ingested"

    @classmethod
    def load(cls, path: Path) -> "IngestRecord":
        rows: list[RecordRow] = []
        if path.is_file():
            with open(path, newline="") as fh:
                for raw in csv.DictReader(fh):
                    rows.append(RecordRow(
                        file=raw["file"], sha256=raw["sha256"], rows=int(raw["rows"] or 0),
                        status=raw["status"], reason=raw.get("reason", ""), time=raw["time"],
                        size=int(raw.get("size") or -1), mtime_ns=int(raw.get("mtime_ns") or -1),
                        rows_dropped=int(raw.get("rows_dropped") or 0)))
        return cls(path, rows)

    def is_unchanged(self, entry: SourceEntry) -> bool:
        """Seen before with the same path, size and mtime: no need to read it again."""
        return (str(entry.path), entry.size, entry.mtime_ns) in self._by_stat

    def status_of_hash(self, sha256: str) -> str | None:
        return self._status_by_hash.get(sha256)

    def changed_entries(self, entries: list[SourceEntry]) -> list[SourceEntry]:
        return [e for e in entries if not self.is_unchanged(e)]

    def add(self, row: RecordRow) -> None:
        self.rows.append(row)
        self._by_stat.add((row.file, row.size, row.mtime_ns))
        if row.status == "ingested" or row.sha256 not in self._status_by_hash:
            self._status_by_hash[row.sha256] = row.status

    def save(self) -> None:
        """Rewrite atomically: a crash leaves the old record, never a torn one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=[f.name for f in fields(RecordRow)])
            writer.writeheader()
            for row in self.rows:
                writer.writerow(asdict(row))
        os.replace(tmp, self.path)

"""The ingest record (``ingested/ingestedfiles.csv``): which raw files were seen, and how.

Deliberately stdlib-only (csv, os): the cron tick decides "anything new?" from it without
importing pandas or mlflow. A file is "unchanged" when its path, size and mtime match a row,
so old files are never re-hashed; a changed or new path is hashed and matched by content.
"""
from __future__ import annotations

import csv
import errno
import os
import stat
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from utils.data.hashing import (
    DEFAULT_READ_TIMEOUT_S,
    describe_mode,
    regular_files,
    sha256_file,
    sha256_path,
)

# Statuses: ingested | duplicate | quarantined (content read) | skipped (not a regular file,
# by lstat: recorded once) | unreadable (read failed or timed out: retried every run)
RETRIED_STATUSES = {"unreadable"}

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
    """One unit of raw data: a regular file, a BIO benchmark folder or a lone BIO split folder."""

    path: Path
    size: int
    mtime_ns: int
    kind: str = "file"              # file | folder (a BIO benchmark or split folder)
    follow_symlinks: bool = False   # the entry is a followed link (data.follow_symlinks)

    @property
    def is_dir(self) -> bool:
        return self.kind != "file"

    def sha256(self, read_timeout_s: float | None = DEFAULT_READ_TIMEOUT_S) -> str:
        if self.is_dir:
            return sha256_path(self.path)
        return sha256_file(self.path, follow_symlinks=self.follow_symlinks,
                           read_timeout_s=read_timeout_s)


@dataclass(frozen=True)
class SkippedEntry:
    """A name in the source folder that is not data: why, and its lstat identity (recorded once)."""

    path: Path
    reason: str
    size: int
    mtime_ns: int


@dataclass
class SourceScan:
    entries: list[SourceEntry] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)


_NOT_FOLLOWED = "symbolic link, not followed (set data.follow_symlinks=true to read links to regular files)"


def _folder_entry(path: Path) -> SourceEntry:
    stats = [os.lstat(p) for p in regular_files(path)]
    return SourceEntry(path, sum(s.st_size for s in stats),
                       max((s.st_mtime_ns for s in stats), default=0), kind="folder")


def classify(path: Path, follow_symlinks: bool = False) -> SourceEntry | SkippedEntry:
    """lstat one name: a data entry, or the reason it is skipped. Never opens the file."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return SkippedEntry(path, f"unreadable: {exc.strerror or exc}", -1, -1)
    skip = lambda reason: SkippedEntry(path, reason, st.st_size, st.st_mtime_ns)  # noqa: E731
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.stat(path)
        except FileNotFoundError:
            return skip(f"dangling symbolic link (to {os.readlink(path)!r})")
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return skip("symbolic link loop")
            return skip(f"unreadable symbolic link: {exc.strerror or exc}")
        if not follow_symlinks:
            return skip(_NOT_FOLLOWED)
        if not stat.S_ISREG(target.st_mode):
            return skip(f"symbolic link to a {describe_mode(target.st_mode)} (only links to "
                        "regular files are followed)")
        return SourceEntry(path, target.st_size, target.st_mtime_ns, follow_symlinks=True)
    if stat.S_ISREG(st.st_mode):
        return SourceEntry(path, st.st_size, st.st_mtime_ns)
    if stat.S_ISDIR(st.st_mode):
        try:
            return _folder_entry(path)
        except OSError as exc:
            return skip(f"unreadable folder: {exc.strerror or exc}")
    return skip(describe_mode(st.st_mode))


def source_root_is_bio(source_dir: Path) -> bool:
    """The source folder is itself a BIO benchmark (train/ dev/ test/) or a lone split folder."""
    from utils.data.nlu_data import is_bio_folder, is_bio_split

    return is_bio_folder(source_dir) or is_bio_split(source_dir)


def scan_source(source_dir: Path, follow_symlinks: bool = False) -> SourceScan:
    """Top-level entries of the source dir by lstat (hidden ones ignored), sorted by name.

    Regular files and folders are data; links are followed only with ``follow_symlinks`` and
    then only to regular files; FIFOs, devices, sockets, dangling links and loops are skipped
    with their reason. A source dir that is itself a BIO folder is one entry.
    """
    if source_root_is_bio(source_dir):
        return SourceScan([_folder_entry(source_dir)])
    scan = SourceScan()
    with os.scandir(source_dir) as it:
        names = sorted(e.name for e in it if not e.name.startswith("."))
    for name in names:
        item = classify(source_dir / name, follow_symlinks)
        (scan.entries if isinstance(item, SourceEntry) else scan.skipped).append(item)
    return scan


def scan_source_dir(source_dir: Path, follow_symlinks: bool = False) -> list[SourceEntry]:
    """The data entries of ``scan_source`` (skipped names left out)."""
    return scan_source(source_dir, follow_symlinks).entries


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class IngestRecord:
    """In-memory view of the record with the lookups ingestion and the cron tick need."""

    def __init__(self, path: Path, rows: list[RecordRow]):
        self.path = path
        self.rows = rows
        self._by_stat = {(r.file, r.size, r.mtime_ns) for r in rows if r.status not in RETRIED_STATUSES}
        self._seen = {(r.file, r.size, r.mtime_ns, r.status, r.reason) for r in rows}
        self._status_by_hash: dict[str, str] = {}
        for r in rows:
            if not r.sha256:
                continue
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

    def has_row(self, file: str, size: int, mtime_ns: int, status: str, reason: str) -> bool:
        """This exact outcome is already recorded (a skipped name is recorded once)."""
        return (file, size, mtime_ns, status, reason) in self._seen

    def add(self, row: RecordRow) -> None:
        self.rows.append(row)
        self._seen.add((row.file, row.size, row.mtime_ns, row.status, row.reason))
        if row.status not in RETRIED_STATUSES:
            self._by_stat.add((row.file, row.size, row.mtime_ns))
        if not row.sha256:
            return
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

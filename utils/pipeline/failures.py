"""Operational failures as one line: what failed, where (path or URI), and what to do.

Disk full, a read-only or unwritable state dir, a corrupt tracking DB, an unreachable
tracking server and a tracking database that refuses the password are not bugs: a traceback helps nobody. ``run_entry`` wraps an entry point's
main: a known failure ends the command with ``error: <one line>`` on stderr and exit 1; any
other exception propagates unchanged (a bug keeps its traceback). Entry points call
``note_context`` once they know the state dir and tracking URI, so a message can name them
when the exception itself carries no path (a failed ``write()`` has none).
"""
from __future__ import annotations

import errno
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

EXIT_OPERATIONAL = 1
_context: dict[str, str] = {}


def note_context(**values: Any) -> None:
    """Remember ``state_dir`` / ``tracking_uri`` for messages about paths the error lacks, and
    ``tracking_setting``: how this command is told the URI (a CLI flag; default main.tracking_uri)."""
    _context.update({k: str(v) for k, v in values.items() if v is not None})


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        orig = getattr(e, "orig", None)          # sqlalchemy wraps the DB-API error
        for nxt in (e.__cause__, e.__context__, orig if isinstance(orig, BaseException) else None):
            if nxt is not None:
                todo.append(nxt)


def _where(exc: OSError) -> str:
    path = exc.filename or _context.get("state_dir")
    return str(path) if path else "the state dir"


def _tracking_db() -> str:
    uri = _context.get("tracking_uri", "")
    if uri.startswith("sqlite:///"):
        return "/" + uri.removeprefix("sqlite:///").lstrip("/")
    state = _context.get("state_dir")
    return os.path.join(state, "mlflow.db") if state else "the tracking database"


def _os_message(exc: OSError) -> str | None:
    where = _where(exc)
    if exc.errno == errno.ENOSPC:
        return (f"no space left on the device of {where}: free space there (df -h) or set "
                "paths.state_dir to a disk with room; what was deployed or ingested before is unchanged")
    if exc.errno == errno.EDQUOT:
        return f"disk quota exceeded writing {where}: free space or raise the quota, or set paths.state_dir elsewhere"
    if exc.errno == errno.EROFS:
        return (f"read-only file system: cannot write {where}: remount it read-write or set "
                "paths.state_dir to a writable folder")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (f"permission denied on {where}: give this user write access or set "
                "paths.state_dir to a folder it owns")
    if exc.errno == errno.EIO:
        return f"I/O error on {where}: the disk is failing or gone (see dmesg)"
    return None


def _sqlite_message(exc: sqlite3.Error) -> str | None:
    text = str(exc).strip()
    low = text.lower()
    db = _tracking_db()
    if "malformed" in low or "not a database" in low:
        return (f"database {db} is corrupt ({text}): restore it from a backup, or move it aside "
                "to start a new one (the model store and the ingested data are kept)")
    if "disk is full" in low or "disk i/o error" in low:
        return f"cannot write database {db} ({text}): free space on its disk or set paths.state_dir elsewhere"
    if "readonly database" in low or "unable to open database" in low:
        return (f"cannot write database {db} ({text}): make its folder writable or set "
                "paths.state_dir / main.tracking_uri to a writable place")
    return None


def _database_message(exc: BaseException) -> str | None:
    """A database server used as the tracking store (postgresql+psycopg://...) refused us."""
    if not type(exc).__module__.startswith("psycopg") or type(exc).__name__ != "OperationalError":
        return None
    from utils.pipeline.tracking_server import database_error_message

    uri = _context.get("tracking_uri", "postgresql://?")
    return database_error_message(exc, uri, setting=_tracking_setting())


def _tracking_setting() -> str:
    return _context.get("tracking_setting", "main.tracking_uri")


def _connection_message(exc: BaseException) -> str | None:
    from utils.pipeline.tracking import TrackingUnavailable

    if isinstance(exc, TrackingUnavailable):
        return str(exc)
    name = type(exc).__name__
    text = str(exc)
    if name in {"ConnectionError", "MaxRetryError", "NewConnectionError", "ConnectTimeout",
                "ConnectionRefusedError"} or "Max retries exceeded" in text or "Connection refused" in text:
        uri = _context.get("tracking_uri", "the tracking server")
        return (f"tracking server {uri} is unreachable ({name}): start it (./run_pipeline.sh tracking-server "
                f"on its host) and run again, or set {_tracking_setting()} to a reachable server (unset: the "
                "SQLite DB in the state dir)")
    return None


def os_errno(exc: BaseException) -> int | None:
    """The errno of the first OS error behind ``exc`` (None when there is none)."""
    return next((e.errno for e in _causes(exc) if isinstance(e, OSError) and e.errno), None)


def describe(exc: BaseException) -> str | None:
    """The one-line message for a known operational failure, else None."""
    for e in _causes(exc):
        if isinstance(e, sqlite3.Error):
            msg = _sqlite_message(e)
            if msg:
                return msg
    for e in _causes(exc):
        if isinstance(e, OSError) and not isinstance(e, ConnectionError):
            msg = _os_message(e)
            if msg:
                return msg
    for e in _causes(exc):
        msg = _database_message(e) or _connection_message(e)
        if msg:
            return msg
    return None


def fail(message: str, code: int = EXIT_OPERATIONAL) -> NoReturn:
    """Print the one line (even when the log files cannot be written) and exit."""
    from utils.pipeline.tracking_server import mask_text

    logging.raiseExceptions = False   # a handler on the full/read-only disk must stay silent
    message = mask_text(message, [os.environ.get("PGPASSWORD", "")])   # never a password in a log
    try:
        sys.stderr.write(f"error: {message}\n")
        sys.stderr.flush()
    finally:
        sys.exit(code)


def run_entry(main: Callable[[], Any]) -> Any:
    """Call ``main``; a known operational failure becomes one line and exit 1."""
    try:
        return main()
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        message = describe(exc)
        if message is None:
            raise
        fail(message)


def run_hydra_entry(task: Callable[[], Any]) -> Any:
    """``run_entry`` for a ``@hydra.main`` function: Hydra re-raises instead of printing its
    own traceback (HYDRA_FULL_ERROR), and its config errors stay one message."""
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    from hydra.errors import HydraException

    try:
        return run_entry(task)
    except HydraException as exc:
        sys.stderr.write(f"error: {str(exc).strip()}\n")
        sys.exit(1)

"""One cron tick at a time: `${state_dir}/fullprocess.lock`, and what to do with a stale one.

filelock's SoftFileLock is an existence marker holding the holder's pid, host and process
start token; a contender takes over a marker whose process is gone (pid reuse included).
This module adds what a cron job needs around it:

* a held lock is not an error: the caller logs and exits 0;
* a lock left by a dead tick is broken, and said so in the log;
* a lock older than `max_age_s` (a hung tick: the chain has its own timeout, so a healthy
  tick never gets that old) is broken too: its holder is terminated (SIGTERM, then SIGKILL)
  first, so two ticks never run side by side;
* process groups started by a tick (the chain) can be stopped the same way, by pgid.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import SoftFileLock, Timeout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Holder:
    pid: int | None
    host: str | None
    age_s: float


def read_holder(path: Path) -> Holder | None:
    """pid and host from the marker (filelock writes them on its first two lines), and its age."""
    try:
        text = path.read_text(errors="replace")
        age = time.time() - path.stat().st_mtime
    except OSError:
        return None
    lines = text.splitlines()
    pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
    host = lines[1].strip() if len(lines) > 1 else None
    return Holder(pid, host, age)


def _state(pid: int) -> str | None:
    """The process state letter from /proc (None where /proc is not available)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """Running, not a zombie (a zombie only waits for its parent to collect it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) not in ("Z", "X")


def cmdline(pid: int) -> str:
    """The process's command line ('' where /proc is not available or it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _wait_gone(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not check():
            return True
        time.sleep(0.1)
    return not check()


def terminate_pid(pid: int, grace_s: float = 20.0) -> None:
    """SIGTERM, wait up to grace_s, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not _wait_gone(lambda: pid_alive(pid), grace_s):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        _wait_gone(lambda: pid_alive(pid), 5.0)


def group_alive(pgid: int) -> bool:
    """Any live (not zombie) process in the group: zombies wait for a parent, they run nothing."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):   # fields: state ppid pgrp
                return True
    return False


def kill_group(pgid: int, grace_s: float = 10.0) -> bool:
    """Stop a whole process group (a chain and every step process under it); True if it was alive."""
    if not group_alive(pgid):
        return False
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    if not _wait_gone(lambda: group_alive(pgid), grace_s):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return True
        _wait_gone(lambda: group_alive(pgid), 5.0)
    return True


def _was_stale(holder: Holder) -> bool:
    """A marker seen before our acquire belonged to a dead tick (not one that just finished)."""
    if holder.pid is None:
        return holder.age_s > 2.0   # not a peer caught between creating and writing its marker
    return holder.pid != os.getpid() and not pid_alive(holder.pid)


class TickLock:
    """Non-blocking tick lock; ``acquire()`` is False while another live, young tick holds it."""

    def __init__(self, path: Path, max_age_s: float):
        self.path = path
        self.max_age_s = max_age_s
        self.broken: Holder | None = None     # the stale holder this tick took the lock from
        self._lock: SoftFileLock | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        before = read_holder(self.path)
        lock = SoftFileLock(str(self.path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            holder = read_holder(self.path)
            if holder is None or holder.age_s <= self.max_age_s:
                if holder is not None:
                    log.info("another tick (pid %s on %s, started %.0f s ago) holds %s: nothing to do",
                             holder.pid, holder.host, holder.age_s, self.path)
                return False
            self._break_expired(holder)
            try:
                lock.acquire()
            except Timeout:
                log.error("could not take %s even after breaking it; leaving this tick", self.path)
                return False
            self.broken, self._lock = holder, lock
            return True
        if before is not None and _was_stale(before):
            self.broken = before
            log.warning("broke a stale tick lock %s left by pid %s on %s (%.0f s old): that tick died "
                        "without releasing it", self.path, before.pid, before.host, before.age_s)
        self._lock = lock
        return True

    def _break_expired(self, holder: Holder) -> None:
        same_host = holder.host in (None, socket.gethostname())
        if holder.pid and same_host and pid_alive(holder.pid):
            if "fullprocess" in cmdline(holder.pid) or not Path("/proc").is_dir():
                log.warning("tick lock %s is %.0f s old (> fullprocess.lock_max_age_s=%.0f): terminating "
                            "its holder, pid %d, and breaking it", self.path, holder.age_s,
                            self.max_age_s, holder.pid)
                terminate_pid(holder.pid)
            else:
                log.warning("tick lock %s is %.0f s old; its pid %d is not a tick: breaking it",
                            self.path, holder.age_s, holder.pid)
        else:
            log.warning("tick lock %s is %.0f s old (> %.0f s), holder pid %s on %s: breaking it",
                        self.path, holder.age_s, self.max_age_s, holder.pid, holder.host)
        SoftFileLock(str(self.path), timeout=0).break_lock()

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

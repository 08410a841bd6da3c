"""One pipeline run at a time: `${state_dir}/fullprocess.lock`, and what to do with a stale one.

The lock is filelock's FileLock (flock(2)), the same lock the API's retrain jobs,
``manage.py retrain`` and main.py itself take on the same file, so no two of them run a chain
together (main.py skips it when whoever started it holds it: the tick's own chain). The kernel drops
an flock when its process dies, so a dead holder can never block the next tick. What this
module adds for a cron job:

* a held lock is not an error: the caller logs and exits 0;
* the holder writes a record into the lock file (pid, host, start time, command) and
  clears it before releasing; a record still there when the next tick gets the lock means
  its holder died without releasing it: that stale lock is reported (logged and returned)
  so the tick can clean up after it (its orphaned chain);
* a lock whose recorded holder has held it longer than `max_age_s` (a hung tick: the chain
  has its own timeout, so a healthy tick never gets that old) is broken: the holder is
  terminated (SIGTERM, then SIGKILL), which releases it, and the lock is taken;
* process groups started by a tick (the chain) can be stopped the same way, by pgid.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

#: Set by a holder for the processes it starts (its chain): a chain whose environment carries the
#: token in the lock's record runs under that lock. Unlike pid ancestry, it cannot match a holder in
#: another pid namespace (a container's pid 1 is every process's ancestor there) or a reused pid.
TOKEN_ENV = "MLOPS_PIPELINE_LOCK_TOKEN"


@dataclass(frozen=True)
class Holder:
    pid: int | None
    host: str | None
    age_s: float
    command: str = ""
    token: str = ""


def read_holder(path: Path) -> Holder | None:
    """The holder record in the lock file (None when the lock is free or the holder wrote none)."""
    try:
        raw = json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    return Holder(raw.get("pid"), raw.get("host"), time.time() - float(raw.get("started", time.time())),
                  str(raw.get("command", "")), str(raw.get("token", "")))


def write_holder(path: Path, command: str) -> None:
    """Record who holds the lock (call only while holding it): a waiting tick or a dry run can
    then name the holder instead of "holder unknown"."""
    from utils.pipeline.tracking_server import mask_uri

    token = uuid.uuid4().hex
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
              "command": mask_uri(command)[:500], "token": token}
    with open(path, "r+") as fh:   # no O_TRUNC at open: truncate only once we hold it
        fh.truncate(0)
        fh.write(json.dumps(record))
    os.environ[TOKEN_ENV] = token   # inherited by the chain this holder starts


def clear_holder(path: Path) -> None:
    """Empty the record before releasing: a record left behind means its holder died."""
    with open(path, "r+") as fh:
        fh.truncate(0)
    os.environ.pop(TOKEN_ENV, None)


class LockBusy(Exception):
    """Another pipeline run holds the lock."""


@contextmanager
def chain_lock(path: Path, command: str) -> Iterator[None]:
    """The pipeline lock for one chain run outside a tick (an API retrain job, ``manage.py
    retrain``): taken without waiting, its holder recorded while held and cleared before release.
    LockBusy when another run holds it (a tick names that holder; these callers just refuse)."""
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LockBusy(f"another pipeline run holds {path}") from None
    with _recorded(lock, path, command):
        yield


@contextmanager
def _recorded(lock: FileLock, path: Path, command: str) -> Iterator[None]:
    """A lock just taken: its holder recorded while held, the record cleared before release."""
    try:
        write_holder(path, command)
        yield
    finally:
        clear_holder(path)
        lock.release()


def held_by_this_chain(holder: Holder | None) -> bool:
    """The holder started this chain (a tick, an API retrain job or ``manage.py retrain``, which
    already hold the lock for it): its record's token is in this process's environment."""
    return bool(holder and holder.token) and os.environ.get(TOKEN_ENV) == holder.token


@contextmanager
def hand_chain_lock(path: Path, command: str, wait_s: float) -> Iterator[None]:
    """The pipeline lock for main.py: a chain started by hand runs alone, like the tick's.

    Held by whoever started this chain (``held_by_this_chain``): nothing more to take. Held by
    another run: wait up to ``wait_s`` (a tick that finds nothing to do lets go within seconds),
    then LockBusy naming the holder.
    """
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = read_holder(path)
        if held_by_this_chain(holder):
            yield
            return
        if wait_s > 0:
            log.info("waiting up to %.0f s for %s: held by %s", wait_s, path, describe_holder(holder))
        try:
            lock.acquire(timeout=wait_s)
        except Timeout:
            raise LockBusy(f"another pipeline run holds {path}: {describe_holder(read_holder(path))}") from None
    with _recorded(lock, path, command):
        yield


CRON_TICK = "a cron tick"


def holder_kind(holder: Holder) -> str:
    """What kind of run holds the lock: a cron tick, an API retrain job, a manual retrain, a chain
    started by hand, another process."""
    command = str(holder.command or "")
    # the script (argv[0], or after "python"), not any word: an override may name "fullprocess"
    program = next((Path(word).name for word in command.split()[:2] if word.endswith(".py")), "")
    return ("an API retrain job" if "api.jobrunner" in command else CRON_TICK if "fullprocess" in program
            else "a manual retrain (manage.py)" if "manage.py" in command
            else "a chain started by hand (main.py)" if program == "main.py" else "another process")


def describe_holder(holder: Holder | None) -> str:
    """Who holds the lock, for people: its kind, pid and how long it has held it."""
    if holder is None:
        return "holder unknown"
    return f"{holder_kind(holder)} (pid {holder.pid}, held for {holder.age_s:.0f} s)"


def lock_held(path: Path) -> bool:
    """Whether a live process holds the flock on ``path`` (the file itself stays after release)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


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


class TickLock:
    """Non-blocking lock; ``acquire()`` is False while another live, young run holds it."""

    def __init__(self, path: Path, max_age_s: float):
        self.path = path
        self.max_age_s = max_age_s
        self.broken: Holder | None = None     # the dead or hung holder this tick took the lock from
        self._lock: FileLock | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            holder = read_holder(self.path)
            if holder is None or holder.age_s <= self.max_age_s or not self._stop(holder):
                if holder is None:
                    log.info("another pipeline run holds %s (no holder record): "
                             "nothing to do", self.path)
                else:
                    log.info("%s on %s holds %s: nothing to do", describe_holder(holder), holder.host,
                             self.path)
                return False
            try:
                lock.acquire(timeout=30)   # the kernel releases it once the holder is gone
            except Timeout:
                log.error("could not take %s even after stopping its holder; leaving this tick", self.path)
                return False
            self.broken = holder
        else:
            stale = read_holder(self.path)   # holders clear their record before releasing
            if stale is not None and stale.pid != os.getpid():
                self.broken = stale
                log.warning("broke a stale tick lock %s left by pid %s on %s (%.0f s old): %s died "
                            "without releasing it", self.path, stale.pid, stale.host, stale.age_s,
                            holder_kind(stale))
        self._lock = lock
        self._write_record()
        return True

    def _stop(self, holder: Holder) -> bool:
        """Terminate a hung tick that holds the lock; True when it is gone."""
        if holder.host not in (None, socket.gethostname()) or not holder.pid:
            log.error("tick lock %s is %.0f s old, held by pid %s on %s: cannot stop a process on another "
                      "host; stop it there", self.path, holder.age_s, holder.pid, holder.host)
            return False
        if not pid_alive(holder.pid):
            return True
        if holder_kind(holder) != CRON_TICK or (
                "fullprocess" not in cmdline(holder.pid) and Path("/proc").is_dir()):
            log.error("tick lock %s is %.0f s old but pid %d is not a tick; leaving it", self.path,
                      holder.age_s, holder.pid)
            return False
        log.warning("tick lock %s is %.0f s old (> fullprocess.lock_max_age_s=%.0f): terminating its "
                    "holder, pid %d, and breaking it", self.path, holder.age_s, self.max_age_s, holder.pid)
        terminate_pid(holder.pid)
        return not pid_alive(holder.pid)

    def _write_record(self) -> None:
        write_holder(self.path, " ".join(sys.argv))

    def release(self) -> None:
        if self._lock is not None:
            clear_holder(self.path)
            self._lock.release(force=True)
            self._lock = None

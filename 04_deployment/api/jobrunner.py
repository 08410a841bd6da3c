"""Runs one API job to the end and records its state (started by api.jobs.start_job).

    python -m api.jobrunner --db JOBS_DB --job ID --lock LOCK_FILE --log LOG -- command...

Holds the pipeline lock while the command runs, so a retrain from the API and the cron
tick never run the chain at the same time; forwards SIGTERM/SIGINT to the command.
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from api.jobs import JobStore
from utils.tick.tick_lock import LockBusy, chain_lock


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--job", required=True)
    parser.add_argument("--lock", required=True, type=Path)
    parser.add_argument("--log", required=True, type=Path)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    store = JobStore(args.db)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with open(args.log, "ab", buffering=0) as log:
        try:
            with chain_lock(args.lock, f"api.jobrunner job {args.job}: {' '.join(command)}"):
                return run_job(store, args.job, command, log)
        except LockBusy as exc:
            message = f"{exc}; try again when it has finished"
            log.write(f"{message}\n".encode())
            store.update(args.job, state="failed", finished=time.time(), error=message)
            return 1


def run_job(store: JobStore, job: str, command: list[str], log: Any) -> int:
    """The job's command under the lock, its state in the job store, signals passed on to it."""
    store.update(job, state="running", started=time.time())
    log.write(f"$ {' '.join(command)}\n".encode())
    try:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except OSError as exc:
        store.update(job, state="failed", finished=time.time(), error=str(exc))
        return 1

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = proc.wait()
    store.update(job, state="succeeded" if code == 0 else "failed", returncode=code, finished=time.time(),
                 error=None if code == 0 else f"exit status {code}; see the log")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The crontab line that runs the cron tick, and its idempotent installation.

The line is complete on its own: absolute paths (cron's cwd is $HOME and its PATH is
minimal), the virtual environment's python, the tick's overrides, and stdout/stderr
appended to `${state_dir}/logs/cron.log` (the tick's own detailed log rotates next to it).
A trailing marker comment names the state dir, so installing again replaces the line for
that state dir instead of adding a second one.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from utils.pipeline.paths import REPO_ROOT

MARKER = "# mlops-fullprocess state_dir="
_EVERY = re.compile(r"^(?P<n>\d+)(?P<unit>[mhd])$")


class CronError(RuntimeError):
    """Cannot build or install the cron line; the message says what to do."""


def schedule(every: str) -> str:
    """`10m` -> `*/10 * * * *`; `2h` -> `0 */2 * * *`; `1d` -> `0 0 * * *`."""
    match = _EVERY.match(every.strip())
    if not match:
        raise CronError(f"--every {every!r}: expected <N>m (1-59), <N>h (1-23) or 1d, e.g. 10m")
    n, unit = int(match["n"]), match["unit"]
    if unit == "m" and 1 <= n <= 59:
        return "* * * * *" if n == 1 else f"*/{n} * * * *"
    if unit == "h" and 1 <= n <= 23:
        return "0 * * * *" if n == 1 else f"0 */{n} * * *"
    if unit == "d" and n == 1:
        return "0 0 * * *"
    raise CronError(f"--every {every!r}: minutes must be 1-59, hours 1-23, days 1")


def venv_python() -> Path:
    """The interpreter of the project's virtual environment (not resolved: that would leave it)."""
    if sys.prefix != sys.base_prefix:
        return Path(sys.executable).absolute()
    candidate = REPO_ROOT / ".venv" / "bin" / "python"
    return candidate if candidate.exists() else Path(sys.executable).absolute()


def _cron_quote(word: str) -> str:
    # cron turns an unescaped % into a newline: escape it after shell quoting
    return shlex.quote(word).replace("%", "\\%")


def _tag(state_dir: Path) -> str:
    return f"{MARKER}{state_dir}".replace("%", "\\%")


def cron_line(every: str, overrides: list[str], state_dir: Path, python: Path | None = None) -> str:
    python = python or venv_python()
    log_file = state_dir / "logs" / "cron.log"
    command = " ".join(_cron_quote(w) for w in [str(python), str(REPO_ROOT / "fullprocess.py"), *overrides])
    return (f"{schedule(every)} cd {_cron_quote(str(REPO_ROOT))} && mkdir -p {_cron_quote(str(log_file.parent))}"
            f" && {command} >> {_cron_quote(str(log_file))} 2>&1 {_tag(state_dir)}")


def _crontab() -> str:
    path = shutil.which("crontab")
    if path is None:
        raise CronError("`crontab` not found on PATH: install cron (Debian/Ubuntu: apt-get install cron; "
                        "RHEL: dnf install cronie) or add the line from --print-cron to your scheduler")
    return path


def read_crontab() -> list[str]:
    result = subprocess.run([_crontab(), "-l"], capture_output=True, text=True)
    if result.returncode != 0:
        if "no crontab" in (result.stderr + result.stdout).lower():
            return []
        raise CronError(f"crontab -l failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout.splitlines()


def install(line: str, state_dir: Path) -> str:
    """Add or replace this state dir's line; returns 'installed', 'updated' or 'unchanged'."""
    current = read_crontab()
    tag = _tag(state_dir)
    ours = [i for i, existing in enumerate(current) if existing.rstrip().endswith(tag)]
    if ours and len(ours) == 1 and current[ours[0]] == line:
        return "unchanged"
    kept = [existing for existing in current if not existing.rstrip().endswith(tag)]
    new = kept + [line]
    result = subprocess.run([_crontab(), "-"], input="\n".join(new) + "\n", capture_output=True, text=True)
    if result.returncode != 0:
        raise CronError(f"crontab - failed ({result.returncode}): {result.stderr.strip()}")
    return "updated" if ours else "installed"


def uninstall(state_dir: Path) -> bool:
    """Remove this state dir's line; True when one was there."""
    current = read_crontab()
    tag = _tag(state_dir)
    kept = [existing for existing in current if not existing.rstrip().endswith(tag)]
    if len(kept) == len(current):
        return False
    result = subprocess.run([_crontab(), "-"], input="\n".join(kept) + ("\n" if kept else ""),
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise CronError(f"crontab - failed ({result.returncode}): {result.stderr.strip()}")
    return True

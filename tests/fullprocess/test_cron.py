"""--print-cron / --install-cron: a real, runnable crontab line, installed once."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, REPO_ROOT
from tests.fullprocess.helpers import FULLPROCESS
from utils.tick.cron import CronError, schedule

FIELD = r"(\*|\d+)(/\d+)?"
CRON_LINE = re.compile(rf"^(?P<schedule>{FIELD} {FIELD} {FIELD} {FIELD} {FIELD}) (?P<command>.+)$")
FAKE_CRONTAB = """#!/bin/sh
# stands in for cron's crontab(1): -l prints the table, - replaces it from stdin
case "$1" in
  -l) if [ -f "$FAKE_CRONTAB_FILE" ]; then cat "$FAKE_CRONTAB_FILE"; else echo "no crontab for $(id -un)" >&2; exit 1; fi ;;
  -) cat > "$FAKE_CRONTAB_FILE" ;;
  *) echo "usage" >&2; exit 2 ;;
esac
"""


def fullprocess(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, str(FULLPROCESS), *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd or Path("/"), env={**os.environ, **(env or {})})


@pytest.fixture
def fake_crontab(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "crontab"
    script.write_text(FAKE_CRONTAB)
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_CRONTAB_FILE": str(tmp_path / "crontab.txt")}


@pytest.mark.parametrize("every, expected", [("10m", "*/10 * * * *"), ("1m", "* * * * *"),
                                             ("1h", "0 * * * *"), ("6h", "0 */6 * * *"), ("1d", "0 0 * * *")])
def test_schedule(every: str, expected: str) -> None:
    assert schedule(every) == expected


@pytest.mark.parametrize("every", ["0m", "60m", "24h", "2d", "10", "ten minutes"])
def test_bad_schedules_are_refused(every: str) -> None:
    with pytest.raises(CronError, match="--every"):
        schedule(every)


def test_printed_line_is_a_valid_crontab_line_that_runs_a_tick(tmp_path: Path) -> None:
    state, source = tmp_path / "state dir", tmp_path / "source"
    source.mkdir()
    proc = fullprocess("--print-cron", "--every", "5m", f"paths.state_dir={state}", f"data.source_dir={source}")
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert "\n" not in line
    match = CRON_LINE.match(line)
    assert match, line
    assert match["schedule"] == "*/5 * * * *"
    words = shlex.split(match["command"], comments=True)
    assert words[:2] == ["cd", str(REPO_ROOT)]
    python, script = words[words.index("mkdir") + 4], words[words.index("mkdir") + 5]
    assert Path(python).is_absolute() and Path(python) == Path(PYTHON).absolute()   # the venv's python
    assert script == str(REPO_ROOT / "fullprocess.py")
    assert f"paths.state_dir={state}" in words and f"data.source_dir={source}" in words
    assert words[-3:] == [">>", str(state / "logs" / "cron.log"), "2>&1"]
    # run the command the way cron does (sh -c, from $HOME, with a minimal PATH)
    run = subprocess.run(["/bin/sh", "-c", match["command"]], cwd=tmp_path, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0
    logged = (state / "logs" / "cron.log").read_text()
    assert '"status": "noop"' in logged


def test_percent_signs_are_escaped_for_cron(tmp_path: Path) -> None:
    proc = fullprocess("--print-cron", f"paths.state_dir={tmp_path}/a%b")
    assert proc.returncode == 0, proc.stderr
    assert "a\\%b" in proc.stdout and not re.search(r"[^\\]%", proc.stdout)


def test_install_is_idempotent_and_keeps_other_lines(tmp_path: Path, fake_crontab: dict[str, str]) -> None:
    table = Path(fake_crontab["FAKE_CRONTAB_FILE"])
    table.write_text("MAILTO=ops@example.org\n0 3 * * * /usr/bin/backup\n")
    args = [f"paths.state_dir={tmp_path / 'state'}"]
    first = fullprocess("--install-cron", *args, env=fake_crontab)
    assert first.returncode == 0, first.stderr
    assert "installed" in first.stdout
    second = fullprocess("--install-cron", *args, env=fake_crontab)
    assert "unchanged" in second.stdout
    lines = table.read_text().splitlines()
    assert lines[:2] == ["MAILTO=ops@example.org", "0 3 * * * /usr/bin/backup"]
    assert len(lines) == 3 and lines[2] == fullprocess("--print-cron", *args).stdout.strip()

    third = fullprocess("--install-cron", "--every", "30m", *args, env=fake_crontab)
    assert "updated" in third.stdout
    lines = table.read_text().splitlines()
    assert len(lines) == 3 and lines[2].startswith("*/30 * * * * ")
    other_state = fullprocess("--install-cron", f"paths.state_dir={tmp_path / 'other'}", env=fake_crontab)
    assert "installed" in other_state.stdout and len(table.read_text().splitlines()) == 4

    removed = fullprocess("--uninstall-cron", *args, env=fake_crontab)
    assert removed.returncode == 0 and "removed" in removed.stdout
    assert len(table.read_text().splitlines()) == 3


def test_install_without_crontab_fails_clearly(tmp_path: Path) -> None:
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    proc = fullprocess("--install-cron", f"paths.state_dir={tmp_path}", env={"PATH": str(empty_bin)})
    assert proc.returncode == 2
    assert "crontab" in proc.stderr and "apt-get install cron" in proc.stderr

"""Cost of a cron tick: the idle (no-op) tick against a naive one, and scaling with old files.

1. No-op tick vs naive tick, in one run, same data (the shipped tabular source files, all
   already ingested): ours decides from the ingest record by size + mtime, importing only
   omegaconf and filelock; the naive tick imports mlflow and pandas, reads every file with
   pandas and hashes it, as a straightforward implementation would. Wall time (median of
   `--repeat` fresh processes) and peak RSS (VmHWM of the tick process), and their ratios.
2. 1 new file among N already ingested ones (N = 10 and 10,000, one row each): the no-op
   tick, the detection (`--dry-run`: scan, hash only the changed file), and a whole tick
   that ingests it (`drift.policy=never`: the real data_ingestion step through main.py, no
   retrain). The work must follow the new files, not the old ones.

    python benchmarks/tick.py                      # about 2 minutes
    python benchmarks/tick.py --repeat 9 --json out.json

Everything runs in a temporary state dir; nothing in the repo is written.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from utils.data.ingest_record import IngestRecord, RecordRow, now, scan_source_dir  # noqa: E402

PYTHON = sys.executable
HEADER = ["corporation", "lastmonth_activity", "lastyear_activity", "number_of_employees", "exited"]

# Runs a program in this interpreter and reports its wall time and peak RSS (VmHWM: this
# process image only; getrusage's ru_maxrss would include the parent it was forked from).
PROBE = """
import json, runpy, sys, time
sys.path.insert(0, {repo!r})
sys.argv = {argv!r}
t0 = time.perf_counter()
code = 0
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print("PROBE " + json.dumps({{"code": code, "seconds": time.perf_counter() - t0, "rss_mb": hwm / 1024}}),
      file=sys.stderr)
"""

NAIVE = '''"""The naive tick: heavy imports up front, then read and hash every source file."""
import hashlib, sys
from pathlib import Path
import mlflow  # noqa: F401  (a naive tick sets up tracking first)
import pandas as pd

state, source = Path(sys.argv[1]), Path(sys.argv[2])
record = pd.read_csv(state / "ingested" / "attrition_model" / "ingestedfiles.csv")
known = set(record["sha256"])
new = []
for path in sorted(source.iterdir()):
    frame = pd.read_csv(path)                       # validates it parses
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest not in known:
        new.append(path.name)
print("new files:", new)
'''


def probe(argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Wall time measured outside (process start included) + the program's own peak RSS."""
    code = PROBE.format(repo=str(REPO_ROOT), argv=argv)
    t0 = time.perf_counter()
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir(),
                          env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t0
    line = next((ln for ln in proc.stderr.splitlines() if ln.startswith("PROBE ")), None)
    if line is None or json.loads(line[6:])["code"] != 0:
        raise RuntimeError(f"{argv[0]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return {**json.loads(line[6:]), "wall_s": wall}


def repeat(argv: list[str], times: int) -> dict[str, float]:
    runs = [probe(argv) for _ in range(times)]
    return {"wall_s": statistics.median(r["wall_s"] for r in runs),
            "rss_mb": max(r["rss_mb"] for r in runs), "runs": times}


def write_rows(path: Path, rows: list[list[Any]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(rows)


def ingested_state(root: Path, source: Path, dataset_rows: list[list[Any]]) -> Path:
    """A state dir whose ingest record lists every file of ``source``, with their dataset."""
    state = root / "state"
    (state / "ingested" / "attrition_model").mkdir(parents=True)
    record = IngestRecord.load(state / "ingested" / "attrition_model" / "ingestedfiles.csv")
    for entry in scan_source_dir(source):
        record.add(RecordRow(file=str(entry.path), sha256=entry.sha256(), rows=1, status="ingested",
                             reason="", time=now(), size=entry.size, mtime_ns=entry.mtime_ns))
    record.save()
    write_rows(state / "ingested" / "attrition_model" / "finaldata.csv", dataset_rows)
    # an MLflow DB with its schema in place: its migration is a one-off, not a tick's cost
    subprocess.run([PYTHON, "-c", "import sys; from mlflow.store.tracking.sqlalchemy_store import "
                    "SqlAlchemyStore as S; S(sys.argv[1], sys.argv[2]).engine.dispose()",
                    f"sqlite:///{state / 'mlflow.db'}", str(state / "mlartifacts")], check=True)
    return state


def tick_argv(state: Path, source: Path, *extra: str) -> list[str]:
    return [str(REPO_ROOT / "fullprocess.py"), f"paths.state_dir={state}", f"data.source_dir={source}", *extra]


def noop_vs_naive(root: Path, times: int) -> dict[str, Any]:
    source = root / "src"
    shutil.copytree(REPO_ROOT / "01_data" / "sourcedata" / "tabular", source)
    rows = [r for f in sorted(source.iterdir()) for r in list(csv.reader(open(f)))[1:]]
    state = ingested_state(root, source, rows)
    naive = root / "naive_tick.py"
    naive.write_text(NAIVE)
    probe(tick_argv(state, source))                      # first tick adopts the drift reference
    ours = repeat(tick_argv(state, source), times)
    theirs = repeat([str(naive), str(state), str(source)], times)
    return {"files": len(list(source.iterdir())), "noop": ours, "naive": theirs,
            "wall_ratio": theirs["wall_s"] / ours["wall_s"], "rss_ratio": theirs["rss_mb"] / ours["rss_mb"]}


def one_new_among(root: Path, old_files: int, times: int) -> dict[str, Any]:
    """1 new file among ``old_files`` ingested ones: no-op, detection, ingesting tick."""
    source = root / f"src{old_files}"
    source.mkdir(parents=True)
    rows = []
    for i in range(old_files):
        row = [f"old{i}", i % 50, 10 * (i % 50) + 5, 1 + i % 300, i % 2]
        write_rows(source / f"part{i:05d}.csv", [row])
        rows.append(row)
    template = ingested_state(root / f"t{old_files}", source, rows)
    probe(tick_argv(template, source))                   # adopt the drift reference
    noop = repeat(tick_argv(template, source), times)
    write_rows(source / "zz_new.csv", [[f"new{i}", 5, 60, 10, i % 2] for i in range(20)])
    detect = repeat([str(REPO_ROOT / "fullprocess.py"), "--dry-run", *tick_argv(template, source)[1:]], times)
    ingest_runs = []
    for k in range(max(1, times // 3)):
        state = root / f"run{old_files}-{k}"
        shutil.copytree(template, state)
        ingest_runs.append(probe(tick_argv(state, source, "drift.policy=never")))
        record = IngestRecord.load(state / "ingested" / "attrition_model" / "ingestedfiles.csv")
        assert record.rows[-1].file.endswith("zz_new.csv") and len(record.rows) == old_files + 1
    return {"old_files": old_files, "noop": noop, "detect": detect,
            "ingest_tick": {"wall_s": statistics.median(r["wall_s"] for r in ingest_runs),
                            "rss_mb": max(r["rss_mb"] for r in ingest_runs), "runs": len(ingest_runs)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per measurement (median)")
    parser.add_argument("--many", type=int, default=10_000, help="old files in the scaling case")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tick-bench-") as tmp:
        root = Path(tmp)
        first = noop_vs_naive(root / "a", args.repeat)
        small = one_new_among(root / "b", 10, args.repeat)
        large = one_new_among(root / "c", args.many, args.repeat)

    print(f"\n1. idle tick, {first['files']} ingested files (median of {args.repeat} processes)")
    print(f"   {'':24} {'wall s':>8} {'peak RSS MB':>12}")
    print(f"   {'no-op tick (ours)':24} {first['noop']['wall_s']:8.3f} {first['noop']['rss_mb']:12.1f}")
    print(f"   {'naive tick':24} {first['naive']['wall_s']:8.3f} {first['naive']['rss_mb']:12.1f}")
    print(f"   {'naive / ours':24} {first['wall_ratio']:8.1f}x {first['rss_ratio']:11.1f}x")
    print(f"\n2. one new file among N ingested files{'':4}N={small['old_files']:<8} N={large['old_files']:<8} ratio")
    for key, label in (("noop", "no-op tick (N old only)"), ("detect", "detect (--dry-run)"),
                       ("ingest_tick", "tick that ingests it")):
        a, b = small[key]["wall_s"], large[key]["wall_s"]
        print(f"   {label:38} {a:8.3f} s {b:8.3f} s {b / a:6.2f}x")
    results = {"noop_vs_naive": first, "scaling": [small, large],
               "python": sys.version.split()[0], "cpus": os.cpu_count()}
    print(json.dumps(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Kill -9 at random moments: does the model store always come back consistent?

A worker process loops add_version -> deploy, with a rollback every third round, on a model
of `--size-mb` (the copy takes a while, so kills land anywhere: mid-copy, between intent and
swap, between swap and record, mid-write of a history line). It is SIGKILLed after a random
delay; then the next "run" (this script) calls `recover_locked()` and checks:

* production is a complete version (metadata and model file in place),
* the history's last deploy/rollback names it,
* a rollback works whenever the history has an earlier deploy, and lands on that version.

Baseline, in the same run: the same loop with the pre-issue-12 order (swap, then append the
history line; no intent, no recovery), checked the same way. It should fail some trials.

    python benchmarks/kill_loop.py                 # 60 trials each, about 2 minutes
    python benchmarks/kill_loop.py --trials 200 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from utils.models.model_store import ModelStore, ModelStoreError  # noqa: E402

_WORKER = """
import sys
sys.path.insert(0, {root!r})
from pathlib import Path
from utils.models.model_store import ModelStore
store = ModelStore(Path({models!r}))
src = Path({src!r})
naive = {naive!r}
i = {start}
print("ready", flush=True)
while True:
    v = f"m-v{{i}}"
    store.add_version(v, src, {{"model_name": "m"}})
    if naive:   # the old order: swap first, then the history line
        prev = store.production_version()
        store.swap_production(v)
        store.append_history({{"event": "deploy", "version": v, "replaced": prev, "rollback_to": prev}})
    else:
        store.deploy(v)
    if i % 3 == 0:
        if naive:
            cur, tgt = store.production_version(), store.rollback_target()
            if tgt:
                further = next((e.get("rollback_to") for e in reversed(store.history())
                                if e.get("event") in ("deploy", "rollback") and e.get("version") == tgt), None)
                store.swap_production(tgt)
                store.append_history({{"event": "rollback", "version": tgt, "replaced": cur, "rollback_to": further}})
        else:
            store.rollback()
    i += 1
"""


def make_model(folder: Path, size_mb: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "MLmodel").write_text("name: m\n")
    (folder / "model.bin").write_bytes(os.urandom(size_mb << 20))
    return folder


def next_number(store: ModelStore) -> int:
    numbers = [int(p.name.rsplit("-v", 1)[1]) for p in store.versions_dir.glob("m-v*")]
    return max(numbers, default=0) + 1


def prune(store: ModelStore, keep: int = 6) -> None:
    """Delete all but the newest version folders and production (the disk stays small)."""
    import shutil

    current = store.production_version()
    versions = sorted(store.versions_dir.glob("m-v*"), key=lambda p: int(p.name.rsplit("-v", 1)[1]))
    for folder in versions[:-keep]:
        if folder.name != current:
            shutil.rmtree(folder, ignore_errors=True)


def check(store: ModelStore, size: int, recover: bool) -> tuple[bool, str, list[str]]:
    """(consistent, why not, recovery events) after a kill."""
    events = [e["event"] for e in store.recover_locked()] if recover else []
    current = store.production_version()
    if current is None:
        return False, "no production version", events
    model = store.version_dir(current) / "model" / "model.bin"
    if not model.is_file() or model.stat().st_size != size:
        return False, f"production {current} incomplete", events
    commits = [e for e in store.history() if e.get("event") in ("deploy", "rollback")]
    if not commits or commits[-1]["version"] != current:
        return False, f"history does not know production {current}", events
    # judge rollback where the history says it must work: the version production replaced exists
    last = commits[-1].get("rollback_to")
    if last and store.has_version(last):
        expected = store.rollback_target()
        try:
            event = store.rollback(source="kill_loop") if recover else None
        except ModelStoreError as exc:
            return False, f"rollback impossible: {exc}", events
        if event is None:   # baseline: judge by the target only
            if expected is None:
                return False, "rollback impossible: no target", events
        elif store.production_version() != event["version"]:
            return False, "rollback did not move production", events
        if recover:
            store.deploy(current)   # back where the worker left it, for the next trial
    return True, "", events


def run_trials(trials: int, size_mb: int, naive: bool, seed: int, work: Path) -> dict[str, Any]:
    rng = random.Random(seed)
    store = ModelStore(work / ("naive" if naive else "store") / "models")
    src = make_model(work / f"src-{'naive' if naive else 'store'}", size_mb)
    store.add_version("m-v1", src, {"model_name": "m"})
    store.deploy("m-v1")
    survived, failures, recoveries = 0, [], {}
    for trial in range(trials):
        proc = subprocess.Popen([sys.executable, "-c", _WORKER.format(
            root=str(REPO_ROOT), models=str(store.root), src=str(src), naive=naive,
            start=next_number(store))], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.02, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ok, why, events = check(store, size_mb << 20, recover=not naive)
        for e in events:
            recoveries[e] = recoveries.get(e, 0) + 1
        prune(store)
        if ok:
            survived += 1
        else:
            failures.append(f"trial {trial}: {why}")
            if naive:   # repair by hand so later trials start from a sane store
                store.recover_locked()
    return {"trials": trials, "survived": survived, "failures": failures, "recoveries": recoveries,
            "versions_written": next_number(store) - 1}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--size-mb", type=int, default=8)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kill-loop-") as tmp:
        ours = run_trials(args.trials, args.size_mb, naive=False, seed=args.seed, work=Path(tmp))
        base = run_trials(args.trials, args.size_mb, naive=True, seed=args.seed, work=Path(tmp))
    print(f"write-ahead store: {ours['survived']}/{ours['trials']} kills survived "
          f"({ours['versions_written']} versions written; recovery events {ours['recoveries']})")
    print(f"baseline (swap, then record): {base['survived']}/{base['trials']} consistent")
    for line in base["failures"][:5]:
        print(f"  baseline {line}")
    for line in ours["failures"]:
        print(f"  FAILED {line}")
    if args.json:
        args.json.write_text(json.dumps({"write_ahead": ours, "baseline": base}, indent=2))
    return 0 if ours["survived"] == ours["trials"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

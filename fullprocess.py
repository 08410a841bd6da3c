"""One cron tick: keep every model of the state dir fresh without a person.

    python fullprocess.py [overrides]              one tick (cron runs this every few minutes)
    python fullprocess.py --dry-run [overrides]    say what a tick would do, change nothing
    python fullprocess.py --print-cron [--every 10m] [overrides]   the crontab line
    python fullprocess.py --install-cron [--every 10m] [overrides] install it (idempotent)
    python fullprocess.py --uninstall-cron [overrides]

Overrides are main.py's (Hydra syntax), e.g. `paths.state_dir=/srv/mlops`. The tick handles
every model of the state dir (each model's chain records its own config in
`models/<model>/model.json`); overrides that define a model (`task=...`, `data.*`,
`training.*`...) name one more model, the cron line's own (on a fresh state dir, the only
one). `--model NAME` limits the tick to one model. Paused models are skipped (logged). For
each model, one failure never stops the others, and a tick:

1. takes `${state_dir}/fullprocess.lock`; another live tick holds it -> exit 0. A lock left
   by a dead tick, or older than `fullprocess.lock_max_age_s`, is broken (and logged);
2. compares `data.source_dir` with the ingest record (size + mtime; sha256 only for changed
   files). Nothing new -> one log line, exit 0. Up to here nothing heavy is imported
   (no mlflow, pandas, sklearn, torch): an idle tick costs a fraction of a second;
3. runs the real `data_ingestion` step (main.py in a subprocess, tracked in MLflow);
4. checks drift (utils/tick/drift_check.py -> reports/drift.json + an MLflow run);
5. if `drift.policy` says so, runs main.py from `fullprocess.chain_from` (model_training) to
   the end of the chain in its own process group, killed whole after `fullprocess.timeout_s`;
   the deployment gate decides whether the new model goes live;
6. notifies (utils/tick/notify.py) on failure, drift and a new deployment; delivery errors are
   logged, never fatal;
7. runs the model's schedule: `schedule.retrain_every` elapsed -> retrain even without drift;
   `schedule.monitor_every` elapsed -> score production on its test data and append to its
   monitoring history (`models/<model>/monitoring.jsonl`); a missed tick catches up once;
8. logs to `${state_dir}/logs/fullprocess.log` (rotating) and appends one JSON summary line
   per model to `${state_dir}/logs/ticks.jsonl` (also printed on stdout).

The tick's clock is `MLOPS_NOW` when set (epoch seconds or ISO 8601; utils/pipeline/clock.py),
else the system clock: a rehearsal or a test runs a week of daily ticks in minutes.

Exit 0: nothing to do, or done for every model. Non-zero: a model failed (1), a bad command
line or config (2), terminated by a signal (143).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from utils.data.ingest_record import IngestRecord, SourceEntry, scan_source_dir
from utils.models.catalog import (
    list_models,
    migrate_legacy_layout,
    parse_duration,
    read_control,
    read_manifest,
)
from utils.pipeline.clock import now as now_clock
from utils.pipeline.paths import REPO_ROOT, StatePaths, resolve_path
from utils.tick.tick_lock import (
    TickLock,
    cmdline,
    describe_holder,
    group_alive,
    kill_group,
    lock_held,
    read_holder,
)
from utils.tick.tick_state import (
    TickState,
    append_tick,
    dataset_file,
    history_file,
    rotate,
    take_reference,
)

log = logging.getLogger("fullprocess")

clock = now_clock      # the tick's notion of now: MLOPS_NOW or the system clock (tests also replace it)

POLICY_SIGNALS = ("performance", "distribution")
DRIFT_TASKS = ("tabular", "nlu", "forecast")   # tasks with a drift check (utils/tick/drift_check.py)
# overrides of the cron line that apply to every model (the rest define the cron line's own model)
GLOBAL_PREFIXES = ("paths.", "main.tracking_uri", "main.env_manager", "main.experiment_name", "main.reuse_runs",
                   "fullprocess.", "drift.", "notify.", "api.", "hydra.")
POLICY_WORDS = ("always", "never")


class TickFailed(RuntimeError):
    """The tick could not do its job; the message says what and where to look."""


class Terminated(BaseException):
    """SIGTERM/SIGINT: stop the chain's process group, record, release the lock, exit."""


@dataclass
class Tick:
    """What one tick saw and did: the JSON summary line."""

    tick: str = field(default_factory=lambda: time.strftime("%Y%m%dT%H%M%S-") + os.urandom(3).hex())
    model: str | None = None
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    pid: int = field(default_factory=os.getpid)
    status: str = "noop"            # noop | locked | paused | ok | failed | terminated
    decision: str = "noop"          # noop | locked | paused | ingest | check | retrain | no-retrain | monitor
    reason: str = ""
    new_files: list[str] = field(default_factory=list)
    known_files: int = 0            # changed files whose content was already seen
    rows_new: int | None = None
    drift: dict[str, Any] | None = None
    chain: dict[str, Any] | None = None
    production_before: str | None = None
    production_after: str | None = None
    trained_version: str | None = None
    deployed: bool = False
    monitored: dict[str, Any] | None = None
    broke_lock: dict[str, Any] | None = None
    notifications: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    exit_code: int = 0
    duration_s: float = 0.0


# ---- command line and config -----------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="One cron tick of the pipeline: new data -> ingest -> drift check -> retrain.",
        epilog="Overrides are main.py's Hydra overrides, e.g. task=nlu paths.state_dir=/srv/mlops")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="show what a tick would do; change nothing")
    mode.add_argument("--print-cron", action="store_true", help="print the crontab line for these overrides")
    mode.add_argument("--install-cron", action="store_true",
                      help="add (or update) that line in the user's crontab")
    mode.add_argument("--uninstall-cron", action="store_true", help="remove it from the user's crontab")
    parser.add_argument("--every", default="10m", help="cron interval: <N>m, <N>h or 1d (default 10m)")
    parser.add_argument("--model", default=None, help="tick only this model (default: every model)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for main.py")
    return parser.parse_args(argv)


def chain_overrides(overrides: Sequence[str]) -> list[str]:
    """The user's overrides for main.py, without main.steps (the tick chooses the steps)."""
    kept = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != "main.steps"]
    if len(kept) != len(overrides):
        log.warning("ignoring main.steps in the tick's overrides: the tick chooses the steps")
    return kept


@dataclass
class ModelTarget:
    """One model the tick handles: its name, composed config and main.py overrides."""

    name: str
    cfg: Any
    overrides: list[str]


def is_global(override: str) -> bool:
    return override.lstrip("+~").startswith(GLOBAL_PREFIXES)


def tick_targets(cfg: Any, overrides: Sequence[str], paths: StatePaths, only: str | None = None) -> list[ModelTarget]:
    """Every model with a manifest (its recorded overrides + the cron line's global ones), and
    the cron line's own model when its overrides define one or the state dir has none yet."""
    from utils.tick.light_config import load_light_config

    overrides = list(overrides)
    global_overrides = [o for o in overrides if is_global(o)]
    defines_model = len(global_overrides) != len(overrides)
    targets: dict[str, ModelTarget] = {}
    for name in list_models(paths):
        manifest = read_manifest(paths, name)
        if not manifest:
            continue
        own = cfg.task.model_name == name and defines_model
        recorded = [o for o in manifest.get("overrides") or [] if not is_global(o)
                    and not o.lstrip("+~").startswith("task.model_name=")]
        model_overrides = [*recorded, *(overrides if own else global_overrides), f"task.model_name={name}"]
        try:
            targets[name] = ModelTarget(name, load_light_config(model_overrides), model_overrides)
        except Exception as exc:  # noqa: BLE001 - one broken manifest must not stop the others
            log.error("model %s: its recorded overrides no longer compose (%s); skipped", name, exc)
    if cfg.task.model_name not in targets and (defines_model or not targets):
        targets[cfg.task.model_name] = ModelTarget(cfg.task.model_name, cfg, overrides)
    if only is not None:
        if only not in targets:
            raise TickFailed(f"--model {only}: no such model; models: {', '.join(sorted(targets)) or 'none'}")
        return [targets[only]]
    return [targets[k] for k in sorted(targets)]


def schedule_of(cfg: Any) -> tuple[float | None, float | None]:
    """(retrain_every, monitor_every) in seconds; None: off."""
    section = cfg.get("schedule") or {}
    try:
        return parse_duration(section.get("retrain_every")), parse_duration(section.get("monitor_every"))
    except ValueError as exc:
        raise TickFailed(f"schedule: {exc}") from None


def last_training_time(paths: StatePaths) -> float | None:
    """When the newest version of the model was stored (its folder's mtime): the schedule's
    baseline before the tick has retrained it itself."""
    versions = paths.models_dir / "versions"
    try:
        times = [c.stat().st_mtime for c in versions.iterdir() if not c.name.startswith(".")]
    except OSError:
        return None
    return max(times, default=None)


def policy_of(cfg: Any) -> list[str]:
    raw = cfg.drift.policy
    policy = [raw] if isinstance(raw, str) else [str(p) for p in raw]
    unknown = [p for p in policy if p not in POLICY_SIGNALS + POLICY_WORDS]
    if unknown or not policy:
        raise TickFailed(f"drift.policy={policy}: expected a list of {', '.join(POLICY_SIGNALS)}, "
                         f"or one of {', '.join(POLICY_WORDS)}")
    return policy


def lock_max_age(cfg: Any) -> float:
    value = cfg.fullprocess.lock_max_age_s
    return float(value) if value is not None else float(cfg.fullprocess.timeout_s) + 900.0


# ---- step 2: anything new? ---------------------------------------------------------------------
@dataclass
class SourceChanges:
    entries: int
    new_content: list[SourceEntry]     # content never seen: to ingest
    known_content: list[SourceEntry]   # new path/size/mtime, content already in the record

    @property
    def any(self) -> bool:
        return bool(self.new_content or self.known_content)


def source_changes(source_dir: Path, record_path: Path, follow_symlinks: bool = False) -> SourceChanges:
    """Size + mtime against the ingest record; only the changed files are hashed."""
    if not source_dir.is_dir():
        raise TickFailed(f"data.source_dir {source_dir} does not exist or is not a folder: "
                         "set data.source_dir=<folder with the raw files>")
    record = IngestRecord.load(record_path)
    entries = scan_source_dir(source_dir, follow_symlinks)   # FIFOs, devices, links: not entries
    new, known = [], []
    for entry in record.changed_entries(entries):
        try:
            (known if record.status_of_hash(entry.sha256()) else new).append(entry)
        except OSError as exc:   # being written or removed right now: next tick
            log.warning("cannot read %s (%s): skipped this tick", entry.path, exc)
    return SourceChanges(len(entries), new, known)


# ---- steps 3 and 5: main.py in its own process group ---------------------------------------
@dataclass
class ChainRun:
    steps: str
    exit_code: int | None = None
    timed_out: bool = False
    duration_s: float = 0.0
    log_file: str = ""
    tail: list[str] = field(default_factory=list)

    def cause(self) -> str:
        """': <the chain's own error line>' (disk full, corrupt DB, server down: the path or URI and
        what to do), so the tick's one line says it too instead of only pointing at chain.log."""
        errors = [line.removeprefix("error: ").strip() for line in self.tail if line.startswith("error: ")]
        return f": {errors[-1]}" if errors else ""


def run_main(overrides: Sequence[str], steps: Sequence[str], timeout_s: float, paths: StatePaths,
             state: TickState, tick: Tick) -> ChainRun:
    """`python main.py <overrides> main.steps='<steps>'`, see run_in_group."""
    spec = ",".join(steps)
    cmd = [sys.executable, str(REPO_ROOT / "main.py"), *chain_overrides(overrides), f"main.steps='{spec}'"]

    def started(pgid: int) -> None:
        state.chain = {"pgid": pgid, "steps": spec, "tick": tick.tick, "started": time.time()}
        state.save(paths)

    def ended() -> None:
        state.chain = None
        state.save(paths)

    return run_in_group(cmd, spec, timeout_s, paths.logs_dir / "chain.log", tick.tick, started, ended)


def run_in_group(cmd: Sequence[str], name: str, timeout_s: float, chain_log: Path, tick_id: str,
                 on_start: Callable[[int], None] = lambda pgid: None,
                 on_end: Callable[[], None] = lambda: None) -> ChainRun:
    """Run ``cmd`` as a process-group leader; kill the whole group on timeout or termination.

    Output goes to ``chain_log`` (a file, not a pipe: the chain never blocks on, or dies
    with, a dead reader). No process of the group outlives this call; ``on_start`` gets the
    group id (recorded in the tick state, so a successor can stop an orphaned chain).
    """
    import subprocess

    from utils.pipeline.tracking_server import mask_uri

    chain_log.parent.mkdir(parents=True, exist_ok=True)
    run = ChainRun(name, log_file=str(chain_log))
    with open(chain_log, "ab") as out:
        out.write(f"\n===== tick {tick_id} {time.strftime('%Y-%m-%dT%H:%M:%S%z')}: "
                  f"{mask_uri(' '.join(cmd))}\n".encode())   # a password in main.tracking_uri: masked
        out.flush()
        start_offset = out.tell()
        started = time.monotonic()
        proc = subprocess.Popen(list(cmd), cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            on_start(proc.pid)
            log.info("%s started (pgid %d, timeout %.0f s, output in %s)", name, proc.pid, timeout_s, chain_log)
            run.exit_code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            run.timed_out = True
            log.error("%s still running after fullprocess.timeout_s=%.0f s: killing its process group %d",
                      name, timeout_s, proc.pid)
            kill_group(proc.pid)
            run.exit_code = proc.wait()
        except BaseException:
            kill_group(proc.pid)
            proc.wait()
            raise
        finally:
            if group_alive(proc.pid):      # a step process left behind by a finished leader
                kill_group(proc.pid)
            on_end()
            run.duration_s = round(time.monotonic() - started, 3)
    if run.exit_code != 0:
        run.tail = _tail(chain_log, start_offset)
    return run


def _tail(path: Path, offset: int, lines: int = 25) -> list[str]:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read().decode("utf-8", "replace").splitlines()[-lines:]


def stop_orphan_chain(state: TickState, paths: StatePaths) -> None:
    """A chain recorded by a tick that is gone (we hold the lock): stop what is left of it."""
    if not state.chain:
        return
    pgid = int(state.chain.get("pgid", 0))
    if pgid and group_alive(pgid) and ("main.py" in cmdline(pgid) or not Path("/proc").is_dir()):
        log.warning("stopping the chain (process group %d, steps %s) left running by dead tick %s",
                    pgid, state.chain.get("steps"), state.chain.get("tick"))
        kill_group(pgid)
    state.chain = None
    state.save(paths)


def validate_chain(overrides: Sequence[str], steps: Sequence[str]) -> None:
    """Every step config the tick may run (ingestion and the chain), checked as main.py checks
    them, before anything is ingested: a bad `training.C` let each tick ingest, then fail its
    retrain and retry it every `fullprocess.retry_after_s`."""
    import main
    from utils.pipeline.config import load_config

    cfg = load_config(chain_overrides(overrides))
    try:
        main.validate_step_configs(main.select_steps(",".join(["data_ingestion", *steps])), cfg,
                                   StatePaths.of(cfg.paths.state_dir))
    except main.ConfigError as exc:
        raise TickFailed(f"bad config, nothing ingested or retrained: {exc}") from None


def chain_steps(cfg: Any) -> list[str]:
    """main.py's steps from `fullprocess.chain_from` to `fullprocess.chain_to` (null: the end)."""
    from main import STEP_NAMES

    first, last = cfg.fullprocess.chain_from, cfg.fullprocess.chain_to or STEP_NAMES[-1]
    for key, name in (("chain_from", first), ("chain_to", last)):
        if name not in STEP_NAMES:
            raise TickFailed(f"fullprocess.{key}={name!r}: expected one of {', '.join(STEP_NAMES)}")
    steps = STEP_NAMES[STEP_NAMES.index(first):STEP_NAMES.index(last) + 1]
    if not steps:
        raise TickFailed(f"fullprocess.chain_from={first} comes after chain_to={last}: no step to run")
    return steps


# ---- step 5: the decision ----------------------------------------------------------------------
def decide(policy: list[str], signals: dict[str, bool | None] | None, has_production: bool,
           pending: dict[str, Any] | None, rows_new: int | None, scheduled: str | None = None) -> tuple[bool, str]:
    """Retrain or not, and why (a pure function: the whole policy in one place)."""
    if "never" in policy:
        return False, "drift.policy=never"
    if pending:
        return True, f"retrying the retrain decided at {pending.get('since')} ({pending.get('reason')})"
    if scheduled:
        return True, scheduled
    if not rows_new:
        return False, "no new rows"
    if not has_production:
        return True, "no production model yet"
    if "always" in policy:
        return True, "drift.policy=always"
    fired = [s for s in policy if (signals or {}).get(s)]
    if fired:
        return True, f"drift ({', '.join(fired)})"
    checked = {k: v for k, v in (signals or {}).items() if k in policy}
    return False, f"no drift ({', '.join(f'{k}={v}' for k, v in checked.items()) or 'no signal'})"


# ---- the tick ----------------------------------------------------------------------------------
def production_of(paths: StatePaths, model_name: str) -> str | None:
    from utils.models.model_store import ModelStore

    try:
        return ModelStore(paths.models_dir).production_version()
    except OSError:
        return None


def adopts_reference(state: TickState, dataset: Path, changes: SourceChanges) -> bool:
    """A first tick on a dataset main.py built takes it as the drift reference and checks nothing
    (one rule for the tick and its dry run, so the dry run cannot promise a check that never comes)."""
    return state.reference is None and dataset.is_file() and not changes.any and not state.pending


def tick_body(cfg: Any, overrides: Sequence[str], paths: StatePaths, state: TickState, tick: Tick) -> int:
    task = cfg.task
    dataset = dataset_file(paths, task.name)
    now = clock()
    retrain_every, monitor_every = schedule_of(cfg)
    baseline = max(filter(None, (state.last_retrain, last_training_time(paths))), default=None)
    scheduled = None
    if retrain_every and baseline is not None and now - baseline >= retrain_every:
        scheduled = (f"schedule.retrain_every={cfg.schedule.retrain_every} elapsed "
                     f"(last training {time.strftime('%Y-%m-%d %H:%M', time.localtime(baseline))})")
    monitor_due = bool(monitor_every and now - float(state.last_monitor or 0) >= monitor_every
                       and production_of(paths, task.model_name))
    changes = source_changes(resolve_path(cfg.data.source_dir), paths.ingest_record,
                             bool(cfg.data.get("follow_symlinks", False)))
    tick.new_files = [e.path.name for e in changes.new_content]
    tick.known_files = len(changes.known_content)
    tick.production_before = production_of(paths, task.model_name)   # a no-op tick names it too
    if adopts_reference(state, dataset, changes):
        take_reference(paths, task.name, state)   # first tick on a dataset main.py built: adopt it
        state.save(paths)
        log.info("adopted %s as the drift reference", dataset)
    check_owed = not state.dataset_matches_reference(dataset)
    retry_in = retry_wait(state, float(cfg.fullprocess.retry_after_s))
    if not changes.any and not check_owed and (not state.pending or retry_in > 0) and not scheduled:
        log.info("%s: no new data: %d entries in %s, all ingested%s", task.model_name, changes.entries,
                 cfg.data.source_dir, f"; the failed retrain is retried in {retry_in:.0f} s" if state.pending else "")
        if monitor_due:
            run_monitor(cfg, paths, state, tick, now)
        return 0

    # ---- something to do: heavier from here on ----
    validate_chain(overrides, chain_steps(cfg))
    policy = policy_of(cfg)
    timeout_s = float(cfg.fullprocess.timeout_s)
    if dataset.is_file() and not state.dataset_matches_reference(dataset) and not _reference_usable(state):
        take_reference(paths, task.name, state)   # the reference is the dataset before this ingestion
        state.save(paths)
    if changes.any:
        tick.decision = "ingest"
        log.info("%d new file(s) (%s), %d changed file(s) with known content: ingesting",
                 len(changes.new_content), ", ".join(tick.new_files[:10]), len(changes.known_content))
        run = run_main(overrides, ["data_ingestion"], timeout_s, paths, state, tick)
        if run.exit_code != 0:
            tick.chain = asdict(run)
            raise TickFailed(f"data_ingestion failed (exit {run.exit_code}"
                             f"{', timed out' if run.timed_out else ''}){run.cause()}; see {run.log_file}")

    checked = False
    if not state.dataset_matches_reference(dataset):
        tick.decision, checked = "check", True
        reference = Path(state.reference["path"]) if _reference_usable(state) else None
        if reference is None:
            tick.rows_new = _count_rows(dataset)
            log.info("no drift reference yet (first data): %d rows, no drift check", tick.rows_new)
        elif task.name not in DRIFT_TASKS:     # a task without a drift test: its schedule retrains
            tick.rows_new = max(0, _count_rows(dataset) - _count_rows(reference))
            log.info("%s: %d new rows; no drift check for task %s (schedule.retrain_every decides)",
                     task.model_name, tick.rows_new, task.name)
        else:
            from utils.tick.drift_check import run_drift_check

            outcome = run_drift_check(cfg, paths, reference, dataset,
                                      (state.reference or {}).get("epoch"), tick.tick)
            tick.rows_new = outcome.n_new
            tick.drift = {"signals": outcome.signals, "mlflow_run_id": outcome.mlflow_run_id,
                          "distribution": outcome.report["distribution"]["signals"],
                          "performance": {k: outcome.report["performance"].get(k)
                                          for k in ("new_score", "recorded_score", "reason")}}

    retrain, reason = decide(policy, (tick.drift or {}).get("signals"), tick.production_before is not None,
                             state.pending, tick.rows_new, scheduled)
    tick.decision, tick.reason = ("retrain" if retrain else "no-retrain"), reason
    log.info("decision: %s (%s)", tick.decision, reason)
    if retrain:   # recorded with the new reference in one write: a crash after it retries the chain
        state.pending = {"reason": reason, "since": (state.pending or {}).get("since", tick.started),
                         "attempts": int((state.pending or {}).get("attempts", 0)) + 1}
    if checked:
        take_reference(paths, task.name, state)
    state.save(paths)
    if not retrain:
        if monitor_due:
            run_monitor(cfg, paths, state, tick, now)
        return 0

    run = run_main(overrides, chain_steps(cfg), timeout_s, paths, state, tick)
    tick.chain = asdict(run)
    if run.exit_code != 0:
        state.pending["failed_at"] = time.time()
        state.save(paths)
        raise TickFailed(f"the retrain chain failed (exit {run.exit_code}"
                         f"{f', killed after {timeout_s:.0f} s' if run.timed_out else ''}){run.cause()}; production is "
                         f"unchanged unless the deployment step ran; see {run.log_file}. "
                         f"Retried after fullprocess.retry_after_s={cfg.fullprocess.retry_after_s} s, "
                         "or sooner when new data arrives.")
    state.pending = None
    state.last_retrain = now
    state.save(paths)
    from utils.models.model_store import ModelStore

    tick.trained_version = ModelStore(paths.models_dir).latest_version(task.model_name)
    if monitor_due:
        run_monitor(cfg, paths, state, tick, now)
    return 0


def run_monitor(cfg: Any, paths: StatePaths, state: TickState, tick: Tick, now: float) -> None:
    """Score production on the model's test data; the metrics go to its monitoring history.
    Recorded as done even when it fails (retried next period, not every tick)."""
    from utils.models import management
    from utils.models.catalog import CatalogError

    state.last_monitor = now
    state.save(paths)
    shared = StatePaths(paths.state_dir)
    try:
        record = management.monitor(shared, cfg.task.model_name, resolve_path(cfg.data.test_path),
                                    int(cfg.scoring.batch_size))
    except CatalogError as exc:
        raise TickFailed(f"monitoring {cfg.task.model_name}: {exc}") from None
    tick.monitored = {k: record.get(k) for k in ("version", "primary_metric", "score", "test_data")}
    if tick.decision in ("noop", "no-retrain"):
        tick.decision = "monitor" if tick.decision == "noop" else tick.decision
    log.info("%s: monitored %s: %s = %s", cfg.task.model_name, record["version"], record["primary_metric"],
             record.get("score"))


def retry_wait(state: TickState, retry_after_s: float) -> float:
    """Seconds until a failed retrain may be retried (0: now; a tick that died never failed)."""
    failed_at = (state.pending or {}).get("failed_at")
    return max(0.0, float(failed_at) + retry_after_s - time.time()) if failed_at else 0.0


def _reference_usable(state: TickState) -> bool:
    return bool(state.reference and Path(state.reference.get("path", "")).is_file())


def _count_rows(dataset: Path) -> int:
    with open(dataset, "rb") as fh:
        lines = sum(1 for _ in fh)
    return lines - 1 if dataset.suffix == ".csv" else lines


# ---- step 6 and 7: notify, log, summary -----------------------------------------------------------
def setup_logging(paths: StatePaths, cfg: Any) -> list[logging.Handler]:
    """Rotating file log (rotated under the lock only) + stderr (warnings unless a terminal)."""
    paths.logs_dir.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(paths.logs_dir / "fullprocess.log", maxBytes=0,
                                  backupCount=int(cfg.fullprocess.log_backups))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [pid %(process)d] %(name)s: %(message)s"))
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if sys.stderr.isatty() else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    root.addHandler(console)
    return [handler, console]


def notification_events(tick: Tick) -> list[str]:
    events = []
    if tick.exit_code != 0:
        events.append("failure")
    if tick.drift and any((tick.drift.get("signals") or {}).values()):
        events.append("drift")
    if tick.deployed:
        events.append("deployment")
    return events


def send_notifications(cfg: Any, paths: StatePaths, state: TickState, tick: Tick) -> None:
    events = notification_events(tick)
    if not events:
        return
    from omegaconf import OmegaConf

    from utils.tick.notify import NotifySettings, notify

    try:
        settings = NotifySettings.from_mapping(OmegaConf.to_container(cfg.notify, resolve=True))  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        log.error("notify: bad config (%s): no notification sent", exc)
        return
    now = time.time()
    if events == ["failure"]:   # the same failure every tick: say it once per repeat_after_s
        key = f"failure:{(tick.error or '')[:200]}"
        if now - float(state.notified.get(key, 0)) < settings.repeat_after_s:
            log.info("notify: same failure already sent within notify.repeat_after_s; not repeated")
            return
        state.notified = {k: v for k, v in state.notified.items() if now - v < 2 * settings.repeat_after_s}
        state.notified[key] = now
    subject = {"failure": "tick FAILED", "drift": "drift detected",
               "deployment": f"deployed {tick.production_after}"}
    text = f"{cfg.task.model_name}: " + "; ".join(subject[e] for e in events)
    body = "\n".join([f"{text} (model {cfg.task.model_name}, task {cfg.task.name}, state dir {paths.state_dir})", "",
                      f"decision: {tick.decision} ({tick.reason})",
                      f"new files: {', '.join(tick.new_files) or '-'}",
                      f"drift: {json.dumps((tick.drift or {}).get('signals'))}",
                      f"production: {tick.production_before} -> {tick.production_after}",
                      f"error: {tick.error or '-'}", "",
                      f"log: {paths.logs_dir / 'fullprocess.log'}", "",
                      json.dumps(asdict(tick), indent=2, default=str)])
    deliveries = notify(settings, events, text, body, {"tick": asdict(tick)})
    tick.notifications = [asdict(d) for d in deliveries]


def finish(tick: Tick, paths: StatePaths | None, started: float, failed_errno: int | None = None) -> None:
    """The summary line on stdout and in ticks.jsonl; ``failed_errno``: the OS error the tick
    already failed with (a full disk that also refuses this line is not reported twice)."""
    tick.duration_s = round(time.monotonic() - started, 3)
    summary = asdict(tick)
    line = json.dumps(summary, default=str, sort_keys=True)
    print(line, flush=True)
    if paths is not None:
        try:
            append_tick(paths, summary)
        except OSError as exc:
            level = logging.DEBUG if failed_errno is not None and exc.errno == failed_errno else logging.ERROR
            log.log(level, "could not append the tick summary to %s: %s", history_file(paths), exc)
    log.info("tick summary: %s", line)


def _on_signal(signum: int, frame: Any) -> None:
    raise Terminated(signal.Signals(signum).name)


def run_tick(cfg: Any, overrides: Sequence[str], started: float | None = None, only: str | None = None) -> int:
    started = time.monotonic() if started is None else started
    shared = StatePaths.of(cfg.paths.state_dir)
    from utils.pipeline.failures import note_context

    note_context(state_dir=shared.state_dir)
    handlers = setup_logging(shared, cfg)
    try:
        return _run_tick(cfg, overrides, shared, handlers[0], started, only)
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()


def _run_tick(cfg: Any, overrides: Sequence[str], shared: StatePaths, file_log: RotatingFileHandler,
              started: float, only: str | None) -> int:
    """The state dir's lock, log rotation, then each model in turn (one line per model)."""
    tick_id = Tick().tick
    lock = TickLock(shared.lock_file, lock_max_age(cfg))
    if not lock.acquire():
        holder = read_holder(shared.lock_file)
        finish(Tick(tick=tick_id, status="locked", decision="locked",
                    reason=f"another run holds {shared.lock_file}: {describe_holder(holder)}"), shared, started)
        return 0
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    codes: list[int] = []
    try:
        max_bytes, backups = int(cfg.fullprocess.log_max_bytes), int(cfg.fullprocess.log_backups)
        if max_bytes > 0 and os.path.getsize(file_log.baseFilename) >= max_bytes:
            file_log.doRollover()
        for path in (shared.logs_dir / "chain.log", history_file(shared)):
            rotate(path, max_bytes, backups)
        try:
            migrate_legacy_layout(shared)
            targets = tick_targets(cfg, overrides, shared, only)
        except (TickFailed, OSError) as exc:
            log.error("%s", exc)
            finish(Tick(tick=tick_id, status="failed", error=str(exc), exit_code=1), shared, started)
            return 1
        broke = asdict(lock.broken) if lock.broken else None
        for target in targets:
            code = tick_model(target, shared, tick_id, broke, time.monotonic())
            broke = None
            codes.append(code)
            if code == 143:
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        lock.release()
    return max(codes, default=0)


def tick_model(target: ModelTarget, shared: StatePaths, tick_id: str, broke: dict[str, Any] | None,
               started: float) -> int:
    """One model's part of the tick; whatever happens, one summary line and its notifications."""
    cfg, name = target.cfg, target.name
    tick = Tick(tick=tick_id, model=name, broke_lock=broke)
    state: TickState | None = None   # saved back only once loaded: never overwrite it with a blank
    paths = shared.model(name)
    failed_errno: int | None = None
    try:
        control = read_control(shared, name)
        if control.paused:
            tick.status = tick.decision = "paused"
            tick.reason = f"automatic retraining paused since {control.since}" + \
                (f" ({control.reason})" if control.reason else "") + "; `manage.py resume` or a manual retrain"
            log.info("%s: skipped: %s", name, tick.reason)
            finish(tick, shared, started)
            return 0
        state = TickState.load(paths)
        stop_orphan_chain(state, paths)
        tick.exit_code = tick_body(cfg, target.overrides, paths, state, tick)
        tick.status = "noop" if tick.decision == "noop" else "ok"
    except TickFailed as exc:
        tick.status, tick.error, tick.exit_code = "failed", str(exc), 1
        log.error("%s: %s", name, exc)
    except Terminated as exc:
        tick.status, tick.error, tick.exit_code = "terminated", f"terminated by {exc}", 143
        log.error("tick terminated by %s", exc)
    except Exception as exc:  # anything unexpected still gets a summary, a notification, the next model
        from utils.pipeline.failures import describe, os_errno

        operational = describe(exc)   # disk full, read-only, corrupt DB: one line, no traceback
        failed_errno = os_errno(exc) if operational else None
        tick.status, tick.error, tick.exit_code = "failed", operational or f"{type(exc).__name__}: {exc}", 1
        if operational:
            log.error("%s: tick failed: %s", name, operational)
        else:
            log.exception("%s: tick failed", name)
    finally:
        try:
            if tick.decision not in ("noop", "locked", "paused"):   # the heavy path ran: production may have moved
                tick.production_after = production_of(paths, name)
                tick.deployed = bool(tick.production_after and tick.production_after != tick.production_before)
            else:                   # nothing ran that could move it
                tick.production_after = tick.production_before
            if tick.status not in ("noop", "paused"):
                send_notifications(cfg, paths, state or TickState(), tick)
                if state is not None:
                    state.save(paths)
        except Exception as exc:  # noqa: BLE001  - reporting must not hide the tick's own outcome
            bookkeeping_failed(exc, failed_errno)
        finish(tick, shared, started, failed_errno)
    return tick.exit_code


def bookkeeping_failed(exc: BaseException, failed_errno: int | None) -> None:
    """After the tick's own failure: the same full or read-only disk again is no news (one line
    stays one line); another operational failure is one line; a bug keeps its traceback."""
    from utils.pipeline.failures import describe, os_errno

    operational = describe(exc)
    if operational is None:
        log.exception("could not finish the tick's bookkeeping")
    elif failed_errno is not None and os_errno(exc) == failed_errno:
        log.debug("could not finish the tick's bookkeeping either: %s", operational)
    else:
        log.error("could not finish the tick's bookkeeping: %s", operational)


# ---- operating it --------------------------------------------------------------------------------
def dry_run(cfg: Any, overrides: Sequence[str], only: str | None = None) -> int:
    """What a tick would do now, per model, for a person; reads only (the same decisions as a tick)."""
    shared = StatePaths.of(cfg.paths.state_dir)
    print(f"fullprocess dry run (nothing is changed)\nstate dir:  {shared.state_dir}")
    if lock_held(shared.lock_file):
        print(f"lock: held by {describe_holder(read_holder(shared.lock_file))}: a tick now would do nothing "
              "and exit 0 (decision: locked); once the lock is free, it would do what follows")
    try:
        targets = tick_targets(cfg, overrides, shared, only)
    except TickFailed as exc:
        print(f"a tick would FAIL: {exc}")
        return 1
    code = 0
    for target in targets:
        code = max(code, dry_run_model(target, shared))
    return code


def dry_run_model(target: ModelTarget, shared: StatePaths) -> int:
    cfg, name = target.cfg, target.name
    paths = shared.model(name)
    source = resolve_path(cfg.data.source_dir)
    print(f"\nmodel {name} ({cfg.task.name}), source dir {source}")
    control = read_control(shared, name)
    if control.paused:
        print(f"  paused since {control.since}: a tick would skip it")
        return 0
    state = TickState.load(paths)
    try:
        changes = source_changes(source, paths.ingest_record, bool(cfg.data.get("follow_symlinks", False)))
        retrain_every, monitor_every = schedule_of(cfg)
    except TickFailed as exc:
        print(f"  a tick would FAIL: {exc}")
        return 1
    dataset = dataset_file(paths, cfg.task.name)
    print(f"  {changes.entries} entries; new content: {len(changes.new_content)}, changed but known content: "
          f"{len(changes.known_content)}")
    for entry in changes.new_content:
        print(f"    new: {entry.path.name} ({entry.size} bytes)")
    retry_in = retry_wait(state, float(cfg.fullprocess.retry_after_s))
    print(f"  pending retrain: {state.pending or 'none'}"
          + (f" (failed; retried in {retry_in:.0f} s)" if state.pending and retry_in else ""))
    adopt = adopts_reference(state, dataset, changes)
    owed = not adopt and not state.dataset_matches_reference(dataset)
    print("  dataset vs drift reference: " + ("no reference yet: a tick would adopt the dataset as the "
                                              "reference (no drift check)" if adopt else
                                              "changed since the last check" if owed else "unchanged"))
    now = clock()
    baseline = max(filter(None, (state.last_retrain, last_training_time(paths))), default=None)
    scheduled = bool(retrain_every and baseline is not None and now - baseline >= retrain_every)
    monitor_due = bool(monitor_every and now - float(state.last_monitor or 0) >= monitor_every
                       and production_of(paths, name))
    main_cmd = f"{sys.executable} {REPO_ROOT / 'main.py'} {' '.join(chain_overrides(target.overrides))}".rstrip()
    steps = ",".join(chain_steps(cfg))
    if not changes.any and not owed and (not state.pending or retry_in > 0) and not scheduled:
        print("  a tick would: " + ("monitor production (schedule.monitor_every elapsed)" if monitor_due
                                    else "nothing (exit 0)"))
        return 0
    try:
        validate_chain(target.overrides, chain_steps(cfg))
    except TickFailed as exc:
        print(f"  a tick would FAIL: {exc}")
        return 1
    if changes.any:
        print(f"  a tick would: ingest with `{main_cmd} main.steps=data_ingestion`")
    policy = policy_of(cfg)
    chain = f"`{main_cmd} main.steps='{steps}'` (timeout {cfg.fullprocess.timeout_s} s)"
    # the tick's reference rule: the dataset before this ingestion, none on the first data
    new_rows = changes.any or _reference_usable(state)
    checks = new_rows and (_reference_usable(state) or dataset.is_file()) and cfg.task.name in DRIFT_TASKS
    if checks:
        print(f"  then check drift (drift.policy={policy}) -> {paths.reports_dir / 'drift.json'}")
    elif changes.any:
        print("  then no drift check (" + (f"no drift check for task {cfg.task.name}" if dataset.is_file()
                                           else "no drift reference yet: first data") + ")")
    elif owed:
        print("  then take the dataset as the drift reference (the last one is gone; no check)")
    production = production_of(paths, name)
    if "never" in policy:
        print("  and not retrain (drift.policy=never)")
    elif state.pending or scheduled:
        why = "the pending retrain" if state.pending else f"schedule.retrain_every={cfg.schedule.retrain_every} elapsed"
        print(f"  and retrain ({why}): {chain}")
    elif not new_rows:
        print("  and not retrain (no new rows)")
    elif production is None or "always" in policy:
        why = "no production model yet" if production is None else "drift.policy=always"
        print(f"  and retrain if there are new rows ({why}): {chain}")
    elif checks:
        print(f"  and retrain on drift: {chain}")
    else:
        print("  and not retrain (no drift check)")
    if monitor_due:
        print("  and monitor production (schedule.monitor_every elapsed)")
    return 0


def cron_command(args: argparse.Namespace, cfg: Any) -> int:
    from utils.tick import cron

    paths = StatePaths.of(cfg.paths.state_dir)
    overrides = list(args.overrides)
    if not any(o.split("=", 1)[0].lstrip("+") == "paths.state_dir" for o in overrides):
        overrides.append(f"paths.state_dir={paths.state_dir}")  # pin it: cron runs from $HOME
    try:
        line = cron.cron_line(args.every, overrides, paths.state_dir)
        if args.print_cron:
            print(line)
            return 0
        if args.uninstall_cron:
            removed = cron.uninstall(paths.state_dir)
            print("removed the cron line" if removed else "no cron line for this state dir")
            return 0
        outcome = cron.install(line, paths.state_dir)
    except cron.CronError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"cron line {outcome}: {line}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    from utils.tick.light_config import load_light_config

    try:
        cfg = load_light_config(args.overrides)
    except Exception as exc:  # Hydra's message names the bad override
        print(f"error: bad config or overrides: {exc}", file=sys.stderr)
        return 2
    if args.print_cron or args.install_cron or args.uninstall_cron:
        return cron_command(args, cfg)
    if args.dry_run:
        return dry_run(cfg, args.overrides, args.model)
    return run_tick(cfg, args.overrides, started, args.model)


if __name__ == "__main__":
    from utils.pipeline.failures import run_entry

    sys.exit(run_entry(main))   # read-only state dir, full disk...: one line, exit 1

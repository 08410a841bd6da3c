"""Fixtures shared by every test folder: repo paths, temp state dirs, step modules, the chain."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def load_step_module(relative: str) -> ModuleType:
    """Import a step script by path (step folders start with digits: not importable by name)."""
    path = REPO_ROOT / relative
    name = "step_" + relative.replace("/", "_").removesuffix(".py")
    if name in sys.modules:
        return sys.modules[name]
    sys.path.insert(0, str(path.parent))   # a step's sibling modules (e.g. nlu_training.py)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# The committed attrition files by name: a file dropped into 01_data/sourcedata/tabular/
# changes no test (tests read a private copy of these three, never the live folder).
EMBEDDED_TABULAR_DIR = REPO_ROOT / "01_data" / "sourcedata" / "tabular"
EMBEDDED_TABULAR = ("dataset1.csv", "dataset2.csv", "dataset3.csv")


def copy_embedded_tabular(target: Path) -> Path:
    """A private source folder with the embedded attrition files (and nothing else)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in EMBEDDED_TABULAR:
        shutil.copy2(EMBEDDED_TABULAR_DIR / name, target / name)
    return target


def run_main(*overrides: str, state_dir: Path, check: bool = True, timeout: int = 600,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python main.py <overrides> paths.state_dir=<state_dir>` in a subprocess, cwd elsewhere.

    The diagnostics step's package-index lookup is off: tests make no network calls. A
    tabular run without `data.source_dir` reads a private copy of the embedded files.
    """
    if not any(o.startswith("data.source_dir=") or o.startswith("task=") and o != "task=tabular"
               for o in overrides):
        source = state_dir.parent / "embedded_source"
        if not source.is_dir():
            copy_embedded_tabular(source)
        overrides = (f"data.source_dir={source}", *overrides)
    # Hydra's flags (`-m`, `--cfg`) go before every override: argparse takes one run of positionals.
    flags = [o for o in overrides if o.startswith("-")]
    values = [o for o in overrides if not o.startswith("-")]
    cmd = [PYTHON, str(REPO_ROOT / "main.py"), *flags, f"paths.state_dir={state_dir}",
           "diagnostics.pypi_url=null", *values]
    proc = subprocess.run(cmd, cwd=state_dir.parent, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"main.py failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


# What MLflow's fluent API exports to os.environ (mlflow.set_experiment sets MLFLOW_EXPERIMENT_ID
# so that children inherit it): one test's experiment must not become a later subprocess's.
_MLFLOW_PROCESS_ENV = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI")


@pytest.fixture(autouse=True)
def _no_mlflow_env_leaks() -> Iterator[None]:
    """Restore the MLflow variables of os.environ after every test."""
    before = {key: os.environ.get(key) for key in _MLFLOW_PROCESS_ENV}
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def empty_tracking_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite DB with its schema migrated once; tests copy it (migrations take seconds)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db = tmp_path_factory.mktemp("db") / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{db}", str(db.parent / "artifacts")).engine.dispose()
    return db


@contextlib.contextmanager
def tracking_at(state_dir: Path, empty_db: Path) -> Iterator[str]:
    """MLflow pointed at a copy of the migrated empty DB in ``state_dir``; yields the experiment id."""
    import mlflow

    from utils.pipeline.paths import StatePaths
    from utils.pipeline.tracking import default_tracking_uri, ensure_experiment

    paths = StatePaths.of(state_dir)
    shutil.copy(empty_db, paths.mlflow_db)
    uri = default_tracking_uri(paths)
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    try:
        yield ensure_experiment("tests", paths)
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old



@contextlib.contextmanager
def local_http_server(handler: type) -> Iterator[str]:
    """A threaded HTTP server on a free loopback port with ``handler``; yields its base URL."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def tracking(state_dir: Path, empty_tracking_db: Path) -> Iterator[str]:
    """An MLflow SQLite store in the temp state dir (current env var and client point at it)."""
    with tracking_at(state_dir, empty_tracking_db) as experiment_id:
        yield experiment_id


@pytest.fixture(scope="session")
def tabular_chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole default tabular chain run once through main.py; tests read its state dir."""
    state = tmp_path_factory.mktemp("chain") / "state"
    state.mkdir()
    proc = run_main(state_dir=state)
    (state / "main_stdout.txt").write_text(proc.stdout + proc.stderr)
    return state

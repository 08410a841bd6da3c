"""04_deployment/manage.py as an operator runs it: every action, its exit status and message.

In process (manage.main) on the two-model state dir of test_many_models.py; the retrain's chain
is replaced by a one-line command (tests/nlu/test_many_models_chain.py runs the real one).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from tests.api.conftest import auth
from utils.models.catalog import read_control, read_monitoring
from utils.models.model_store import ModelStore
from utils.pipeline.paths import StatePaths
from utils.tick.tick_lock import lock_held, write_holder

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")
MODELS = "models: attrition_model, nlu_query_model"


def manage(state: Path, *args: str) -> int:
    import manage as cli     # 04_deployment/ is on sys.path (tests/api/conftest.py)

    return cli.main([*args, "--state-dir", str(state)])


def listed(state: Path, capsys: pytest.CaptureFixture) -> dict[str, dict]:
    capsys.readouterr()
    assert manage(state, "list", "--json") == 0
    return {row["name"]: row for row in json.loads(capsys.readouterr().out)}


class HeldPipelineLock:
    """fullprocess.lock held as a tick holds it (flock + holder record)."""

    def __init__(self, state: Path) -> None:
        self.path = StatePaths.of(state).lock_file
        self.lock = FileLock(str(self.path), timeout=0)

    def __enter__(self) -> "HeldPipelineLock":
        self.lock.acquire()
        write_holder(self.path, "python fullprocess.py paths.state_dir=...")
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def test_pause_retrain_evaluate_rollback_from_the_cli(two_models, capsys, monkeypatch):
    from utils.models import management

    state, paths = two_models, StatePaths.of(two_models)
    assert manage(state, "pause", "attrition_model", "--reason", "label audit") == 0
    assert "automatic retraining paused" in capsys.readouterr().out
    assert listed(state, capsys)["attrition_model"]["paused"] is True
    assert read_control(paths, "attrition_model").reason == "label audit"

    monkeypatch.setattr(management, "retrain_command",
                        lambda paths, name, extra: [sys.executable, "-c", "print('chain ran')"])
    with HeldPipelineLock(state):               # a tick is running: no second chain, nothing resumed
        assert manage(state, "retrain", "attrition_model") == 1
    assert "another pipeline run holds" in capsys.readouterr().err
    assert read_control(paths, "attrition_model").paused
    assert manage(state, "retrain", "attrition_model") == 0
    assert not read_control(paths, "attrition_model").paused, "a manual retrain reactivates the model"
    assert not lock_held(paths.lock_file), "the retrain released the pipeline lock"

    assert manage(state, "evaluate", "nlu_query_model") == 0
    assert "appended to its monitoring history" in capsys.readouterr().out
    assert [r["source"] for r in read_monitoring(paths, "nlu_query_model")] == ["evaluate"]

    store = ModelStore(state / "models" / "attrition_model")
    store.deploy("attrition_model-v2")
    assert manage(state, "rollback", "attrition_model") == 0
    assert "production is now attrition_model-v1" in capsys.readouterr().out
    assert store.production_version() == "attrition_model-v1"
    assert ModelStore(state / "models" / "nlu_query_model").production_version() == "nlu_query_model-v1"
    assert manage(state, "rollback", "attrition_model") == 1       # nothing earlier to return to
    assert capsys.readouterr().err.startswith("error: ")


def test_delete_needs_confirmation_spares_the_default_and_waits_for_a_running_chain(two_models, capsys):
    state = two_models
    assert manage(state, "delete", "nlu_query_model") == 1          # no terminal to type the name on
    assert "not deleted" in capsys.readouterr().err
    assert manage(state, "delete", "attrition_model", "--yes", "--default-model", "attrition_model") == 1
    assert "api.default_model" in capsys.readouterr().err
    with HeldPipelineLock(state):
        assert manage(state, "delete", "nlu_query_model", "--yes") == 1
    err = capsys.readouterr().err
    assert "a pipeline run is in progress" in err and "a cron tick" in err
    assert sorted(listed(state, capsys)) == ["attrition_model", "nlu_query_model"], "nothing half-deleted"
    assert (state / "models" / "nlu_query_model" / "production").exists()
    assert manage(state, "delete", "nlu_query_model", "--yes") == 0
    assert sorted(listed(state, capsys)) == ["attrition_model"]


@pytest.mark.parametrize("name", ["nope", "../escape", "versions", "a b"])
def test_unknown_or_unsafe_names_exit_2_naming_the_models_and_write_nothing(two_models, capsys, name):
    before = sorted(p.relative_to(two_models) for p in two_models.rglob("*"))
    for action in ("pause", "resume", "evaluate", "rollback", "delete"):
        assert manage(two_models, action, name, "--yes") == 2, action
        err = capsys.readouterr().err
        assert MODELS in err and "Traceback" not in err, err
    assert sorted(p.relative_to(two_models) for p in two_models.rglob("*")) == before


def test_api_delete_is_409_while_a_chain_runs(make_app, two_models):
    client = make_app(two_models).test_client()
    with HeldPipelineLock(two_models):
        r = client.post("/admin/models/nlu_query_model/delete", json={"confirm": "nlu_query_model"},
                        headers=auth())
    assert r.status_code == 409 and "pipeline run is in progress" in r.get_json()["error"]["message"]
    assert client.post("/models/nlu_query_model/prediction", json={"texts": ["hi"]}).status_code == 200

"""serve.py (the launcher behind `./run_pipeline.sh serve`) and the `api:` config section."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.api.conftest import API_DIR
from tests.conftest import REPO_ROOT

SERVE = API_DIR / "serve.py"


def run_serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SERVE), *args], capture_output=True, text=True, timeout=120,
                          cwd="/", env=env)


def test_dry_run_uses_the_api_section(tmp_path):
    proc = run_serve("--dry-run", f"paths.state_dir={tmp_path}", "api.port=9123", "api.workers=3",
                     "api.threads=5")
    assert proc.returncode == 0, proc.stderr
    cmd = proc.stdout.split()
    assert cmd[1:3] == ["-m", "gunicorn"] and cmd[-1] == "api.app:create_app()"
    for flag, value in (("--bind", "127.0.0.1:9123"), ("--workers", "3"), ("--worker-connections", "1000"),
                        ("--worker-class", "gevent")):   # the default: slow clients hold greenlets
        assert cmd[cmd.index(flag) + 1] == value
    assert "--threads" not in cmd
    assert not (tmp_path / "logs").exists()           # a dry run writes nothing
    assert "API_KEY is not set" in proc.stderr
    proc = run_serve("--dry-run", f"paths.state_dir={tmp_path}", "api.worker_class=gthread", "api.threads=5")
    cmd = proc.stdout.split()
    assert cmd[cmd.index("--threads") + 1] == "5" and cmd[cmd.index("--worker-class") + 1] == "gthread"
    proc = run_serve("--dry-run", f"paths.state_dir={tmp_path}", "api.worker_class=sync")
    assert proc.returncode == 2 and "api.worker_class=sync" in proc.stderr


def test_bad_settings_exit_2_naming_the_key(tmp_path):
    proc = run_serve("--dry-run", f"paths.state_dir={tmp_path}", "api.workers=0")
    assert proc.returncode == 2 and "api.workers=0" in proc.stderr
    proc = run_serve("--dry-run", f"paths.state_dir={tmp_path}", "api.nope=1")
    assert proc.returncode == 2 and "api.nope" in proc.stderr


def test_public_host_warns(tmp_path):
    proc = run_serve("--dry-run", f"paths.state_dir={tmp_path}", "api.host=0.0.0.0")
    assert proc.returncode == 0 and "reachable from other machines" in proc.stderr


def test_addresses():
    sys.path.insert(0, str(API_DIR))
    import serve

    assert serve.bind_address("::1", 80) == "[::1]:80" and serve.bind_address("127.0.0.1", 80) == "127.0.0.1:80"
    assert serve.is_loopback("127.0.0.1") and serve.is_loopback("::1") and serve.is_loopback("localhost")
    assert not serve.is_loopback("0.0.0.0") and not serve.is_loopback("example.org")


def test_prepare_writes_the_resolved_config_for_workers(tmp_path, monkeypatch):
    import serve

    from api.settings import CONFIG_ENV, load_app_config

    stale = tmp_path / "logs" / "api" / "run" / "999999999"
    stale.mkdir(parents=True)
    command, env = serve.prepare([f"paths.state_dir={tmp_path}", "api.port=9555"])
    assert not stale.exists()                             # metrics of dead servers are cleared
    config_file = env[CONFIG_ENV]
    assert json.loads(open(config_file).read())["api"]["port"] == 9555
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith(str(tmp_path / "logs" / "api" / "run"))
    monkeypatch.setenv(CONFIG_ENV, config_file)
    monkeypatch.setenv("MLOPS_API_OVERRIDES", env["MLOPS_API_OVERRIDES"])
    loaded = load_app_config()
    assert loaded.settings.port == 9555 and loaded.paths.state_dir == tmp_path
    assert loaded.overrides == [f"paths.state_dir={tmp_path}", "api.port=9555"]


def test_config_yaml_has_the_api_section():
    from api.settings import ApiSettings, api_settings
    from utils.pipeline.config import load_config

    settings = api_settings(load_config([f"paths.state_dir={REPO_ROOT}"]))
    assert settings.host == "127.0.0.1" and settings.port == 8000
    assert settings == ApiSettings()          # config.yaml and the dataclass defaults agree


def test_run_pipeline_serve_calls_serve_py():
    text = (REPO_ROOT / "run_pipeline.sh").read_text()
    assert "04_deployment/serve.py" in text


@pytest.mark.parametrize("value", ["-1", "70000"])
def test_port_range(tmp_path, value):
    proc = run_serve("--dry-run", f"paths.state_dir={tmp_path}", f"api.port={value}")
    assert proc.returncode == 2 and "api.port" in proc.stderr


def test_nlu_serving_settings_reach_the_environment_the_pyfunc_reads(monkeypatch):
    from api.settings import ApiConfigError, ApiSettings, export_nlu_serving

    env = {"MLOPS_NLU_BATCH_THREADS": "3"}
    export_nlu_serving(ApiSettings(), env)          # defaults: 1 thread, int8 on; batches keep what is set
    assert env == {"MLOPS_NLU_THREADS": "1", "MLOPS_NLU_BATCH_THREADS": "3", "MLOPS_NLU_INT8": "1"}
    export_nlu_serving(ApiSettings(nlu_threads=2, nlu_batch_threads=4, nlu_int8=False), env)
    assert env == {"MLOPS_NLU_THREADS": "2", "MLOPS_NLU_BATCH_THREADS": "4", "MLOPS_NLU_INT8": "0"}
    monkeypatch.syspath_prepend(str(REPO_ROOT / "02_training"))
    import nlu_int8
    import nlu_onnx

    assert (nlu_onnx.THREADS_ENV, nlu_onnx.BATCH_THREADS_ENV) == ("MLOPS_NLU_THREADS", "MLOPS_NLU_BATCH_THREADS")
    assert nlu_int8.INT8_ENV == "MLOPS_NLU_INT8"
    for bad in ({"nlu_threads": 0}, {"nlu_batch_threads": 0}):
        with pytest.raises(ApiConfigError, match="api.nlu_threads"):
            ApiSettings(**bad).validate()

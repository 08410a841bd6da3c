"""The container image: the Dockerfile takes its versions from pyproject.toml (not by hand),
agrees with config.yaml (port, state dir) and installs by run_pipeline.sh's one code path;
the slow test builds it for real with .ci/build_image.sh (debootstrap + podman)."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def instructions(name: str) -> list[str]:
    """The arguments of every `NAME ...` instruction (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.*)$", text, re.MULTILINE)]


def build_args() -> dict[str, str]:
    return dict(a.split("=", 1) for a in instructions("ARG") if "=" in a)


def image_env() -> dict[str, str]:
    pairs = " ".join(instructions("ENV")).split()
    return dict(p.split("=", 1) for p in pairs)


def test_base_image_python_satisfies_requires_python():
    base = build_args()["BASE_IMAGE"]
    version = re.match(r"python:(\d+\.\d+)", base)
    assert version, f"BASE_IMAGE default {base!r} names no Python version"
    spec = SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert f"{version.group(1)}.0" in spec
    # run_pipeline.sh (which the image runs) accepts the same version, and only it
    wanted = re.search(r"sys\.version_info\[:2\] != \((\d+), (\d+)\)", (REPO_ROOT / "run_pipeline.sh").read_text())
    assert wanted and ".".join(wanted.groups()) == version.group(1)


def test_no_version_is_pinned_in_the_dockerfile():
    """torch's pin and every other one come from pyproject.toml through run_pipeline.sh."""
    torch_pin = next(r for r in PYPROJECT["project"]["optional-dependencies"]["nlu"] if r.startswith("torch=="))
    assert torch_pin.split("==")[1] not in DOCKERFILE
    assert "==" not in DOCKERFILE and "pip install" not in DOCKERFILE
    assert any("./run_pipeline.sh setup" in run for run in instructions("RUN"))
    # the CPU build by default: PyPI's Linux torch is a CUDA build of several GB
    assert build_args()["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"


def test_image_agrees_with_config_yaml():
    config = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    env = image_env()
    assert instructions("EXPOSE") == [str(config["api"]["port"])]
    assert instructions("VOLUME") == [f'["{env["MLOPS_STATE_DIR"]}"]']
    assert "MLOPS_STATE_DIR" in config["paths"]["state_dir"] and "MLOPS_API_HOST" in config["api"]["host"]
    assert env["MLOPS_API_HOST"] == "0.0.0.0" and env["HF_HUB_OFFLINE"] == "1"
    assert instructions("USER") and instructions("USER")[-1] not in ("root", "0")
    assert instructions("ENTRYPOINT") == ['["/app/run_pipeline.sh"]']


def test_dockerignore_keeps_venv_state_and_git_out():
    ignored = {line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    state = {line.strip().replace("!/", "!").lstrip("/") for line in (REPO_ROOT / ".gitignore").read_text().split(
        "# everything the pipeline writes")[1].splitlines()[1:] if line.strip()}
    assert {".git", ".venv"} <= ignored
    assert state <= ignored, f"state files missing from .dockerignore: {state - ignored}"


def test_config_takes_state_dir_host_and_tracking_uri_from_the_environment(monkeypatch, tmp_path):
    from utils.pipeline.config import load_config

    default = load_config()
    assert default.api.host == "127.0.0.1" and default.main.tracking_uri is None
    assert Path(default.paths.state_dir) == REPO_ROOT
    monkeypatch.setenv("MLOPS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("MLOPS_API_HOST", "0.0.0.0")
    monkeypatch.setenv("MLOPS_TRACKING_URI", "http://tracking.example:5000")
    cfg = load_config(["api.port=9001"])
    assert (cfg.paths.state_dir, cfg.api.host, cfg.main.tracking_uri) == (
        str(tmp_path), "0.0.0.0", "http://tracking.example:5000")
    assert load_config([f"paths.state_dir={tmp_path / 'x'}"]).paths.state_dir == str(tmp_path / "x")


def test_run_pipeline_uses_a_prebuilt_venv(tmp_path):
    """MLOPS_VENV (the image's /opt/venv): an installed venv is used as is, nothing installed;
    `setup` only ensures it, `chain` is main.py."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(f'#!/bin/sh\necho "$@" >>"{tmp_path}/calls"\n'
                                         f'exec {sys.executable} "$@"\n')
    (venv / "bin" / "python").chmod(0o755)
    digest = hashlib.sha256((REPO_ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    (venv / f".installed-{digest}-nlu-test").touch()
    env = {**os.environ, "MLOPS_VENV": str(venv)}
    run = lambda *args: subprocess.run([str(REPO_ROOT / "run_pipeline.sh"), *args], env=env,  # noqa: E731
                                       capture_output=True, text=True, timeout=300)
    assert run("setup").returncode == 0
    assert not (tmp_path / "calls").exists()          # nothing was installed
    proc = run("chain", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "main.py --help" in (tmp_path / "calls").read_text()
    assert "task: forecast, nlu, tabular" in proc.stdout   # main.py's own help page


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_build_image_without_pulling_and_check_it_in_a_chroot(tmp_path):
    """The whole CI build: debootstrap base, podman import, podman build --isolation=chroot,
    the entry point's imports/help/dry-run/test subset in a chroot of the image."""
    if os.environ.get("MLOPS_IMAGE_BUILD_TEST") != "1":
        pytest.skip("~30 min: .ci/run runs .ci/build_image.sh itself; MLOPS_IMAGE_BUILD_TEST=1 to run it here")
    if os.geteuid() != 0:
        pytest.skip("needs root (debootstrap, chroot)")
    if not (shutil.which("apt-get") or (shutil.which("podman") and shutil.which("debootstrap"))):
        pytest.skip("needs apt-get, or podman and debootstrap")
    work = tmp_path / "image-build"
    proc = subprocess.Popen([str(REPO_ROOT / ".ci" / "build_image.sh")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "IMAGE_BUILD_DIR": str(work), "KEEP_IMAGE": "0",
                                 "IMAGE_TAG": "localhost/mlops-pipeline-test"})
    try:
        out, err = proc.communicate(timeout=1700)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)           # pip inside the build too, not only the script
        out, err = proc.communicate()
    sys.stderr.write(err[-4000:])                     # the script's timed steps, for the CI log
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    summary = re.search(r"^image localhost/mlops-pipeline-test: size (\d+) bytes", out, re.MULTILINE)
    assert summary, out
    assert int(summary.group(1)) > 500_000_000         # torch, transformers, mlflow... are in it
    assert re.search(r"^python 3\.11\.\d+ torch 2\.\S+\+cpu ", out, re.MULTILINE), out
    assert not work.exists()                          # KEEP_IMAGE=0 leaves nothing behind

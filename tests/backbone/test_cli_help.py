"""`python main.py --help`: the project's groups and config, without walking the repo root.

Hydra's own help lists every folder under the primary config dir (the repo root) as a candidate
group; with `.venv` in the checkout that took minutes. These tests put a deep tree beside a copy of
config.yaml and check the page comes back with only the real groups.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT
from utils.pipeline.cli_help import help_requested, help_text


def test_help_flags_are_recognised_and_overrides_are_not():
    assert help_requested(["--help"]) == "app"
    assert help_requested(["task=nlu", "-h"]) == "app"
    assert help_requested(["--hydra-help"]) == "hydra"
    assert help_requested(["task=nlu", "--cfg", "job"]) is None


def test_help_lists_the_task_group_not_the_folders_beside_config(tmp_path: Path):
    shutil.copy2(REPO_ROOT / "config.yaml", tmp_path / "config.yaml")
    deep = tmp_path / ".venv"
    for i in range(300):   # folders holding yaml files: Hydra's walk would call each a group
        folder = deep / f"lib{i}" / "site-packages" / f"pkg{i}"
        folder.mkdir(parents=True)
        (folder / "conf.yaml").write_text("a: 1\n")
    page = help_text("app", tmp_path)
    assert "task: forecast, nlu, tabular" in page
    assert ".venv" not in page and "pkg1" not in page
    assert "main.py: the pipeline's chain" in page
    assert "experiment_name: mlops_pipeline" in page   # the composed config follows


def test_help_shows_the_config_of_the_chosen_task(tmp_path: Path):
    nlu = help_text("app", REPO_ROOT, ["task=nlu"])
    tabular = help_text("app", REPO_ROOT)
    assert "name: nlu" in nlu and "name: nlu" not in tabular


def test_main_help_and_hydra_help_exit_zero(tmp_path: Path):
    for flag, expected in (("--help", "task: forecast, nlu, tabular"), ("--hydra-help", "--multirun,-m")):
        proc = subprocess.run([sys.executable, str(REPO_ROOT / "main.py"), flag], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert expected in proc.stdout

"""Pins live in pyproject.toml; the per-step conda.yml files must be generated from them."""
from utils.pipeline.envfiles import expected_files, main


def test_step_env_files_are_up_to_date():
    assert main(["--check"]) == 0, "run `python -m utils.pipeline.envfiles --write`"


def test_every_step_lists_only_pinned_packages():
    files = expected_files()
    assert len(files) == 7   # root + six steps
    for text in files.values():
        reqs = [line.strip()[2:] for line in text.splitlines() if line.startswith("      - ")]
        assert reqs and all("==" in r for r in reqs)

"""Generate each step's conda.yml from the pins in pyproject.toml.

Versions are pinned in one place (pyproject.toml); the per-step environment file that
`mlflow run --env-manager conda|virtualenv|uv` reads (mlflow converts conda.yml for
virtualenv and uv) are derived from it, listing only what
that step uses ([tool.mlops.step_requirements]). `--check` (run by the tests) fails when a
committed file is out of date.

    python -m utils.pipeline.envfiles --write     # regenerate
    python -m utils.pipeline.envfiles --check     # exit 1 when stale
"""
from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

from utils.pipeline.paths import REPO_ROOT

PYTHON_VERSION = "3.11.7"   # the interpreter these machines have; pyenv/uv then need no download
_NAME_RE = re.compile(r"^([A-Za-z0-9_.\-]+)")


def pins(pyproject: Path = REPO_ROOT / "pyproject.toml") -> tuple[dict[str, str], dict[str, list[str]]]:
    """(normalised name -> requirement string, step folder -> names) from pyproject.toml."""
    data = tomllib.loads(pyproject.read_text())
    project = data["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs.extend(extra)
    by_name = {}
    for req in reqs:
        match = _NAME_RE.match(req)
        if match:
            by_name[match.group(1).lower().replace("_", "-")] = req
    return by_name, data["tool"]["mlops"]["step_requirements"]


def render(step: str, names: list[str], by_name: dict[str, str]) -> dict[str, str]:
    missing = [n for n in names if n.lower() not in by_name]
    if missing:
        raise SystemExit(f"[tool.mlops.step_requirements] {step}: no pin for {missing} in pyproject.toml")
    reqs = [by_name[n.lower()] for n in names]
    header = "# Generated from pyproject.toml by `python -m utils.pipeline.envfiles --write`; do not edit.\n"
    env_name = "mlops-pipeline" if step == "." else f"mlops-{step.replace('_', '-').lower()}"
    conda = header + (f"name: {env_name}\nchannels:\n  - conda-forge\n"
                      f"dependencies:\n  - python={PYTHON_VERSION}\n  - pip\n  - pip:\n")
    conda += "".join(f"      - {r}\n" for r in reqs)
    return {"conda.yml": conda}


def expected_files() -> dict[Path, str]:
    by_name, steps = pins()
    out: dict[Path, str] = {}
    for step, names in steps.items():
        for filename, text in render(step, names, by_name).items():
            out[REPO_ROOT / step / filename] = text
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for path, text in expected_files().items():
        if args.write:
            path.write_text(text)
        elif not path.is_file() or path.read_text() != text:
            stale.append(str(path.relative_to(REPO_ROOT)))
    if stale:
        print("out of date (run `python -m utils.pipeline.envfiles --write`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

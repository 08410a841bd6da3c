#!/usr/bin/env bash
# Set up and run the pipeline on a fresh machine.
#   ./run_pipeline.sh [hydra overrides]     run the chain (default: tabular task, embedded data)
#   ./run_pipeline.sh chain [overrides]     the same, spelled out (the container image's entry point)
#   ./run_pipeline.sh test [pytest args]    run the test suite (default: without slow tests)
#   ./run_pipeline.sh test --slow           run every test, slow ones included
#   ./run_pipeline.sh serve [overrides]     the API under gunicorn, in the foreground
#   ./run_pipeline.sh tracking-server [overrides]  the team's MLflow server (PostgreSQL, proxied
#                                           artifacts; $MLFLOW_BACKEND_STORE_URI, $PGPASSWORD)
#   ./run_pipeline.sh setup                 only create/update the venv (the Dockerfile's install)
# The first call creates .venv (repo root; $MLOPS_VENV if set) from the pins in pyproject.toml;
# later calls reinstall only when pyproject.toml changed. $TORCH_INDEX_URL, if set, is the index
# torch's pin is installed from (e.g. https://download.pytorch.org/whl/cpu, the CPU build).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${MLOPS_VENV:-$ROOT/.venv}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export MPLBACKEND=Agg

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

ensure_venv() {
  local extras="$1"
  local stamp="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)-${extras//,/-}"
  [ -f "$stamp" ] && return 0
  if [ ! -x "$VENV/bin/python" ]; then
    echo ">> creating $VENV" >&2
    "$(find_python)" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
  fi
  # torch first, pinned: the pinned release resolves to the local CPU wheel; installed later,
  # as a dependency, a resolver may pick a newer CUDA build (gigabytes).
  local torch_pin
  torch_pin="$("$VENV/bin/python" - "$ROOT/pyproject.toml" <<'PY'
import sys, tomllib
extras = tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["nlu"]
print(next(r for r in extras if r.startswith("torch==")))
PY
)"
  echo ">> installing $torch_pin and the pinned dependencies (.[${extras}]) into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$torch_pin"
  "$VENV/bin/python" -m pip install --quiet "$ROOT[${extras}]"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
}

cd "$ROOT"
case "${1:-}" in
  setup)
    ensure_venv "nlu,test"
    ;;
  test)
    shift
    # the tests check the project's defaults, not this deployment's (the image sets these)
    unset MLOPS_STATE_DIR MLOPS_API_HOST MLOPS_TRACKING_URI
    ensure_venv "nlu,test"
    markers=(-m "not slow")
    if [ "${1:-}" = "--slow" ]; then markers=(); shift; fi
    exec "$VENV/bin/python" -m pytest "${markers[@]}" "$@"
    ;;
  serve)
    shift
    ensure_venv "nlu,test"
    exec "$VENV/bin/python" 04_deployment/serve.py "$@"
    ;;
  tracking-server)
    shift
    ensure_venv "nlu,test"
    exec "$VENV/bin/python" -m utils.pipeline.tracking_server "$@"
    ;;
  *)
    if [ "${1:-}" = chain ]; then shift; fi
    ensure_venv "nlu,test"
    exec "$VENV/bin/python" main.py "$@"
    ;;
esac

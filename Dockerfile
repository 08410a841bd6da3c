# The pipeline (chain, cron tick, tests) and the prediction API in one image.
#   docker build -t mlops-pipeline .
#   docker run -p 8000:8000 -v mlops-state:/state -e API_KEY=... mlops-pipeline          # the API
#   docker run -v mlops-state:/state mlops-pipeline chain task=tabular                    # the chain
#   docker run mlops-pipeline test                                                        # the tests
# Versions are not written here: Python comes from the base image (run_pipeline.sh refuses any
# but 3.11, pyproject's requires-python), every package pin from pyproject.toml.
# CI builds it on a debootstrapped Debian 12 base without pulling images: .ci/build_image.sh.

# Any image with Python 3.11 at python3, its venv module and pip (Debian 12's python3 is 3.11).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# torch's CPU wheel: on PyPI, torch for Linux x86_64 is a CUDA build of several GB.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# pip settings for every other package; /dev/null: none (PyPI). CI mounts a local mirror's.
ARG PIP_CONFIG_FILE=/dev/null

ENV MLOPS_VENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (their layer is rebuilt only when pyproject.toml or run_pipeline.sh change),
# by the same code path as on a bare machine: run_pipeline.sh installs torch's pin first, then
# the project's pins. setuptools reads the readme named in pyproject.toml: an empty stand-in
# here, the real README comes with the rest of the project below.
COPY pyproject.toml run_pipeline.sh ./
RUN touch README.md \
 && TORCH_INDEX_URL="$TORCH_INDEX_URL" PIP_CONFIG_FILE="$PIP_CONFIG_FILE" ./run_pipeline.sh setup \
 && rm README.md

# Run time (after the install, so that changing these does not reinstall): state in the volume,
# the API reachable through the published port, nothing downloaded, no git in the image.
ENV MLOPS_STATE_DIR=/state \
    MLOPS_API_HOST=0.0.0.0 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    MPLBACKEND=Agg \
    GIT_PYTHON_REFRESH=quiet

RUN useradd --system --uid 10001 --user-group --create-home --shell /usr/sbin/nologin mlops \
 && mkdir -p /state && chown mlops:mlops /state
# The project, owned by root (read-only for the service user); what it writes goes to /state.
COPY . .
USER mlops
VOLUME ["/state"]
# api.port in config.yaml; the API binds $MLOPS_API_HOST (0.0.0.0 here, 127.0.0.1 outside).
EXPOSE 8000

# serve | chain [overrides] | test [pytest args] | any other args: main.py's Hydra overrides
ENTRYPOINT ["/app/run_pipeline.sh"]
CMD ["serve"]

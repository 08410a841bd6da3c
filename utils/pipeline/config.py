"""Compose the pipeline config outside `@hydra.main` (API server, cron tick, tools).

Same files, same overrides as `python main.py ...`, so every entry point sees one config.
"""
from __future__ import annotations

from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from utils.pipeline.paths import REPO_ROOT


def register_resolvers() -> None:
    """`${repo_root:}` in config.yaml: the default state dir."""
    OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT), replace=True)


def load_config(overrides: Sequence[str] = ()) -> DictConfig:
    """config.yaml + task group + overrides, resolved the way main.py sees it."""
    from hydra import compose, initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO_ROOT), version_base="1.3", job_name="mlops"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return cfg

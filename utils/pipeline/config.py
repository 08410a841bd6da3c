"""Compose the pipeline config outside `@hydra.main` (API server, cron tick, tools).

Same files, same overrides as `python main.py ...`, so every entry point sees one config.
"""
from __future__ import annotations

from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from utils.pipeline.paths import REPO_ROOT


def embedded_default(key: str, default: Any = None, *, _root_: DictConfig) -> Any:
    """`${embedded:key,default}`: the embedded data's value while its label column is chosen.

    The default attrition data's id column, ranges and label values (`embedded_data` in
    utils/conf/task/tabular.yaml) must not leak into a user's table: they apply only while
    `task.label_column` is the embedded data's label.
    """
    embedded = _root_.get("embedded_data")
    if embedded is not None and _root_.task.get("label_column") == embedded.get("label_column"):
        return embedded.get(key, default)
    return default


def register_resolvers() -> None:
    """`${repo_root:}` in config.yaml: the default state dir; `${embedded:...}` (tabular.yaml)."""
    OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT), replace=True)
    OmegaConf.register_new_resolver("embedded", embedded_default, replace=True)


def load_config(overrides: Sequence[str] = ()) -> DictConfig:
    """config.yaml + task group + overrides, resolved the way main.py sees it."""
    from hydra import compose, initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO_ROOT), version_base="1.3", job_name="mlops"):
        cfg = compose(config_name="config", overrides=list(overrides))
    resolve_task(cfg)
    return cfg


def resolve_task(cfg: DictConfig) -> None:
    """Resolve `task` in place: `${embedded:...}` needs the whole config, so a `task` section
    merged on its own elsewhere (a step's TaskConfig) must not carry the interpolation."""
    if "task" in cfg and isinstance(cfg.task, DictConfig):
        cfg.task = OmegaConf.to_container(cfg.task, resolve=True)

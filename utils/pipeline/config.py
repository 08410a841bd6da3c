"""Compose the pipeline config outside `@hydra.main` (API server, cron tick, tools).

Same files, same overrides as `python main.py ...`, so every entry point sees one config.
"""
from __future__ import annotations

from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from utils.pipeline.paths import REPO_ROOT


TABULAR_DEFAULTS = REPO_ROOT / "utils" / "conf" / "task" / "tabular.yaml"
# what a user's table gets instead of the embedded attrition data's specifics
GENERIC_TABULAR: dict[str, Any] = {"model_name": "tabular_model", "id_column": "auto",
                                   "label_values": [], "features": {}}


def generic_tabular_task(task: dict[str, Any]) -> dict[str, Any]:
    """The task section with the embedded data's specifics removed when another label is chosen.

    tabular.yaml's defaults describe the embedded attrition data. With another
    `task.label_column`, each of them still at its tabular.yaml value (id column, label
    values, model name, per-column feature ranges) is replaced by the generic value, so none
    leaks into a user's table; a value the user set is kept.
    """
    if task.get("name") != "tabular" or not TABULAR_DEFAULTS.is_file():
        return task
    embedded = OmegaConf.to_container(OmegaConf.load(TABULAR_DEFAULTS).task, resolve=True)
    if task.get("label_column") == embedded.get("label_column"):
        return task
    out = dict(task)
    for key, generic in GENERIC_TABULAR.items():
        if key == "features":
            default = embedded.get("features") or {}
            out[key] = {k: v for k, v in (task.get(key) or {}).items() if default.get(k) != v}
        elif task.get(key) == embedded.get(key):
            out[key] = generic
    return out


def register_resolvers() -> None:
    """`${repo_root:}` in config.yaml: the default state dir."""
    OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT), replace=True)


def load_config(overrides: Sequence[str] = ()) -> DictConfig:
    """config.yaml + task group + overrides, resolved the way main.py sees it."""
    from hydra import compose, initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO_ROOT), version_base="1.3", job_name="mlops"):
        cfg = compose(config_name="config", overrides=list(overrides))
    resolve_task(cfg)
    return cfg


def resolve_task(cfg: DictConfig) -> None:
    """The `task` section as every entry point must see it (generic_tabular_task), in place."""
    if "task" in cfg and isinstance(cfg.task, DictConfig):
        task = OmegaConf.to_container(cfg.task, resolve=True)
        generic = generic_tabular_task(task)  # type: ignore[arg-type]
        if generic != task:
            cfg.task = generic

"""The pipeline config composed without starting Hydra: for the cron tick's cheap path.

Hydra's compose API costs ~0.3 s of imports and setup, the whole budget of an idle cron
tick. The root config is small (config.yaml with `_self_` and config groups from the search
path), so this module composes it with OmegaConf alone, the way Hydra does: the defaults
list in order, a group file merged at the root when it says `# @package _global_`, then the
command-line overrides applied in struct mode with Hydra's rules (`key=v` must exist,
`+key=v` must not, `++key=v` either, `~key` deletes). Plain overrides (`a.b=word`,
`a.b=/some/path`, `a.b=12`) are read here; anything else is parsed by Hydra's own override
grammar (imported only then), and whatever this module does not handle (sweeps, package
overrides, unknown groups, bad keys) is handed to `utils.pipeline.config.load_config` so the result
or the error is Hydra's. tests/fullprocess/test_light_config.py checks both give the same.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
)

from utils.pipeline.paths import REPO_ROOT

log = logging.getLogger(__name__)

CONFIG_FILE = REPO_ROOT / "config.yaml"
_GLOBAL_PACKAGE = re.compile(r"^#\s*@package\s+_global_\s*$", re.MULTILINE)
# `key=value` that Hydra reads as a plain string or int; anything else goes to Hydra's parser
_PLAIN_KEY = r"(?P<prefix>\+{0,2})(?P<key>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
_PLAIN = re.compile(_PLAIN_KEY + r"=(?P<value>[A-Za-z/][A-Za-z0-9_/.:@%+-]*|-?(?:0|[1-9][0-9]*))$")
_KEYWORDS = {"true", "false", "null", "inf", "nan"}


class NeedsHydra(Exception):
    """An override this module does not handle; Hydra composes the config instead."""


def _search_path(primary: DictConfig) -> list[Path]:
    """Folders holding config groups: the primary config dir and hydra.searchpath entries."""
    folders = [REPO_ROOT]
    for entry in OmegaConf.select(primary, "hydra.searchpath", default=None) or []:
        if str(entry).startswith("pkg://"):
            folders.append(REPO_ROOT.joinpath(*str(entry)[len("pkg://"):].split(".")))
        elif str(entry).startswith("file://"):
            folders.append(Path(str(entry)[len("file://"):]))
    return folders


def _group_file(group: str, option: str, folders: list[Path]) -> Path:
    for folder in folders:
        path = folder / group / f"{option}.yaml"
        if path.is_file():
            return path
    raise NeedsHydra(f"no config file for {group}={option}")


def _plain_value(text: str) -> Any:
    if text.lstrip("-").isdigit():
        return int(text)
    return text


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, str, Any]]:
    """(kind, key, value) per override, in order; kind is set, add, force_add or delete."""
    parsed: list[tuple[str, str, Any]] = []
    parser = None
    for line in overrides:
        match = _PLAIN.match(line)
        if match and match["value"].lower().lstrip("+-") not in _KEYWORDS:
            kind = {"": "set", "+": "add", "++": "force_add"}[match["prefix"]]
            parsed.append((kind, match["key"], _plain_value(match["value"])))
            continue
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.core.override_parser.types import ValueType

        parser = parser or OverridesParser.create()
        override = parser.parse_override(line)
        if override.package is not None or override.value_type not in (None, ValueType.ELEMENT):
            raise NeedsHydra(line)
        kind = ("delete" if override.is_delete() else "add" if override.is_add()
                else "force_add" if override.is_force_add() else "set")
        parsed.append((kind, override.key_or_group, override.value()))
    return parsed


def _compose(overrides: Sequence[str]) -> DictConfig:
    from utils.pipeline.config import register_resolvers, resolve_task

    register_resolvers()
    parsed = parse_overrides(overrides)
    primary = OmegaConf.load(CONFIG_FILE)
    folders = _search_path(primary)
    defaults = list(primary.pop("defaults", None) or ["_self_"])
    primary.pop("hydra", None)
    groups = {next(iter(d)): str(next(iter(d.values()))) for d in defaults if isinstance(d, DictConfig)}

    config_overrides = []
    for kind, key, value in parsed:
        if key == "hydra" or key.startswith("hydra.") or key.startswith("hydra/"):
            continue  # Hydra's own settings: they matter to main.py only
        if "." not in key and key in groups:
            if kind != "set" or not isinstance(value, str):
                raise NeedsHydra(f"{key}={value}")
            groups[key] = value
        elif "/" in key:
            raise NeedsHydra(key)
        else:
            config_overrides.append((kind, key, value))

    cfg = OmegaConf.create()
    for entry in defaults:
        if entry == "_self_":
            cfg = OmegaConf.merge(cfg, primary)
            continue
        if not isinstance(entry, DictConfig):
            raise NeedsHydra(f"defaults entry {entry}")
        group = next(iter(entry))
        path = _group_file(group, groups[group], folders)
        loaded = OmegaConf.load(path)
        if not _GLOBAL_PACKAGE.search(path.read_text()):
            loaded = OmegaConf.create({group: loaded})
        loaded.pop("defaults", None)
        cfg = OmegaConf.merge(cfg, loaded)
    assert isinstance(cfg, DictConfig)
    OmegaConf.set_struct(cfg, True)
    for kind, key, value in config_overrides:
        _apply(cfg, kind, key, value)
    resolve_task(cfg)
    return cfg


def _apply(cfg: DictConfig, kind: str, key: str, value: Any) -> None:
    """Hydra's ConfigLoaderImpl._apply_overrides_to_config for one override."""
    if kind == "delete":
        current = OmegaConf.select(cfg, key, throw_on_missing=False)
        if current is None or (value is not None and value != current):
            raise NeedsHydra(key)
        parent, _, leaf = key.rpartition(".")
        with open_dict(cfg):
            node = OmegaConf.select(cfg, parent) if parent else cfg
            del node[leaf]
    elif kind == "add":
        if OmegaConf.select(cfg, key, throw_on_missing=False) is not None and not isinstance(
                value, (dict, list)):
            raise NeedsHydra(key)
        OmegaConf.update(cfg, key, value, merge=True, force_add=True)
    elif kind == "force_add":
        OmegaConf.update(cfg, key, value, merge=True, force_add=True)
    else:
        try:
            OmegaConf.update(cfg, key, value, merge=True)
        except (ConfigAttributeError, ConfigKeyError) as exc:
            raise NeedsHydra(key) from exc


def load_light_config(overrides: Sequence[str] = ()) -> DictConfig:
    """config.yaml + groups + overrides as `utils.pipeline.config.load_config` gives them, cheaply.

    Falls back to Hydra for overrides outside the common forms, so the answer (or the error
    message) is always Hydra's.
    """
    try:
        return _compose(overrides)
    except (NeedsHydra, OmegaConfBaseException) as exc:
        log.debug("composing with Hydra (%s)", exc)
        from utils.pipeline.config import load_config

        return load_config(overrides)


def to_plain(cfg: DictConfig | ListConfig) -> Any:
    """Resolved plain container of a config (what the comparison tests look at)."""
    return OmegaConf.to_container(cfg, resolve=True)

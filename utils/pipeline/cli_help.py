"""`python main.py --help` / `--hydra-help` without walking the repository.

Hydra's help lists every config group of the primary config dir, recursively, and main.py's
primary config dir is the repo root (config.yaml lives there): Hydra would treat `.git`,
`.venv` and every state folder as candidate groups and walk tens of thousands of folders
(minutes, with `.venv` in the checkout). The groups this project has live in `utils/conf`
(`pkg://utils.conf` on the search path), so the page is composed from the same config and
template Hydra uses, with the groups listed from there and from Hydra's own package.
"""
from __future__ import annotations

import copy
import string
from collections.abc import Sequence
from pathlib import Path

HELP_FLAGS = ("--help", "-h")
HYDRA_HELP_FLAG = "--hydra-help"


def help_requested(argv: Sequence[str]) -> str | None:
    """"app" for --help/-h, "hydra" for --hydra-help, None otherwise (Hydra's parser would see them)."""
    if HYDRA_HELP_FLAG in argv:
        return "hydra"
    if any(flag in argv for flag in HELP_FLAGS):
        return "app"
    return None


def _group_lines(config_module: str) -> tuple[str, str]:
    """("group: option, ..." lines of the project's groups, the same of Hydra's), as Hydra prints them."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType

    app, hydra_own = [], []
    with initialize_config_module(config_module=config_module, version_base="1.3"):
        instance = GlobalHydra.instance().hydra
        assert instance is not None
        for group in sorted(instance.list_all_config_groups()):
            options = instance.config_loader.get_group_options(group, ObjectType.CONFIG)
            line = f"{group}: {', '.join(sorted(options))}"
            (hydra_own if group == "hydra" or group.startswith("hydra/") else app).append(line)
    return "\n".join(app), "\n".join(hydra_own)


def _flags_help() -> str:
    """Hydra's own flag list (the parser Hydra's help prints), one flag per line."""
    from hydra._internal.utils import get_args_parser

    lines = []
    for action in get_args_parser()._actions:
        if not action.option_strings:
            continue
        lines.append(f"{','.join(action.option_strings)} : {action.help}")
    return "\n".join(lines)


def help_text(kind: str, config_dir: Path, overrides: Sequence[str] = (),
              config_module: str = "utils.conf") -> str:
    """The page Hydra would print for ``kind`` ("app" or "hydra"), from the same templates."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    template = cfg.hydra.help.template if kind == "app" else cfg.hydra.hydra_help.template
    if kind == "app":
        shown = copy.deepcopy(cfg)   # a copy: the templates interpolate ${hydra.help.*} from cfg
        with open_dict(shown):
            del shown["hydra"]
    else:
        shown = cfg.hydra
    app_groups, hydra_groups = _group_lines(config_module)
    return string.Template(template).safe_substitute(
        FLAGS_HELP=_flags_help(),
        HYDRA_CONFIG_GROUPS=hydra_groups,
        APP_CONFIG_GROUPS=app_groups,
        CONFIG=OmegaConf.to_yaml(shown, resolve=False),
    )

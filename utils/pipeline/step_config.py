"""How a step receives its configuration: one resolved JSON file, typed by a dataclass.

main.py writes the config sections a step needs to a file and passes its path as the
step's only MLflow parameter. The step declares the shape it expects once, as a dataclass,
and loads the file through OmegaConf's structured configs, which reject unknown keys and
wrong types with the offending key in the message.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

T = TypeVar("T")


class StepConfigError(ValueError):
    """The step's config file is missing or does not match what the step declares."""


class ConfigValueError(ValueError):
    """A config value of the right type but out of range; ``key`` is the full dotted key."""

    def __init__(self, key: str, expected: str, value: Any):
        self.key, self.expected, self.value = key, expected, value
        super().__init__(f"{key}: expected {expected}, got {value!r}")


def require(ok: bool, key: str, expected: str, value: Any) -> None:
    """Range checks in a dataclass's ``__post_init__``: fail with the full key, e.g.
    ``training.C: expected a positive float, got -1.0``."""
    if not ok:
        raise ConfigValueError(key, expected, value)


_TYPE_WORDS = {"Float": "a float", "Integer": "an integer", "Boolean": "true or false",
               "String": "a string"}


def _expected_of(schema: type, parts: list[str]) -> str | None:
    """The ``EXPECTED`` wording a dataclass declares for a (nested) key, if any."""
    import dataclasses
    import typing

    owner: Any = schema
    for part in parts[:-1]:
        if not dataclasses.is_dataclass(owner):
            return None
        try:
            owner = typing.get_type_hints(owner).get(part)
        except Exception:
            return None
    expected = getattr(owner, "EXPECTED", None)
    return expected.get(parts[-1]) if isinstance(expected, dict) else None


def build_config(schema: type[T], raw: dict[str, Any], prefix: str = "") -> T:
    """``raw`` typed as ``schema`` (OmegaConf structured config plus its ``__post_init__``
    checks); any mismatch is one ConfigValueError line naming the full key."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(raw))
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except ConfigValueError as exc:
        if prefix and not exc.key.startswith(prefix):
            raise ConfigValueError(prefix + exc.key, exc.expected, exc.value) from None
        raise
    except ConfigKeyError as exc:
        key = prefix + str(exc.full_key or exc.key)
        raise ConfigValueError(key, f"a key the step knows ({key} is not one)", "unknown key") from None
    except ValidationError as exc:
        full = str(exc.full_key or exc.key)
        match = re.search(r"converted to (\w+)|not a valid (bool)", str(exc))
        expected = (_expected_of(schema, full.split("."))
                    or (_TYPE_WORDS.get(match[1] or "Boolean") if match else str(exc).splitlines()[0]))
        raise ConfigValueError(prefix + full, expected, exc.value) from None


@dataclass
class LoggingSection:
    """`logging:` of config.yaml, for the steps with long loops (training, NLU scoring, diagnostics)."""
    progress_every_s: float = 30.0   # a progress log line at least this often (also without a TTY)

    def __post_init__(self) -> None:
        require(self.progress_every_s >= 0, "logging.progress_every_s", "a non-negative number of seconds",
                self.progress_every_s)


@dataclass
class TaskConfig:
    """The `task` config group (utils/conf/task/*.yaml), shared by every step."""

    name: str = "tabular"
    model_name: str = "attrition_model"
    primary_metric: str = "auto"       # auto: follows the problem (f1, f1_macro, rmse)
    metric_direction: str = "higher"   # higher | lower: which way the primary metric is better (forecast: lower)
    # tabular
    problem: str = "auto"              # auto | classification | binary | multiclass | regression
    id_column: str | None = None       # a column, "auto" (detect) or None (no id column)
    label_column: str | None = None
    label_values: list[Any] = field(default_factory=list)
    positive_label: Any = None
    features: dict[str, Any] = field(default_factory=dict)
    # nlu
    encoder: str | None = None
    # forecast (utils/conf/task/forecast.yaml)
    series_column: str | None = None   # null: one series (no series column)
    time_column: str | None = None
    target_column: str | None = None
    group_column: str | None = None    # per-group error table (e.g. store_id); null: none
    horizon: int = 28                  # days forecast
    freq: str = "D"
    allow_gaps: bool = False           # accept missing days inside a series
    tweedie_power: float = 1.2         # LightGBM objective and the Tweedie deviance metric

    @property
    def higher_is_better(self) -> bool:
        return self.metric_direction != "lower"

    @property
    def feature_columns(self) -> list[str]:
        return list(self.features)


def load_step_config(path: str | Path, schema: type[T]) -> T:
    """Load a step config file into ``schema``; errors name the file and the bad key."""
    path = Path(path)
    if not path.is_file():
        raise StepConfigError(f"step config file not found: {path} (main.py writes it; "
                              "run the step through main.py or pass --config)")
    try:
        raw = json.loads(path.read_text())
        return build_config(schema, raw)
    except ConfigValueError as exc:
        raise StepConfigError(f"invalid step config {path}: {exc}") from None
    except (json.JSONDecodeError, OmegaConfBaseException) as exc:
        raise StepConfigError(f"invalid step config {path}: {exc}") from exc


def write_step_config(path: Path, config: dict[str, Any]) -> Path:
    """Write a resolved step config (JSON, stable key order) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    return path


def step_argument_parser(description: str) -> argparse.ArgumentParser:
    """The CLI every step shares: one --config file written by main.py."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True,
                        help="JSON file with the step's resolved config sections (written by main.py)")
    return parser


def configure_logging(level: int = logging.INFO) -> None:
    """One log format for every step process."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

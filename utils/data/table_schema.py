"""The table schema: inferred from the first ingested files, frozen, then the contract.

A user names the label column and nothing else; the first ingestion infers, per column, the
kind (numeric, integer, categorical, boolean, datetime), nullability, observed range or
categories and the role (feature, label, id, excluded), and the label's kind decides the
problem (binary, multiclass, regression). The result is written once to the model's
ingested state (``StatePaths.schema_file``, YAML, human-editable) and every later file, the
test data, training, the API and drift detection read it instead of guessing again.
``task.features`` overrides (type, min, max, nullable, categories, exclude) apply on top.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FORMAT = 1
KINDS = ("numeric", "integer", "categorical", "boolean", "datetime")
PROBLEMS = ("binary", "multiclass", "regression")
ROLES = ("feature", "label", "id", "excluded")
MIN_ROWS = 10              # schema inference on fewer rows would guess
MAX_INTEGER_CLASSES = 20   # an integer label with at most this many values is a class label
_INT_RE = re.compile(r"^[+-]?\d+$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")
_TRUE, _FALSE = {"true"}, {"false"}
_OVERRIDE_KEYS = {"type", "kind", "min", "max", "nullable", "categories", "exclude"}


class SchemaError(ValueError):
    """The table cannot be used as configured; the message names the column and the remedy."""


@dataclass
class ColumnSchema:
    name: str
    kind: str
    role: str = "feature"
    nullable: bool = False
    min: float | None = None            # enforced bounds (task.features overrides)
    max: float | None = None
    observed_min: float | None = None   # what inference saw (information, drift)
    observed_max: float | None = None
    categories: list[Any] | None = None  # categorical/boolean: observed; label: the classes
    reason: str = ""                     # why a column is excluded


@dataclass
class TableSchema:
    label: str
    problem: str
    columns: list[ColumnSchema]
    id_column: str | None = None
    positive_label: Any = None          # binary: the class F1/precision/recall are about
    version: int = 1
    format: int = FORMAT
    inferred_from: list[str] = field(default_factory=list)
    created: str = ""

    # ---- views ------------------------------------------------------------------------------
    def column(self, name: str) -> ColumnSchema:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def features(self) -> list[str]:
        return [c.name for c in self.columns if c.role == "feature"]

    def features_of(self, *kinds: str) -> list[str]:
        return [c.name for c in self.columns if c.role == "feature" and c.kind in kinds]

    @property
    def label_column(self) -> ColumnSchema:
        return self.column(self.label)

    @property
    def classes(self) -> list[Any]:
        return list(self.label_column.categories or []) if self.problem != "regression" else []

    @property
    def is_classification(self) -> bool:
        return self.problem != "regression"

    # ---- files --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["columns"] = [{k: v for k, v in asdict(c).items() if v not in (None, "")} for c in self.columns]
        return _plain(out)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TableSchema":
        names = {f.name for f in fields(ColumnSchema)}
        columns = [ColumnSchema(**{k: v for k, v in c.items() if k in names}) for c in data["columns"]]
        top = {f.name for f in fields(cls)} - {"columns"}
        schema = cls(columns=columns, **{k: v for k, v in data.items() if k in top})
        schema.check()
        return schema

    def dump(self, path: Path) -> None:
        """Write atomically (YAML, editable); a half-written schema is never read."""
        import yaml

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        header = ("# Frozen table schema (utils/data/table_schema.py). Edit with care: later files,\n"
                  "# training and the API follow it. Bump `version` when you change it.\n")
        tmp.write_text(header + yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "TableSchema":
        import yaml

        try:
            return cls.from_dict(yaml.safe_load(path.read_text()))
        except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
            raise SchemaError(f"cannot read the frozen schema {path}: {exc}; fix or delete it "
                              "(it is inferred again on the next ingestion)") from exc

    def check(self) -> None:
        for col in self.columns:
            if col.kind not in KINDS:
                raise SchemaError(f"schema column {col.name!r}: kind {col.kind!r} is not one of {', '.join(KINDS)}")
            if col.role not in ROLES:
                raise SchemaError(f"schema column {col.name!r}: role {col.role!r} is not one of {', '.join(ROLES)}")
        if self.problem not in PROBLEMS:
            raise SchemaError(f"schema problem {self.problem!r} is not one of {', '.join(PROBLEMS)}")
        if self.label not in self.names:
            raise SchemaError(f"schema label {self.label!r} is not one of its columns")

    def pandera(self) -> Any:
        """The value checks of the typed frame, as a pandera schema (also logged as YAML)."""
        import pandera.pandas as pa

        dtypes = {"numeric": float, "integer": "Int64", "boolean": "boolean",
                  "categorical": object, "datetime": object}
        columns = {}
        for col in self.columns:
            checks = []
            if col.kind in ("numeric", "integer"):
                checks.append(pa.Check(lambda s: np.isfinite(s.astype(float)) | s.isna(),
                                       name="finite", error="non-finite number"))
                if col.min is not None:
                    checks.append(pa.Check.ge(col.min))
                if col.max is not None:
                    checks.append(pa.Check.le(col.max))
            if col.role == "label" and self.is_classification:
                checks.append(pa.Check.isin(list(col.categories or [])))
            columns[col.name] = pa.Column(dtypes[col.kind], checks=checks,
                                          nullable=col.nullable and col.role != "label")
        return pa.DataFrameSchema(columns, strict=True, ordered=False, name="table")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


# ---- parsing raw strings by kind ----------------------------------------------------------------
def parse_column(raw: pd.Series, kind: str) -> tuple[pd.Series, pd.Series, str]:
    """(typed values, mask of values that do not parse, check name) for one raw column."""
    present = raw.notna()
    text = raw.astype(object).where(present, None)
    if kind in ("numeric", "integer"):
        number = pd.to_numeric(text, errors="coerce").astype(float)
        bad = present & number.isna()
        if kind == "integer":
            whole = np.isfinite(number) & (np.floor(number) == number) & (number.abs() < 2 ** 53)
            bad |= present & number.notna() & ~whole
            return number.where(~bad).astype("Int64"), bad, "finite whole number"
        return number.where(~bad), bad, "number"
    if kind == "boolean":
        lower = text.map(lambda v: v.strip().lower() if isinstance(v, str) else v)
        value = lower.map(lambda v: True if v in _TRUE else (False if v in _FALSE else None))
        bad = present & value.isna()
        return value.astype("boolean"), bad, "boolean (true/false)"
    if kind == "datetime":
        parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
        bad = present & parsed.isna()
        return text.where(~bad, None), bad, "ISO date/time"
    value = text.map(lambda v: v.strip() if isinstance(v, str) else v)
    return value.astype(object).where(present, np.nan), pd.Series(False, index=raw.index), "text"


def infer_kind(raw: pd.Series) -> str:
    values = raw.dropna().astype(str).str.strip()
    values = values[values != ""]
    if values.empty:
        return "categorical"
    lower = set(values.str.lower())
    if lower <= _TRUE | _FALSE:
        return "boolean"
    if values.map(lambda v: bool(_INT_RE.match(v))).all():
        return "integer"
    if pd.to_numeric(values, errors="coerce").notna().all():
        return "numeric"
    if values.map(lambda v: bool(_DATE_RE.match(v))).all():
        return "datetime"
    return "categorical"


def _sorted(values: list[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


# ---- inference ------------------------------------------------------------------------------------
def infer_schema(raw: pd.DataFrame, task: Any, sources: list[str] | None = None,
                 more: list[pd.DataFrame] | None = None) -> TableSchema:
    """Infer the schema of a raw table (strings) for ``task`` (label, id column, overrides).

    Kinds, nullability and categories come from ``raw`` (the first file); the label's classes
    also from ``more`` (the other files of the first ingestion), so a class that only a later
    file of the same batch has is not an "unseen label". A bad file in the batch cannot change
    the kinds: it is validated, and rejected, against the first file's schema.
    Raises SchemaError with a one-line reason (missing label, one class, no feature, ...).
    """
    label = getattr(task, "label_column", None)
    if not label:
        raise SchemaError("task.label_column is not set: name the column to predict "
                          "(e.g. task.label_column=species)")
    if label not in raw.columns:
        raise SchemaError(f"label column {label!r} (task.label_column) is not in the table; its columns "
                          f"are {list(raw.columns)[:20]}: set task.label_column to one of them")
    if len(raw) < MIN_ROWS:
        raise SchemaError(f"schema inference needs at least {MIN_ROWS} rows, the first files have "
                          f"{len(raw)}: add more rows, or more files, before the first ingestion")
    overrides = dict(getattr(task, "features", None) or {})
    unknown = sorted(set(overrides) - set(raw.columns))
    if unknown:
        raise SchemaError(f"task.features names column(s) {unknown} that the table does not have "
                          f"(columns: {list(raw.columns)[:20]})")
    id_setting = getattr(task, "id_column", "auto")
    if id_setting not in (None, "auto") and id_setting not in raw.columns:
        raise SchemaError(f"id column {id_setting!r} (task.id_column) is not in the table: set it to one "
                          "of its columns, to auto (detect) or to null (none)")
    columns: list[ColumnSchema] = []
    id_column = id_setting if id_setting not in (None, "auto") else None
    for name in raw.columns:
        series = raw[name]
        spec = dict(overrides.get(name) or {})
        bad_keys = sorted(set(spec) - _OVERRIDE_KEYS)
        if bad_keys:
            raise SchemaError(f"task.features.{name}: unknown key(s) {bad_keys}; allowed: {sorted(_OVERRIDE_KEYS)}")
        kind = spec.get("type") or spec.get("kind") or infer_kind(series)
        if kind not in KINDS:
            raise SchemaError(f"task.features.{name}.type={kind!r}: expected one of {', '.join(KINDS)}")
        typed, bad, _ = parse_column(series, kind)
        nonnull = typed[~bad].dropna()
        col = ColumnSchema(name=name, kind=kind, nullable=bool(series.isna().any()))
        if nonnull.empty and not spec.get("exclude"):
            if name == label:
                raise SchemaError(f"label column {label!r} has no values: fill it or choose another column")
            raise SchemaError(f"column {name!r} is empty in every row: remove it from the files or exclude "
                              f"it (task.features.{name}.exclude=true)")
        if kind in ("numeric", "integer") and not nonnull.empty:
            finite = nonnull.astype(float)
            finite = finite[np.isfinite(finite)]
            if len(finite):
                col.observed_min, col.observed_max = float(finite.min()), float(finite.max())
        elif kind in ("categorical", "boolean"):
            col.categories = _sorted(list(set(nonnull.tolist())))
        col.min = None if spec.get("min") is None else float(spec["min"])
        col.max = None if spec.get("max") is None else float(spec["max"])
        if "nullable" in spec:
            col.nullable = bool(spec["nullable"])
        if spec.get("categories") is not None:
            col.categories = list(spec["categories"])
        if name == label:
            col.role, col.nullable = "label", False
        elif spec.get("exclude"):
            col.role, col.reason = "excluded", "task.features exclude"
        elif name == id_column:
            col.role = "id"
        elif kind == "categorical" and nonnull.nunique() == len(series) and len(series) >= MIN_ROWS:
            if id_setting == "auto" and id_column is None:
                col.role, id_column = "id", name
            else:
                col.role, col.reason = "excluded", "unique per row (id-like)"
        elif kind == "categorical" and nonnull.nunique() > max(50, len(series) // 2):
            col.role, col.reason = "excluded", f"high cardinality ({nonnull.nunique()} values)"
        elif kind == "datetime":
            col.role, col.reason = "excluded", "datetime: derive numeric columns from it to use it"
        columns.append(col)
    if id_column:
        next(c for c in columns if c.name == id_column).categories = None
    schema = TableSchema(label=label, problem="regression", columns=columns, id_column=id_column,
                         inferred_from=list(sources or []), created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    labels = [raw[label], *(f[label] for f in (more or []) if label in f.columns)]
    _decide_problem(schema, pd.concat(labels, ignore_index=True), task)
    if not schema.features:
        raise SchemaError(f"no usable feature column: besides the label {label!r}, every column is an id or "
                          f"excluded ({', '.join(f'{c.name}: {c.reason or c.role}' for c in columns if c.name != label)})")
    return schema


def _decide_problem(schema: TableSchema, raw_label: pd.Series, task: Any) -> None:
    col = schema.label_column
    typed, bad, _ = parse_column(raw_label, col.kind)
    values = typed[~bad].dropna()
    distinct = _sorted(list(set(values.tolist())))
    wanted = (getattr(task, "problem", None) or "auto")
    label_values = list(getattr(task, "label_values", None) or [])
    if wanted == "auto":
        if label_values or col.kind in ("categorical", "boolean"):
            wanted = "classification"
        elif col.kind == "integer" and len(distinct) <= MAX_INTEGER_CLASSES:
            wanted = "classification"
        else:
            wanted = "regression"
    if wanted == "regression":
        if col.kind not in ("numeric", "integer"):
            raise SchemaError(f"label column {col.name!r} is {col.kind}, not numeric: regression needs numbers "
                              "(set task.problem=classification, or pick a numeric label)")
        schema.problem, col.categories = "regression", None
        return
    if wanted not in ("classification", "binary", "multiclass"):
        raise SchemaError(f"task.problem={wanted!r}: expected auto, classification, binary, multiclass or regression")
    if col.kind == "datetime":
        raise SchemaError(f"label column {col.name!r} holds dates: it cannot be a class label")
    classes = [_coerce_label(v, col.kind, col.name) for v in label_values] if label_values else distinct
    if len(classes) < 2:
        raise SchemaError(f"label column {col.name!r} has one class ({classes[0]!r} in every row): a classifier "
                          "needs at least two; add rows of another class or choose another label")
    col.categories = _sorted(classes)
    schema.problem = "binary" if len(classes) == 2 else "multiclass"
    if schema.problem == "binary":
        wanted_positive = getattr(task, "positive_label", None)
        schema.positive_label = (_coerce_label(wanted_positive, col.kind, col.name)
                                 if wanted_positive is not None else col.categories[-1])


def _coerce_label(value: Any, kind: str, column: str) -> Any:
    """A configured label value (task.label_values) in the label column's own type."""
    raw = pd.Series([None if value is None else str(value)])
    typed, bad, check = parse_column(raw, kind)
    if bad.any() or typed.isna().any():
        raise SchemaError(f"task.label_values: {value!r} is not a {check} like the values of label column {column!r}")
    return _plain(typed.iloc[0])


def schema_from_task(task: Any) -> TableSchema | None:
    """A schema spelled out in the task config (features with ranges, label values), or None.

    For a model without a frozen schema file (state dirs of the first layout, fixtures):
    numeric features, an integer label with the configured values.
    """
    features = dict(getattr(task, "features", None) or {})
    label = getattr(task, "label_column", None)
    label_values = list(getattr(task, "label_values", None) or [])
    if not features or not label:
        return None
    columns = []
    id_column = getattr(task, "id_column", None)
    if id_column and id_column != "auto":
        columns.append(ColumnSchema(name=id_column, kind="categorical", role="id"))
    else:
        id_column = None
    for name, spec in features.items():
        spec = dict(spec or {})
        kind = spec.get("type") or spec.get("kind") or "numeric"
        columns.append(ColumnSchema(name=name, kind=kind, nullable=bool(spec.get("nullable", False)),
                                    min=spec.get("min"), max=spec.get("max"),
                                    categories=spec.get("categories"),
                                    role="excluded" if spec.get("exclude") else "feature"))
    kind = "integer" if all(isinstance(v, int) and not isinstance(v, bool) for v in label_values) else "categorical"
    problem = getattr(task, "problem", None) or "auto"
    if problem == "regression" or not label_values:
        columns.append(ColumnSchema(name=label, kind="numeric", role="label"))
        return TableSchema(label=label, problem="regression", columns=columns, id_column=id_column)
    columns.append(ColumnSchema(name=label, kind=kind, role="label", categories=_sorted(label_values)))
    binary = len(label_values) == 2
    return TableSchema(label=label, problem="binary" if binary else "multiclass", columns=columns,
                       id_column=id_column, positive_label=_sorted(label_values)[-1] if binary else None)


# ---- model inputs ------------------------------------------------------------------------------
def feature_frame(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """The model's input: numbers as float64 (NaN missing), categories/booleans as text (NaN)."""
    out = {}
    for name in schema.features:
        col = schema.column(name)
        values = frame[name]
        if col.kind in ("numeric", "integer"):
            out[name] = values.astype("float64") if values.dtype != object else pd.to_numeric(values).astype(float)
        else:
            out[name] = values.map(lambda v: _category_text(v)).astype(object)
    return pd.DataFrame(out, index=frame.index)


def _category_text(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return np.nan
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    return str(value)


def label_values(frame: pd.DataFrame, schema: TableSchema) -> np.ndarray:
    """The label in its own type (int, str, bool; float for regression), as a numpy array."""
    values = frame[schema.label]
    if not schema.is_classification:
        return values.astype("float64").to_numpy()
    kind = schema.label_column.kind
    if kind == "integer":
        return values.astype("int64").to_numpy()
    if kind == "boolean":
        return values.astype(bool).to_numpy()
    if kind == "numeric":
        return values.astype("float64").to_numpy()
    return np.array([str(v) for v in values], dtype=object)


def with_training_categories(schema: TableSchema, frame: pd.DataFrame) -> TableSchema:
    """A copy whose categorical features list the categories of the training data (for the API)."""
    data = schema.to_dict()
    for col in data["columns"]:
        if col["role"] == "feature" and col["kind"] in ("categorical", "boolean"):
            seen = frame[col["name"]].dropna().tolist()
            col["categories"] = _plain(_sorted(list(set(seen) | set(col.get("categories") or []))))
    return TableSchema.from_dict(data)


def model_schema(metadata: dict[str, Any] | None, task: Any = None) -> TableSchema | None:
    """The schema a model version was trained with (metadata.json), else the task config's."""
    if metadata and metadata.get("schema"):
        return TableSchema.from_dict(metadata["schema"])
    return schema_from_task(task) if task is not None else None


def state_schema(schema_file: Path, task: Any = None) -> TableSchema | None:
    """The frozen schema of the model's ingested state, else the task config's."""
    if schema_file.is_file():
        return TableSchema.load(schema_file)
    return schema_from_task(task) if task is not None else None

"""Reading and validating tabular CSV files against the task's schema (pandera).

Every rejection names what is wrong (column, check, first failing rows), because the reason
ends up in the ingest record and the quarantine folder where an operator reads it.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from utils.pipeline.step_config import TaskConfig

_SNIFF_BYTES = 8192


class TabularDataError(ValueError):
    """A CSV file that cannot be used; the message is the quarantine reason."""


def build_schema(task: TaskConfig) -> pa.DataFrameSchema:
    """Columns, dtypes, ranges and label values of the task, as a pandera schema."""
    columns: dict[str, pa.Column] = {
        task.id_column: pa.Column(str, nullable=False, coerce=True),
    }
    for name, bounds in task.features.items():
        checks = []
        if bounds and bounds.get("min") is not None:
            checks.append(pa.Check.ge(bounds["min"]))
        if bounds and bounds.get("max") is not None:
            checks.append(pa.Check.le(bounds["max"]))
        columns[name] = pa.Column(float, checks=checks, nullable=False, coerce=True)
    columns[task.label_column] = pa.Column(
        int, checks=[pa.Check.isin(list(task.label_values))], nullable=False, coerce=True)
    return pa.DataFrameSchema(columns, strict=True, ordered=False)


def _sniff(path: Path) -> None:
    head = path.read_bytes()[:_SNIFF_BYTES] if path.stat().st_size else b""
    if not head:
        raise TabularDataError("empty file (0 bytes)")
    if b"\x00" in head:
        raise TabularDataError("binary file (contains NUL bytes), not a CSV")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a multi-byte char cut at the sniff boundary
            raise TabularDataError(f"bad encoding: not UTF-8 (byte {exc.start}: {exc.reason})") from exc


def _describe_failures(exc: SchemaErrors) -> str:
    cases = exc.failure_cases
    parts = []
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        idx = [int(i) for i in group["index"].dropna().head(3)]
        rows = f" (rows {', '.join(str(i + 2) for i in idx)} of the file)" if idx else ""
        values = ", ".join(map(repr, group["failure_case"].head(3).tolist()))
        parts.append(f"column {column!r}: {check} failed for {len(group)} value(s), e.g. {values}{rows}")
    return "; ".join(parts[:5])


def read_tabular_csv(path: Path, task: TaskConfig) -> pd.DataFrame:
    """Read and validate one CSV file; raise TabularDataError with a precise reason."""
    _sniff(path)
    try:
        frame = pd.read_csv(path, encoding="utf-8", on_bad_lines="error", skipinitialspace=True)
    except UnicodeDecodeError as exc:
        raise TabularDataError(f"bad encoding: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except pd.errors.EmptyDataError as exc:
        raise TabularDataError("empty file: no header and no rows") from exc
    except pd.errors.ParserError as exc:
        raise TabularDataError(f"unparsable rows: {exc}".strip()) from exc
    expected = {task.id_column, task.label_column, *task.features}
    missing = sorted(expected - set(frame.columns))
    unexpected = sorted(set(frame.columns) - expected)
    if missing or unexpected:
        raise TabularDataError(
            f"wrong columns: missing {missing}, unexpected {unexpected}; expected {sorted(expected)}")
    if frame.empty:
        raise TabularDataError("header only: no data rows")
    try:
        validated = build_schema(task).validate(frame, lazy=True)
    except SchemaErrors as exc:
        raise TabularDataError(f"schema: {_describe_failures(exc)}") from exc
    return validated[[task.id_column, *task.features, task.label_column]]

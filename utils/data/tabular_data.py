"""Reading and validating tabular CSV files against the frozen table schema (pandera).

A file is read as text, each column parsed by its frozen kind (never a silent coercion: a
fractional value in an integer column, a word in a number column, `inf` or `1e400` are
errors), then the value checks run as a pandera schema. Whole-file problems (a new, missing
or renamed column, a type change) always reject the file; row problems follow
`data.bad_rows`: `quarantine_file` rejects the file, `drop_rows` drops and counts the rows.
Every rejection names what is wrong (column, check, first failing rows), because the reason
ends up in the ingest record and the quarantine folder where an operator reads it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pandera.errors import SchemaErrors

from utils.data.table_schema import TableSchema, parse_column, schema_from_task

_SNIFF_BYTES = 8192


class TabularDataError(ValueError):
    """A CSV file that cannot be used; the message is the quarantine reason."""


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


BAD_ROW_POLICIES = ("quarantine_file", "drop_rows")


@dataclass
class TableRead:
    """A validated file: typed rows in schema order, and what was dropped or unseen."""

    frame: pd.DataFrame
    rows_dropped: int = 0
    dropped_reason: str = ""
    unseen: dict[str, int] = field(default_factory=dict)   # categorical feature -> unseen values


def read_raw_csv(path: Path) -> pd.DataFrame:
    """The file as text (missing values as NaN); raise TabularDataError when it is no CSV."""
    _sniff(path)
    try:
        frame = pd.read_csv(path, encoding="utf-8", on_bad_lines="error", skipinitialspace=True,
                            dtype=str)
    except UnicodeDecodeError as exc:
        raise TabularDataError(f"bad encoding: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except pd.errors.EmptyDataError as exc:
        raise TabularDataError("empty file: no header and no rows") from exc
    except pd.errors.ParserError as exc:
        raise TabularDataError(f"unparsable rows: {exc}".strip()) from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise TabularDataError("header only: no data rows")
    return frame


def check_columns(columns: list[str], schema: TableSchema) -> None:
    """New, missing or renamed columns reject the whole file."""
    expected = schema.names
    missing = [c for c in expected if c not in columns]
    new = [c for c in columns if c not in expected]
    if not (missing or new):
        return
    if len(missing) == 1 and len(new) == 1:
        raise TabularDataError(f"column {missing[0]!r} of the frozen schema is missing and {new[0]!r} is new "
                               "(renamed?); rename it back, or re-freeze the schema")
    parts = []
    if missing:
        parts.append(f"missing column(s) {missing}")
    if new:
        parts.append(f"new column(s) {new}")
    raise TabularDataError(f"wrong columns: {', '.join(parts)}; the frozen schema has {expected}")


def validate_table(raw: pd.DataFrame, schema: TableSchema) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(typed frame in schema order, row problems: index, column, check, failure_case)."""
    check_columns(list(raw.columns), schema)
    typed: dict[str, pd.Series] = {}
    problems = []
    for col in schema.columns:
        values, bad, check = parse_column(raw[col.name], col.kind)
        present = int(raw[col.name].notna().sum())
        if present and int(bad.sum()) == present and present >= 3:
            example = raw[col.name][bad].iloc[0]
            raise TabularDataError(f"type change: column {col.name!r} is frozen as {col.kind} but none of its "
                                   f"values is a {check} (e.g. {example!r}); fix the file or the schema")
        if bad.any():
            problems.append(pd.DataFrame({"index": raw.index[bad], "column": col.name, "check": check,
                                          "failure_case": raw[col.name][bad].tolist()}))
        typed[col.name] = values
    frame = pd.DataFrame(typed, index=raw.index)
    try:
        schema.pandera().validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        cases = cases[cases["index"].notna()][["index", "column", "check", "failure_case"]]
        if problems:  # a value that did not parse is reported once, with its own reason
            parsed = pd.concat(problems)
            seen = set(zip(parsed["index"], parsed["column"]))
            cases = cases[[(i, c) not in seen for i, c in zip(cases["index"], cases["column"])]]
        problems.append(cases)
    found = pd.concat(problems, ignore_index=True) if problems else pd.DataFrame(
        columns=["index", "column", "check", "failure_case"])
    return frame, found


def describe_problems(problems: pd.DataFrame) -> str:
    parts = []
    for (column, check), group in problems.groupby(["column", "check"], dropna=False, sort=False):
        idx = [int(i) for i in group["index"].dropna().head(3)]
        rows = f" (rows {', '.join(str(i + 2) for i in idx)} of the file)" if idx else ""
        values = ", ".join(map(repr, group["failure_case"].head(3).tolist()))
        parts.append(f"column {column!r}: {check} failed for {len(group)} value(s), e.g. {values}{rows}")
    return "; ".join(parts[:5])


def unseen_categories(frame: pd.DataFrame, schema: TableSchema) -> dict[str, int]:
    """Per categorical feature, how many values are not among the schema's categories."""
    out = {}
    for name in schema.features_of("categorical", "boolean"):
        known = set(schema.column(name).categories or [])
        values = frame[name].dropna()
        count = int((~values.isin(known)).sum()) if known else 0
        if count:
            out[name] = count
    return out


def read_table(path: Path, schema: TableSchema, bad_rows: str = "quarantine_file") -> TableRead:
    """Read and validate one CSV file against ``schema`` under the ``data.bad_rows`` policy."""
    if bad_rows not in BAD_ROW_POLICIES:
        raise ValueError(f"data.bad_rows={bad_rows!r}: expected one of {', '.join(BAD_ROW_POLICIES)}")
    frame, problems = validate_table(read_raw_csv(path), schema)
    dropped, reason = 0, ""
    if len(problems):
        reason = describe_problems(problems)
        if bad_rows == "quarantine_file":
            raise TabularDataError(f"schema: {reason}")
        bad_index = set(problems["index"].dropna().astype(int))
        dropped = len(bad_index)
        frame = frame[~frame.index.isin(bad_index)]
        if frame.empty:
            raise TabularDataError(f"every row is bad (data.bad_rows=drop_rows): {reason}")
    return TableRead(frame.reset_index(drop=True), dropped, reason, unseen_categories(frame, schema))


def read_tabular_csv(path: Path, task: Any, schema: TableSchema | None = None) -> pd.DataFrame:
    """Read and validate one CSV file (every bad value is an error); raise TabularDataError."""
    schema = schema or schema_from_task(task)
    if schema is None:
        raise TabularDataError("no table schema: run data_ingestion first (it freezes the schema), "
                               "or spell out task.features and task.label_values")
    return read_table(Path(path), schema).frame


def read_ingested(path: Path, schema: TableSchema) -> pd.DataFrame:
    """The ingested dataset, typed by the frozen schema (rows were validated on ingestion)."""
    frame, _ = validate_table(read_raw_csv(path), schema)
    return frame

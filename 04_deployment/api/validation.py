"""Request bodies of POST /prediction -> checked inputs, or a 4xx that says what is wrong.

Checked against the served model's frozen table schema (column kinds, ranges, categories,
nulls where allowed; older models: their signature and the task's feature ranges), by hand
and in one pass: MLflow's generic schema enforcement costs more than
the model itself on small batches. Nothing here touches the filesystem: no request field is
ever used as a path.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from api import json_codec

MAX_ERRORS = 10        # problems listed in one 400 answer
MAX_ID_CHARS = 256
JSON_TYPES = ("application/json",)
CSV_TYPES = ("text/csv", "application/csv")


class RequestError(Exception):
    """A request the API refuses; ``errors`` lists {row, field, message} when known."""

    def __init__(self, message: str, status: int = 400, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.errors = errors or []


@dataclass(frozen=True)
class Limits:
    max_records: int = 10_000
    max_text_chars: int = 2_000


@dataclass(frozen=True)
class TabularSpec:
    """What a tabular model accepts: its signature columns, in order, with types and ranges."""

    columns: tuple[str, ...]
    integer: frozenset[str] = frozenset()        # signature type long/integer: whole numbers only
    minimum: dict[str, float] = field(default_factory=dict)
    maximum: dict[str, float] = field(default_factory=dict)
    id_column: str | None = None                  # echoed back as "id" when sent
    ignored: frozenset[str] = frozenset()         # accepted and ignored (the label, excluded columns)
    kinds: dict[str, str] = field(default_factory=dict)   # column -> categorical | boolean (default: numeric)
    nullable: frozenset[str] = frozenset()        # columns that may be null / empty (imputed)
    categories: dict[str, frozenset[str]] = field(default_factory=dict)  # categorical -> known values

    @cached_property
    def numeric_only(self) -> bool:
        """Every column a number: the batch is a float matrix (the fast path)."""
        return all(self.kinds.get(c, "numeric") in ("numeric", "integer") for c in self.columns)

    @cached_property
    def allowed(self) -> frozenset[str]:
        extra = {self.id_column} if self.id_column else set()
        return frozenset(self.columns) | extra | self.ignored

    @cached_property
    def bounds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Per-column min/max arrays (-inf/+inf when unbounded), indices of integer columns."""
        low = np.array([self.minimum.get(c, -np.inf) for c in self.columns], dtype=np.float64)
        high = np.array([self.maximum.get(c, np.inf) for c in self.columns], dtype=np.float64)
        integer = [j for j, c in enumerate(self.columns) if c in self.integer]
        return low, high, (np.array(integer) if integer else None)


@dataclass
class TabularBatch:
    matrix: np.ndarray | None          # (n, len(columns)) float64, signature column order; None: mixed kinds
    ids: list[str | None] | None       # the id column's values, None when no record sent one
    rows: list[list[Any]] | None = None  # the same values as Python lists (mixed kinds: the only form)

    def row_lists(self) -> list[list[Any]]:
        """The values as lists (for the prediction log); missing values as None."""
        if self.rows is not None:
            return [[None if isinstance(v, float) and v != v else v for v in row] for row in self.rows]
        return [[None if v != v else v for v in row] for row in self.matrix.tolist()]


@dataclass
class ParsedBody:
    kind: str                          # "records" | "texts"
    items: list[Any]
    source: str                        # "json" | "csv"


# ---- body -> records / texts -------------------------------------------------------------
def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows; send finite numbers")


def parse_body(data: bytes, mimetype: str, task: str) -> ParsedBody:
    """JSON {"records": [...]} / {"texts": [...]} or a CSV body with a header row."""
    if not data:
        raise RequestError('empty body: send JSON {"records": [...]} or {"texts": [...]}, or a CSV '
                           "file with a header row (Content-Type text/csv)")
    mimetype = (mimetype or "").lower()
    if mimetype in JSON_TYPES or mimetype.endswith("+json"):
        return _parse_json(data)
    if mimetype in CSV_TYPES:
        return _parse_csv(data, task)
    raise RequestError(f"unsupported Content-Type {mimetype or '(none)'!r}: send application/json "
                       "or text/csv", status=415)


def _parse_json(data: bytes) -> ParsedBody:
    try:
        payload = json_codec.loads(data, _reject_constant)
    except RecursionError:
        raise RequestError("invalid JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise RequestError(f"invalid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise RequestError(f'the JSON body must be an object {{"records": [...]}} or {{"texts": [...]}}, '
                           f"got {_type_name(payload)}")
    keys = set(payload)
    kinds = keys & {"records", "texts"}
    if len(kinds) != 1:
        raise RequestError('the JSON body needs exactly one of "records" (tabular) or "texts" (NLU), '
                           f"got keys {sorted(keys)[:10]}")
    unknown = sorted(keys - kinds)
    if unknown:
        raise RequestError(f"unknown key(s) {unknown[:10]} in the JSON body; allowed: records, texts",
                           errors=[{"row": None, "field": k, "message": "unknown key"} for k in unknown[:MAX_ERRORS]])
    kind = kinds.pop()
    items = payload[kind]
    if not isinstance(items, list):
        raise RequestError(f'"{kind}" must be a list, got {_type_name(items)}',
                           errors=[{"row": None, "field": kind, "message": "must be a list"}])
    return ParsedBody(kind=kind, items=items, source="json")


def _parse_csv(data: bytes, task: str) -> ParsedBody:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequestError(f"the CSV body is not UTF-8 (byte {exc.start}: {exc.reason})") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise RequestError(f"unparsable CSV: {exc}") from None
    rows = [r for r in rows if r and any(cell.strip() for cell in r)]
    if not rows:
        raise RequestError("the CSV body has no header row")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        raise RequestError(f"duplicate column names in the CSV header: {header[:20]}")
    body = rows[1:]
    if not body:
        raise RequestError("the CSV body has a header but no data rows")
    records = []
    errors = []
    for i, row in enumerate(body):
        if len(row) != len(header):
            errors.append({"row": i, "field": None,
                           "message": f"{len(row)} values for {len(header)} header columns"})
            if len(errors) >= MAX_ERRORS:
                break
            continue
        records.append(dict(zip(header, (cell.strip() for cell in row))))
    if errors:
        raise RequestError(_summary(errors), errors=errors)
    if task == "nlu":
        if "text" not in header:
            raise RequestError(f"an NLU CSV body needs a 'text' column, got {header[:20]}",
                               errors=[{"row": None, "field": "text", "message": "missing column"}])
        return ParsedBody(kind="texts", items=[r["text"] for r in records], source="csv")
    return ParsedBody(kind="records", items=records, source="csv")


# ---- tabular -----------------------------------------------------------------------------
_NUMBER_TYPES = frozenset({int, float})


def tabular_batch(items: list[Any], spec: TabularSpec, limits: Limits, from_csv: bool = False) -> TabularBatch:
    """Records -> float matrix in signature order; every problem reported with row and field.

    A vectorised check accepts well-formed JSON batches (the common case) in one pass; anything
    it does not accept goes through the per-value check, which names each problem.
    """
    _check_count(items, limits)
    if not from_csv:
        batch = _fast_batch(items, spec)
        if batch is not None:
            return batch
    return _checked_batch(items, spec, from_csv)


def _fast_batch(items: list[Any], spec: TabularSpec) -> TabularBatch | None:
    """The whole batch at once, or None when anything is off (then _checked_batch explains)."""
    columns = spec.columns
    allowed = spec.allowed
    if not spec.numeric_only:
        return None
    try:
        if not all(type(r) is dict and r.keys() <= allowed for r in items):
            return None
        rows = [[r[c] for c in columns] for r in items]
    except KeyError:
        return None
    if not {type(v) for row in rows for v in row} <= _NUMBER_TYPES:
        return None
    try:
        matrix = np.array(rows, dtype=np.float64)
    except (OverflowError, ValueError):
        return None
    if matrix.shape != (len(items), len(columns)) or not np.isfinite(matrix).all():
        return None
    low, high, integer = spec.bounds
    if (matrix < low).any() or (matrix > high).any():
        return None
    if integer is not None and not (np.floor(matrix[:, integer]) == matrix[:, integer]).all():
        return None
    ids = None
    if spec.id_column and any(spec.id_column in r for r in items):
        ids = []
        for r in items:
            if spec.id_column not in r:
                ids.append(None)
                continue
            value, problem = _identifier(r[spec.id_column])
            if problem:
                return None
            ids.append(value)
    return TabularBatch(matrix=matrix, ids=ids, rows=rows)


def _checked_batch(items: list[Any], spec: TabularSpec, from_csv: bool) -> TabularBatch:
    n_cols = len(spec.columns)
    matrix = np.empty((len(items), n_cols), dtype=np.float64)
    rows: list[list[Any]] = [] if not spec.numeric_only else None  # type: ignore[assignment]
    ids: list[str | None] = []
    errors: list[dict[str, Any]] = []
    allowed = spec.allowed
    for i, record in enumerate(items):
        if type(record) is not dict:
            errors.append({"row": i, "field": None,
                           "message": f"each record must be an object, got {_type_name(record)}"})
            if len(errors) >= MAX_ERRORS:
                break
            continue
        unknown = [k for k in record if k not in allowed]
        if unknown:
            errors.append({"row": i, "field": str(unknown[0])[:100],
                           "message": f"unknown field; expected {sorted(allowed)}"})
        row: list[Any] = []
        for j, name in enumerate(spec.columns):
            kind = spec.kinds.get(name, "numeric")
            if kind in ("numeric", "integer"):
                value, problem = _number(record.get(name, _MISSING), name, spec, from_csv)
            else:
                value, problem = _category(record.get(name, _MISSING), name, kind, spec, from_csv)
            if problem:
                errors.append({"row": i, "field": name, "message": problem})
            elif rows is None:
                matrix[i, j] = value
            row.append(value)
        if rows is not None:
            rows.append(row)
        row_id = None
        if spec.id_column and spec.id_column in record:
            row_id, problem = _identifier(record[spec.id_column])
            if problem:
                errors.append({"row": i, "field": spec.id_column, "message": problem})
        if len(errors) >= MAX_ERRORS:
            break
        ids.append(row_id)
    if errors:
        raise RequestError(_summary(errors), errors=errors[:MAX_ERRORS])
    ids_out = ids if any(i is not None for i in ids) else None
    if rows is not None:
        return TabularBatch(matrix=None, ids=ids_out, rows=rows)
    return TabularBatch(matrix=matrix, ids=ids_out)


_MISSING = object()
_BOOL_WORDS = {"true": True, "false": False}


def _is_null(value: Any, from_csv: bool) -> bool:
    return value is None or (from_csv and isinstance(value, str) and value == "")


def _category(value: Any, name: str, kind: str, spec: TabularSpec, from_csv: bool) -> tuple[Any, str | None]:
    """(the value as the model's text, None) or (None, what is wrong); null only where allowed."""
    if value is _MISSING:
        return None, "missing"
    if _is_null(value, from_csv):
        return (None, None) if name in spec.nullable else (None, "must not be null (the schema has no "
                                                                  "missing values in this column)")
    if kind == "boolean":
        if type(value) is bool:
            return ("true" if value else "false"), None
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return value.strip().lower(), None
        return None, f"must be true or false, got {_type_name(value)}"
    if type(value) is not str:
        return None, f"must be a string (a category), got {_type_name(value)}"
    text = value.strip()
    if not _is_unicode(text):
        return None, "not valid Unicode (lone surrogate)"
    known = spec.categories.get(name)
    if known and text not in known:
        shown = sorted(known)[:20]
        return None, (f"unknown category {text[:40]!r}; known: {shown}"
                      + (" ..." if len(known) > 20 else ""))
    return text, None


def _number(value: Any, name: str, spec: TabularSpec, from_csv: bool) -> tuple[float, str | None]:
    """(value as float, None) or (nan, what is wrong)."""
    if value is _MISSING:
        return math.nan, "missing"
    if name in spec.nullable and _is_null(value, from_csv):
        return math.nan, None
    kind = type(value)
    if kind is float:
        number = value
    elif kind is int:
        try:
            number = float(value)
        except OverflowError:
            return math.nan, "number out of range"
    elif kind is str and from_csv:
        try:
            number = float(value)
        except ValueError:
            return math.nan, f"not a number: {value[:40]!r}"
    else:
        return math.nan, f"must be a number, got {_type_name(value)}"
    if not math.isfinite(number):
        return math.nan, f"must be a finite number, got {number}"
    if name in spec.integer and not number.is_integer():
        return math.nan, f"must be a whole number (signature type integer), got {number}"
    low = spec.minimum.get(name)
    if low is not None and number < low:
        return math.nan, f"must be >= {low:g}, got {number:g}"
    high = spec.maximum.get(name)
    if high is not None and number > high:
        return math.nan, f"must be <= {high:g}, got {number:g}"
    return number, None


def _identifier(value: Any) -> tuple[str | None, str | None]:
    if type(value) is bool or not isinstance(value, (str, int)):
        return None, f"must be a string or an integer, got {_type_name(value)}"
    text = str(value)
    if len(text) > MAX_ID_CHARS:
        return None, f"longer than {MAX_ID_CHARS} characters"
    if not _is_unicode(text):
        return None, "not valid Unicode (lone surrogate)"
    return text, None


# ---- NLU ---------------------------------------------------------------------------------
def text_batch(items: list[Any], limits: Limits) -> list[str]:
    """Texts: non-blank strings of at most ``max_text_chars`` characters."""
    _check_count(items, limits)
    errors = []
    for i, text in enumerate(items):
        problem = None
        if not isinstance(text, str):
            problem = f"must be a string, got {_type_name(text)}"
        elif not text.strip():
            problem = "empty text"
        elif len(text) > limits.max_text_chars:
            problem = f"longer than {limits.max_text_chars} characters ({len(text)})"
        elif not _is_unicode(text) or "\x00" in text:
            problem = "not valid text (NUL or lone surrogate)"
        if problem:
            errors.append({"row": i, "field": "text", "message": problem})
            if len(errors) >= MAX_ERRORS:
                break
    if errors:
        raise RequestError(_summary(errors), errors=errors)
    return list(items)


# ---- helpers -----------------------------------------------------------------------------
def _check_count(items: list[Any], limits: Limits) -> None:
    if not items:
        raise RequestError("nothing to predict: the list is empty")
    if len(items) > limits.max_records:
        raise RequestError(f"too many items: {len(items)} > api.max_records={limits.max_records}; "
                           "split the request", status=413)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _summary(errors: list[dict[str, Any]]) -> str:
    first = errors[0]
    where = []
    if first.get("row") is not None:
        where.append(f"row {first['row']}")
    if first.get("field") is not None:
        where.append(f"field {first['field']!r}")
    more = f" (and {len(errors) - 1} more problem(s), see errors)" if len(errors) > 1 else ""
    return f"invalid input: {', '.join(where) + ': ' if where else ''}{first['message']}{more}"


def forecast_request(data: bytes, mimetype: str, limits: Limits, series_column: str,
                     max_horizon: int) -> tuple[Any, int]:
    """``{"series": [ids], "horizon": n}`` or ``{"records": [{series, date, covariates...}], "horizon": n}``
    -> (the forecasting pyfunc's input, horizon). Ids are sent as text; the horizon is 1..max."""
    if (mimetype or "").lower() not in JSON_TYPES and not (mimetype or "").lower().endswith("+json"):
        raise RequestError(f"unsupported Content-Type {mimetype or '(none)'!r} for a forecasting model: send "
                           'application/json {"series": ["<id>", ...], "horizon": <days>}', status=415)
    if not data:
        raise RequestError('empty body: send {"series": ["<id>", ...], "horizon": <days>}')
    try:
        payload = json_codec.loads(data, _reject_constant)
    except RecursionError:
        raise RequestError("invalid JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"invalid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise RequestError(f'the JSON body must be an object {{"series": [...]}}, got {_type_name(payload)}')
    unknown = sorted(set(payload) - {"series", "records", "horizon"})
    if unknown:
        raise RequestError(f"unknown key(s) {unknown[:10]}; allowed: series, records, horizon")
    kinds = [k for k in ("series", "records") if k in payload]
    if len(kinds) != 1:
        raise RequestError('send exactly one of "series" (ids) or "records" (ids with future dates and covariates)')
    items = payload[kinds[0]]
    if not isinstance(items, list) or not items:
        raise RequestError(f'"{kinds[0]}" must be a non-empty list')
    if len(items) > limits.max_records:
        raise RequestError(f"{len(items)} items: at most api.max_records={limits.max_records} per request",
                           status=413)
    horizon = payload.get("horizon", max_horizon)
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= max_horizon:
        raise RequestError(f"horizon must be a whole number of days from 1 to {max_horizon}, got {horizon!r}")
    if kinds[0] == "series":
        bad = [i for i, v in enumerate(items) if isinstance(v, bool) or not isinstance(v, (str, int))]
        if bad:
            raise RequestError(f"series ids must be strings, got {_type_name(items[bad[0]])} at {bad[0]}",
                               errors=[{"row": i, "field": "series", "message": "not an id"} for i in bad[:MAX_ERRORS]])
        return {series_column: [str(v) for v in items]}, horizon
    bad = [i for i, r in enumerate(items) if not isinstance(r, dict) or series_column not in r]
    if bad:
        raise RequestError(f"every record needs a {series_column!r} field (row {bad[0]})",
                           errors=[{"row": i, "field": series_column, "message": "missing"} for i in bad[:MAX_ERRORS]])
    return items, horizon

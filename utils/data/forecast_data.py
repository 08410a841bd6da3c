"""Reading and validating long-format time-series CSV files (task=forecast).

One file holds rows ``series, date, target, covariates...`` (column names from the task
config). Ingestion rules, each a quarantine reason when broken:
  * the series, date and target columns exist; dates parse; the target is a number >= 0;
  * no duplicate (series, date) inside one file;
  * no date later than today + ``task.horizon`` days (a clock or export bug, not data);
  * no gaps: within a file every series is contiguous at ``task.freq``, and a series that
    already exists continues at most one step after its last known date
    (``task.allow_gaps: true`` lifts both).
Late corrections: a row for a (series, date) that is already ingested, with another value,
replaces the old value (the newest file wins, by date order of the files, then name);
identical rows are plain duplicates. Corrections are counted in the ingest summary.
Files are validated oldest first (by their first date), so names need not sort by date.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

DEFAULT_SERIES = "series_id"   # the column a single-series file gets
SINGLE_SERIES_ID = "all"


class ForecastDataError(ValueError):
    """A file that cannot be used; the message is the quarantine reason."""


def series_col(task: Any) -> str:
    return task.series_column or DEFAULT_SERIES


def step(task: Any) -> pd.Timedelta:
    """The fixed spacing of ``task.freq`` (D, H, 15min ...)."""
    return pd.Timedelta(pd.tseries.frequencies.to_offset(task.freq))


def _head(values: pd.Series, n: int = 3) -> str:
    return ", ".join(map(str, values.head(n).tolist()))


def read_forecast_csv(path: Path, task: Any, today: dt.date | None = None) -> pd.DataFrame:
    """Read one file and check it on its own; raise ForecastDataError naming the problem."""
    if path.stat().st_size == 0:
        raise ForecastDataError("empty file (0 bytes)")
    try:
        frame = pd.read_csv(path, encoding="utf-8", on_bad_lines="error")
    except UnicodeDecodeError as exc:
        raise ForecastDataError(f"bad encoding: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except pd.errors.EmptyDataError as exc:
        raise ForecastDataError("empty file: no header and no rows") from exc
    except pd.errors.ParserError as exc:
        raise ForecastDataError(f"unparsable rows: {exc}".strip()) from exc
    return validate_frame(frame, task, today)


def validate_frame(frame: pd.DataFrame, task: Any, today: dt.date | None = None) -> pd.DataFrame:
    """The per-file rules of the module docstring; the frame with the date as ISO text."""
    sid, time, target = series_col(task), task.time_column, task.target_column
    needed = [c for c in (task.series_column, time, target) if c]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ForecastDataError(f"missing column(s) {missing}; got {list(frame.columns)} "
                                "(set task.series_column / task.time_column / task.target_column)")
    if frame.empty:
        raise ForecastDataError("header only: no data rows")
    frame = frame.copy()
    if not task.series_column:
        frame.insert(0, DEFAULT_SERIES, SINGLE_SERIES_ID)
    if frame[sid].isna().any():
        raise ForecastDataError(f"column {sid!r}: empty series id in row(s) "
                                f"{_head(frame.index[frame[sid].isna()].to_series() + 2)}")
    frame[sid] = frame[sid].astype(str)
    dates = pd.to_datetime(frame[time], format="ISO8601", errors="coerce")
    if dates.isna().any():
        bad = frame.loc[dates.isna(), time]
        raise ForecastDataError(f"column {time!r}: {len(bad)} unparsable date(s), e.g. {_head(bad)} "
                                f"(rows {_head(bad.index.to_series() + 2)}; expected ISO dates like 2025-01-31)")
    values = pd.to_numeric(frame[target], errors="coerce")
    if values.isna().any():
        bad = frame.loc[values.isna(), target]
        raise ForecastDataError(f"column {target!r}: {len(bad)} missing or non-numeric value(s), "
                                f"e.g. {_head(bad.astype(str))} (rows {_head(bad.index.to_series() + 2)})")
    if (values < 0).any():
        bad = frame.loc[values < 0, target]
        raise ForecastDataError(f"column {target!r}: {len(bad)} negative value(s), e.g. {_head(bad)} "
                                f"(rows {_head(bad.index.to_series() + 2)})")
    frame[target] = values
    dup = frame.assign(_d=dates).duplicated([sid, "_d"], keep=False)
    if dup.any():
        rows = frame.loc[dup]
        raise ForecastDataError(f"{int(dup.sum())} rows repeat a (series, date), e.g. "
                                f"{rows[sid].iloc[0]} on {rows[time].iloc[0]} (rows {_head(rows.index.to_series() + 2)})")
    limit = pd.Timestamp(today or dt.date.today()) + pd.Timedelta(days=int(task.horizon))
    if (dates > limit).any():
        raise ForecastDataError(f"column {time!r}: date {dates.max().date()} is after today + "
                                f"task.horizon ({limit.date()}): future rows are not data")
    if not task.allow_gaps:
        ordered = frame.assign(_d=dates).sort_values([sid, "_d"])
        gaps = ordered.groupby(sid, sort=False)["_d"].diff() > step(task)
        if gaps.any():
            at = ordered.loc[gaps].iloc[0]
            raise ForecastDataError(f"gap in series {at[sid]} before {at['_d'].date()} "
                                    f"(expected one row per {task.freq}; set task.allow_gaps=true to accept)")
    frame[time] = dates.dt.strftime("%Y-%m-%d" if step(task) >= pd.Timedelta(days=1) else "%Y-%m-%dT%H:%M:%S")
    return frame


def first_date(path: Path, task: Any) -> pd.Timestamp:
    """Earliest date in a file, to validate files oldest first (unreadable: sorts last)."""
    try:
        dates = pd.to_datetime(pd.read_csv(path, usecols=[task.time_column])[task.time_column],
                               format="ISO8601", errors="coerce")
        return dates.min() if dates.notna().any() else pd.Timestamp.max
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError):
        return pd.Timestamp.max


@dataclass
class SeriesLedger:
    """Last known date per series, so a new file can be checked for gaps against the history."""

    task: Any
    last: dict[str, pd.Timestamp] = field(default_factory=dict)

    @classmethod
    def of(cls, dataset: pd.DataFrame, task: Any) -> "SeriesLedger":
        if dataset.empty:
            return cls(task)
        dates = pd.to_datetime(dataset[task.time_column], format="ISO8601")
        last = dates.groupby(dataset[series_col(task)].astype(str)).max()
        return cls(task, last.to_dict())

    def check(self, frame: pd.DataFrame) -> None:
        """Raise ForecastDataError when a known series would jump over missing days."""
        if self.task.allow_gaps or not self.last:
            return
        dates = pd.to_datetime(frame[self.task.time_column], format="ISO8601")
        first = dates.groupby(frame[series_col(self.task)]).min()
        known = pd.Series(self.last).reindex(first.index)
        jump = (first - known) > step(self.task)
        if jump.any():
            sid = jump[jump].index[0]
            raise ForecastDataError(
                f"gap: series {sid} was last seen on {known[sid].date()} and this file starts it on "
                f"{first[sid].date()} (a day file is missing; add it first, or set task.allow_gaps=true)")

    def add(self, frame: pd.DataFrame) -> None:
        dates = pd.to_datetime(frame[self.task.time_column], format="ISO8601")
        for sid, last in dates.groupby(frame[series_col(self.task)]).max().items():
            if sid not in self.last or last > self.last[sid]:
                self.last[sid] = last


def merge_dataset(existing: pd.DataFrame, new: list[pd.DataFrame], task: Any) -> tuple[pd.DataFrame, int]:
    """Existing rows plus new ones, one row per (series, date): later files win. (frame, corrections)."""
    key = [series_col(task), task.time_column]
    if not new:
        return existing, 0
    frames = [f.astype({series_col(task): str}) for f in ([existing] if not existing.empty else []) + new]
    combined = pd.concat(frames, ignore_index=True)
    exact = combined.drop_duplicates(keep="first")
    corrections = int(exact.duplicated(key, keep="last").sum())
    merged = exact.drop_duplicates(key, keep="last").sort_values(key, kind="stable").reset_index(drop=True)
    return merged, corrections


def read_dataset(path: Path, task: Any) -> pd.DataFrame:
    """The ingested dataset (series ids as text)."""
    if not path.is_file():
        return pd.DataFrame()
    return pd.read_csv(path, dtype={series_col(task): str})

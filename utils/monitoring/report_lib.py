"""Plots and the HTML report of the `reporting` step, as functions the API/dashboard can reuse.

Figures are drawn on ``matplotlib.figure.Figure`` objects (no pyplot, no global state, no
display needed) at fixed pixel sizes, so a reader (or a test) knows what a PNG looks like.
Every number plotted comes from the predictions in ``reports/diagnostics.json`` or from the
model store; nothing is invented.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from utils.models.model_store import ModelStore, parse_version_id

DPI = 100
CONFUSION_SIZE_PX: tuple[int, int] = (800, 700)
SLOT_F1_SIZE_PX: tuple[int, int] = (800, 500)
HISTORY_SIZE_PX: tuple[int, int] = (900, 500)
SEQEVAL_AVERAGES = ("micro avg", "macro avg", "weighted avg")


def _figure(size_px: tuple[int, int]) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(size_px[0] / DPI, size_px[1] / DPI), dpi=DPI, layout="constrained")


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return path


# -------------------------------------------------------------------------- confusion matrix
def confusion_counts(y_true: Sequence[Any], y_pred: Sequence[Any],
                     labels: Sequence[Any] | None = None) -> tuple[list[Any], list[list[int]]]:
    """(labels, matrix) with rows = true label, columns = predicted label (sklearn's layout)."""
    from sklearn.metrics import confusion_matrix

    if labels is None:
        labels = sorted(set(y_true) | set(y_pred), key=str)
    matrix = confusion_matrix(list(y_true), list(y_pred), labels=list(labels))
    return list(labels), matrix.astype(int).tolist()


def confusion_matrix_png(labels: Sequence[Any], matrix: Sequence[Sequence[int]], path: Path,
                         title: str) -> Path:
    """Heatmap with the count in every cell and labelled axes."""
    import numpy as np
    import seaborn as sns

    fig = _figure(CONFUSION_SIZE_PX)
    ax = fig.subplots()
    names = [str(label) for label in labels]
    small = len(names) > 12
    sns.heatmap(np.asarray(matrix, dtype=int), annot=True, fmt="d", cmap="Blues", cbar=True, ax=ax,
                xticklabels=names, yticklabels=names, square=False, linewidths=0.5, linecolor="white",
                annot_kws={"size": 7 if small else 11})
    from matplotlib.ticker import MaxNLocator

    colorbar = ax.collections[0].colorbar
    colorbar.locator = MaxNLocator(integer=True)   # counts: no 0.25 ticks
    colorbar.update_ticks()
    colorbar.set_label("examples")
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=45 if small or max(map(len, names), default=0) > 8 else 0,
                   labelsize=8 if small else 10)
    ax.tick_params(axis="y", labelrotation=0, labelsize=8 if small else 10)
    return _save(fig, path)


# ----------------------------------------------------------------------------- NLU slot F1
def per_slot_scores(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """seqeval per-slot-type precision/recall/F1/support of diagnostics prediction rows."""
    from utils.data.nlu_data import NluExample
    from utils.models.nlu_metrics import nlu_metrics

    gold = [NluExample(text=r["text"], intent=r["intent"], tags=tuple(r["tags"])) for r in rows]
    metrics = nlu_metrics(gold, [r["predicted_intent"] for r in rows], [r["predicted_tags"] for r in rows])
    return {k: v for k, v in metrics["per_slot"].items() if k not in SEQEVAL_AVERAGES}


def slot_f1_png(per_slot: dict[str, dict[str, float]], path: Path, title: str) -> Path:
    """Horizontal bars: F1 per slot type, support in the label."""
    import seaborn as sns

    fig = _figure(SLOT_F1_SIZE_PX)
    ax = fig.subplots()
    items = sorted(per_slot.items(), key=lambda kv: kv[1].get("f1-score", 0.0))
    names = [f"{k} (n={int(v.get('support', 0))})" for k, v in items]
    scores = [float(v.get("f1-score", 0.0)) for _, v in items]
    if items:
        sns.barplot(x=scores, y=names, ax=ax, color="#4C72B0", orient="h")
        for i, score in enumerate(scores):
            ax.text(min(score + 0.01, 0.93), i, f"{score:.2f}", va="center", fontsize=9)
    else:
        ax.text(0.5, 0.5, "no slot spans in the test data", ha="center", va="center")
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 (seqeval, entity level)")
    ax.set_ylabel("Slot type")
    ax.set_title(title)
    return _save(fig, path)


# ---------------------------------------------------------------------------- metric history
def _parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"):
        try:
            return dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def metric_history(store: ModelStore, model_name: str) -> list[dict[str, Any]]:
    """Every version of ``model_name`` in the store, oldest first, with its test score.

    ``deployed``: it was production at some point (deploy or rollback in deployments.jsonl);
    ``production``: it is production now. ``score`` is None for a version never scored.
    """
    deployed_at: dict[str, str] = {}
    for event in store.history():
        if event.get("event") in ("deploy", "rollback") and event.get("version"):
            deployed_at.setdefault(event["version"], event.get("time", ""))
    production = store.production_version()
    points = []
    for version in store.list_versions(model_name):
        meta = store.read_metadata(version)
        scores = store.read_scores(version) or {}
        points.append({"version": version, "number": parse_version_id(version)[1],
                       "created": meta.get("created"), "score": store.read_score(version),
                       "metric": scores.get("primary_metric"),
                       "deployed": version in deployed_at, "deployed_at": deployed_at.get(version),
                       "production": version == production})
    return points


def metric_history_png(points: Sequence[dict[str, Any]], metric: str, path: Path, title: str) -> Path:
    """Line plot of the primary metric over model creation time; deployed versions starred."""
    import matplotlib.dates as mdates

    fig = _figure(HISTORY_SIZE_PX)
    ax = fig.subplots()
    scored = [(p, _parse_time(p["created"])) for p in points if p["score"] is not None]
    scored = [(p, t) for p, t in scored if t is not None]
    if scored:
        times = [t for _, t in scored]
        values = [p["score"] for p, _ in scored]
        ax.plot(times, values, marker="o", color="#4C72B0", label="model version")
        dep = [(t, p["score"]) for p, t in scored if p["deployed"]]
        if dep:
            ax.scatter([t for t, _ in dep], [v for _, v in dep], marker="*", s=260, color="#DD8452",
                       zorder=3, label="deployed")
        for p, t in scored:
            label = f"v{p['number']}" + (" (production)" if p["production"] else "")
            ax.annotate(label, (t, p["score"]), textcoords="offset points", xytext=(0, 10),
                        ha="center", fontsize=9)
        # a few minutes of padding: one version (or versions seconds apart) still gets a readable axis
        pad = max((max(times) - min(times)) * 0.08, dt.timedelta(minutes=2))
        ax.set_xlim(min(times) - pad, max(times) + pad)
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        low, high = min(values), max(values)
        pad = max(0.05, (high - low) * 0.2)
        ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad) if high <= 1.0 else high + pad)
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "no scored model versions yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("Model version created")
    ax.set_ylabel(f"{metric} on the test data")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


# --------------------------------------------------------------------------------- HTML
def png_data_uri(path: Path) -> str:
    """Embed a PNG in the page: the report is one file that can be mailed."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def fmt_number(value: Any, digits: int = 4) -> str:
    """Numbers for people: 4 significant digits, ints as ints, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:  # NaN
            return "—"
        return f"{value:.{digits}g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def flat_items(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as (dotted key, leaf value) rows for a two-column table."""
    if isinstance(value, dict):
        rows: list[tuple[str, Any]] = []
        for key, sub in value.items():
            rows.extend(flat_items(sub, f"{prefix}.{key}" if prefix else str(key)))
        return rows
    return [(prefix, value)]


def render_report(template_path: Path, context: dict[str, Any]) -> str:
    """Render the Jinja2 template (HTML autoescaped) with the report context."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(str(template_path.parent)),
                      autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = fmt_number
    env.filters["flat"] = flat_items
    return env.get_template(template_path.name).render(**context)


def read_drift(reports_dir: Path) -> dict[str, Any] | None:
    """reports/drift.json (written by the cron tick's drift check), or None before the first check."""
    path = reports_dir / "drift.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        return {"error": f"{path} is not valid JSON ({exc.msg})"}

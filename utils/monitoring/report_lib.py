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
        try:
            meta = store.read_metadata(version)
            scores = store.read_scores(version) or {}
            score, error = store.read_score(version), None
        except (OSError, ValueError) as exc:   # one unreadable version is shown, never fatal
            meta, scores, score, error = {}, {}, None, f"unreadable: {exc}"
        points.append({"version": version, "number": parse_version_id(version)[1],
                       "created": meta.get("created"), "score": score,
                       "metric": scores.get("primary_metric"), "error": error,
                       "deployed": version in deployed_at, "deployed_at": deployed_at.get(version),
                       "production": version == production})
    return points


def metric_history_png(points: Sequence[dict[str, Any]], metric: str, path: Path, title: str) -> Path:
    """Line plot of the primary metric over model creation time; deployed versions starred."""
    fig = _figure(HISTORY_SIZE_PX)
    ax = fig.subplots()
    scored = [(p, _parse_time(p["created"])) for p in points if p["score"] is not None]
    scored = [(p, t) for p, t in scored if t is not None]
    xlabel = "Model version created"
    if scored:
        times = [t for _, t in scored]
        values = [p["score"] for p, _ in scored]
        # versions minutes apart (one pipeline run after another) would sit on one vertical
        # line of a time axis: then one slot per version, its creation time under it
        by_version = len(scored) > 1 and (max(times) - min(times)) < dt.timedelta(minutes=10) * len(scored)
        xs: list[Any] = list(range(len(scored))) if by_version else times
        ax.plot(xs, values, marker="o", color="#4C72B0", label="model version")
        dep = [(x, p["score"]) for x, (p, _) in zip(xs, scored) if p["deployed"]]
        if dep:
            ax.scatter([x for x, _ in dep], [v for _, v in dep], marker="*", s=260, color="#DD8452",
                       zorder=3, label="deployed")
        for x, (p, _) in zip(xs, scored):
            label = f"v{p['number']}" + (" (production)" if p["production"] else "")
            ax.annotate(label, (x, p["score"]), textcoords="offset points", xytext=(0, 10),
                        ha="center", fontsize=9)
        if by_version:
            ax.set_xticks(xs)
            ax.set_xticklabels([f"v{p['number']}\n{t:%m-%d %H:%M:%S}" for p, t in scored], fontsize=9)
            ax.set_xlim(-0.5, len(scored) - 0.5)
            xlabel = "Model version (created)"
        else:
            # a few minutes of padding: one version still gets a readable axis
            pad = max((max(times) - min(times)) * 0.08, dt.timedelta(minutes=2))
            ax.set_xlim(min(times) - pad, max(times) + pad)
            _time_axis(ax)
        low, high = min(values), max(values)
        pad = max(0.05, (high - low) * 0.2)
        ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad) if high <= 1.0 else high + pad)
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "no scored model versions yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{metric} on the test data")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


# --------------------------------------------------------------------------------- HTML
def png_data_uri(path: Path) -> str:
    """Embed a PNG in the page: the report is one file that can be mailed."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def fmt_number(value: Any, digits: int = 4) -> str:
    """Numbers for people: thousands separators from 1,000 up, 4 significant digits below,
    scientific notation only for tiny values (p-values), None/NaN as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if value != value:  # NaN
            return "—"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if value == 0 or abs(value) >= 1e-3:
            return f"{value:.{digits}g}"
        return f"{value:.2e}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


UNIT_SUFFIXES = (("_mb", "MB"), ("_gb", "GB"), ("_kb", "kB"), ("_ms", "ms"), ("_s", "s"),
                 ("percent", "%"), ("_pct", "%"))


def _unit(key: str) -> tuple[str, str | None]:
    for suffix, unit in UNIT_SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)].rstrip("._") or key, unit
    return key, None


def fmt_label(key: str) -> str:
    """"memory.total_mb" -> "memory total" (the unit goes with the value)."""
    name, _ = _unit(str(key))
    return name.replace(".", " ").replace("_", " ")


def fmt_quantity(value: Any, key: str = "") -> str:
    """A value with the unit its key names: ("memory.total_mb", 24110.5) -> "24,110 MB"."""
    _, unit = _unit(str(key))
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        text = ", ".join(fmt_number(float(v), 3) for v in value)
    else:
        text = fmt_number(value)
    return f"{text} {unit}" if unit and isinstance(value, (int, float)) and not isinstance(value, bool) else text


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
    env.filters["label"] = fmt_label
    env.filters["qty"] = fmt_quantity
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


# ----------------------------------------------------------------------------------- drift
DRIFT_SIZE_PX: tuple[int, int] = (520, 320)
TIMELINE_SIZE_PX: tuple[int, int] = (1000, 300)
CURVES_SIZE_PX: tuple[int, int] = (1000, 380)
REFERENCE_COLOR, NEW_COLOR = "#4C72B0", "#DD8452"


def _shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [100.0 * c / total if total else 0.0 for c in counts]


def drift_feature_png(feature: str, dist: dict[str, Any], row: dict[str, Any] | None, path: Path,
                      title: str) -> Path:
    """Reference vs newest distribution of one feature, the statistics in the corner.

    Numeric: both histograms (share of rows per bin) over the same bins; categorical: side-by-
    side bars of each category's share.
    """
    import numpy as np

    fig = _figure(DRIFT_SIZE_PX)
    ax = fig.subplots()
    ref, new = dist.get("reference") or [], dist.get("new") or []
    if dist.get("kind") == "numeric" and dist.get("edges"):
        edges = np.asarray(dist["edges"], dtype=float)
        ax.stairs(_shares(ref), edges, fill=True, alpha=0.45, color=REFERENCE_COLOR,
                  label=f"reference (n={sum(ref):,})")
        ax.stairs(_shares(new), edges, linewidth=2.2, color=NEW_COLOR, label=f"new (n={sum(new):,})")
        ax.set_xlabel(feature)
        ax.xaxis.set_major_formatter(_plain_formatter())
    elif dist.get("categories"):
        names = [str(c) for c in dist["categories"]]
        x = np.arange(len(names))
        ax.bar(x - 0.2, _shares(ref), 0.4, color=REFERENCE_COLOR, label=f"reference (n={sum(ref):,})")
        ax.bar(x + 0.2, _shares(new), 0.4, color=NEW_COLOR, label=f"new (n={sum(new):,})")
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=35 if len(names) > 4 or max(map(len, names)) > 8 else 0,
                           ha="right" if len(names) > 4 else "center", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("share of rows (%)")
    if row:
        lines = []
        if row.get("test"):
            lines.append(f"{row['test']} {fmt_number(row.get('statistic'), 3)}, "
                         f"corrected p {fmt_number(row.get('p_adjusted'), 3)}")
        if row.get("psi") is not None:
            lines.append(f"PSI {fmt_number(row['psi'], 3)}")
        lines.append("DRIFT" if row.get("drift") else "no drift")
        ax.text(0.98, 0.97, "\n".join(lines), transform=ax.transAxes, ha="right", va="top", fontsize=9,
                bbox={"boxstyle": "round", "facecolor": "#fdecea" if row.get("drift") else "#e8f5e9",
                      "edgecolor": "#c62828" if row.get("drift") else "#2f8132"})
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def _plain_formatter() -> Any:
    """Axis numbers with thousands separators, never 1e4 offsets."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: f"{v:,.0f}" if abs(v) >= 1000 else f"{v:g}")


def drift_plots(doc: dict[str, Any] | None, reports: Path) -> list[dict[str, Any]]:
    """One PNG per monitored feature of the last drift check (reports/drift_<feature>.png)."""
    from utils.monitoring.drift_view import feature_rows

    distribution = (doc or {}).get("distribution")
    if not isinstance(distribution, dict):
        return []
    rows = {r["feature"]: r for r in feature_rows(distribution)}
    plots = []
    for feature, dist in (distribution.get("distributions") or {}).items():
        row = rows.get(feature)
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in feature)
        path = drift_feature_png(feature, dist, row, reports / f"drift_{safe}.png",
                                 f"{feature}: reference vs new")
        stats = []
        if row and row.get("test"):
            stats.append(f"{row['test']} statistic {fmt_number(row.get('statistic'), 3)}, p-value after "
                         f"correction {fmt_number(row.get('p_adjusted'), 3)}")
        if row and row.get("psi") is not None:
            stats.append(f"PSI {fmt_number(row['psi'], 3)}")
        what = "histogram" if dist.get("kind") == "numeric" else "category shares"
        plots.append({"file": path, "feature": feature, "size": DRIFT_SIZE_PX,
                      "drift": bool(row and row.get("drift")),
                      "alt": f"drift of {feature}",
                      "caption": f"{feature}: {what} of the reference ({fmt_number(distribution.get('n_reference'))} rows) "
                                 f"vs the new rows ({fmt_number(distribution.get('n_new'))}); "
                                 + ("; ".join(stats) or "no test") + "."})
    return plots


def _time_axis(ax: Any) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.tick_params(axis="x", labelsize=9)


def drift_events(ticks: Sequence[dict[str, Any]], deployments: Sequence[dict[str, Any]],
                 last_check: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Drift verdicts (per tick that checked), retrains and deployments as timeline events."""
    events: list[dict[str, Any]] = []
    for tick in ticks:
        t = _parse_time(tick.get("started"))
        if t is None:
            continue
        if tick.get("drift"):
            signals = (tick["drift"] or {}).get("signals") or {}
            verdict = ("drift" if any(signals.values()) else
                       "undecided" if signals and all(v is None for v in signals.values()) else "no drift")
            events.append({"time": t, "kind": "check", "verdict": verdict})
        if tick.get("decision") == "retrain":
            events.append({"time": t, "kind": "retrain", "ok": tick.get("status") == "ok"})
    if last_check and not any(e["kind"] == "check" for e in events):
        t = _parse_time(last_check.get("time"))
        if t is not None:
            events.append({"time": t, "kind": "check",
                           "verdict": "drift" if last_check.get("drift") else "no drift"})
    for event in deployments:
        t = _parse_time(event.get("time"))
        if t is not None and event.get("event") in ("deploy", "rollback"):
            events.append({"time": t, "kind": "deploy", "version": event.get("version")})
    return sorted(events, key=lambda e: e["time"].timestamp())


def drift_timeline_png(events: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """Rows: drift checks (red: drift, green: none, grey: undecided), retrains, deployments."""
    fig = _figure(TIMELINE_SIZE_PX)
    ax = fig.subplots()
    colors = {"drift": "#c62828", "no drift": "#2f8132", "undecided": "#829ab1"}
    for verdict, color in colors.items():
        pts = [e["time"] for e in events if e["kind"] == "check" and e["verdict"] == verdict]
        if pts:
            ax.scatter(pts, [2] * len(pts), s=70, color=color, marker="o", label=f"check: {verdict}", zorder=3)
    retrains = [e for e in events if e["kind"] == "retrain"]
    if retrains:
        ax.scatter([e["time"] for e in retrains], [1] * len(retrains), s=90, marker="^", zorder=3,
                   color=["#4C72B0" if e["ok"] else "#c62828" for e in retrains], label="retrain")
    deploys = [e for e in events if e["kind"] == "deploy"]
    if deploys:
        ax.scatter([e["time"] for e in deploys], [0] * len(deploys), s=200, marker="*", color="#DD8452",
                   zorder=3, label="deployment")
        for e in deploys:
            ax.annotate(str(e.get("version") or "").rsplit("-", 1)[-1], (e["time"], 0),
                        textcoords="offset points", xytext=(0, 9), ha="center", fontsize=8)
    times = [e["time"] for e in events]
    if times:
        pad = max((max(times) - min(times)) * 0.05, dt.timedelta(minutes=5))
        ax.set_xlim(min(times) - pad, max(times) + pad)
        _time_axis(ax)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no drift checks, retrains or deployments yet", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_yticks([0, 1, 2])
    ax.set_yticklabels(["deployment", "retrain", "drift check"])
    ax.set_ylim(-0.6, 2.6)
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)


# -------------------------------------------------------------------------- training curves
LOSS_PREFIXES = ("train_loss", "dev_loss", "val_loss")
SKIP_SUFFIXES = ("_time_s", "_samples_per_s", "_n_examples")


def training_curves(client: Any, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Metric histories of a training run logged per epoch (step >= 1; one-shot metrics such as
    ``val_*`` are logged at step 0). One epoch gives one point per curve: still shown."""
    run = client.get_run(run_id)
    curves: dict[str, list[tuple[int, float]]] = {}
    for key in sorted(run.data.metrics):
        if key.endswith(SKIP_SUFFIXES) or key == "lr":
            continue
        history = client.get_metric_history(run_id, key)
        points = sorted({(int(m.step), float(m.value)) for m in history})
        if any(step >= 1 for step, _ in points):
            curves[key] = points
    return curves


def training_curves_png(curves: dict[str, list[tuple[int, float]]], path: Path, title: str,
                        unit: str = "epoch") -> Path:
    """Left: training (and dev) loss per epoch (boosting: per iteration); right: the dev metrics."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure(CURVES_SIZE_PX)
    loss_ax, metric_ax = fig.subplots(1, 2)
    palette = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3"]
    losses = {k: v for k, v in curves.items() if k.startswith(LOSS_PREFIXES)}
    metrics = {k: v for k, v in curves.items() if k not in losses}
    for ax, group, ylabel in ((loss_ax, losses, "loss"), (metric_ax, metrics, "dev metric")):
        for i, (name, points) in enumerate(group.items()):
            ax.plot([s for s, _ in points], [v for _, v in points], marker="o" if len(points) <= 30 else None,
                    color=palette[i % len(palette)], label=name)
        if group:
            ax.legend(fontsize=8, frameon=False)
        else:
            ax.text(0.5, 0.5, f"no {ylabel} curves", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(unit)
        ax.set_ylabel(ylabel)
        epochs = sorted({s for points in curves.values() for s, _ in points})
        if epochs:
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(True, alpha=0.3)
    metric_ax.set_ylim(0, 1.02)
    fig.suptitle(title)
    return _save(fig, path)


# ------------------------------------------------------------------ the report, finalized
CONTEXT_FILE = "report_context.json"


def save_context(reports: Path, context: dict[str, Any], template: Path) -> Path:
    """What report.html was rendered from, so main.py can re-render it with final facts."""
    path = reports / CONTEXT_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"template": str(template), "context": context}, default=str))
    tmp.replace(path)
    return path


def finalize_report(reports: Path, pipeline_run_id: str) -> Path | None:
    """Re-render report.html once the pipeline run has ended: every step's final status and
    duration and the run's own wall time (the reporting step ran before the run ended).

    Returns the report path, or None when the reporting step wrote no context.
    """
    import mlflow

    from utils.monitoring.diagnostics_lib import step_timing

    path = reports / CONTEXT_FILE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    context = saved["context"]
    context["pipeline"] = step_timing(mlflow.MlflowClient(), pipeline_run_id=pipeline_run_id)
    context["finalized"] = True
    out = reports / "report.html"
    tmp = out.with_name(f".{out.name}.final.tmp")
    tmp.write_text(render_report(Path(saved["template"]), context), encoding="utf-8")
    tmp.replace(out)
    return out

"""reports/drift.json in words: the verdict and the signals behind it, for people.

The cron tick's drift check (utils/tick/drift_check.py) writes the numbers; the report and
the dashboard both show them through these functions, so the two never disagree on what
"drift" meant. Standard library only (the dashboard imports it in every API worker).
"""
from __future__ import annotations

import math
from typing import Any

TEST_NAMES = {"ks": "KS", "chi2": "chi²"}
CORRECTION_NAMES = {"bh": "Benjamini-Hochberg", "by": "Benjamini-Yekutieli", "holm": "Holm", "none": "none"}


def _num(value: Any, digits: int = 3) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "—"
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:.{digits}g}"


def feature_rows(distribution: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per monitored feature: test, statistic, raw and corrected p-value, PSI, drift."""
    if not isinstance(distribution, dict):
        return []
    psi = distribution.get("psi") or {}
    signals = set(distribution.get("signals") or [])
    rows: dict[str, dict[str, Any]] = {}
    for test in distribution.get("tests") or []:
        if not isinstance(test, dict) or "feature" not in test:
            continue
        name = str(test["feature"])
        rows[name] = {"feature": name, "test": TEST_NAMES.get(test.get("test"), test.get("test")),
                      "statistic": test.get("statistic"), "p_value": test.get("p_value"),
                      "p_adjusted": test.get("p_adjusted"), "psi": psi.get(name),
                      "n_reference": test.get("n_reference"), "n_new": test.get("n_new")}
    for name, value in psi.items():
        rows.setdefault(str(name), {"feature": str(name), "test": None, "statistic": None, "p_value": None,
                                    "p_adjusted": None, "psi": value, "n_reference": None, "n_new": None})
    for row in rows.values():
        row["signals"] = sorted(s for s in signals if s.split(":", 1)[-1] == row["feature"])
        row["drift"] = bool(row["signals"])
    return list(rows.values())


def _signal_text(signal: str, distribution: dict[str, Any]) -> str:
    """"ks:lastmonth_activity" -> "lastmonth_activity: KS 0.41, corrected p 3.2e-09"."""
    kind, _, feature = signal.partition(":")
    settings = distribution.get("settings") or {}
    if kind == "oov":
        oov = distribution.get("oov") or {}
        return (f"out-of-vocabulary tokens {_num(100 * oov.get('rate', math.nan))} % vs baseline "
                f"{_num(100 * oov.get('baseline', math.nan))} % (margin {_num(100 * settings.get('oov_margin', math.nan))} %)")
    if kind == "psi":
        return (f"{feature}: PSI {_num((distribution.get('psi') or {}).get(feature))} > "
                f"{_num(settings.get('psi_threshold'))}")
    for test in distribution.get("tests") or []:
        if test.get("test") == kind and test.get("feature") == feature:
            return (f"{feature}: {TEST_NAMES.get(kind, kind)} {_num(test.get('statistic'))}, corrected p "
                    f"{_num(test.get('p_adjusted'))} < alpha {_num(settings.get('alpha'))}")
    return signal


def drift_verdict(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """The last check's verdict with the reasons that caused it (or why there was none).

    Keys: verdict (drift | no drift | undecided | unreadable), time, n_new, n_reference,
    reasons (what fired), checked (what was looked at and did not fire).
    """
    if doc is None:
        return None
    if not isinstance(doc, dict) or "error" in doc:
        return {"verdict": "unreadable", "time": None, "n_new": None, "n_reference": None,
                "reasons": [str((doc or {}).get("error", "drift.json is not an object"))], "checked": []}
    reasons: list[str] = []
    checked: list[str] = []
    perf = doc.get("performance") if isinstance(doc.get("performance"), dict) else {}
    if perf:
        text = f"performance ({perf.get('metric', 'score')}): {perf.get('reason', 'no verdict')}"
        (reasons if perf.get("drift") else checked).append(text)
    for label, part in (("new data", doc.get("distribution")), ("API inputs", doc.get("prediction_inputs"))):
        if not isinstance(part, dict):
            continue
        fired = [f"{label}: {_signal_text(s, part)}" for s in part.get("signals") or []]
        reasons += fired
        if not fired and part.get("tests"):
            checked.append(f"{label}: {len(part['tests'])} tests, none below alpha "
                           f"{_num((part.get('settings') or {}).get('alpha'))} after correction")
    drift = doc.get("drift")
    if drift and not reasons:   # an older or hand-written drift.json: name what it says
        reasons = [f"{k}: {v}" for k, v in (doc.get("signals") or {}).items() if v]
        reasons = reasons or ["drift.json says drift but names no signal"]
    signals = doc.get("signals") if isinstance(doc.get("signals"), dict) else {}
    if drift:
        verdict = "drift"
    elif signals and all(v is None for v in signals.values()):
        verdict = "undecided"   # nothing could be judged (no model, no reference...)
    else:
        verdict = "no drift" if drift is False else "undecided"
    return {"verdict": verdict, "time": doc.get("time"), "n_new": doc.get("n_new"),
            "n_reference": doc.get("n_reference", doc.get("reference_rows")),
            "reasons": reasons, "checked": checked}


def correction_name(doc: dict[str, Any] | None) -> str:
    settings = ((doc or {}).get("distribution") or {}).get("settings") or {}
    return CORRECTION_NAMES.get(settings.get("correction"), str(settings.get("correction", "—")))

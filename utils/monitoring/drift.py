"""Drift statistics: is the new data distributed like the data the model learnt from?

Pure functions on arrays, frames and texts (scipy, numpy, pandas), no MLflow and no model, so
the cron tick, the API and the reporting step can all use them:

* numeric feature: two-sample Kolmogorov-Smirnov test, and the population stability index
  (PSI, reference-quantile bins);
* categorical feature (and the tabular label): chi-square test of the 2 x k table of counts,
  PSI over the categories, and the unseen-category rate (new values the model never saw:
  a signal past `unseen_max`);
* NLU: intent and slot-type distributions (chi-square), utterance length in tokens (KS) and
  the out-of-vocabulary rate of the new tokens against the reference vocabulary.

Every test's p-value is corrected for the number of tests run together (`correction`: bh =
Benjamini-Hochberg via scipy, by = Benjamini-Yekutieli, holm, none), so a report with many
features does not cry wolf: under no drift the chance of any alarm stays near `alpha`.
PSI and the OOV rate are effect sizes, not tests; they raise a signal only past a threshold,
and PSI only on at least `psi_min_rows` new rows (on small samples its noise alone exceeds
the usual thresholds). Ties in discrete data make KS conservative, never anti-conservative.

Each report also keeps, per feature, what a person needs to see the change
(``distributions``: both samples' histogram over the same bins, or their category counts):
the report draws them later, when the reference itself has already been replaced.
"""
from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

CORRECTIONS = ("bh", "by", "holm", "none")


@dataclass(frozen=True)
class DriftSettings:
    """The `drift:` config section's statistics knobs (see config.yaml)."""

    alpha: float = 0.01
    correction: str = "bh"
    psi_bins: int = 10
    psi_threshold: float = 0.25
    psi_min_rows: int = 200
    oov_margin: float = 0.05
    unseen_max: float = 0.05      # share of new categorical values unseen in training
    seed: int = 0

    def __post_init__(self) -> None:
        if self.correction not in CORRECTIONS:
            raise ValueError(f"drift.correction={self.correction!r}: expected one of {', '.join(CORRECTIONS)}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"drift.alpha={self.alpha}: expected a probability in (0, 1)")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> "DriftSettings":
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class TestResult:
    feature: str
    test: str                 # ks | chi2
    statistic: float
    p_value: float
    n_reference: int
    n_new: int
    p_adjusted: float | None = None
    drift: bool = False


@dataclass
class DriftReport:
    kind: str                                   # tabular | nlu | nlu_texts
    n_reference: int
    n_new: int
    settings: dict[str, Any]
    tests: list[TestResult] = field(default_factory=list)
    psi: dict[str, float] = field(default_factory=dict)
    oov: dict[str, float] | None = None
    unseen: dict[str, float] = field(default_factory=dict)   # categorical column -> unseen-value rate
    signals: list[str] = field(default_factory=list)    # what drifted, e.g. "ks:lastmonth_activity"
    # per feature, what the report draws: shared-bin histograms (numeric) or category counts
    distributions: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def drift(self) -> bool:
        return bool(self.signals)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["drift"] = self.drift
        return out


# ---- single statistics ---------------------------------------------------------------------
def _clean(values: Iterable[Any]) -> np.ndarray:
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    return arr[np.isfinite(arr)]


def ks_test(feature: str, reference: Iterable[float], new: Iterable[float]) -> TestResult:
    """Two-sample KS: any difference in shape, location or spread of a numeric feature."""
    from scipy.stats import ks_2samp

    ref, cur = _clean(reference), _clean(new)
    if len(ref) == 0 or len(cur) == 0:
        return TestResult(feature, "ks", 0.0, 1.0, len(ref), len(cur))
    result = ks_2samp(ref, cur)
    return TestResult(feature, "ks", float(result.statistic), float(result.pvalue), len(ref), len(cur))


def chi2_test(feature: str, reference: Iterable[Any], new: Iterable[Any]) -> TestResult:
    """Chi-square test of homogeneity on the 2 x k table of category counts."""
    from scipy.stats import chi2_contingency

    ref_counts, new_counts = Counter(map(str, reference)), Counter(map(str, new))
    n_ref, n_new = sum(ref_counts.values()), sum(new_counts.values())
    categories = sorted(set(ref_counts) | set(new_counts))
    if n_ref == 0 or n_new == 0 or len(categories) < 2:
        return TestResult(feature, "chi2", 0.0, 1.0, n_ref, n_new)
    table = np.array([[ref_counts[c] for c in categories], [new_counts[c] for c in categories]])
    result = chi2_contingency(table)
    return TestResult(feature, "chi2", float(result.statistic), float(result.pvalue), n_ref, n_new)


def psi_numeric(reference: Iterable[float], new: Iterable[float], bins: int = 10) -> float:
    """PSI = sum (new% - ref%) ln(new% / ref%) over reference-quantile bins."""
    ref, cur = _clean(reference), _clean(new)
    if len(ref) == 0 or len(cur) == 0:
        return 0.0
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_bins = np.searchsorted(edges, ref, side="right")
    new_bins = np.searchsorted(edges, cur, side="right")
    k = len(edges) + 1
    return _psi(np.bincount(ref_bins, minlength=k), np.bincount(new_bins, minlength=k))


def psi_categorical(reference: Iterable[Any], new: Iterable[Any]) -> float:
    ref_counts, new_counts = Counter(map(str, reference)), Counter(map(str, new))
    categories = sorted(set(ref_counts) | set(new_counts))
    if not ref_counts or not new_counts:
        return 0.0
    return _psi(np.array([ref_counts[c] for c in categories]), np.array([new_counts[c] for c in categories]))


MAX_BINS = 30
MAX_CATEGORIES = 20


def numeric_histogram(reference: Iterable[float], new: Iterable[float],
                      max_bins: int = MAX_BINS) -> dict[str, Any]:
    """Counts of both samples over the same bin edges: enough to draw them, small to store.

    Integer data with few distinct values gets one bin per value; otherwise up to
    ``max_bins`` equal-width bins over the combined range.
    """
    ref, cur = _clean(reference), _clean(new)
    both = np.concatenate([ref, cur])
    if len(both) == 0:
        return {"kind": "numeric", "edges": [], "reference": [], "new": []}
    low, high = float(both.min()), float(both.max())
    integral = bool(np.all(both == np.round(both)))
    if integral and high - low + 1 <= max_bins:
        edges = np.arange(low - 0.5, high + 1.5)
    else:
        edges = np.linspace(low, high if high > low else low + 1.0, max_bins + 1)
    return {"kind": "numeric", "edges": [float(e) for e in edges],
            "reference": np.histogram(ref, edges)[0].astype(int).tolist(),
            "new": np.histogram(cur, edges)[0].astype(int).tolist()}


def category_counts(reference: Iterable[Any], new: Iterable[Any],
                    max_categories: int = MAX_CATEGORIES) -> dict[str, Any]:
    """Counts per category of both samples (the most frequent ones, the rest as "other")."""
    ref_counts, new_counts = Counter(map(str, reference)), Counter(map(str, new))
    total = ref_counts + new_counts
    top = [c for c, _ in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:max_categories]]
    out = {"kind": "categorical", "categories": top,
           "reference": [ref_counts[c] for c in top], "new": [new_counts[c] for c in top]}
    if len(total) > len(top):
        rest = set(total) - set(top)
        out["categories"].append("other")
        out["reference"].append(sum(ref_counts[c] for c in rest))
        out["new"].append(sum(new_counts[c] for c in rest))
    return out


def _psi(ref_counts: np.ndarray, new_counts: np.ndarray, eps: float = 1e-4) -> float:
    ref = np.maximum(ref_counts / ref_counts.sum(), eps)
    cur = np.maximum(new_counts / new_counts.sum(), eps)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def adjust_pvalues(p_values: Sequence[float], method: str = "bh") -> list[float]:
    """Multiple-testing correction (scipy's false_discovery_control for bh/by; Holm)."""
    if not p_values:
        return []
    p = np.clip(np.asarray(p_values, dtype=float), 0.0, 1.0)
    if method in ("bh", "by"):
        from scipy.stats import false_discovery_control

        return [float(v) for v in false_discovery_control(p, method=method)]
    if method == "holm":
        order = np.argsort(p)
        m = len(p)
        adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order]).clip(max=1.0)
        out = np.empty(m)
        out[order] = adjusted
        return [float(v) for v in out]
    if method == "none":
        return [float(v) for v in p]
    raise ValueError(f"unknown correction {method!r}: expected one of {', '.join(CORRECTIONS)}")


def _finish(report: DriftReport, settings: DriftSettings) -> DriftReport:
    """Correct the p-values together, then list every signal past its threshold."""
    adjusted = adjust_pvalues([t.p_value for t in report.tests], settings.correction)
    for test, p_adj in zip(report.tests, adjusted):
        test.p_adjusted = p_adj
        test.drift = p_adj < settings.alpha
        if test.drift:
            report.signals.append(f"{test.test}:{test.feature}")
    if report.n_new >= settings.psi_min_rows:
        report.signals += [f"psi:{name}" for name, value in report.psi.items()
                           if value > settings.psi_threshold]
    if report.oov and report.oov["excess"] > settings.oov_margin:
        report.signals.append("oov")
    report.signals += [f"unseen:{name}" for name, rate in report.unseen.items() if rate > settings.unseen_max]
    return report


def unseen_rate(new: Iterable[Any], known: Iterable[Any]) -> float:
    """Share of the new (non-missing) values that are not among the known categories."""
    known_text = {str(v) for v in known}
    values = [str(v) for v in new if v is not None and v == v]
    return sum(v not in known_text for v in values) / len(values) if values else 0.0


# ---- tabular -------------------------------------------------------------------------------
def tabular_drift(reference: Any, new: Any, numeric: Sequence[str], categorical: Sequence[str] = (),
                  settings: DriftSettings = DriftSettings(),
                  known_categories: dict[str, Sequence[Any]] | None = None) -> DriftReport:
    """KS + PSI per numeric column, chi-square + PSI per categorical column (e.g. the label),
    and the unseen-category rate per categorical column (against ``known_categories``, the
    categories the model was trained on; default: the reference's own values).

    ``reference`` and ``new`` are pandas DataFrames (or mappings of column -> values); the
    new side may lack the label (unlabelled inputs from the prediction log).
    """
    n_ref, n_new = len(reference), len(new)
    report = DriftReport("tabular", n_ref, n_new, asdict(settings))
    if n_ref == 0 or n_new == 0:
        return report
    for column in numeric:
        if column in reference and column in new:
            report.tests.append(ks_test(column, reference[column], new[column]))
            report.psi[column] = psi_numeric(reference[column], new[column], settings.psi_bins)
            report.distributions[column] = numeric_histogram(reference[column], new[column])
    for column in categorical:
        if column in reference and column in new:
            ref_values = [v for v in reference[column] if v is not None and v == v]
            new_values = [v for v in new[column] if v is not None and v == v]
            report.tests.append(chi2_test(column, ref_values, new_values))
            report.psi[column] = psi_categorical(ref_values, new_values)
            known = (known_categories or {}).get(column)
            report.unseen[column] = unseen_rate(new_values, known if known is not None else ref_values)
            report.distributions[column] = category_counts(ref_values, new_values)
    return _finish(report, settings)


# ---- forecasting -----------------------------------------------------------------------------
def level_drift(reference: Any, new: Any, target: str, group: str | None = None,
                settings: DriftSettings = DriftSettings()) -> DriftReport:
    """The target's level per group (e.g. sales per store): KS + PSI of the new days' values
    against the reference's, one test per group (plus the whole panel), corrected together.

    ``reference`` and ``new`` are DataFrames with ``target`` (and ``group``); the caller picks
    comparable reference rows (utils/tick/forecast_drift.py: the same weekdays of the weeks
    just before the new days), so the weekly pattern alone raises no signal. Features are
    named ``<target>`` and ``<target>@<group>=<value>`` (``sales@store_id=S01``).
    """
    report = DriftReport("forecast", len(reference), len(new), asdict(settings))
    if len(reference) == 0 or len(new) == 0:
        return report
    parts: list[tuple[str, Any, Any]] = [(target, reference[target], new[target])]
    if group and group in reference and group in new:
        ref_groups = {str(k): v for k, v in reference.groupby(group, sort=True)[target]}
        for key, values in new.groupby(group, sort=True)[target]:
            if str(key) in ref_groups:
                parts.append((f"{target}@{group}={key}", ref_groups[str(key)], values))
    for name, ref_values, new_values in parts:
        report.tests.append(ks_test(name, ref_values, new_values))
        report.psi[name] = psi_numeric(ref_values, new_values, settings.psi_bins)
        report.distributions[name] = numeric_histogram(ref_values, new_values)
    return _finish(report, settings)


# ---- NLU -----------------------------------------------------------------------------------
def slot_types(tags: Iterable[Sequence[str]]) -> list[str]:
    """One entry per slot span (its B- tag's type)."""
    return [tag[2:] for seq in tags for tag in seq if tag.startswith("B-")]


def tokens_of(texts: Iterable[str]) -> list[list[str]]:
    return [text.lower().split() for text in texts]


def oov_rate(tokens: Iterable[Sequence[str]], vocabulary: set[str]) -> float:
    total = oov = 0
    for seq in tokens:
        total += len(seq)
        oov += sum(1 for tok in seq if tok not in vocabulary)
    return oov / total if total else 0.0


def oov_report(reference_texts: Sequence[str], new_texts: Sequence[str], seed: int = 0) -> dict[str, float]:
    """OOV rate of the new tokens, against the baseline of a same-sized reference hold-out.

    A fresh sample always has some unseen words; the baseline (held-out reference texts
    against the rest of the reference vocabulary) says how many, so only the excess counts.
    The hold-out's vocabulary is smaller than the full reference's, so the baseline errs high
    (fewer false alarms).
    """
    ref_tokens = tokens_of(reference_texts)
    new_tokens = tokens_of(new_texts)
    vocabulary = {tok for seq in ref_tokens for tok in seq}
    rate = oov_rate(new_tokens, vocabulary)
    baseline = 0.0
    if len(ref_tokens) >= 4:
        order = list(range(len(ref_tokens)))
        random.Random(seed).shuffle(order)
        n_hold = max(1, min(len(new_tokens), len(ref_tokens) // 2))
        held, rest = order[:n_hold], order[n_hold:]
        rest_vocab = {tok for i in rest for tok in ref_tokens[i]}
        baseline = oov_rate([ref_tokens[i] for i in held], rest_vocab)
    return {"rate": rate, "baseline": baseline, "excess": rate - baseline,
            "vocabulary_size": float(len(vocabulary))}


def nlu_drift(reference_texts: Sequence[str], new_texts: Sequence[str],
              reference_intents: Sequence[str] | None = None, new_intents: Sequence[str] | None = None,
              reference_tags: Sequence[Sequence[str]] | None = None,
              new_tags: Sequence[Sequence[str]] | None = None,
              settings: DriftSettings = DriftSettings()) -> DriftReport:
    """Intent and slot-type chi-square, utterance-length KS, OOV excess.

    Without intents/tags on the new side (unlabelled texts, e.g. from the prediction log)
    only the length and OOV checks run.
    """
    labelled = new_intents is not None and reference_intents is not None
    report = DriftReport("nlu" if labelled else "nlu_texts", len(reference_texts), len(new_texts),
                         asdict(settings))
    if not reference_texts or not new_texts:
        return report
    ref_len = [len(t.split()) for t in reference_texts]
    new_len = [len(t.split()) for t in new_texts]
    report.tests.append(ks_test("utterance_length", ref_len, new_len))
    report.psi["utterance_length"] = psi_numeric(ref_len, new_len, settings.psi_bins)
    report.distributions["utterance_length"] = numeric_histogram(ref_len, new_len)
    if labelled:
        report.tests.append(chi2_test("intent", reference_intents or [], new_intents or []))
        report.psi["intent"] = psi_categorical(reference_intents or [], new_intents or [])
        report.distributions["intent"] = category_counts(reference_intents or [], new_intents or [])
    if reference_tags is not None and new_tags is not None:
        ref_slots, new_slots = slot_types(reference_tags), slot_types(new_tags)
        report.tests.append(chi2_test("slot_type", ref_slots, new_slots))
        report.distributions["slot_type"] = category_counts(ref_slots, new_slots)
    report.oov = oov_report(reference_texts, new_texts, settings.seed)
    return _finish(report, settings)


# ---- performance ---------------------------------------------------------------------------
PERFORMANCE_RULES = ("significant", "lower")


def bootstrap_upper_bound(score_of: Callable[[np.ndarray], float], n: int, alpha: float,
                          n_boot: int = 1000, seed: int = 0, upper: bool = True) -> float:
    """One-sided (1 - alpha) percentile-bootstrap upper bound of a score over ``n`` examples
    (``upper=False``: the lower bound, the better side of an error metric).

    ``score_of(indices)`` scores a resample (indices into the new batch). The bound is what the
    score could plausibly be on the new data's distribution, given this batch's sampling noise.
    """
    if n <= 0:
        return math.nan
    rng = np.random.default_rng(seed)
    scores = np.array([score_of(rng.integers(0, n, n)) for _ in range(int(n_boot))], dtype=float)
    scores = scores[np.isfinite(scores)]
    return float(np.quantile(scores, 1.0 - alpha if upper else alpha)) if scores.size else math.nan


def binary_metric(name: str) -> Callable[[np.ndarray, np.ndarray], float] | None:
    """f1 / precision / recall / accuracy of 0/1 arrays in numpy (thousands of resamples a
    second; sklearn's zero_division=0 convention); None for other metrics."""
    def counts(y: np.ndarray, p: np.ndarray) -> tuple[int, int, int]:
        return int(np.sum((y == 1) & (p == 1))), int(np.sum((y == 0) & (p == 1))), int(np.sum((y == 1) & (p == 0)))

    def f1(y: np.ndarray, p: np.ndarray) -> float:
        tp, fp, fn = counts(y, p)
        return 2 * tp / (2 * tp + fp + fn) if tp else 0.0

    def precision(y: np.ndarray, p: np.ndarray) -> float:
        tp, fp, _ = counts(y, p)
        return tp / (tp + fp) if tp + fp else 0.0

    def recall(y: np.ndarray, p: np.ndarray) -> float:
        tp, _, fn = counts(y, p)
        return tp / (tp + fn) if tp + fn else 0.0

    def accuracy(y: np.ndarray, p: np.ndarray) -> float:
        return float(np.mean(y == p)) if len(y) else 0.0

    return {"f1": f1, "precision": precision, "recall": recall, "accuracy": accuracy}.get(name)


def performance_drift(new_score: float, recorded_score: float, relative_tolerance: float = 0.0,
                      rule: str = "lower", upper_bound: float | None = None,
                      alpha: float | None = None, direction: str = "higher") -> tuple[bool, str]:
    """Did the production model get worse on the new data than its recorded score?

    * ``significant`` (default in config.yaml): only when the drop is significant at ``alpha``:
      the one-sided (1 - alpha) bound of the new batch's score on its better side
      (``upper_bound``, see ``bootstrap_upper_bound``; for an error metric the lower bound) is
      still worse than the recorded score with the tolerance. A batch from the same
      distribution scores worse about half the time by noise alone; this rule retrains on such
      a batch with probability about ``alpha``.
    * ``lower`` (the original project's rule): any drop past the tolerance.

    For a metric where lower is better (``direction="lower"``: RMSE, WMAPE) "worse" is a higher
    number and the tolerance is ``recorded x (1 + relative_tolerance)``.
    """
    if rule not in PERFORMANCE_RULES:
        raise ValueError(f"drift.performance.rule={rule!r}: expected one of {', '.join(PERFORMANCE_RULES)}")
    if math.isnan(new_score):
        return False, "no score on the new data"
    lower_better = direction == "lower"
    threshold = recorded_score * ((1.0 + relative_tolerance) if lower_better else (1.0 - relative_tolerance))
    sign = "+" if lower_better else "-"
    target = f"recorded {recorded_score:.4f}" + (f" x (1 {sign} {relative_tolerance})" if relative_tolerance else "")
    worse, worse_sym, ok_sym = ((lambda a: a > threshold), ">", "<=") if lower_better else (
        (lambda a: a < threshold), "<", ">=")
    what = "error" if lower_better else "score"
    note = " (lower is better)" if lower_better else ""
    if rule == "lower":
        if worse(new_score):
            return True, f"new {what} {new_score:.4f} {worse_sym} {target}{note}"
        return False, f"new {what} {new_score:.4f} {ok_sym} {target}{note}"
    if upper_bound is None or math.isnan(upper_bound):
        return False, f"new {what} {new_score:.4f}: no confidence bound (too few examples)"
    level = f"{1 - (alpha or 0):.0%}"
    side = "lower" if lower_better else "upper"
    if worse(upper_bound):
        return True, (f"new {what} {new_score:.4f}, {side} {level} bound {upper_bound:.4f} {worse_sym} "
                      f"{target}{note}: a significant drop")
    return False, (f"new {what} {new_score:.4f}, {side} {level} bound {upper_bound:.4f} {ok_sym} {target}{note}: "
                   "not a significant drop (sampling noise)")

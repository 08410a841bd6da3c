"""Drift statistics: shifts of known size are found; resamples of one distribution are not."""
from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from utils.monitoring.drift import (DriftSettings, adjust_pvalues, chi2_test, ks_test, nlu_drift, oov_report,
                         performance_drift, psi_numeric, tabular_drift)

NUMERIC = ["activity", "employees", "yearly"]
SETTINGS = DriftSettings()   # the defaults of config.yaml's drift section are checked below


def population(n: int, rng: np.random.Generator, mean_shift: float = 0.0, scale: float = 1.0,
               label_rate: float = 0.3) -> pd.DataFrame:
    """Continuous, heavy-tailed and integer (tied) features plus a binary label."""
    return pd.DataFrame({
        "activity": rng.normal(10 + mean_shift, 2 * scale, n),
        "employees": np.maximum(1, rng.lognormal(4.0, 1.2, n)).astype(int),
        "yearly": rng.poisson(30, n),
        "label": (rng.random(n) < label_rate).astype(int),
    })


def test_defaults_match_config_yaml() -> None:
    from utils.pipeline.config import load_config

    cfg = load_config([])
    assert DriftSettings.from_mapping(dict(cfg.drift)) == SETTINGS


def test_false_alarm_rate_on_resamples_is_at_most_five_percent() -> None:
    rng = np.random.default_rng(20240601)
    trials = 300
    alarms = sum(tabular_drift(population(1000, rng), population(n_new, rng), NUMERIC, ["label"],
                               SETTINGS).drift
                 for n_new in [50, 300, 1000] * (trials // 3))
    assert alarms / trials <= 0.05, f"{alarms} false alarms in {trials} trials"


def test_the_correction_keeps_the_family_wise_rate_at_alpha() -> None:
    """With alpha=0.05 and no drift, any-alarm rate stays near 5 % (BH), not 1-(0.95^4)=19 %."""
    rng = np.random.default_rng(7)
    loose = DriftSettings(alpha=0.05, psi_threshold=10.0)
    trials = 300
    rate = sum(tabular_drift(population(800, rng), population(300, rng), NUMERIC, ["label"], loose).drift
               for _ in range(trials)) / trials
    assert rate <= 0.05 + 3 * (0.05 * 0.95 / trials) ** 0.5
    uncorrected = DriftSettings(alpha=0.05, psi_threshold=10.0, correction="none")
    rate_none = sum(tabular_drift(population(800, rng), population(300, rng), NUMERIC, ["label"],
                                  uncorrected).drift for _ in range(trials)) / trials
    assert rate_none > rate


@pytest.mark.parametrize("shift, column", [({"mean_shift": 1.0}, "ks:activity"),      # half a std dev
                                           ({"scale": 1.6}, "ks:activity"),           # wider spread
                                           ({"label_rate": 0.5}, "chi2:label")])      # label shift
def test_known_shifts_are_detected(shift: dict, column: str) -> None:
    rng = np.random.default_rng(3)
    detected = 0
    for _ in range(20):
        report = tabular_drift(population(1000, rng), population(300, rng, **shift), NUMERIC, ["label"], SETTINGS)
        detected += column in report.signals
    assert detected >= 19, f"{column} found in {detected}/20 trials"


def test_psi_grows_with_the_shift_and_signals_only_on_enough_rows() -> None:
    rng = np.random.default_rng(5)
    ref = rng.normal(0, 1, 5000)
    small, large = psi_numeric(ref, rng.normal(0.1, 1, 2000)), psi_numeric(ref, rng.normal(1.0, 1, 2000))
    assert small < 0.1 < 0.25 < large
    frame = lambda x: pd.DataFrame({"x": x})  # noqa: E731
    big = tabular_drift(frame(ref), frame(rng.normal(1.0, 1, 400)), ["x"], (), SETTINGS)
    assert "psi:x" in big.signals
    few = tabular_drift(frame(ref), frame(rng.normal(1.0, 1, 20)), ["x"], (), SETTINGS)
    assert "psi:x" not in few.signals   # 20 rows < psi_min_rows: PSI is reported, not a signal
    assert few.psi["x"] > 0


def test_single_tests_and_edge_cases() -> None:
    assert ks_test("x", [], [1.0]).p_value == 1.0
    assert chi2_test("c", ["a"] * 50, ["a"] * 50).p_value == 1.0          # one category only
    assert chi2_test("c", ["a", "b"] * 50, ["c"] * 30).p_value < 1e-6     # unseen category
    assert tabular_drift(pd.DataFrame({"x": []}), pd.DataFrame({"x": [1.0]}), ["x"]).drift is False
    assert adjust_pvalues([0.01, 0.04, 0.03], "holm") == pytest.approx([0.03, 0.06, 0.06])
    assert adjust_pvalues([0.01, 0.04, 0.03], "bh") == pytest.approx([0.03, 0.04, 0.04])
    with pytest.raises(ValueError, match="drift.correction"):
        DriftSettings(correction="fdr")


def test_performance_rule_is_the_original_projects() -> None:
    assert performance_drift(0.70, 0.71)[0] is True                 # any drop: retrain
    assert performance_drift(0.71, 0.71)[0] is False
    assert performance_drift(0.70, 0.71, relative_tolerance=0.05)[0] is False
    assert performance_drift(0.60, 0.71, relative_tolerance=0.05)[0] is True
    assert performance_drift(float("nan"), 0.71)[0] is False


# ---- NLU -----------------------------------------------------------------------------------
INTENTS = {"get_statistics": ["zonal stats for {t} in {l}", "mean {t} over {l} since {y}"],
           "download_data": ["download {d} over {l}", "batch download {d} for {l} before {y}"],
           "compare_regions": ["{l} compared to {l} {t}", "compare {t} between {l} and {l}"]}
SLOTS = {"t": ("theme", ["ndvi", "forest loss", "rainfall", "evi"]), "l": ("location", ["zambia", "peru", "europe", "kenya"]),
         "y": ("date", ["2019", "2020", "2021"]), "d": ("dataset", ["s2", "landsat", "modis"])}


def utterances(n: int, rng: random.Random, weights: tuple[float, ...] = (1, 1, 1),
               extra_words: list[str] | None = None) -> tuple[list[str], list[str], list[list[str]]]:
    texts, intents, tags = [], [], []
    for _ in range(n):
        intent = rng.choices(list(INTENTS), weights=weights)[0]
        tokens: list[str] = []
        labels: list[str] = []
        for word in rng.choice(INTENTS[intent]).split():
            if word.startswith("{"):
                slot, values = SLOTS[word[1]]
                pool = values + (extra_words or []) if slot == "location" else values
                value = rng.choice(pool).split()
                tokens += value
                labels += [f"B-{slot}"] + [f"I-{slot}"] * (len(value) - 1)
            else:
                tokens.append(word)
                labels.append("O")
        texts.append(" ".join(tokens))
        intents.append(intent)
        tags.append(labels)
    return texts, intents, tags


def _nlu(ref: tuple, new: tuple) -> list[str]:
    return nlu_drift(ref[0], new[0], ref[1], new[1], ref[2], new[2], SETTINGS).signals


def test_nlu_false_alarm_rate_on_resamples() -> None:
    rng = random.Random(11)
    trials = 200
    alarms = sum(bool(_nlu(utterances(800, rng), utterances(200, rng))) for _ in range(trials))
    assert alarms / trials <= 0.05, f"{alarms} false alarms in {trials} trials"


def test_nlu_shifts_are_detected() -> None:
    rng = random.Random(12)
    ref = utterances(800, rng)
    assert "chi2:intent" in _nlu(ref, utterances(300, rng, weights=(3, 1, 1)))
    unseen = [f"place{i}" for i in range(200)]
    signals = _nlu(ref, utterances(300, rng, extra_words=unseen))
    assert "oov" in signals
    long_ref = utterances(800, rng)
    longer = [t + " please with monthly aggregation" for t in utterances(300, rng)[0]]
    assert "ks:utterance_length" in nlu_drift(long_ref[0], longer, settings=SETTINGS).signals


def test_oov_baseline_absorbs_ordinary_unseen_words() -> None:
    rng = random.Random(13)
    ref, new = utterances(500, rng)[0], utterances(200, rng)[0]
    report = oov_report(ref, new)
    assert report["excess"] <= 0.05

"""Metrics of a joint intent + slot model, in the conventions of the ATIS/SNIPS literature.

Slot scores are seqeval's entity-level micro scores (exact span and type, default mode), the
numbers papers report; ``exact_match`` ("sentence accuracy") needs the intent and every tag
right. seqeval is imported inside the function so importing this module stays cheap.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from utils.data.nlu_data import NluExample


def _per_intent(gold: Sequence[str], pred: Sequence[str]) -> dict[str, dict[str, float]]:
    tp: Counter[str] = Counter()
    n_pred: Counter[str] = Counter(pred)
    n_gold: Counter[str] = Counter(gold)
    for g, p in zip(gold, pred):
        if g == p:
            tp[g] += 1
    out: dict[str, dict[str, float]] = {}
    for label in sorted(set(n_gold) | set(n_pred)):
        prec = tp[label] / n_pred[label] if n_pred[label] else 0.0
        rec = tp[label] / n_gold[label] if n_gold[label] else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        out[label] = {"precision": prec, "recall": rec, "f1": f1, "support": n_gold[label]}
    return out


def nlu_metrics(
    gold: Sequence[NluExample], pred_intents: Sequence[str], pred_tags: Sequence[Sequence[str]]
) -> dict:
    """Intent accuracy, seqeval slot P/R/F1 (micro), exact match, and per-intent/per-slot tables.

    ``pred_tags[i]`` must have one tag per whitespace token of ``gold[i].text``.
    """
    from seqeval.metrics import (
        classification_report,
        f1_score,
        precision_score,
        recall_score,
    )

    if not (len(gold) == len(pred_intents) == len(pred_tags)):
        raise ValueError(
            f"lengths differ: {len(gold)} gold, {len(pred_intents)} intents, {len(pred_tags)} tag lists"
        )
    y_true = [list(ex.tags) for ex in gold]
    y_pred = [list(t) for t in pred_tags]
    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        if len(t) != len(p):
            raise ValueError(f"example {i}: {len(t)} gold tags but {len(p)} predicted tags")
    n = len(gold)
    gold_intents = [ex.intent for ex in gold]
    intent_ok = [g == p for g, p in zip(gold_intents, pred_intents)]
    exact = [ok and t == p for ok, t, p in zip(intent_ok, y_true, y_pred)]
    has_entities = any(tag != "O" for seq in y_true + y_pred for tag in seq)
    if has_entities:
        slot_p = float(precision_score(y_true, y_pred, zero_division=0))
        slot_r = float(recall_score(y_true, y_pred, zero_division=0))
        slot_f1 = float(f1_score(y_true, y_pred, zero_division=0))
        per_slot = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
        per_slot = {k: {m: float(v) for m, v in d.items()} for k, d in per_slot.items()}
    else:  # no spans anywhere: nothing to get wrong
        slot_p = slot_r = slot_f1 = 1.0
        per_slot = {}
    return {
        "n_examples": n,
        "intent_accuracy": sum(intent_ok) / n if n else 0.0,
        "slot_precision": slot_p,
        "slot_recall": slot_r,
        "slot_f1": slot_f1,
        "exact_match": sum(exact) / n if n else 0.0,
        "per_intent": _per_intent(gold_intents, list(pred_intents)),
        "per_slot": per_slot,
    }

"""The query generator and the committed NLU sample (data tests)."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import generate_nlu_data as gen
import pytest

from utils.data.nlu_data import read_bio_folder, read_jsonl, validate_example

SOURCE = Path(gen.__file__).resolve().parent / "sourcedata" / "nlu"
TEST_FILE = Path(gen.__file__).resolve().parent / "testdata" / "nlu" / "test.jsonl"


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def test_deterministic_per_seed() -> None:
    a, b = gen.generate_examples(300, seed=1), gen.generate_examples(300, seed=1)
    assert a == b
    assert a != gen.generate_examples(300, seed=2)


def test_coverage_validity_and_uniqueness() -> None:
    examples = gen.generate_examples(2000, seed=11)
    for i, ex in enumerate(examples):
        validate_example(ex, f"example {i}")
    intents = Counter(ex.intent for ex in examples)
    slot_types = Counter(t[2:] for ex in examples for t in ex.tags if t.startswith("B-"))
    assert len(intents) >= 7 and min(intents.values()) >= 50, intents
    assert len(slot_types) >= 10 and min(slot_types.values()) >= 30, slot_types
    assert len({_norm(ex.text) for ex in examples}) == len(examples)
    assert all(len(templates) >= 10 for templates in gen.TEMPLATES.values())


def test_not_trivially_learnable() -> None:
    """Same words, different labels: a lookup table of word -> tag or first word -> intent fails."""
    examples = gen.generate_examples(3000, seed=3)
    tags_of_word: dict[str, set[str]] = defaultdict(set)
    for ex in examples:
        for tok, tag in zip(ex.tokens, ex.tags):
            tags_of_word[tok.lower()].add(tag[2:] if tag != "O" else "O")
    assert {"location", "dataset"} <= tags_of_word["africa"]          # "CHIRPS Africa"
    assert {"theme", "dataset"} <= tags_of_word["moisture"]           # "SMAP soil moisture"
    assert {"aggregation", "forecast_horizon"} <= tags_of_word["10-day"]
    assert {"theme", "O"} <= tags_of_word["rain"]                     # "will it rain"
    # majority intent per first word, fitted on half, scored on the other half
    train, test = examples[:1500], examples[1500:]
    by_first: dict[str, Counter] = defaultdict(Counter)
    for ex in train:
        by_first[ex.tokens[0].lower()][ex.intent] += 1
    fallback = Counter(ex.intent for ex in train).most_common(1)[0][0]
    hits = sum((by_first[ex.tokens[0].lower()].most_common(1) or [(fallback, 0)])[0][0] == ex.intent
               for ex in test)
    assert hits / len(test) < 0.8


def test_cli_portal_layout(tmp_path: Path) -> None:
    assert gen.main(["--seed", "3", "--n", "400", "--n-test", "60", "--out-dir", str(tmp_path)]) == 0
    src = tmp_path / "sourcedata" / "nlu"
    logs_a = read_jsonl(src / "portal_queries_2024.jsonl")
    logs_b = read_jsonl(src / "portal_queries_2025.jsonl")
    bio = read_bio_folder(src / "eo_portal_bio")
    test = read_jsonl(tmp_path / "testdata" / "nlu" / "test.jsonl")
    assert len(test) == 60
    assert {ex.split for ex in bio} == {"train", "dev", "test"}
    assert {ex.text for ex in logs_a} & {ex.text for ex in logs_b}
    assert len({ex.text for ex in logs_a + logs_b + bio}) == 400


def test_script_runs_from_anywhere_flat_layout(tmp_path: Path) -> None:
    script = Path(gen.__file__).resolve()
    subprocess.run([sys.executable, str(script), "--layout", "flat", "--n", "200", "--out-dir", "out"],
                   cwd=tmp_path, check=True, capture_output=True)
    assert [len(read_jsonl(tmp_path / "out" / f"{s}.jsonl")) for s in ("train", "dev", "test")] == [160, 20, 20]
    assert len(read_bio_folder(tmp_path / "out" / "bio")) == 200


def test_committed_sample_is_the_default_generator_output(tmp_path: Path) -> None:
    gen.main(["--out-dir", str(tmp_path)])
    committed = sorted(p.relative_to(SOURCE.parent.parent) for p in
                       list(SOURCE.rglob("*")) + [TEST_FILE] if p.is_file())
    assert committed, "committed NLU sample missing"
    for rel in committed:
        assert (tmp_path / rel).read_bytes() == (SOURCE.parent.parent / rel).read_bytes(), rel


def test_committed_sample_sizes_and_test_disjointness() -> None:
    files = [p for p in SOURCE.rglob("*") if p.is_file()] + [TEST_FILE]
    assert sum(p.stat().st_size for p in files) < 1.5e6
    source = (read_jsonl(SOURCE / "portal_queries_2024.jsonl")
              + read_jsonl(SOURCE / "portal_queries_2025.jsonl")
              + read_bio_folder(SOURCE / "eo_portal_bio"))
    test = read_jsonl(TEST_FILE)
    assert 3000 <= len(source) <= 4000 and len(test) == 500
    assert not {_norm(ex.text) for ex in source} & {_norm(ex.text) for ex in test}
    texts = Counter(ex.text for ex in source)
    assert 0 < sum(c - 1 for c in texts.values()) < 0.1 * len(source)  # some duplicates


@pytest.mark.parametrize("bad", ["(a|b", "[a b", "a ] b", "{nope}"])
def test_template_errors_are_loud(bad: str) -> None:
    import random

    with pytest.raises((ValueError, KeyError)):
        gen._expand(gen._parse(bad), random.Random(0), {}, [])

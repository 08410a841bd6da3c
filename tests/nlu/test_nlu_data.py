"""Reading and validating NLU data: JSONL, BIO folders (incl. SNIPS/ATIS layouts), spans, offsets."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.data.nlu_data import (
    NluDataError,
    NluExample,
    char_offsets,
    is_bio_folder,
    read_bio_folder,
    read_jsonl,
    read_nlu_path,
    repair_bio,
    spans_from_tags,
    validate_example,
    write_bio_folder,
    write_jsonl,
)

GOOD = NluExample("monthly rainfall in northern Kenya", "search_dataset",
                  ("B-aggregation", "B-theme", "O", "B-location", "I-location"))


def test_valid_example_passes_and_tokens_split_on_whitespace() -> None:
    validate_example(GOOD, "here")
    assert NluExample(" a \t b ", "x", ("O", "O")).tokens == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "intent", "tags", "fragment"),
    [
        ("", "x", (), "empty text"),
        ("   ", "x", (), "empty text"),
        ("rain in Kenya", "", ("O", "O", "B-location"), "empty intent"),
        ("rain in Kenya", "x", ("O", "O"), "3 tokens but 2 tags"),
        ("rain in Kenya", "x", ("O", "O", "B-location", "O"), "3 tokens but 4 tags"),
        ("rain in Kenya", "x", ("O", "O", "X-location"), "is not BIO"),
        ("rain in Kenya", "x", ("O", "O", "B-"), "is not BIO"),
        ("rain in Kenya", "x", ("O", "O", "b-location"), "is not BIO"),
        ("rain in Kenya", "x", ("O", "O", "location"), "is not BIO"),
        ("rain in Kenya", "x", ("I-theme", "O", "O"), "follows 'O'"),
        ("rain in Kenya", "x", ("O", "O", "I-location"), "follows 'O'"),
        ("northern Kenya rain", "x", ("B-location", "I-theme", "O"), "follows 'B-location'"),
    ],
)
def test_invalid_examples_are_rejected(text: str, intent: str, tags: tuple, fragment: str) -> None:
    with pytest.raises(NluDataError) as err:
        validate_example(NluExample(text, intent, tags), "file.jsonl:7")
    assert "file.jsonl:7" in str(err.value)
    assert fragment in str(err.value)


def test_jsonl_round_trip_keeps_split_and_skips_blank_lines(tmp_path: Path) -> None:
    examples = [GOOD, NluExample("what is NDVI", "ask_definition", ("O", "O", "B-theme"), "dev")]
    path = tmp_path / "q.jsonl"
    assert write_jsonl(examples, path) == 2
    path.write_text(path.read_text(encoding="utf-8") + "\n\n", encoding="utf-8")
    assert read_jsonl(path) == examples
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert "split" not in first  # omitted when None


def test_jsonl_accepts_utf8_bom_and_non_ascii(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    line = json.dumps({"text": "pluie à Niamey", "intent": "x", "tags": ["B-theme", "O", "B-location"]})
    path.write_bytes(b"\xef\xbb\xbf" + line.encode("utf-8") + b"\n")
    assert read_jsonl(path)[0].text == "pluie à Niamey"


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('{"text": "rain", "intent": "x", "tags": ["O"]', "invalid JSON"),
        ('{"text": "rain", "tags": ["O"]}', "missing key(s) intent"),
        ('["rain", "x"]', "expected a JSON object"),
        ('{"text": "rain", "intent": "x", "tags": "O"}', "'tags' must be a list"),
        ('{"text": "rain in Kenya", "intent": "x", "tags": ["O"]}', "3 tokens but 1 tags"),
        ('{"text": "rain", "intent": "x", "tags": ["I-theme"]}', "follows 'O'"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path: Path, line: str, fragment: str) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps(GOOD.to_dict())
    path.write_text(f"{good}\n{line}\n{good}\n", encoding="utf-8")
    with pytest.raises(NluDataError) as err:
        read_jsonl(path)
    assert f"{path}:2" in str(err.value)
    assert fragment in str(err.value)


def test_jsonl_rejects_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    good = json.dumps(GOOD.to_dict()).encode()
    bad = '{"text": "pluie à Niamey", "intent": "x", "tags": ["O", "O", "O"]}'.encode("latin-1")
    path.write_bytes(good + b"\n" + bad + b"\n")
    with pytest.raises(NluDataError) as err:
        read_jsonl(path)
    assert f"{path}:2" in str(err.value) and "UTF-8" in str(err.value)


def _write_split(d: Path, rows: list[tuple[str, str, str]]) -> None:
    d.mkdir(parents=True)
    (d / "seq.in").write_text("".join(r[0] + "\n" for r in rows), encoding="utf-8")
    (d / "seq.out").write_text("".join(r[1] + "\n" for r in rows), encoding="utf-8")
    (d / "label").write_text("".join(r[2] + "\n" for r in rows), encoding="utf-8")


SNIPS_ROWS = [
    ("add sabrina salerno to the grime instrumentals playlist",
     "O B-artist I-artist O O B-playlist I-playlist O", "AddToPlaylist"),
    ("book a table for 3 at a brasserie in saint louis",
     "O O O O B-party_size_number O O B-restaurant_type O B-city I-city", "BookRestaurant"),
    ("rate the current novel 4 of 6 stars",
     "O O B-object_select B-object_type B-rating_value O B-best_rating B-rating_unit", "RateBook"),
]
ATIS_ROWS = [
    ("i want to fly from boston at 838 am and arrive in denver at 1110 in the morning",
     "O O O O O B-fromloc.city_name O B-depart_time.time I-depart_time.time O O O B-toloc.city_name "
     "O B-arrive_time.time O O B-arrive_time.period_of_day", "atis_flight"),
    ("what flights and fares are there from denver to pittsburgh",
     "O O O O O O O B-fromloc.city_name O B-toloc.city_name", "atis_flight#atis_airfare"),
]


def test_reads_snips_layout_with_valid_as_dev(tmp_path: Path) -> None:
    root = tmp_path / "snips"
    _write_split(root / "train", SNIPS_ROWS[:2])
    _write_split(root / "valid", SNIPS_ROWS[2:])
    _write_split(root / "test", SNIPS_ROWS[:1])
    assert is_bio_folder(root)
    examples = read_bio_folder(root)
    assert [ex.split for ex in examples] == ["train", "train", "dev", "test"]
    assert examples[0].intent == "AddToPlaylist"
    assert examples[0].tags[1:3] == ("B-artist", "I-artist")
    assert spans_from_tags(examples[1].tokens, examples[1].tags)[-1] == ("city", 9, 11)


def test_reads_atis_layout_with_multi_intent_labels(tmp_path: Path) -> None:
    root = tmp_path / "atis"
    _write_split(root / "train", ATIS_ROWS)
    _write_split(root / "dev", ATIS_ROWS[:1])
    examples = read_nlu_path(root)
    assert [ex.intent for ex in examples] == ["atis_flight", "atis_flight#atis_airfare", "atis_flight"]
    assert {ex.split for ex in examples} == {"train", "dev"}


def test_bio_line_count_mismatch_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "bio"
    _write_split(root / "train", SNIPS_ROWS)
    (root / "train" / "label").write_text("AddToPlaylist\nBookRestaurant\n", encoding="utf-8")
    with pytest.raises(NluDataError, match=r"line counts differ \(seq.in=3, seq.out=3, label=2\)"):
        read_bio_folder(root)


def test_bio_bad_tags_name_the_line(tmp_path: Path) -> None:
    root = tmp_path / "bio"
    _write_split(root / "train", [SNIPS_ROWS[0], ("play music", "O I-x", "PlayMusic")])
    with pytest.raises(NluDataError, match=r"seq.in:2: tag 1 'I-x'"):
        read_bio_folder(root)


def test_is_bio_folder_negative_cases(tmp_path: Path) -> None:
    assert not is_bio_folder(tmp_path / "missing")
    assert not is_bio_folder(tmp_path)
    (tmp_path / "f.jsonl").write_text("", encoding="utf-8")
    assert not is_bio_folder(tmp_path / "f.jsonl")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "seq.in").write_text("a\n", encoding="utf-8")
    assert not is_bio_folder(tmp_path)  # seq.out and label missing
    with pytest.raises(NluDataError, match="not a BIO folder"):
        read_bio_folder(tmp_path)


def test_bio_write_read_round_trip(tmp_path: Path) -> None:
    splits = {"train": [GOOD], "dev": [GOOD], "test": [GOOD]}
    write_bio_folder(splits, tmp_path / "b")
    back = read_bio_folder(tmp_path / "b")
    assert [(ex.text, ex.intent, ex.tags, ex.split) for ex in back] == [
        (GOOD.text, GOOD.intent, GOOD.tags, s) for s in ("train", "dev", "test")
    ]


def test_spans_from_tags() -> None:
    toks = "a b c d e f".split()
    assert spans_from_tags(toks, ["B-x", "I-x", "O", "B-y", "B-y", "I-y"]) == [
        ("x", 0, 2), ("y", 3, 4), ("y", 4, 6)]
    # lenient on model output: a stray I- starts a span, a type change ends one
    assert spans_from_tags(toks, ["I-x", "I-x", "I-y", "O", "O", "I-x"]) == [
        ("x", 0, 2), ("y", 2, 3), ("x", 5, 6)]
    with pytest.raises(ValueError):
        spans_from_tags(toks, ["O"])


def test_repair_bio_makes_valid_bio_with_the_same_spans() -> None:
    tags = ["I-x", "I-x", "I-y", "O", "I-x", "B-x", "I-x"]
    fixed = repair_bio(tags)
    assert fixed == ["B-x", "I-x", "B-y", "O", "B-x", "B-x", "I-x"]
    validate_example(NluExample(" ".join("abcdefg"), "i", tuple(fixed)), "t")
    toks = list("abcdefg")
    assert spans_from_tags(toks, fixed) == spans_from_tags(toks, tags)


def test_char_offsets_with_irregular_whitespace() -> None:
    text = "  monthly\u00a0 rainfall\tin\n\nnorthern   Kenya \u2003"
    offsets = char_offsets(text)
    assert [text[s:e] for s, e in offsets] == text.split() == [
        "monthly", "rainfall", "in", "northern", "Kenya"]
    assert char_offsets("") == [] and char_offsets(" \t ") == []


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab1é-") + [" ", "\t", "\n", "\u00a0", "\u2003", "\x1f", "\u3000"])))
def test_char_offsets_match_str_split(text: str) -> None:
    assert [text[s:e] for s, e in char_offsets(text)] == text.split()

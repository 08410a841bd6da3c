"""Reading, validating and writing NLU data (intent + BIO slot tags per whitespace token).

Two on-disk formats are accepted so that public benchmarks (ATIS, SNIPS) can be dropped in
unchanged next to our own query logs:

* JSONL: one ``{"text": ..., "intent": ..., "tags": [...], "split": ...}`` object a line
  (``split`` optional).
* BIO folder: ``train/ dev/ test/`` (``valid/`` is read as ``dev``), each holding ``seq.in``
  (space-separated tokens), ``seq.out`` (BIO tags) and ``label`` (intent), one example a line.
* A lone BIO split folder: ``seq.in``, ``seq.out`` and ``label`` directly inside (its split is
  its folder name when that is one of train/dev/valid/validation/test, else none).

Standard library only, so the cheap steps (ingestion, the API) can validate data without
importing torch.
"""
from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

try:
    from utils.data.hashing import open_regular
except ImportError:  # inside a logged MLflow model, code_paths holds this file alone (no data reads there)
    def open_regular(path: "str | Path", follow_symlinks: bool = True) -> int:  # type: ignore[misc]
        return os.open(path, os.O_RDONLY)

BIO_FILES: tuple[str, str, str] = ("seq.in", "seq.out", "label")
# Canonical split name -> folder names accepted for it, in order of preference.
BIO_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "dev": ("dev", "valid", "validation"),
    "test": ("test",),
}
_TAG_RE = re.compile(r"^(?:O|[BI]-\S+)$")


class NluDataError(ValueError):
    """Invalid NLU data; the message names the file (and line) so a user can fix it."""


@dataclass(frozen=True)
class NluExample:
    """One query: whitespace tokens of ``text`` carry one BIO tag each."""

    text: str
    intent: str
    tags: tuple[str, ...]
    split: str | None = None

    @property
    def tokens(self) -> list[str]:
        return self.text.split()

    def to_dict(self) -> dict:
        d: dict = {"text": self.text, "intent": self.intent, "tags": list(self.tags)}
        if self.split is not None:
            d["split"] = self.split
        return d


def validate_example(ex: NluExample, where: str) -> None:
    """Raise NluDataError (prefixed by ``where``) unless ``ex`` is usable for training.

    Checks: non-empty text and intent, one tag per whitespace token, well-formed BIO
    (an ``I-X`` must continue a ``B-X`` or ``I-X`` of the same type).
    """
    if not isinstance(ex.text, str) or not ex.text.strip():
        raise NluDataError(f"{where}: empty text")
    if not isinstance(ex.intent, str) or not ex.intent.strip():
        raise NluDataError(f"{where}: empty intent")
    tokens = ex.text.split()
    if len(tokens) != len(ex.tags):
        raise NluDataError(
            f"{where}: {len(tokens)} tokens but {len(ex.tags)} tags (text={ex.text!r})"
        )
    prev = "O"
    for i, tag in enumerate(ex.tags):
        if not isinstance(tag, str) or not _TAG_RE.match(tag):
            raise NluDataError(
                f"{where}: tag {i} {tag!r} is not BIO (expected 'O', 'B-<type>' or 'I-<type>')"
            )
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            raise NluDataError(
                f"{where}: tag {i} {tag!r} on token {tokens[i]!r} follows {prev!r}; "
                f"an I- tag must continue a B-/I- tag of the same type"
            )
        prev = tag


def _read_text_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 file; a clear NluDataError for anything that is not UTF-8."""
    try:
        with os.fdopen(open_regular(path), "rb") as fh:   # never blocks on a FIFO or a device
            raw = fh.read()
    except OSError as exc:
        raise NluDataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise NluDataError(
            f"{path}:{line}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
            f"{err.start}); re-encode the file as UTF-8"
        ) from None
    lines = data.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


def _example_from_obj(obj: object, where: str) -> NluExample:
    if not isinstance(obj, dict):
        raise NluDataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in ("text", "intent", "tags") if k not in obj]
    if missing:
        raise NluDataError(f"{where}: missing key(s) {', '.join(missing)}")
    text, intent, tags, split = obj["text"], obj["intent"], obj["tags"], obj.get("split")
    if not isinstance(text, str):
        raise NluDataError(f"{where}: 'text' must be a string")
    if not isinstance(intent, str):
        raise NluDataError(f"{where}: 'intent' must be a string")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise NluDataError(f"{where}: 'tags' must be a list of strings")
    if split is not None and not isinstance(split, str):
        raise NluDataError(f"{where}: 'split' must be a string or absent")
    ex = NluExample(text=text, intent=intent, tags=tuple(tags), split=split)
    validate_example(ex, where)
    return ex


def read_jsonl(path: str | Path) -> list[NluExample]:
    """All examples of a JSONL file; blank lines are skipped, anything invalid raises."""
    path = Path(path)
    examples = []
    for lineno, line in enumerate(_read_text_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise NluDataError(f"{where}: invalid JSON ({err.msg} at column {err.colno})") from None
        examples.append(_example_from_obj(obj, where))
    return examples


def _split_dirs(path: Path) -> list[tuple[str, Path]]:
    found = []
    for split, names in BIO_SPLITS.items():
        for name in names:
            d = path / name
            if d.is_dir() and is_bio_split(d):
                found.append((split, d))
                break
    return found


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)   # links inside a BIO folder are not followed
    except OSError:
        return False


def is_bio_split(path: str | Path) -> bool:
    """True when ``path`` itself holds seq.in, seq.out and label (regular files)."""
    path = Path(path)
    return path.is_dir() and all(_is_regular(path / f) for f in BIO_FILES)


def split_of_folder(path: str | Path) -> str | None:
    """Canonical split of a split folder's name (``valid`` -> ``dev``), None if not a split name."""
    name = Path(path).name.lower()
    return next((split for split, names in BIO_SPLITS.items() if name in names), None)


def is_bio_folder(path: str | Path) -> bool:
    """True when ``path`` holds at least one split folder with seq.in, seq.out and label."""
    path = Path(path)
    return path.is_dir() and bool(_split_dirs(path))


def read_bio_split(split_dir: str | Path, split: str | None = None) -> list[NluExample]:
    """One split folder (seq.in / seq.out / label with equal line counts)."""
    split_dir = Path(split_dir)
    cols = {name: _read_text_lines(split_dir / name) for name in BIO_FILES}
    counts = {name: len(lines) for name, lines in cols.items()}
    if len(set(counts.values())) != 1:
        detail = ", ".join(f"{n}={c}" for n, c in counts.items())
        raise NluDataError(f"{split_dir}: line counts differ ({detail})")
    examples = []
    for i, (tokens, tags, label) in enumerate(zip(*cols.values()), start=1):
        where = f"{split_dir / 'seq.in'}:{i}"
        ex = NluExample(
            text=" ".join(tokens.split()), intent=label.strip(), tags=tuple(tags.split()), split=split
        )
        validate_example(ex, where)
        examples.append(ex)
    return examples


def read_bio_folder(path: str | Path) -> list[NluExample]:
    """All splits of a BIO folder (train, dev or valid, test) with ``split`` set.

    ATIS multi-intent labels such as ``atis_flight#atis_airfare`` are kept as one label string.
    """
    path = Path(path)
    dirs = _split_dirs(path)
    if not dirs:
        raise NluDataError(
            f"{path}: not a BIO folder (expected train/, dev/ or valid/, test/ with "
            f"{', '.join(BIO_FILES)})"
        )
    examples: list[NluExample] = []
    for split, d in dirs:
        examples.extend(read_bio_split(d, split))
    return examples


def read_bio_source(path: str | Path) -> list[NluExample]:
    """A BIO benchmark folder (train/ dev/ test/) or a lone split folder, whichever ``path`` is."""
    path = Path(path)
    if is_bio_split(path) and not _split_dirs(path):
        return read_bio_split(path, split_of_folder(path))
    return read_bio_folder(path)


def read_nlu_path(path: str | Path) -> list[NluExample]:
    """A JSONL file, a BIO folder or a BIO split folder, whichever ``path`` is."""
    path = Path(path)
    if path.is_dir():
        return read_bio_source(path)
    if path.suffix.lower() in {".jsonl", ".json"}:
        return read_jsonl(path)
    raise NluDataError(f"{path}: neither a .jsonl file nor a BIO folder")


def write_jsonl(examples: Iterable[NluExample], path: str | Path) -> int:
    """Write examples as compact UTF-8 JSONL (``split`` only when set); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for ex in examples:
            fh.write(json.dumps(ex.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n")
            n += 1
    return n


def write_bio_folder(splits: dict[str, Sequence[NluExample]], path: str | Path) -> None:
    """Write ``{split: examples}`` as a BIO folder (``path/<split>/seq.in|seq.out|label``)."""
    path = Path(path)
    for split, examples in splits.items():
        d = path / split
        d.mkdir(parents=True, exist_ok=True)
        with (d / "seq.in").open("w", encoding="utf-8", newline="\n") as f_in, (
            d / "seq.out"
        ).open("w", encoding="utf-8", newline="\n") as f_out, (d / "label").open(
            "w", encoding="utf-8", newline="\n"
        ) as f_lab:
            for ex in examples:
                f_in.write(" ".join(ex.tokens) + "\n")
                f_out.write(" ".join(ex.tags) + "\n")
                f_lab.write(ex.intent + "\n")


def spans_from_tags(tokens: Sequence[str], tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Slot spans as ``(type, first token, end token exclusive)``.

    Lenient on purpose (model output may be ill-formed): an ``I-X`` that does not continue
    an ``X`` span starts a new span, like seqeval's default mode.
    """
    if len(tokens) != len(tags):
        raise ValueError(f"{len(tokens)} tokens but {len(tags)} tags")
    spans: list[tuple[str, int, int]] = []
    cur_type: str | None = None
    start = 0
    for i, tag in enumerate(tags):
        prefix, _, typ = tag.partition("-")
        continues = prefix == "I" and cur_type == typ
        if cur_type is not None and not continues:
            spans.append((cur_type, start, i))
            cur_type = None
        if prefix in ("B", "I") and typ and not continues:
            cur_type, start = typ, i
    if cur_type is not None:
        spans.append((cur_type, start, len(tags)))
    return spans


def repair_bio(tags: Sequence[str]) -> list[str]:
    """Turn an ``I-X`` that does not continue an ``X`` span into ``B-X`` (valid BIO out)."""
    out: list[str] = []
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


def char_offsets(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character offsets of the tokens of ``text.split()``, in order."""
    offsets = []
    start = None
    for i, ch in enumerate(text):
        if ch.isspace():
            if start is not None:
                offsets.append((start, i))
                start = None
        elif start is None:
            start = i
    if start is not None:
        offsets.append((start, len(text)))
    return offsets

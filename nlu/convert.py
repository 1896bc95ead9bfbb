"""Public intent datasets to Rasa NLU YAML, so they train and evaluate like our own data.

- CLINC150 (``data_full.json`` and its siblings): ``{"train": [[text, intent], ...], "oos_train": ...}``;
  its out-of-scope label ``oos`` becomes our ``out_of_scope`` intent, and a split includes its
  ``oos_<split>`` examples.
- Banking77 (``train.csv`` / ``test.csv``: ``text,category``).
- HWU64 and SNIPS in the few-shot repository's layout: a directory with ``seq.in`` (one
  utterance per line) and ``label``; when ``seq.out`` (BIO slot tags) is there too, the slots
  become Rasa entity annotations.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

FORMATS = ("clinc150", "banking77", "seq")
CLINC_OOS = "oos"
OUT_OF_SCOPE = "out_of_scope"
_RASA_SPECIAL = re.compile(r"[\[\]{}()]")  # would read as entity annotations in Rasa YAML


def read_clinc150(path: Path, split: str) -> list[tuple[str, str]]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if split not in data:
        raise ValueError(f"{path} has no split {split!r}; it has {', '.join(sorted(data))}")
    rows = list(data[split]) + list(data.get(f"oos_{split}", []))
    return [(text, OUT_OF_SCOPE if label == CLINC_OOS else label) for text, label in rows]


def read_banking77(path: Path) -> list[tuple[str, str]]:
    with Path(path).open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"text", "category"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: expected columns text,category; missing {', '.join(sorted(missing))}")
        return [(row["text"], row["category"]) for row in reader]


def read_seq(directory: Path) -> list[tuple[str, str]]:
    """``seq.in`` + ``label`` (+ optional ``seq.out``): annotated text and its intent."""
    directory = Path(directory)
    texts = (directory / "seq.in").read_text(encoding="utf-8").splitlines()
    labels = (directory / "label").read_text(encoding="utf-8").splitlines()
    if len(texts) != len(labels):
        raise ValueError(f"{directory}: seq.in has {len(texts)} lines but label has {len(labels)}")
    tags_path = directory / "seq.out"
    tags = tags_path.read_text(encoding="utf-8").splitlines() if tags_path.exists() else [None] * len(texts)
    if len(tags) != len(texts):
        raise ValueError(f"{directory}: seq.out has {len(tags)} lines but seq.in has {len(texts)}")
    return [(_annotate(text, tag_line) if tag_line else _escape(text), label)
            for text, label, tag_line in zip(texts, labels, tags)]


def _escape(text: str) -> str:
    return _RASA_SPECIAL.sub(" ", " ".join(text.split()))


def _annotate(text: str, tag_line: str) -> str:
    """Words + BIO tags -> ``play [madonna](artist) songs``."""
    words, tags = text.split(), tag_line.split()
    if len(words) != len(tags):
        return _escape(text)
    out: list[str] = []
    span: list[str] = []
    entity = ""

    def close() -> None:
        nonlocal span, entity
        if span:
            out.append(f"[{' '.join(span)}]({entity})")
        span, entity = [], ""

    for word, tag in zip(words, tags):
        word = _escape(word).strip() or "-"
        if tag.startswith("B-") or (tag.startswith("I-") and tag[2:] != entity):
            close()
            span, entity = [word], tag[2:]
        elif tag.startswith("I-"):
            span.append(word)
        else:
            close()
            out.append(word)
    close()
    return " ".join(out)


def read(fmt: str, path: Path, split: str = "train") -> list[tuple[str, str]]:
    if fmt == "clinc150":
        return read_clinc150(path, split)
    if fmt == "banking77":
        return read_banking77(path)
    if fmt == "seq":
        return read_seq(path)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def to_rasa_yaml(rows: Iterable[tuple[str, str]]) -> str:
    """Rasa 3 NLU YAML, intents in first-seen order, one example per line."""
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, intent in rows:
        line = " ".join(str(text).split())  # block scalars keep everything but newlines
        if line:
            by_intent[intent].append(line)
    parts = ['version: "3.1"', "nlu:"]
    for intent, lines in by_intent.items():
        parts.append(f"- intent: {json.dumps(intent)}")
        parts.append("  examples: |")
        parts += [f"    - {line}" for line in lines]
    return "\n".join(parts) + "\n"


def convert(fmt: str, path: Path, out: Path, split: str = "train") -> int:
    rows = read(fmt, path, split)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_rasa_yaml(rows), encoding="utf-8")
    return len(rows)

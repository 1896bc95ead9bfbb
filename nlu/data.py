"""Reading Rasa-format NLU training data (YAML): intents, annotated entities, lookup tables."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nlu.types import TrainingExample

# [text](entity), [text]{"entity": "x", "value": "y"}, [text](entity:value)
_ANNOTATION = re.compile(r"\[(?P<text>[^\]]+)\](?:\((?P<short>[^)]+)\)|(?P<json>\{[^}]+\}))")


@dataclass
class NluData:
    examples: list[TrainingExample] = field(default_factory=list)
    lookups: dict[str, list[str]] = field(default_factory=dict)
    sha256: str = ""

    @property
    def intents(self) -> list[str]:
        return sorted({e.intent for e in self.examples})


def yaml_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".yml", ".yaml"))
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"NLU data {path} does not exist; pass a Rasa YAML file or a directory of them")
    return files


def load(paths: list[Path]) -> NluData:
    """Load every Rasa NLU YAML file under ``paths``; files without an ``nlu:`` key are skipped."""
    data = NluData()
    digest = hashlib.sha256()
    for file in yaml_files(paths):
        raw = file.read_bytes()
        doc = yaml.safe_load(raw) or {}
        if not isinstance(doc, dict) or "nlu" not in doc:
            continue
        digest.update(file.name.encode() + b"\0" + raw)
        for block in doc["nlu"] or []:
            examples = _example_lines(block.get("examples", ""), file)
            if "intent" in block:
                data.examples += [parse_example(line, block["intent"]) for line in examples]
            elif "lookup" in block:
                data.lookups.setdefault(block["lookup"], []).extend(examples)
            elif "synonym" in block:
                data.lookups.setdefault(f"synonym:{block['synonym']}", []).extend(examples)
    if not data.examples and not data.lookups:
        raise ValueError(f"no NLU examples found in {', '.join(map(str, paths))}")
    data.sha256 = digest.hexdigest()
    return data


def _example_lines(examples: str | list, file: Path) -> list[str]:
    if isinstance(examples, list):  # the Rasa 3 'metadata' form: [{text: ...}]
        return [str(item["text"] if isinstance(item, dict) else item) for item in examples]
    lines = []
    for line in str(examples).splitlines():
        line = line.strip()
        if line.startswith("- "):
            lines.append(line[2:].strip())
        elif line:
            raise ValueError(f"{file}: example line {line!r} must start with '- '")
    return lines


def parse_example(line: str, intent: str) -> TrainingExample:
    """Strip Rasa entity annotations from an example, keeping their offsets in the plain text."""
    text, entities, cursor = [], [], 0
    offset = 0
    for match in _ANNOTATION.finditer(line):
        text.append(line[cursor:match.start()])
        offset += match.start() - cursor
        surface = match.group("text")
        if match.group("json"):
            spec = json.loads(match.group("json"))
            name, value = spec.get("entity", ""), spec.get("value", surface)
        else:
            name, _, value = match.group("short").partition(":")
            value = value or surface
        entities.append((name, value, offset, offset + len(surface)))
        text.append(surface)
        offset += len(surface)
        cursor = match.end()
    text.append(line[cursor:])
    return TrainingExample(text="".join(text), intent=intent, entities=tuple(entities))

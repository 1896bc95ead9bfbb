"""The FAQ as the merchant curates it: validated entries, versions, publishing, and the change log.

Every write goes through this module, so each one leaves a version row (history, diff, restore) and a
``kb_changes`` row (the index follows those). Functions take a SQLAlchemy session and do not commit;
the caller owns the transaction, so an import of 500 rows is all or nothing.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.orm import Session

from assistant.commerce.models import utcnow
from knowledge_base.models import STATUSES, FaqEntry, FaqVersion, KbChange

DEMO_FAQ_PATH = Path(__file__).with_name("data") / "demo_faq.yml"
CONTENT_FIELDS = ("key", "category", "tags", "questions_zh", "questions_en", "answer_zh", "answer_en")
KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_\-]{1,47}$")
# what a draft made from an unanswered question holds until the merchant writes the answer
PLACEHOLDER = {"zh": "（请填写答案）", "en": "(write the answer here)"}
SLOT_SEGMENT = re.compile(r"\[\[(.*?)\]\]", re.S)


class FaqError(Exception):
    """A request the FAQ cannot carry out; ``code`` is stable for API clients."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _clean_list(values: list[str]) -> list[str]:
    seen: list[str] = []
    for value in values:
        value = " ".join(str(value).split())
        if value and value not in seen:
            seen.append(value)
    return seen


class FaqInput(BaseModel):
    """One FAQ entry as an editor or an import file gives it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    key: str = Field(min_length=2, max_length=48)
    category: str = Field(min_length=1, max_length=32)
    tags: list[str] = Field(default_factory=list, max_length=20)
    questions_zh: list[str] = Field(default_factory=list, max_length=50)
    questions_en: list[str] = Field(default_factory=list, max_length=50)
    answer_zh: str = Field("", max_length=4000)
    answer_en: str = Field("", max_length=4000)
    status: str = "draft"

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not KEY_PATTERN.match(value):
            raise ValueError("use 2-48 lowercase letters, digits, '_' or '-', starting with a letter or digit")
        return value

    @field_validator("status")
    @classmethod
    def _status(cls, value: str) -> str:
        if value not in STATUSES:
            raise ValueError(f"must be one of {', '.join(STATUSES)}")
        return value

    @field_validator("tags", "questions_zh", "questions_en", mode="before")
    @classmethod
    def _numbers_as_text(cls, values: Any) -> Any:
        if isinstance(values, list):  # a YAML or spreadsheet cell may read 618 as a number
            return [str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for v in values]
        return values

    @field_validator("tags", "questions_zh", "questions_en")
    @classmethod
    def _items(cls, values: list[str]) -> list[str]:
        values = _clean_list(values)
        if any(len(v) > 300 for v in values):
            raise ValueError("each item must be at most 300 characters")
        return values

    @model_validator(mode="after")
    def _languages(self) -> FaqInput:
        if not self.questions_zh and not self.questions_en:
            raise ValueError("give at least one question in Chinese or English")
        for lang in ("zh", "en"):
            questions, answer = getattr(self, f"questions_{lang}"), getattr(self, f"answer_{lang}")
            if questions and not answer:
                raise ValueError(f"answer_{lang} is empty while questions_{lang} is given")
            if answer and not questions:
                raise ValueError(f"questions_{lang} is empty while answer_{lang} is given")
            if answer.count("[[") != answer.count("]]"):
                raise ValueError(f"answer_{lang} has an unclosed [[ ... ]] segment")
        return self


def snapshot(entry: FaqEntry) -> dict[str, Any]:
    data = {name: getattr(entry, name) for name in CONTENT_FIELDS}
    data["status"] = entry.status
    return data


def to_dict(entry: FaqEntry) -> dict[str, Any]:
    return {"id": entry.id, **snapshot(entry), "version": entry.version, "author": entry.author,
            "created_at": entry.created_at.isoformat(), "updated_at": entry.updated_at.isoformat(),
            "published_at": entry.published_at.isoformat() if entry.published_at else None}


def record_change(session: Session, kind: str, ref_id: int | None) -> None:
    session.add(KbChange(kind=kind, ref_id=ref_id, created_at=utcnow()))


def _version(session: Session, entry: FaqEntry, action: str, author: str) -> None:
    session.flush()
    session.add(FaqVersion(faq_id=entry.id, version=entry.version, action=action, snapshot=snapshot(entry),
                           author=author, created_at=entry.updated_at))
    record_change(session, "faq", entry.id)


def get(session: Session, faq_id: int) -> FaqEntry:
    entry = session.get(FaqEntry, faq_id)
    if entry is None:
        raise FaqError("not_found", f"no FAQ entry with id {faq_id}")
    return entry


def by_key(session: Session, key: str) -> FaqEntry | None:
    return session.scalar(select(FaqEntry).where(FaqEntry.key == key))


def _check_publishable(answers: dict[str, str], status: str) -> None:
    if status != "published":
        return
    for lang, placeholder in PLACEHOLDER.items():
        if placeholder in (answers.get(lang) or ""):
            raise FaqError("invalid_status", f"answer_{lang} still says {placeholder!r}: write the answer "
                                             "before publishing")


def create(session: Session, data: FaqInput, author: str, action: str = "create") -> FaqEntry:
    _check_publishable({"zh": data.answer_zh, "en": data.answer_en}, data.status)
    if by_key(session, data.key) is not None:
        raise FaqError("duplicate_key", f"an FAQ entry with key {data.key!r} exists already")
    now = utcnow()
    entry = FaqEntry(**data.model_dump(), version=1, author=author, created_at=now, updated_at=now,
                     published_at=now if data.status == "published" else None)
    session.add(entry)
    _version(session, entry, action, author)
    return entry


def update(session: Session, faq_id: int, data: FaqInput, author: str, action: str = "edit",
           expected_version: int | None = None) -> FaqEntry:
    """Replace the content of an entry. ``expected_version`` guards against overwriting a colleague's
    edit made since the editor loaded the entry."""
    entry = get(session, faq_id)
    _check_publishable({"zh": data.answer_zh, "en": data.answer_en}, data.status)
    if expected_version is not None and expected_version != entry.version:
        raise FaqError("conflict", f"entry {faq_id} is at version {entry.version}, not {expected_version}; "
                                   "reload it and apply your change again")
    other = by_key(session, data.key)
    if other is not None and other.id != entry.id:
        raise FaqError("duplicate_key", f"an FAQ entry with key {data.key!r} exists already")
    new = data.model_dump()
    if all(getattr(entry, name) == new[name] for name in (*CONTENT_FIELDS, "status")):
        return entry  # nothing changed: no new version
    was_published = entry.status == "published"
    for name, value in new.items():
        setattr(entry, name, value)
    entry.version += 1
    entry.author = author
    entry.updated_at = utcnow()
    if entry.status == "published" and not was_published:
        entry.published_at = entry.updated_at
    _version(session, entry, action, author)
    return entry


def set_status(session: Session, faq_id: int, status: str, author: str) -> FaqEntry:
    entry = get(session, faq_id)
    if status not in STATUSES:
        raise FaqError("invalid_status", f"status must be one of {', '.join(STATUSES)}")
    if entry.status == status:
        return entry
    _check_publishable({"zh": entry.answer_zh, "en": entry.answer_en}, status)
    entry.status = status
    entry.version += 1
    entry.author = author
    entry.updated_at = utcnow()
    if status == "published":
        entry.published_at = entry.updated_at
    _version(session, entry, "publish" if status == "published" else "unpublish", author)
    return entry


def restore(session: Session, faq_id: int, version: int, author: str) -> FaqEntry:
    """Bring back the content of an earlier version as a new version (history is never rewritten)."""
    entry = get(session, faq_id)
    old = session.scalar(select(FaqVersion).where(FaqVersion.faq_id == faq_id, FaqVersion.version == version))
    if old is None:
        raise FaqError("not_found", f"FAQ entry {faq_id} has no version {version}")
    data = FaqInput(**{**old.snapshot, "status": entry.status})
    return update(session, faq_id, data, author, action="restore")


def delete(session: Session, faq_id: int) -> None:
    entry = get(session, faq_id)
    session.delete(entry)
    record_change(session, "faq", faq_id)


def versions(session: Session, faq_id: int) -> list[FaqVersion]:
    get(session, faq_id)
    return list(session.scalars(select(FaqVersion).where(FaqVersion.faq_id == faq_id)
                                .order_by(FaqVersion.version)))


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[str]]:
    """Per changed field, a unified diff of the two snapshots (lists compare item by item)."""
    changes: dict[str, list[str]] = {}
    for name in (*CONTENT_FIELDS, "status"):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        lines_a = [str(x) for x in a] if isinstance(a, list) else str(a or "").splitlines()
        lines_b = [str(x) for x in b] if isinstance(b, list) else str(b or "").splitlines()
        changes[name] = [line for line in difflib.unified_diff(lines_a, lines_b, lineterm="", n=2)][2:]
    return changes


def search(session: Session, text: str = "", language: str | None = None, category: str | None = None,
           status: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[FaqEntry], int]:
    """The curation list: substring search over keys, questions, answers and tags, with filters."""
    query = select(FaqEntry)
    if text:
        like = f"%{text.strip()}%"
        columns = [FaqEntry.key, FaqEntry.tags, FaqEntry.category]
        if language in (None, "zh"):
            columns += [FaqEntry.questions_zh, FaqEntry.answer_zh]
        if language in (None, "en"):
            columns += [FaqEntry.questions_en, FaqEntry.answer_en]
        query = query.where(or_(*[cast(c, String).ilike(like) for c in columns]))
    if language == "zh":
        query = query.where(FaqEntry.answer_zh != "")
    elif language == "en":
        query = query.where(FaqEntry.answer_en != "")
    if category:
        query = query.where(FaqEntry.category == category)
    if status:
        query = query.where(FaqEntry.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(FaqEntry.updated_at.desc(), FaqEntry.id.desc())
                           .limit(limit).offset(offset))
    return list(rows), total


def published(session: Session) -> list[FaqEntry]:
    return list(session.scalars(select(FaqEntry).where(FaqEntry.status == "published").order_by(FaqEntry.id)))


def load_yaml(path: Path = DEMO_FAQ_PATH) -> list[FaqInput]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [FaqInput(**{"status": "published", **entry}) for entry in data["entries"]]


def seed_demo(session: Session) -> int:
    """The demo shop's FAQ, published, as version 1 of each entry (skips keys that exist)."""
    n = 0
    for data in load_yaml():
        if by_key(session, data.key) is None:
            create(session, data, author="demo", action="import")
            n += 1
    return n


def fill_slots(template: str, slots: dict[str, str]) -> str:
    """Keep each ``[[ ... {slot} ... ]]`` segment whose slots are all known, filled in; drop the rest."""
    def segment(match: re.Match[str]) -> str:
        names = re.findall(r"\{(\w+)\}", match.group(1))
        if all(slots.get(name) for name in names):
            return re.sub(r"\{(\w+)\}", lambda m: str(slots[m.group(1)]), match.group(1))
        return ""
    return SLOT_SEGMENT.sub(segment, template).strip()


def plain(template: str) -> str:
    """The answer without any shopper-specific segment: what the index and grounding check see."""
    return fill_slots(template, {})

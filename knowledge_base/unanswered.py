"""The queue of questions the bot could not answer, for the merchant to turn into FAQ entries.

Questions are grouped by meaning: a new question joins an open group of the same language when it is
the same after normalisation, when their embeddings are close (the packaged MiniLM for English at
cosine >= 0.85, the packaged multilingual-e5-small for Chinese at 0.94: ``embeddings.grouping_embedders``
and each embedder's ``same_meaning_cosine``), or when their words overlap strongly (BM25 terms, Jaccard >= 0.6).
Personal data is masked before anything is stored.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from assistant.commerce.models import utcnow
from assistant.privacy import mask
from knowledge_base import faq
from knowledge_base.lexical import tokens
from knowledge_base.models import UnansweredQuestion
from nlu.text import normalize

SAME_MEANING_COSINE = 0.85
SAME_WORDS_JACCARD = 0.6
MAX_EXAMPLES = 10
REASONS = ("fallback", "low_confidence")


def _key(text: str) -> str:
    return "".join(c for c in normalize(text) if c.isalnum())


def _jaccard(a: str, b: str) -> float:
    ta, tb = set(tokens(a)), set(tokens(b))
    return len(ta & tb) / len(ta | tb) if ta and tb else 0.0


def record(session: Session, text: str, language: str, reason: str = "low_confidence", embedder: Any = None,
           now: dt.datetime | None = None) -> UnansweredQuestion | None:
    """Add ``text`` to its group (creating one if needed); returns the group, or None for empty text."""
    text = mask(" ".join(text.split()))[:500]
    if not _key(text):
        return None
    now = now or utcnow()
    reason = reason if reason in REASONS else "low_confidence"
    vector = None
    if embedder is not None and embedder.covers(text):
        vector = embedder.encode_one(text)
    groups = list(session.scalars(select(UnansweredQuestion).where(
        UnansweredQuestion.status == "open", UnansweredQuestion.language == language)))
    best, best_score = None, 0.0
    for group in groups:
        variants = group.examples or [group.text]
        if any(_key(v) == _key(text) for v in variants):
            best, best_score = group, 2.0
            break
        score = max(_jaccard(text, v) for v in variants) / SAME_WORDS_JACCARD
        if vector is not None and group.embedding:
            stored = np.frombuffer(group.embedding, dtype=np.float32)
            if stored.shape == vector.shape:
                score = max(score, float(stored @ vector) / getattr(embedder, "same_meaning_cosine",
                                                                    SAME_MEANING_COSINE))
        if score >= 1.0 and score > best_score:
            best, best_score = group, score
    if best is None:
        best = UnansweredQuestion(text=text, language=language, count=1, examples=[text], reason=reason,
                                  status="open", first_seen=now, last_seen=now,
                                  embedding=vector.astype(np.float32).tobytes() if vector is not None else None)
        session.add(best)
        return best
    best.count += 1
    best.last_seen = now
    if reason == "fallback":
        best.reason = "fallback"
    if text not in best.examples and len(best.examples) < MAX_EXAMPLES:
        best.examples = [*best.examples, text]
    return best


def to_dict(group: UnansweredQuestion) -> dict[str, Any]:
    return {"id": group.id, "text": group.text, "language": group.language, "count": group.count,
            "examples": group.examples, "reason": group.reason, "status": group.status, "faq_id": group.faq_id,
            "first_seen": group.first_seen.isoformat(), "last_seen": group.last_seen.isoformat()}


def listing(session: Session, status: str = "open", language: str | None = None, limit: int = 100,
            offset: int = 0) -> list[UnansweredQuestion]:
    query = select(UnansweredQuestion).where(UnansweredQuestion.status == status)
    if language:
        query = query.where(UnansweredQuestion.language == language)
    query = query.order_by(UnansweredQuestion.count.desc(), UnansweredQuestion.last_seen.desc())
    return list(session.scalars(query.limit(limit).offset(offset)))


def _group(session: Session, group_id: int) -> UnansweredQuestion:
    group = session.get(UnansweredQuestion, group_id)
    if group is None:
        raise faq.FaqError("not_found", f"no unanswered question group with id {group_id}")
    return group


def dismiss(session: Session, group_id: int) -> UnansweredQuestion:
    group = _group(session, group_id)
    group.status = "dismissed"
    return group


def to_draft(session: Session, group_id: int, author: str, key: str | None = None,
             category: str = "uncategorized") -> faq.FaqEntry:
    """A draft FAQ entry whose questions are the group's variants; the merchant writes the answer."""
    group = _group(session, group_id)
    if group.status == "converted" and group.faq_id:
        return faq.get(session, group.faq_id)
    key = key or f"draft_{group.id}"
    placeholder = faq.PLACEHOLDER[group.language]
    data = faq.FaqInput(key=key, category=category, status="draft",
                        **{f"questions_{group.language}": group.examples or [group.text],
                           f"answer_{group.language}": placeholder})
    entry = faq.create(session, data, author=author, action="create")
    group.status = "converted"
    group.faq_id = entry.id
    return entry

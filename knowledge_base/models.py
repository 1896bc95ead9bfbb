"""Tables of the knowledge base. SQL is the source of truth; Chroma is only an index of it.

``kb_changes`` is an append-only log: every write to an FAQ entry or a policy document adds a row in
the same transaction, and the index follows the log (``knowledge_base.sync``), so whichever process
edits the FAQ, the searching process sees the edit within its polling interval.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from assistant.commerce.models import Base, utcnow

STATUSES = ("draft", "published")


class FaqEntry(Base):
    """A curated answer with question variants in both languages."""

    __tablename__ = "faq_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(48), unique=True)
    category: Mapped[str] = mapped_column(String(32))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    questions_zh: Mapped[list[str]] = mapped_column(JSON)
    questions_en: Mapped[list[str]] = mapped_column(JSON)
    answer_zh: Mapped[str] = mapped_column(Text)
    answer_en: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    version: Mapped[int] = mapped_column(Integer, default=1)
    author: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    versions: Mapped[list[FaqVersion]] = relationship(back_populates="entry", cascade="all, delete-orphan",
                                                       order_by="FaqVersion.version")


class FaqVersion(Base):
    """What an entry looked like after each change: the history behind diff and restore."""

    __tablename__ = "faq_versions"
    __table_args__ = (UniqueConstraint("faq_id", "version", name="uq_faq_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    faq_id: Mapped[int] = mapped_column(ForeignKey("faq_entries.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    # create / edit / publish / unpublish / restore / import
    action: Mapped[str] = mapped_column(String(16))
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    author: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    entry: Mapped[FaqEntry] = relationship(back_populates="versions")


class KbChange(Base):
    """One row per write; the index applies rows with an id above the last one it applied."""

    __tablename__ = "kb_changes"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    # faq / document / reset
    kind: Mapped[str] = mapped_column(String(16))
    ref_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class KbDocument(Base):
    """A policy document (Markdown, HTML or PDF text) split into chunks at its headings."""

    __tablename__ = "kb_documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(255), unique=True)
    title: Mapped[str] = mapped_column(String(255))
    language: Mapped[str] = mapped_column(String(8))
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="published")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    chunks: Mapped[list[KbChunk]] = relationship(back_populates="document", cascade="all, delete-orphan",
                                                 order_by="KbChunk.position")


class KbChunk(Base):
    __tablename__ = "kb_chunks"

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("kb_documents.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    heading: Mapped[str] = mapped_column(String(255))
    anchor: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)

    document: Mapped[KbDocument] = relationship(back_populates="chunks")


class UnansweredQuestion(Base):
    """A group of shopper questions the bot could not answer, merged by meaning."""

    __tablename__ = "unanswered_questions"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)  # the first question of the group, personal data masked
    language: Mapped[str] = mapped_column(String(8))
    count: Mapped[int] = mapped_column(Integer, default=1)
    examples: Mapped[list[str]] = mapped_column(JSON, default=list)  # up to 10 distinct variants, masked
    # fallback (the intent model gave up) / low_confidence (retrieval found nothing good enough)
    reason: Mapped[str] = mapped_column(String(16), default="low_confidence")
    # open / dismissed / converted
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    faq_id: Mapped[int | None] = mapped_column(ForeignKey("faq_entries.id", ondelete="SET NULL"))
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)  # float32 vector of the first question
    first_seen: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

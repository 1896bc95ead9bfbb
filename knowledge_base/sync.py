"""Keep the search index equal to what SQL says is published.

The index process polls ``kb_changes`` (a single indexed query, every 0.2 s by default) and applies new
rows: the entry or document they name is re-read from SQL and re-indexed, or removed when it is gone
or unpublished. ``reset`` rows, and a change log that went backwards (a restored database), rebuild
everything; a rebuild re-embeds only targets whose content changed since Chroma last saw them.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from knowledge_base.faq import published
from knowledge_base.index import KnowledgeIndex, Target
from knowledge_base.models import FaqEntry, KbChange, KbChunk, KbDocument

log = logging.getLogger(__name__)


def faq_target(entry: FaqEntry) -> Target:
    questions = {lang: list(getattr(entry, f"questions_{lang}")) for lang in ("zh", "en")
                 if getattr(entry, f"questions_{lang}")}
    answers = {lang: getattr(entry, f"answer_{lang}") for lang in ("zh", "en") if getattr(entry, f"answer_{lang}")}
    return Target(id=f"faq:{entry.id}", kind="faq", key=entry.key, category=entry.category, questions=questions,
                  answers=answers, faq_id=entry.id, tags=list(entry.tags or []))


def chunk_targets(document: KbDocument) -> list[Target]:
    return [Target(id=f"doc:{chunk.id}", kind="doc", key=f"{document.source}#{chunk.anchor}", category="document",
                   questions={document.language: [chunk.heading]}, answers={document.language: chunk.text},
                   source=f"{document.source}#{chunk.anchor}", document_id=document.id)
            for chunk in document.chunks]


def all_targets(session: Session) -> list[Target]:
    targets = [faq_target(entry) for entry in published(session)]
    for document in session.scalars(select(KbDocument).where(KbDocument.status == "published")):
        targets.extend(chunk_targets(document))
    return targets


class IndexSync:
    def __init__(self, index: KnowledgeIndex, sessions: sessionmaker[Session]):
        self.index = index
        self.sessions = sessions
        self.last_change = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def rebuild(self, force: bool = False) -> dict[str, int]:
        """Make the index equal to SQL. ``force`` drops the Chroma collection and re-embeds everything."""
        with self.sessions() as session:
            last = session.scalar(select(func.max(KbChange.id))) or 0
            targets = all_targets(session)
        if force:
            self.index.reset()
        for name in self.index.drop_other_collections():
            log.info("dropped Chroma collection %s: its embedding model is no longer configured", name)
        stored = self.index.stored_digests()
        with self.index.lock:
            embedded = self.index.upsert(targets, stored)
            live = {t.id for t in targets}
            stale = [t for t in set(stored) | set(self.index.targets) if t not in live]
            self.index.remove(stale)
        self.last_change = last
        log.info("knowledge base indexed: %d targets (%d embedded, %d removed)", len(targets), embedded, len(stale))
        return {"targets": len(targets), "embedded": embedded, "removed": len(stale)}

    def catch_up(self) -> int:
        """Apply the changes logged since the last call; returns how many were applied."""
        with self.sessions() as session:
            newest = session.scalar(select(func.max(KbChange.id))) or 0
            if newest == self.last_change:
                return 0
            if newest < self.last_change:  # the log went backwards: another database
                log.warning("knowledge-base change log went back from %d to %d; rebuilding",
                            self.last_change, newest)
                self.rebuild()
                return 1
            changes = list(session.scalars(select(KbChange).where(KbChange.id > self.last_change)
                                           .order_by(KbChange.id)))
            if any(c.kind == "reset" for c in changes):
                self.rebuild()
                return len(changes)
            faq_ids = {c.ref_id for c in changes if c.kind == "faq" and c.ref_id is not None}
            doc_ids = {c.ref_id for c in changes if c.kind == "document" and c.ref_id is not None}
            upserts: list[Target] = []
            removals: list[str] = []
            for faq_id in faq_ids:
                entry = session.get(FaqEntry, faq_id)
                if entry is not None and entry.status == "published":
                    upserts.append(faq_target(entry))
                else:
                    removals.append(f"faq:{faq_id}")
            for doc_id in doc_ids:
                removals.extend(t.id for t in list(self.index.targets.values()) if t.document_id == doc_id)
                document = session.get(KbDocument, doc_id)
                if document is not None and document.status == "published":
                    upserts.extend(chunk_targets(document))
            with self.index.lock:
                upserted = {t.id for t in upserts}
                removals = [r for r in removals if r not in upserted]
                if upserts:
                    self.index.upsert(upserts)
                self.index.remove(removals)
            self.last_change = changes[-1].id if changes else newest
            return len(changes)

    def start(self, interval: float = 0.2) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.catch_up()
                except Exception:  # the database may be briefly unavailable; try again next tick
                    log.exception("knowledge-base index sync failed; retrying")
        self._thread = threading.Thread(target=loop, name="kb-index-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)


def chunk_count(session: Session) -> int:
    return session.scalar(select(func.count(KbChunk.id))) or 0

"""The knowledge base as one object: index, sync with SQL, confidence, responder, unanswered queue."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from assistant.commerce.db import session_factory
from assistant.settings import Settings
from knowledge_base import unanswered
from knowledge_base.confidence import ConfidenceModel
from knowledge_base.embeddings import grouping_embedders, make_embedders
from knowledge_base.index import KnowledgeIndex, SearchResult, chroma_client
from knowledge_base.responder import Responder, make_responder, respond
from knowledge_base.sync import IndexSync
from knowledge_base.tuning import chinese_model, english_model
from nlu.text import detect_language

log = logging.getLogger(__name__)

# without a calibration, the fused score's share of a perfect score (both rankings put the target
# first) must reach this
UNCALIBRATED_THRESHOLD = 0.8


def responder_from(settings: Settings) -> Responder:
    model = settings.kb_t5_model if settings.kb_responder == "t5" else settings.llm_model
    return make_responder(settings.kb_responder, model=model, base_url=settings.llm_base_url,
                          api_key_env=settings.llm_api_key_env, timeout=settings.llm_timeout_s)


class KnowledgeBase:
    def __init__(self, settings: Settings, embedder: Any = None, client: Any = None,
                 responder: Responder | None = None, sessions: sessionmaker[Session] | None = None):
        self.settings = settings
        self.sessions = sessions or session_factory(settings.db_url)
        self.embedders = embedder or make_embedders(english_model(settings), chinese_model(settings),
                                                     onnx_dir=settings.kb_model_dir)
        self.index = KnowledgeIndex(self.embedders, client or chroma_client(settings.chroma_dir or settings.var_dir / "chroma", settings.chroma_url))
        self.embedders = self.index.embedders
        self.grouping = grouping_embedders(self.embedders, settings.kb_model_dir)  # unanswered questions
        model = ConfidenceModel.load(settings.kb_model_dir)
        if model and model.meta.get("embedding_model") != self.embedders.name:
            log.warning("the confidence model was calibrated for another embedding model; run `kefu kb calibrate`")
            model = None
        if model:
            model.attach(self.index)
        self.sync = IndexSync(self.index, self.sessions)
        self.responder = responder or responder_from(settings)

    def start(self, interval: float = 0.2) -> None:
        self.sync.rebuild()
        self.sync.start(interval)

    def stop(self) -> None:
        self.sync.stop()

    def language(self, text: str, language: str | None) -> str:
        return language if language in ("zh", "en") else detect_language(text) or "zh"

    def threshold(self, language: str, mode: str = "hybrid") -> float:
        if self.settings.kb_min_confidence is not None:
            return self.settings.kb_min_confidence
        if self.index.confidence is not None:
            return self.index.confidence.threshold(language, mode)
        return UNCALIBRATED_THRESHOLD

    def search(self, text: str, language: str | None = None, k: int = 5, mode: str = "hybrid") -> SearchResult:
        return self.index.search(text, self.language(text, language), k=k, mode=mode)

    def questions(self) -> list[dict[str, str]]:
        """Every published FAQ question variant, as indexed: what the NLU server matches word for word
        (``nlu.curated``)."""
        return [{"text": q, "language": lang, "key": target.key}
                for target in list(self.index.targets.values()) if target.kind == "faq"
                for lang, questions in target.questions.items() for q in questions]

    def policy_terms(self) -> list[str]:
        return sorted({tag for target in list(self.index.targets.values()) for tag in target.tags})

    def answer(self, text: str, language: str | None = None, slots: dict[str, str] | None = None,
               reason: str = "low_confidence", record: bool = True) -> dict[str, Any]:
        """The reply to a shopper's question, or ``answered: false`` (and the question queued)."""
        lang = self.language(text, language)
        result = self.index.search(text, lang, k=3)
        threshold = self.threshold(lang)
        base = {"language": lang, "confidence": round(result.confidence, 4), "threshold": round(threshold, 4),
                "passages": [p.to_dict() for p in result.passages]}
        if not result.passages or result.confidence < threshold:
            group_id = None
            if record:
                with self.sessions() as session:
                    group = unanswered.record(session, text, lang, reason, self.grouping.for_language(lang))
                    session.commit()
                    group_id = group.id if group else None
            return {**base, "answered": False, "unanswered_id": group_id}
        reply = respond(self.responder, text, lang, result.passages, slots or {}, self.policy_terms())
        return {**base, "answered": True, **reply.to_dict()}

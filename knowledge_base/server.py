"""The knowledge-base process: the one owner of the search index (an embedded Chroma must have one).

``POST /answer`` is what the dialog's action calls; ``POST /search`` serves the console's preview and
the evaluation; ``GET /questions`` lists the published FAQ questions for the NLU server (``since`` the
change it last saw: ``changed: false`` and no list when nothing changed); ``POST /sync`` applies
pending FAQ changes at once (the poller does it within 0.2 s anyway). Malformed requests get a 400
that says what is wrong; the index never sees them.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from assistant.settings import Settings
from knowledge_base.api import install_error_handlers
from knowledge_base.index import MODES
from knowledge_base.service import KnowledgeBase

log = logging.getLogger("kefu.kb")

MAX_QUESTION_CHARS = 2000


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    language: str | None = Field(None, pattern="^(zh|en)$")
    k: int = Field(5, ge=1, le=50)
    mode: str = Field("hybrid", pattern="^(" + "|".join(MODES) + ")$")


class AnswerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    language: str | None = Field(None, pattern="^(zh|en)$")
    slots: dict[str, str] = Field(default_factory=dict, max_length=32)
    reason: str = Field("low_confidence", pattern="^(fallback|low_confidence)$")
    record: bool = True


def create_app(settings: Settings, kb: KnowledgeBase | None = None) -> FastAPI:
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        knowledge = kb
        if knowledge is None:  # a knowledge base handed in (tests) is started and stopped by its owner
            knowledge = await to_thread.run_sync(KnowledgeBase, settings)
            await to_thread.run_sync(knowledge.start)
        state["kb"] = knowledge
        log.info("knowledge base ready: %d passages indexed, confidence %s", len(knowledge.index),
                 "calibrated" if knowledge.index.confidence else "not calibrated (run `kefu kb calibrate`)")
        yield
        if kb is None:
            knowledge.stop()

    app = FastAPI(title="kefu knowledge base", lifespan=lifespan)
    install_error_handlers(app)  # 400 {error: invalid_request, message, problems}

    @app.post("/search")
    async def search(request: Request) -> dict:
        body = SearchRequest.model_validate_json(await request.body())
        result = await to_thread.run_sync(lambda: state["kb"].search(body.text, body.language, body.k, body.mode))
        return {"language": result.language, "mode": result.mode, "confidence": round(result.confidence, 4),
                "threshold": round(state["kb"].threshold(result.language, body.mode), 4),
                "elapsed_ms": round(result.elapsed_ms, 2), "passages": [p.to_dict() for p in result.passages]}

    @app.post("/answer")
    async def answer(request: Request) -> dict:
        body = AnswerRequest.model_validate_json(await request.body())
        return await to_thread.run_sync(lambda: state["kb"].answer(body.text, body.language, body.slots,
                                                                   body.reason, body.record))

    @app.get("/questions")
    async def questions(since: int | None = None) -> dict:
        knowledge = state["kb"]
        last_change = knowledge.sync.last_change  # read first: a change applied meanwhile is listed again next time
        if since is not None and since == last_change:
            return {"last_change": last_change, "changed": False}
        return {"last_change": last_change, "changed": True, "questions": knowledge.questions()}

    @app.post("/sync")
    async def sync() -> dict:
        applied = await to_thread.run_sync(state["kb"].sync.catch_up)
        return {"applied": applied, "last_change": state["kb"].sync.last_change}

    @app.get("/health")
    async def health() -> dict:
        knowledge = state["kb"]
        return {"status": "ok", "passages": len(knowledge.index), "last_change": knowledge.sync.last_change,
                "embedding_model": knowledge.embedders.name, "responder": knowledge.responder.name,
                "calibrated": knowledge.index.confidence is not None}

    return app

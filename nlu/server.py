"""The NLU HTTP server Rasa calls through the ``nlu:`` endpoint (``POST /model/parse``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from nlu.classifier import IntentModel
from nlu.curated import CuratedQuestions, QuestionFeed
from nlu.parser import MessageParser, fallback_parse

log = logging.getLogger("kefu.nlu")

MAX_TEXT_CHARS = 10_000  # longer input is cut before classification (the gateway allows 2,000)


class ParseRequest(BaseModel):
    text: str
    message_id: str | None = None
    token: str | None = None


class BatchRequest(BaseModel):
    texts: list[str] = Field(max_length=512)


_EXPECTED = {"/model/parse": '{"text": "..."}', "/model/parse_batch": '{"texts": ["..."]}'}


async def _bad_request(request: Request, error: ValidationError) -> JSONResponse:
    """A malformed request (not JSON, not UTF-8, wrong types) gets a 400 that says what is wrong."""
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()[:3])
    expected = _EXPECTED.get(request.url.path, "JSON")
    return JSONResponse(status_code=400, content={
        "error": "invalid_request", "message": f"expected a UTF-8 JSON body like {expected} ({problems})"})


def create_app(model_dir: Path, threshold: float | None = None, questions_url: str | None = None,
               questions_interval: float = 0.5) -> FastAPI:
    """``questions_url``: the knowledge base's ``GET /questions``; messages that repeat a published FAQ
    question word for word then parse as ``faq`` (``nlu.curated``). None: the intent model alone."""
    state: dict[str, MessageParser] = {}
    curated = CuratedQuestions()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        state["parser"] = MessageParser(IntentModel.load(model_dir), threshold, curated)
        log.info("intent model loaded from %s (%d intents)", model_dir, len(state["parser"].model.labels))
        feed = None
        if questions_url and state["parser"].curated is not None:
            feed = asyncio.create_task(QuestionFeed(questions_url, curated, questions_interval).run())
        yield
        if feed is not None:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed

    app = FastAPI(title="kefu NLU", lifespan=lifespan)
    app.add_exception_handler(ValidationError, _bad_request)  # request bodies are validated in the routes

    @app.post("/model/parse")
    async def parse(request: Request) -> JSONResponse:
        body = ParseRequest.model_validate_json(await request.body())
        reference = body.message_id or uuid.uuid4().hex[:12]
        try:
            result = state["parser"].parse(body.text[:MAX_TEXT_CHARS]) if body.text.strip() else fallback_parse(body.text)
            log.info("parsed message=%s intent=%s confidence=%.3f entities=%s", reference,
                     result.intent.name, result.intent.confidence, [e.entity for e in result.entities])
        except Exception:  # the contract: Rasa must never receive an error, or it falls back silently
            log.exception("parse failed (message %s); answering nlu_fallback", reference)
            result = fallback_parse(body.text)
        return JSONResponse(result.to_rasa())

    @app.post("/model/parse_batch")
    async def parse_batch(request: Request) -> JSONResponse:
        body = BatchRequest.model_validate_json(await request.body())
        results = state["parser"].parse_batch([t[:MAX_TEXT_CHARS] for t in body.texts]) if body.texts else []
        return JSONResponse([r.to_rasa() for r in results])

    @app.get("/status")
    async def status() -> dict:
        meta = state["parser"].model.meta
        return {"version": meta["version"], "labels": meta["labels"], "metrics": meta["metrics"],
                "data_sha256": meta["data_sha256"], "threshold": state["parser"].threshold,
                "curated_questions": {"count": len(curated), "knowledge_base_change": curated.version,
                                      "source": questions_url}}

    return app

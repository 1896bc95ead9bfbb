"""The merchant's knowledge-base API, mounted by the gateway at ``/api/admin/kb``.

FAQ curation (list, search, create, edit, publish, unpublish, delete, versions with diffs, restore),
the unanswered-question inbox, and a preview that asks the knowledge base without queueing anything.
Writes go to SQL; the knowledge-base process follows the change log, and is nudged after every write
so the change is searchable at once. The gateway hands in who may call what: ``staff`` (owners and
agents: read the FAQ, preview answers) and ``owner`` (every change, the unanswered inbox).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

import httpx
from anyio import to_thread
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session, sessionmaker

from assistant.settings import Settings
from knowledge_base import faq, ingest, unanswered
from knowledge_base.faq import FaqError, FaqInput

log = logging.getLogger(__name__)

ERROR_STATUS = {"not_found": 404, "duplicate_key": 409, "conflict": 409, "invalid_status": 400, "too_large": 413}
MAX_IMPORT_BYTES = 5 * 1024 * 1024
# what the database can hold: an id or offset beyond this is an invalid request, not a server error
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Offset = Annotated[int, Query(ge=0, le=10**7)]
EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson",
                "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


class FaqEdit(FaqInput):
    expected_version: int | None = Field(None, ge=1, description="the version the editor loaded")


class RestoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1)


class DraftRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str | None = Field(None, min_length=2, max_length=48)
    category: str = Field("uncategorized", min_length=1, max_length=32)


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=2000)
    language: str | None = Field(None, pattern="^(zh|en)$")


def install_error_handlers(app: FastAPI) -> None:
    async def faq_error(_request: Request, error: FaqError) -> JSONResponse:
        return JSONResponse(status_code=ERROR_STATUS.get(error.code, 400),
                            content={"error": error.code, "message": error.message})

    async def invalid(_request: Request, error: ValidationError | RequestValidationError) -> JSONResponse:
        problems = [{"field": ".".join(map(str, e["loc"])) or "body", "message": e["msg"]} for e in error.errors()]
        return JSONResponse(status_code=400, content={"error": "invalid_request", "message": problems[0]["message"]
                                                      if problems else "invalid request", "problems": problems})

    app.add_exception_handler(FaqError, faq_error)  # type: ignore[arg-type]
    app.add_exception_handler(ValidationError, invalid)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid)  # type: ignore[arg-type]  (query and path values)


def router(settings: Settings, sessions: sessionmaker[Session], owner: Callable[..., Any],
           staff: Callable[..., Any]) -> APIRouter:
    """``owner`` and ``staff``: dependencies that admit the caller (returning who it is) or raise."""
    api = APIRouter(prefix="/api/admin/kb", tags=["knowledge base"])

    async def run(work):  # type: ignore[no-untyped-def]
        """Run ``work(session)`` in a worker thread and commit; returns its result."""
        def call() -> Any:
            with sessions() as session:
                result = work(session)
                session.commit()
                return result
        return await to_thread.run_sync(call)

    async def nudge() -> None:
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                await client.post(f"{settings.kb_url}/sync")
        except httpx.HTTPError:  # the knowledge base picks the change up from the log anyway
            log.info("knowledge base not reachable for an immediate sync; its poller will apply the change")

    async def body(request: Request, model: type[BaseModel]) -> Any:
        return model.model_validate_json(await request.body())

    @api.get("/faqs", dependencies=[Depends(staff)])
    async def list_faqs(q: str = "", language: str | None = None, category: str | None = None,
                        status: str | None = None, limit: int = 50, offset: Offset = 0) -> dict:
        limit, offset = max(1, min(limit, 500)), max(0, offset)

        def work(session: Session) -> dict:
            rows, total = faq.search(session, q, language if language in ("zh", "en") else None, category,
                                     status, limit, offset)
            return {"items": [faq.to_dict(r) for r in rows], "total": total, "limit": limit, "offset": offset}
        return await run(work)

    @api.post("/faqs", status_code=201)
    async def create_faq(request: Request, who: Any = Depends(owner)) -> dict:
        data = await body(request, FaqInput)
        result = await run(lambda s: faq.to_dict(faq.create(s, data, author=who.username)))
        await nudge()
        return result

    @api.get("/faqs/{faq_id}", dependencies=[Depends(staff)])
    async def get_faq(faq_id: RowId) -> dict:
        return await run(lambda s: faq.to_dict(faq.get(s, faq_id)))

    @api.put("/faqs/{faq_id}")
    async def edit_faq(faq_id: RowId, request: Request, who: Any = Depends(owner)) -> dict:
        data = await body(request, FaqEdit)
        content = FaqInput(**data.model_dump(exclude={"expected_version"}))
        result = await run(lambda s: faq.to_dict(faq.update(s, faq_id, content, author=who.username,
                                                            expected_version=data.expected_version)))
        await nudge()
        return result

    @api.post("/faqs/{faq_id}/publish")
    async def publish(faq_id: RowId, who: Any = Depends(owner)) -> dict:
        result = await run(lambda s: faq.to_dict(faq.set_status(s, faq_id, "published", who.username)))
        await nudge()
        return result

    @api.post("/faqs/{faq_id}/unpublish")
    async def unpublish(faq_id: RowId, who: Any = Depends(owner)) -> dict:
        result = await run(lambda s: faq.to_dict(faq.set_status(s, faq_id, "draft", who.username)))
        await nudge()
        return result

    @api.delete("/faqs/{faq_id}", dependencies=[Depends(owner)])
    async def delete_faq(faq_id: RowId) -> dict:
        await run(lambda s: faq.delete(s, faq_id))
        await nudge()
        return {"deleted": faq_id}

    @api.get("/faqs/{faq_id}/versions", dependencies=[Depends(staff)])
    async def versions(faq_id: RowId) -> dict:
        def work(session: Session) -> dict:
            rows = faq.versions(session, faq_id)
            out, previous = [], {}
            for row in rows:
                out.append({"version": row.version, "action": row.action, "author": row.author,
                            "created_at": row.created_at.isoformat(), "snapshot": row.snapshot,
                            "diff": faq.diff(previous, row.snapshot)})
                previous = row.snapshot
            return {"faq_id": faq_id, "versions": out}
        return await run(work)

    @api.post("/faqs/{faq_id}/restore")
    async def restore(faq_id: RowId, request: Request, who: Any = Depends(owner)) -> dict:
        data = await body(request, RestoreRequest)
        result = await run(lambda s: faq.to_dict(faq.restore(s, faq_id, data.version, who.username)))
        await nudge()
        return result

    @api.get("/unanswered", dependencies=[Depends(owner)])
    async def inbox(status: str = "open", language: str | None = None, limit: int = 100, offset: Offset = 0) -> dict:
        limit, offset = max(1, min(limit, 500)), max(0, offset)
        return await run(lambda s: {"items": [unanswered.to_dict(g) for g in unanswered.listing(
            s, status, language if language in ("zh", "en") else None, limit, offset)]})

    @api.post("/unanswered/{group_id}/dismiss", dependencies=[Depends(owner)])
    async def dismiss(group_id: RowId) -> dict:
        return await run(lambda s: unanswered.to_dict(unanswered.dismiss(s, group_id)))

    @api.post("/unanswered/{group_id}/draft", status_code=201)
    async def draft(group_id: RowId, request: Request, who: Any = Depends(owner)) -> dict:
        raw = await request.body()
        data = DraftRequest.model_validate_json(raw) if raw.strip() else DraftRequest()
        return await run(lambda s: faq.to_dict(unanswered.to_draft(s, group_id, who.username, data.key, data.category)))

    @api.post("/import")
    async def import_file(request: Request, format: str = "csv", publish: bool = False,
                          who: Any = Depends(owner)) -> JSONResponse:
        """The file's bytes as the body; every row is checked first, and one bad row imports nothing."""
        if format not in ingest.FORMATS:
            raise FaqError("invalid_request", f"format {format!r} is not one of {', '.join(ingest.FORMATS)}")
        data = await request.body()
        if not data:
            raise FaqError("invalid_request", "the file is empty")
        if len(data) > MAX_IMPORT_BYTES:
            raise FaqError("too_large", f"the file has {len(data)} bytes; at most {MAX_IMPORT_BYTES} are accepted")
        try:
            stats = await run(lambda s: ingest.import_faq(s, data, format, author=who.username, publish=publish))
        except ingest.ImportFailed as failed:
            return JSONResponse(status_code=400, content={
                "error": "invalid_rows", "message": str(failed),
                "errors": [{"row": e.row, "column": e.column, "reason": e.reason} for e in failed.errors]})
        await nudge()
        return JSONResponse(stats)

    @api.get("/export", dependencies=[Depends(owner)])
    async def export_file(format: str = "csv", status: str | None = None) -> Response:
        if format not in ingest.FORMATS:
            raise FaqError("invalid_request", f"format {format!r} is not one of {', '.join(ingest.FORMATS)}")

        data = await run(lambda s: ingest.export_faq(ingest.entries_to_export(s, status), format))
        return Response(data, media_type=EXPORT_TYPES[format],
                        headers={"Content-Disposition": f'attachment; filename="faq.{format}"'})

    @api.post("/preview", dependencies=[Depends(staff)])
    async def preview(request: Request) -> JSONResponse:
        data = await body(request, PreviewRequest)
        try:
            async with httpx.AsyncClient(timeout=settings.kb_timeout_s) as client:
                response = await client.post(f"{settings.kb_url}/answer",
                                              json={"text": data.text, "language": data.language, "record": False})
        except httpx.HTTPError:
            return JSONResponse(status_code=503, content={"error": "kb_unavailable",
                                                          "message": "the knowledge base is not reachable"})
        return JSONResponse(status_code=response.status_code, content=response.json())

    return api

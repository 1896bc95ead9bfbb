"""The merchant's commerce API, mounted by the gateway at ``/api/admin/commerce``: reorder
suggestions and per-product demand forecasts (owners), return requests with the shopper's photo
(owners and agents), for the console."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Depends
from fastapi.responses import Response
from sqlalchemy.orm import Session, sessionmaker

from assistant.settings import Settings
from knowledge_base.faq import FaqError


def router(settings: Settings, sessions: sessionmaker[Session], owner: Callable[..., Any],
           staff: Callable[..., Any], model_dir: Path | None = None) -> APIRouter:
    """``owner`` and ``staff``: dependencies that admit the caller or raise (see channels/admin/auth.py)."""
    api = APIRouter(prefix="/api/admin/commerce", tags=["commerce"])
    caches: list = []  # the forecaster (and torch) load on first use, not when the gateway starts

    def outlook(session: Session):  # type: ignore[no-untyped-def]
        from assistant.commerce.stock import OutlookCache

        if not caches:
            caches.append(OutlookCache(model_dir or settings.forecast_model_dir))
        current = caches[0].get(session)
        if current is None:
            raise FaqError("not_found", "no current demand forecast: run `kefu forecast train` "
                                        "(the sales history must reach the last week)")
        return current

    @api.get("/reorder", dependencies=[Depends(owner)])
    async def reorder(only_needed: bool = True, limit: int = 100) -> dict:
        limit = max(1, min(limit, 2000))

        def work() -> dict:
            from assistant.commerce.stock import reorder_suggestions

            with sessions() as session:
                rows = reorder_suggestions(session, outlook(session), dt.date.today())
            if only_needed:
                rows = [r for r in rows if r["suggested_quantity"] > 0]
            return {"items": rows[:limit], "total": len(rows)}
        return await to_thread.run_sync(work)

    @api.get("/forecast/{sku}", dependencies=[Depends(owner)])
    async def forecast(sku: str) -> dict:
        def work() -> dict:
            with sessions() as session:
                found = outlook(session).forecasts.get(sku)
            if found is None:
                raise FaqError("not_found", f"no product {sku!r}")
            return found.to_dict()
        return await to_thread.run_sync(work)

    @api.get("/returns", dependencies=[Depends(staff)])
    async def returns(status: str | None = None, with_photo: bool = False, limit: int = 50) -> dict:
        """Return requests, newest first, with the shopper's photo and what the classifier saw."""
        limit = max(1, min(limit, 500))

        def work() -> dict:
            from sqlalchemy import func, select

            from assistant.commerce.models import ReturnRequest

            with sessions() as session:
                query = select(ReturnRequest)
                if status:
                    query = query.where(ReturnRequest.status == status)
                if with_photo:
                    query = query.where(ReturnRequest.photo_id.is_not(None))
                total = session.scalar(select(func.count()).select_from(query.subquery()))
                rows = session.scalars(query.order_by(ReturnRequest.id.desc()).limit(limit)).all()
                return {"items": [_return_json(session, r) for r in rows], "total": total}
        return await to_thread.run_sync(work)

    @api.get("/returns/{rma_no}", dependencies=[Depends(staff)])
    async def return_request(rma_no: str) -> dict:
        def work() -> dict:
            from sqlalchemy import select

            from assistant.commerce.models import ReturnRequest

            with sessions() as session:
                row = session.scalar(select(ReturnRequest).where(ReturnRequest.rma_no == rma_no))
                if row is None:
                    raise FaqError("not_found", f"no return {rma_no!r}")
                return _return_json(session, row)
        return await to_thread.run_sync(work)

    @api.get("/photos/{photo_id}", dependencies=[Depends(staff)])
    async def photo(photo_id: str) -> Response:
        def work() -> Response:
            from assistant.commerce.models import Photo

            with sessions() as session:
                row = session.get(Photo, photo_id)
                path = settings.photos_path / row.path if row else None
                if row is None or path is None or not path.exists():
                    raise FaqError("not_found", f"no photo {photo_id!r}")
                return Response(path.read_bytes(), media_type=row.media_type,
                                headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"})
        return await to_thread.run_sync(work)

    return api


def _return_json(session: Session, rma) -> dict:  # type: ignore[no-untyped-def]
    from assistant.commerce.models import Photo

    photo = session.get(Photo, rma.photo_id) if rma.photo_id else None
    return {
        "rma": rma.rma_no, "order_id": rma.order.order_no, "kind": rma.kind, "status": rma.status,
        "reason": rma.reason, "created_at": rma.created_at.isoformat(timespec="seconds") + "Z",
        "conversation_id": rma.conversation_id,
        "photo": None if photo is None else {
            "id": photo.id, "url": f"/api/admin/commerce/photos/{photo.id}", "width": photo.width,
            "height": photo.height, "prediction": {"label": photo.label, "outcome": photo.outcome,
                                                   "confidence": photo.confidence,
                                                   "probabilities": photo.probabilities, "model": photo.model}},
    }

"""The merchant's commerce API, mounted by the gateway at ``/api/admin/commerce``: reorder
suggestions and per-product demand forecasts, for the console. Same bearer token as the
knowledge-base API until console accounts exist."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from anyio import to_thread
from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session, sessionmaker

from assistant.settings import Settings
from knowledge_base.api import admin_dependency
from knowledge_base.faq import FaqError


def router(settings: Settings, sessions: sessionmaker[Session], model_dir: Path | None = None) -> APIRouter:
    api = APIRouter(prefix="/api/admin/commerce", dependencies=[Depends(admin_dependency(settings))],
                    tags=["commerce"])
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

    @api.get("/reorder")
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

    @api.get("/forecast/{sku}")
    async def forecast(sku: str) -> dict:
        def work() -> dict:
            with sessions() as session:
                found = outlook(session).forecasts.get(sku)
            if found is None:
                raise FaqError("not_found", f"no product {sku!r}")
            return found.to_dict()
        return await to_thread.run_sync(work)

    return api

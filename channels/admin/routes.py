"""The console's own routes: log in and out, who am I, accounts (owner), the audit log (owner), and
the pages and assets of the console itself."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from assistant import retention
from channels.admin import accounts, analytics
from channels.admin.accounts import AccountError, Principal
from channels.admin.auth import COOKIE, Access, AccessError
from channels.admin.models import AdminUser
from knowledge_base.api import Offset, RowId

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
ACCOUNT_STATUS = {"invalid": 400, "duplicate": 409, "not_found": 404, "last_owner": 409}


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=2, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    role: Literal["owner", "agent"]
    display_name: str = Field("", max_length=64)


class ShopperRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phone: str | None = Field(None, max_length=32)
    email: str | None = Field(None, max_length=128)
    confirm: Literal[True]  # deleting is not undone: the caller says so


class UserChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["owner", "agent"] | None = None
    active: bool | None = None
    password: str | None = Field(None, min_length=1, max_length=256)
    display_name: str | None = Field(None, min_length=1, max_length=64)


def router(access: Access, tracker: Engine | None = None) -> APIRouter:
    """``tracker``: Rasa's tracker store (analytics.tracker_engine): the analytics' intents, a shopper's events."""
    sessions, settings = access.sessions, access.settings
    owner = access.require("owner")
    staff = access.require("owner", "agent")
    api = APIRouter()

    async def run(work):  # type: ignore[no-untyped-def]
        def call() -> Any:
            with sessions() as session:
                try:
                    result = work(session)
                except AccountError as error:
                    raise AccessError(ACCOUNT_STATUS[error.code], error.code, error.message) from error
                session.commit()
                return result
        return await to_thread.run_sync(call)

    @api.post("/api/admin/auth/login", tags=["console"])
    async def login(request: Request) -> JSONResponse:
        data = LoginRequest.model_validate_json(await request.body())
        address = request.client.host if request.client else "-"
        access.limiter.check(address, data.username)

        def work(session: Session) -> tuple[str, Principal] | None:
            user = accounts.authenticate(session, data.username, data.password)
            if user is None:
                accounts.audit(session, data.username[:64], "login_failed", address=address)
                return None
            token, row = accounts.open_session(session, user, settings.admin_session_max_h)
            accounts.audit(session, user.username, "login")
            return token, Principal(user.id, user.username, user.display_name, user.role, "session", row.csrf_token)
        result = await run(work)
        if result is None:
            access.limiter.failed(data.username)
            raise AccessError(401, "bad_credentials", "wrong username or password")
        access.limiter.succeeded(data.username)
        token, principal = result
        response = JSONResponse(principal.to_dict())
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=access.cookie_secure(request),
                            max_age=int(settings.admin_session_max_h * 3600), path="/")
        return response

    @api.post("/api/admin/auth/logout", tags=["console"])
    async def logout(request: Request, who: Principal = Depends(staff)) -> JSONResponse:
        token = request.cookies.get(COOKIE, "")
        await run(lambda s: (accounts.close_session(s, token), accounts.audit(s, who.username, "logout")))
        response = JSONResponse({"logged_out": True})
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @api.get("/api/admin/auth/me", tags=["console"])
    async def me(who: Principal = Depends(staff)) -> dict:
        return who.to_dict()

    @api.get("/api/admin/users", tags=["console"], dependencies=[Depends(owner)])
    async def list_users() -> dict:
        return await run(lambda s: {"items": [accounts.user_dict(u) for u in
                                               s.scalars(select(AdminUser).order_by(AdminUser.id)).all()]})

    @api.post("/api/admin/users", tags=["console"], status_code=201)
    async def create_user(request: Request, who: Principal = Depends(owner)) -> dict:
        data = NewUser.model_validate_json(await request.body())

        def work(session: Session) -> dict:
            user = accounts.create_user(session, data.username, data.password, data.role, data.display_name)
            accounts.audit(session, who.username, "user_created", user.username, role=user.role)
            return accounts.user_dict(user)
        return await run(work)

    @api.patch("/api/admin/users/{user_id}", tags=["console"])
    async def change_user(user_id: RowId, request: Request, who: Principal = Depends(owner)) -> dict:
        data = UserChange.model_validate_json(await request.body())

        def work(session: Session) -> dict:
            user = accounts.update_user(session, user_id, data.role, data.active, data.password, data.display_name)
            changed = sorted(k for k, v in data.model_dump().items() if v is not None)
            accounts.audit(session, who.username, "user_changed", user.username, fields=changed)
            return accounts.user_dict(user)
        return await run(work)

    @api.get("/api/admin/audit", tags=["console"], dependencies=[Depends(owner)])
    async def audit_log(limit: int = 100, offset: Offset = 0) -> dict:
        limit, offset = max(1, min(limit, 500)), max(0, offset)
        return await run(lambda s: {"items": accounts.audit_listing(s, limit, offset)})

    def analytics_data(start: dt.date | None, end: dt.date | None) -> dict:
        with sessions() as session:
            try:
                return analytics.report(session, tracker, *analytics.resolve_range(start, end))
            except ValueError as error:
                raise AccessError(400, "invalid_range", str(error)) from error

    @api.get("/api/admin/analytics", tags=["console"], dependencies=[Depends(owner)])
    async def analytics_report(start: dt.date | None = Query(None, alias="from"),
                               end: dt.date | None = Query(None, alias="to")) -> dict:
        """The figures for a date range (default: the last 30 days)."""
        return await to_thread.run_sync(analytics_data, start, end)

    @api.get("/api/admin/analytics.csv", tags=["console"], dependencies=[Depends(owner)])
    async def analytics_csv(start: dt.date | None = Query(None, alias="from"),
                            end: dt.date | None = Query(None, alias="to")) -> Response:
        data = await to_thread.run_sync(analytics_data, start, end)
        return Response(analytics.to_csv(data), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="kefu-analytics-{data["from"]}-{data["to"]}.csv"'})

    def shopper(session: Session, phone: str | None, email: str | None):  # type: ignore[no-untyped-def]
        try:
            return retention.find_customer(session, phone, email)
        except retention.ShopperNotFound as error:
            raise AccessError(404, "not_found", str(error)) from error
        except ValueError as error:
            raise AccessError(400, "invalid_request", str(error)) from error

    @api.get("/api/admin/shoppers/export", tags=["console"])
    async def shopper_export(phone: str | None = None, email: str | None = None,
                             who: Principal = Depends(owner)) -> JSONResponse:
        """Everything held about one shopper (an access request under PIPL / GDPR); audited."""
        def work(session: Session) -> dict:
            customer = shopper(session, phone, email)
            accounts.audit(session, who.username, "shopper_export", f"customer:{customer.id}")
            return retention.export_shopper(session, tracker, customer)
        data = await run(work)
        return JSONResponse(data, headers={"Cache-Control": "no-store",
                                           "Content-Disposition": 'attachment; filename="shopper-data.json"'})

    @api.post("/api/admin/shoppers/delete", tags=["console"])
    async def shopper_delete(request: Request, who: Principal = Depends(owner)) -> dict:
        """Deletes one shopper's conversations, photos and voice messages and anonymises the record."""
        data = ShopperRequest.model_validate_json(await request.body())

        def work(session: Session) -> dict:
            customer = shopper(session, data.phone, data.email)
            removed = asdict(retention.delete_shopper(session, tracker, customer, settings.photos_path,
                                                      settings.audio_path))
            accounts.audit(session, who.username, "shopper_deleted", f"customer:{customer.id}", **removed)
            return {"customer_id": customer.id, **removed}
        return await run(work)

    # ------------------------------------------------------------------ pages
    @api.get("/admin/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_page() -> FileResponse:
        return FileResponse(STATIC / "login.html", media_type="text/html", headers=_PAGE_HEADERS)

    @api.get("/admin", include_in_schema=False)
    @api.get("/admin/", include_in_schema=False)
    async def console(request: Request) -> Response:
        if await access.principal(request) is None:
            return RedirectResponse("/admin/login", status_code=303)
        return FileResponse(STATIC / "console.html", media_type="text/html", headers=_PAGE_HEADERS)

    @api.get("/admin/static/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        path = STATIC / name
        if name not in _ASSETS or not path.is_file():
            return JSONResponse({"error": "not_found", "message": f"no console asset {name!r}"}, status_code=404)
        return FileResponse(path, media_type=_ASSETS[name], headers={"Cache-Control": "no-cache"})

    return api


_ASSETS = {"console.js": "text/javascript", "console.css": "text/css", "i18n.js": "text/javascript"}
# the console is never framed by another site and runs only its own scripts
_PAGE_HEADERS = {"X-Frame-Options": "DENY", "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
                 "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                            "script-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'"}

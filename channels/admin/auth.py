"""Who may call the admin API: the console's session cookie (with its CSRF token on every write) or
the owner's API token for scripts, each route naming the roles it admits.

A widget session carries neither, so it reaches no admin route. Login is rate-limited per client
address and per account.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker

from assistant.settings import Settings
from channels.admin import accounts
from channels.admin.accounts import Principal
from channels.limits import SlidingWindow

COOKIE = "kefu_console"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
LOCK_S = 15 * 60  # an account with too many failed logins waits this long


class AccessError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def install_error_handler(app: FastAPI) -> None:
    async def denied(_request: Request, error: AccessError) -> JSONResponse:
        return JSONResponse(status_code=error.status, content={"error": error.code, "message": error.message},
                            headers=error.headers)

    app.add_exception_handler(AccessError, denied)  # type: ignore[arg-type]


class LoginLimiter:
    """Attempts per client address per minute, failures per account per 15 minutes."""

    def __init__(self, per_minute: int, failures: int, clock: Callable[[], float] = time.monotonic):
        self._attempts = SlidingWindow(per_minute, 60, clock)
        self._failed = SlidingWindow(failures, LOCK_S, clock)

    def check(self, address: str, username: str) -> None:
        """Raises a 429 when this address or this account must wait; counts the attempt."""
        wait = self._failed.wait_s(username.lower())
        if wait > 0:
            raise AccessError(429, "rate_limited", f"too many failed logins for this account; try again in "
                                                   f"{int(wait) // 60 + 1} minutes", {"Retry-After": str(int(wait) + 1)})
        wait = self._attempts.wait_s(address)
        if wait > 0:
            raise AccessError(429, "rate_limited", f"too many login attempts; try again in {int(wait) + 1} seconds",
                              {"Retry-After": str(int(wait) + 1)})
        self._attempts.hit(address)

    def failed(self, username: str) -> None:
        self._failed.hit(username.lower())

    def succeeded(self, username: str) -> None:
        self._failed.forget(username.lower())


class Access:
    """Builds the dependencies routes use: ``access.require("owner")``, ``access.require("owner", "agent")``."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]):
        self.settings, self.sessions = settings, sessions
        self.limiter = LoginLimiter(settings.admin_login_per_minute, settings.admin_login_failures)

    def resolve_cookie(self, token: str) -> Principal | None:
        with self.sessions() as session:
            found = accounts.resolve_session(session, token, self.settings.admin_session_idle_h)
            session.commit()
            return found

    async def principal(self, request: Request) -> Principal | None:
        """The caller, or None. A cookie session is checked for its CSRF token on every write."""
        token = request.cookies.get(COOKIE)
        if token:
            found = await to_thread.run_sync(self.resolve_cookie, token)
            if found is not None:
                if request.method not in SAFE_METHODS and not hmac.compare_digest(
                        request.headers.get(CSRF_HEADER, ""), found.csrf_token):
                    raise AccessError(403, "csrf", f"this change needs the page's {CSRF_HEADER} header; "
                                                   "reload the console and try again")
                return found
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and bearer.strip() and hmac.compare_digest(
                bearer.strip(), self.settings.admin_api_token()):
            return Principal(None, "api-token", "API token", "owner", "token")
        return None

    def require(self, *roles: str) -> Callable[[Request], Awaitable[Principal]]:
        async def dependency(request: Request) -> Principal:
            found = await self.principal(request)
            if found is None:
                raise AccessError(401, "unauthorized", "log in to the console (or send the owner's API token)")
            if found.role not in roles:
                raise AccessError(403, "forbidden", f"a {found.role} may not do this; it needs: {' or '.join(roles)}")
            request.state.principal = found
            return found
        return dependency

    def cookie_secure(self, request: Request) -> bool:
        if self.settings.admin_cookie_secure is not None:
            return self.settings.admin_cookie_secure
        return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"

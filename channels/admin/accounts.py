"""Console accounts: argon2id passwords, login sessions with their CSRF token, the audit log.

Plain functions over a SQLAlchemy session; the web layer (``channels/admin/auth.py``) decides what
a request may do with them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from assistant.commerce.models import utcnow
from channels.admin.models import ROLES, AdminSession, AdminUser, AuditEntry

_HASHER = PasswordHasher()  # argon2id, 64 MiB, t=3: the library's defaults (RFC 9106's second choice)
# a hash to verify against when the account does not exist, so both answers take as long
_DUMMY_HASH = _HASHER.hash("no such account")
USERNAME = re.compile(r"[A-Za-z0-9_.@-]{2,64}")
MIN_PASSWORD = 10


class AccountError(Exception):
    """``code``: invalid, duplicate, not_found, last_owner."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Principal:
    """Who is calling the admin API: a console user, or a script with the owner's API token."""

    user_id: int | None
    username: str
    display_name: str
    role: str  # owner / agent
    via: str  # session / token
    csrf_token: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.user_id, "username": self.username, "display_name": self.display_name,
                "role": self.role, "csrf_token": self.csrf_token}


def _check(username: str, password: str | None, role: str) -> None:
    if not USERNAME.fullmatch(username):
        raise AccountError("invalid", f"username {username!r} must be 2-64 letters, digits or . _ @ -")
    if role not in ROLES:
        raise AccountError("invalid", f"role {role!r} is not one of {', '.join(ROLES)}")
    if password is not None and len(password) < MIN_PASSWORD:
        raise AccountError("invalid", f"a password needs at least {MIN_PASSWORD} characters")


def user_dict(user: AdminUser) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "display_name": user.display_name, "role": user.role,
            "active": user.active, "created_at": user.created_at.isoformat(),
            "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None}


def create_user(session: Session, username: str, password: str, role: str, display_name: str = "") -> AdminUser:
    _check(username, password, role)
    if session.scalar(select(AdminUser).where(AdminUser.username == username)) is not None:
        raise AccountError("duplicate", f"an account named {username!r} exists")
    user = AdminUser(username=username, display_name=(display_name or username)[:64], role=role,
                     password_hash=_HASHER.hash(password), active=True)
    session.add(user)
    session.flush()
    return user


def update_user(session: Session, user_id: int, role: str | None = None, active: bool | None = None,
                password: str | None = None, display_name: str | None = None) -> AdminUser:
    user = session.get(AdminUser, user_id)
    if user is None:
        raise AccountError("not_found", f"no account {user_id}")
    _check(user.username, password, role or user.role)
    demoted = (role is not None and role != "owner") or active is False
    if user.role == "owner" and user.active and demoted and _active_owners(session) <= 1:
        raise AccountError("last_owner", "the shop needs at least one active owner")
    if role is not None:
        user.role = role
    if display_name:
        user.display_name = display_name[:64]
    if password is not None:
        user.password_hash = _HASHER.hash(password)
    if active is not None:
        user.active = active
    if password is not None or active is False or role is not None:  # everyone logs in again
        session.execute(delete(AdminSession).where(AdminSession.user_id == user.id))
    return user


def _active_owners(session: Session) -> int:
    return len(session.scalars(select(AdminUser.id).where(AdminUser.role == "owner", AdminUser.active)).all())


def authenticate(session: Session, username: str, password: str) -> AdminUser | None:
    """The active account with this username and password, or None (in about the same time either way)."""
    user = session.scalar(select(AdminUser).where(AdminUser.username == username))
    try:
        _HASHER.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    if _HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = _HASHER.hash(password)
    user.last_login_at = utcnow()
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, user: AdminUser, max_hours: float) -> tuple[str, AdminSession]:
    """A new login session; returns the cookie token (only its hash is stored) and the row."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = AdminSession(token_hash=_digest(token), user_id=user.id, csrf_token=secrets.token_urlsafe(32),
                       created_at=now, last_seen_at=now, expires_at=now + dt.timedelta(hours=max_hours))
    session.add(row)
    return token, row


def resolve_session(session: Session, token: str, idle_hours: float) -> Principal | None:
    """The user behind a cookie token, if the session is alive; touches it."""
    row = session.get(AdminSession, _digest(token))
    if row is None:
        return None
    now = utcnow()
    user = session.get(AdminUser, row.user_id)
    if now >= row.expires_at or now - row.last_seen_at > dt.timedelta(hours=idle_hours) or user is None \
            or not user.active:
        session.delete(row)
        return None
    if now - row.last_seen_at > dt.timedelta(minutes=1):
        row.last_seen_at = now
    return Principal(user.id, user.username, user.display_name, user.role, "session", row.csrf_token)


def close_session(session: Session, token: str) -> None:
    session.execute(delete(AdminSession).where(AdminSession.token_hash == _digest(token)))


def audit(session: Session, username: str, action: str, target: str = "", **detail: Any) -> None:
    session.add(AuditEntry(username=username, action=action, target=target[:128], detail=detail))


def audit_listing(session: Session, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit).offset(offset)).all()
    return [{"id": r.id, "at": r.at.isoformat(), "username": r.username, "action": r.action, "target": r.target,
             "detail": r.detail} for r in rows]

"""What every action needs: the shop database, settings, the shopper's language."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rasa_sdk import Tracker
from sqlalchemy.orm import Session

from assistant.commerce.db import session_factory
from assistant.settings import get_settings
from nlu.text import detect_language


@contextmanager
def shop_session() -> Iterator[Session]:
    with session_factory(get_settings().db_url)() as session:
        yield session


_outlook_cache = None


def demand_outlook(session: Session):  # type: ignore[no-untyped-def]
    """The demand forecast of every product (``assistant.commerce.stock.Outlook``), or None when no
    forecast model is trained or the sales history is stale."""
    global _outlook_cache
    from assistant.commerce.stock import OutlookCache

    if _outlook_cache is None:
        _outlook_cache = OutlookCache(get_settings().forecast_model_dir)
    return _outlook_cache.get(session)


def language(tracker: Tracker) -> str:
    slot = tracker.get_slot("language")
    if slot in ("zh", "en"):
        return slot
    return detect_language(tracker.latest_message.get("text") or "") or "zh"


def t(lang: str, zh: str, en: str, **values: Any) -> str:
    """The reply in the shopper's language, with ``{name}`` placeholders filled."""
    return (zh if lang == "zh" else en).format(**values)


def yuan(fen: int) -> str:
    return f"¥{fen / 100:,.2f}".replace(".00", "")


def image_url(sku: str) -> str:
    return f"{get_settings().gateway_url}/shop/images/{sku}.svg"


def latest_entity(tracker: Tracker, name: str) -> str | None:
    values = list(tracker.get_latest_entity_values(name))
    return str(values[0]) if values else None

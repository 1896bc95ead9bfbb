"""The merchant's analytics: conversations per day, how many the bot settled alone, handoffs and
fallbacks, top intents (from Rasa's tracker store), top unanswered questions, coupons and checkout
links (dialog-to-action conversion) and the first response time, over a date range.

Sources: kefu's transcripts (what was said and when), the unanswered queue, the checkout pages'
open log, and Rasa's SQL tracker store (the intent of every shopper message), read-only.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from assistant.commerce.db import chunks
from assistant.commerce.models import CheckoutOpen, Conversation, TranscriptMessage
from knowledge_base.models import UnansweredQuestion

log = logging.getLogger("kefu.gateway.analytics")
TOP = 10
MAX_DAYS = 366


def tracker_engine(url: str) -> Engine:
    """Rasa's tracker store: read for the analytics, written only to delete a shopper's events. A
    missing SQLite file is never created (its queries fail, and callers read that as no events)."""
    if url.startswith("sqlite:///"):
        return create_engine(f"sqlite:///file:{url.removeprefix('sqlite:///')}?mode=rw&uri=true")
    return create_engine(url, pool_pre_ping=True)


def resolve_range(start: dt.date | None, end: dt.date | None, days: int = 30) -> tuple[dt.date, dt.date]:
    """The range asked for; by default the ``days`` up to ``end`` (today when not given)."""
    end = end or dt.date.today()
    try:
        return start or end - dt.timedelta(days=days - 1), end
    except OverflowError as error:
        raise ValueError(f"no date range of {days} days ends on {end}") from error


def day_range(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    if end < start:
        raise ValueError(f"the range ends ({end}) before it starts ({start})")
    if (end - start).days >= MAX_DAYS:
        raise ValueError(f"at most {MAX_DAYS} days at a time")
    if end >= dt.date.max:
        raise ValueError(f"the range must end before {dt.date.max}")
    return dt.datetime.combine(start, dt.time()), dt.datetime.combine(end + dt.timedelta(days=1), dt.time())


def report(session: Session, tracker: Engine | None, start: dt.date, end: dt.date) -> dict[str, Any]:
    since, until = day_range(start, end)
    conversations = session.scalars(select(Conversation).where(
        Conversation.created_at >= since, Conversation.created_at < until)).all()
    ids = [c.id for c in conversations]
    messages: dict[str, list[tuple[int, str, str, dt.datetime]]] = defaultdict(list)
    for chunk in chunks(ids):
        for m in session.execute(select(TranscriptMessage.conversation_id, TranscriptMessage.seq,
                                        TranscriptMessage.sender, TranscriptMessage.type,
                                        TranscriptMessage.created_at)
                                 .where(TranscriptMessage.conversation_id.in_(chunk))):
            messages[m.conversation_id].append((m.seq, m.sender, m.type, m.created_at))

    per_day: Counter[str] = Counter()
    talked = automated = handed = fell_back = 0
    first_response: list[float] = []
    coupons = checkouts = 0
    shopper_messages = fallback_messages = 0
    for c in conversations:
        rows = sorted(messages.get(c.id, []))
        shopper = [r for r in rows if r[1] == "shopper"]
        if not shopper:
            continue  # a widget opened and closed without a word
        talked += 1
        per_day[c.created_at.date().isoformat()] += 1
        kinds = Counter(r[2] for r in rows if r[1] == "bot")
        fallback = kinds["unanswered"] > 0
        handed += bool(c.handoff)
        fell_back += fallback
        automated += not c.handoff and not fallback
        coupons += kinds["coupon"]
        checkouts += kinds["checkout"]
        shopper_messages += len(shopper)
        fallback_messages += kinds["unanswered"]
        asked = shopper[0]
        answer = next((r for r in rows if r[0] > asked[0] and r[1] in ("bot", "agent")), None)
        if answer is not None:
            first_response.append((answer[3] - asked[3]).total_seconds())

    opened = session.scalar(select(func.count()).select_from(CheckoutOpen).where(
        CheckoutOpen.first_opened_at >= since, CheckoutOpen.first_opened_at < until)) or 0
    unanswered = session.scalars(select(UnansweredQuestion).where(
        UnansweredQuestion.last_seen >= since, UnansweredQuestion.first_seen < until)
        .order_by(UnansweredQuestion.count.desc()).limit(TOP)).all()
    days = [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    ratio = (lambda a, b: round(a / b, 4) if b else None)
    return {
        "from": start.isoformat(), "to": end.isoformat(),
        "conversations": talked,
        "per_day": [{"date": d, "conversations": per_day[d]} for d in days],
        "automated_resolution_rate": ratio(automated, talked),
        "handoff_rate": ratio(handed, talked),
        "fallback_rate": ratio(fell_back, talked),
        "fallback_message_rate": ratio(fallback_messages, shopper_messages),
        "top_intents": top_intents(tracker, since, until),
        "top_unanswered": [{"id": g.id, "text": g.text, "language": g.language, "count": g.count,
                            "status": g.status} for g in unanswered],
        "coupons_issued": coupons,
        "checkout_links_sent": checkouts,
        "checkout_links_opened": opened,
        "checkout_open_rate": ratio(opened, checkouts),
        "first_response_s": round(sum(first_response) / len(first_response), 2) if first_response else None,
    }


def top_intents(tracker: Engine | None, since: dt.datetime, until: dt.datetime) -> list[dict[str, Any]]:
    """The shopper messages' intents, from Rasa's SQL tracker store (table ``events``)."""
    rows = _user_events(tracker, "SELECT intent_name, COUNT(*) AS n FROM events WHERE {user} AND intent_name IS NOT NULL "
                                 "GROUP BY intent_name ORDER BY n DESC LIMIT :top", since, until, top=TOP)
    return [{"intent": name, "count": n} for name, n in rows]


def conversations_with_intent(tracker: Engine | None, intent: str, since: dt.datetime,
                              until: dt.datetime) -> list[str]:
    """Rasa's conversation ids (kefu's conversation ids) with a shopper message of ``intent``."""
    rows = _user_events(tracker, "SELECT DISTINCT sender_id FROM events WHERE {user} AND intent_name = :intent",
                        since, until, intent=intent)
    return [row[0] for row in rows]


def _user_events(tracker: Engine | None, sql: str, since: dt.datetime, until: dt.datetime, **params: Any) -> list[Any]:
    """Rows of a query over the shopper messages (``{user}``) between ``since`` and ``until``; none
    when there is no tracker store yet (Rasa never ran) or it has another schema."""
    if tracker is None:
        return []
    epoch = dt.datetime(1970, 1, 1)
    query = text(sql.format(user="type_name = 'user' AND timestamp >= :since AND timestamp < :until"))
    try:
        with tracker.connect() as connection:
            return list(connection.execute(query, {"since": (since - epoch).total_seconds(),
                                                   "until": (until - epoch).total_seconds(), **params}))
    except SQLAlchemyError as error:
        log.info("tracker store not readable: %s", type(error).__name__)
        return []


def to_csv(data: dict[str, Any]) -> str:
    """One table a spreadsheet opens: the figures, then the days, intents and unanswered questions."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "name", "value"])
    for key in ("from", "to", "conversations", "automated_resolution_rate", "handoff_rate", "fallback_rate",
                "fallback_message_rate", "coupons_issued", "checkout_links_sent", "checkout_links_opened",
                "checkout_open_rate", "first_response_s"):
        writer.writerow(["summary", key, "" if data[key] is None else data[key]])
    for row in data["per_day"]:
        writer.writerow(["per_day", row["date"], row["conversations"]])
    for row in data["top_intents"]:
        writer.writerow(["top_intents", row["intent"], row["count"]])
    for row in data["top_unanswered"]:
        writer.writerow(["top_unanswered", _cell(row["text"]), row["count"]])
    return "\ufeff" + out.getvalue()  # the BOM lets Excel read Chinese correctly


def _cell(value: str) -> str:
    """A shopper's words as a spreadsheet cell that cannot run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value

"""Personal-data requests and retention (PIPL / GDPR).

- ``export_shopper``: everything kefu holds about one shopper (found by phone or email): the customer
  record, orders, and every conversation linked to them, unmasked, with its photos and voice clips.
- ``delete_shopper``: removes those conversations (transcripts, photos, voice recordings, Rasa's
  tracker events) and anonymises the customer record; orders stay for the shop's accounts, with the
  address and contact details removed.
- ``purge``: conversations idle for longer than the retention period go the same way.

A conversation is linked to a shopper when it is a call from their number, when they left that
number or email for a call back, when they typed it, or when Rasa's tracker shows they verified one
of their orders or came with the shop's signed token for them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, String, cast, delete, or_, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from assistant.commerce.db import chunks
from assistant.commerce.models import (
    Conversation,
    Customer,
    Order,
    Photo,
    ReturnRequest,
    TranscriptMessage,
    VoiceClip,
    utcnow,
)
from assistant.privacy import mask_contact

log = logging.getLogger("kefu.retention")
DELETED = "[deleted]"


class ShopperNotFound(LookupError):
    pass


@dataclass
class Removed:
    conversations: int = 0
    messages: int = 0
    photos: int = 0
    voice_clips: int = 0
    tracker_events: int = 0


def find_customer(session: Session, phone: str | None = None, email: str | None = None) -> Customer:
    if not phone and not email:
        raise ValueError("give the shopper's phone number or email")
    query = select(Customer)
    if phone:
        digits = re.sub(r"\D", "", phone)[-11:]
        if len(digits) < 7:
            raise ValueError(f"{phone!r} is not a phone number")
        query = query.where(Customer.phone.like(f"%{digits}"))
    else:
        query = query.where(Customer.email == email.strip().lower())  # type: ignore[union-attr]
    found = session.scalars(query).all()
    if not found:
        raise ShopperNotFound("no customer with that " + ("phone number" if phone else "email"))
    if len(found) > 1:
        raise ValueError(f"{len(found)} customers match; give the full phone number or the email")
    return found[0]


def conversations_of(session: Session, tracker: Engine | None, customer: Customer) -> list[str]:
    digits = re.sub(r"\D", "", customer.phone)[-11:]
    contacts = [c for c in (digits, customer.email) if c]
    ids = set(session.scalars(select(Conversation.id).where(or_(
        Conversation.caller_phone.like(f"%{digits}"),
        *(Conversation.callback_contact.like(f"%{c}%") for c in contacts)))))
    # typed in a message (digits and ASCII emails read the same inside the JSON body)
    ids |= set(session.scalars(select(TranscriptMessage.conversation_id).where(or_(
        *(cast(TranscriptMessage.body, String).like(f"%{c}%") for c in contacts)))))
    orders = set(session.scalars(select(Order.order_no).where(Order.customer_id == customer.id)))
    ids |= _tracker_conversations(tracker, customer.id, orders)
    return sorted(ids)


def _tracker_conversations(tracker: Engine | None, customer_id: int, orders: set[str]) -> set[str]:
    """Rasa conversations where the shopper verified one of ``orders`` or came as ``customer_id``."""
    if tracker is None:
        return set()
    query = text("SELECT sender_id, data FROM events WHERE type_name = 'slot' AND "
                 "(data LIKE '%verified_order%' OR data LIKE '%customer_id%')")
    try:
        with tracker.connect() as connection:
            rows = connection.execute(query).all()
    except SQLAlchemyError as error:
        log.info("tracker store not readable: %s", type(error).__name__)
        return set()
    found = set()
    for sender_id, data in rows:
        event = json.loads(data)
        value = event.get("value")
        if (event.get("name") == "verified_order" and value in orders) or \
                (event.get("name") == "customer_id" and value is not None and int(float(value)) == customer_id):
            found.add(sender_id)
    return found


def export_shopper(session: Session, tracker: Engine | None, customer: Customer) -> dict[str, Any]:
    orders = session.scalars(select(Order).where(Order.customer_id == customer.id).order_by(Order.created_at)).all()
    conversations = []
    for cid in conversations_of(session, tracker, customer):
        row = session.get(Conversation, cid)
        if row is None:
            continue
        messages = session.scalars(select(TranscriptMessage).where(TranscriptMessage.conversation_id == cid)
                                   .order_by(TranscriptMessage.seq)).all()
        conversations.append({
            "id": cid, "channel": row.channel, "language": row.language, "created_at": row.created_at.isoformat(),
            "caller_phone": row.caller_phone, "callback_contact": row.callback_contact,
            "messages": [{"seq": m.seq, "sender": m.sender, "type": m.type, "at": m.created_at.isoformat(),
                          **{k: v for k, v in m.body.items()}} for m in messages],
            "photos": [p.id for p in session.scalars(select(Photo).where(Photo.conversation_id == cid))],
            "voice_clips": [v.id for v in session.scalars(select(VoiceClip).where(VoiceClip.conversation_id == cid))],
        })
    return {
        "exported_at": utcnow().isoformat(timespec="seconds") + "Z",
        "customer": {"id": customer.id, "name": customer.name, "phone": customer.phone, "email": customer.email,
                     "address": customer.address, "language": customer.language,
                     "created_at": customer.created_at.isoformat()},
        "orders": [{"order_no": o.order_no, "status": o.status, "created_at": o.created_at.isoformat(),
                    "total_yuan": o.total / 100, "shipping_address": o.shipping_address, "carrier": o.carrier,
                    "tracking_no": o.tracking_no,
                    "items": [{"sku": i.variant.sku, "name": i.variant.product.name_zh, "quantity": i.quantity,
                               "unit_price_yuan": i.unit_price / 100} for i in o.items]} for o in orders],
        "conversations": conversations,
    }


def delete_shopper(session: Session, tracker: Engine | None, customer: Customer, photos_dir: Path,
                   audio_dir: Path) -> Removed:
    """The caller commits (the files are removed at once; the rows with the commit)."""
    removed = delete_conversations(session, tracker, conversations_of(session, tracker, customer), photos_dir,
                                   audio_dir)
    contact = mask_contact(customer.phone)
    customer.name, customer.phone, customer.email, customer.address = DELETED, f"deleted-{customer.id}", "", ""
    session.execute(update(Order).where(Order.customer_id == customer.id).values(shipping_address=DELETED))
    log.info("shopper data deleted customer=%s contact=%s conversations=%d", customer.id, contact,
             removed.conversations)
    return removed


def purge(session: Session, tracker: Engine | None, days: int, photos_dir: Path, audio_dir: Path,
          now: dt.datetime | None = None) -> Removed:
    """Conversations whose last message is older than ``days`` days."""
    if days < 1:
        raise ValueError("keep transcripts at least 1 day")
    cutoff = (now or utcnow()) - dt.timedelta(days=days)
    old = list(session.scalars(select(Conversation.id).where(Conversation.updated_at < cutoff)))
    removed = delete_conversations(session, tracker, old, photos_dir, audio_dir)
    log.info("retention: removed %d conversations idle since before %s", removed.conversations, cutoff.date())
    return removed


def delete_conversations(session: Session, tracker: Engine | None, ids: list[str], photos_dir: Path,
                         audio_dir: Path) -> Removed:
    removed = Removed()
    kept = set(session.scalars(select(ReturnRequest.photo_id).where(ReturnRequest.photo_id.is_not(None))))
    for chunk in chunks(ids):
        for photo in session.scalars(select(Photo).where(Photo.conversation_id.in_(chunk))).all():
            if photo.id in kept:  # evidence on a return request stays with the return, unlinked
                photo.conversation_id = None
                continue
            (photos_dir / photo.path).unlink(missing_ok=True)
            session.delete(photo)
            removed.photos += 1
        for clip in session.scalars(select(VoiceClip).where(VoiceClip.conversation_id.in_(chunk))).all():
            (audio_dir / clip.path).unlink(missing_ok=True)
            session.delete(clip)
            removed.voice_clips += 1
        removed.messages += session.execute(delete(TranscriptMessage).where(
            TranscriptMessage.conversation_id.in_(chunk))).rowcount  # type: ignore[attr-defined]
        removed.conversations += session.execute(delete(Conversation).where(
            Conversation.id.in_(chunk))).rowcount  # type: ignore[attr-defined]
        removed.tracker_events += _delete_tracker(tracker, chunk)
    return removed


def _delete_tracker(tracker: Engine | None, ids: list[str]) -> int:
    if tracker is None or not ids:
        return 0
    names = ", ".join(f":id{i}" for i in range(len(ids)))
    try:
        with tracker.begin() as connection:
            return connection.execute(text(f"DELETE FROM events WHERE sender_id IN ({names})"),
                                      {f"id{i}": v for i, v in enumerate(ids)}).rowcount
    except SQLAlchemyError as error:
        log.warning("tracker events not deleted: %s", type(error).__name__)
        return 0

"""Agents' routes for live conversations: the handoff queue, one conversation with its transcript
and the shopper's orders, take over / hand back / reply, and ``/ws/agent`` that pushes it all live."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from assistant.commerce.db import chunks
from assistant.commerce.models import Conversation, Order, TranscriptMessage
from assistant.privacy import mask
from channels import protocol
from channels.admin import accounts, analytics
from channels.admin.accounts import Principal
from channels.admin.auth import COOKIE, Access, AccessError
from channels.handoff import HandoffDesk, HandoffError, for_agents, summary
from knowledge_base.api import Offset

log = logging.getLogger("kefu.gateway.agents")
HANDOFF_STATUS = {"not_found": 404, "taken": 409, "not_yours": 409, "not_live": 409}
ORDERS_SHOWN = 5


class AgentReply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=2000)


def shopper_orders(session: Session, slots: dict[str, Any]) -> list[dict[str, Any]]:
    """The orders of the shopper behind a conversation: the logged-in customer (signed token), or
    the owner of the order the shopper verified with their phone digits. Nothing otherwise."""
    customer_id = slots.get("customer_id")
    if customer_id is None and slots.get("verified_order"):
        order = session.scalar(select(Order).where(Order.order_no == str(slots["verified_order"])))
        customer_id = order.customer_id if order else None
    if customer_id is None:
        return []
    rows = session.scalars(select(Order).where(Order.customer_id == int(customer_id))
                           .order_by(Order.created_at.desc()).limit(ORDERS_SHOWN)).all()
    return [{"order_no": o.order_no, "status": o.status, "created_at": o.created_at.isoformat(),
             "total_yuan": o.total / 100, "carrier": o.carrier, "tracking_no": o.tracking_no,
             "items": [{"name": i.variant.product.name_zh, "name_en": i.variant.product.name_en,
                        "variant": f"{i.variant.color_zh} / {i.variant.size}", "quantity": i.quantity}
                       for i in o.items]} for o in rows]


def _conversation(session: Session, conversation_id: str) -> Conversation:
    row = session.get(Conversation, conversation_id)
    if row is None:
        raise AccessError(404, "not_found", f"no conversation {conversation_id!r}")
    return row


def browse(session: Session, tracker: Engine | None, since: dt.datetime, until: dt.datetime, channel: str | None,
           intent: str | None, words: str, limit: int, offset: int) -> dict[str, Any]:
    query = select(Conversation).where(Conversation.created_at >= since, Conversation.created_at < until,
                                       Conversation.last_seq > 0)
    if channel:
        query = query.where(Conversation.channel == channel)
    if intent:
        query = query.where(Conversation.id.in_(analytics.conversations_with_intent(tracker, intent, since, until)))
    rows = session.scalars(query.order_by(Conversation.created_at.desc())).all()
    if words:  # the shoppers' and the bot's words (JSON bodies keep Chinese escaped, so matched here)
        needle = words.lower()
        matching = set()
        for chunk in chunks(rows):
            for cid, body in session.execute(select(TranscriptMessage.conversation_id, TranscriptMessage.body).where(
                    TranscriptMessage.conversation_id.in_([r.id for r in chunk]))):
                if needle in str(body.get("text") or "").lower():
                    matching.add(cid)
        rows = [r for r in rows if r.id in matching]
    page = rows[offset:offset + limit]
    firsts = {cid: body for cid, body in session.execute(
        select(TranscriptMessage.conversation_id, TranscriptMessage.body).where(
            TranscriptMessage.conversation_id.in_([r.id for r in page]), TranscriptMessage.sender == "shopper")
        .order_by(TranscriptMessage.seq.desc()))}  # the last row per conversation wins: its first message
    return {"total": len(rows), "limit": limit, "offset": offset, "items": [
        {**summary(r), "handoff": r.handoff, "first_message": mask(str((firsts.get(r.id) or {}).get("text") or ""))[:200]}
        for r in page]}


def router(access: Access, desk: HandoffDesk, tracker: Engine | None = None) -> APIRouter:
    staff, owner = access.require("owner", "agent"), access.require("owner")
    api = APIRouter(tags=["conversations"])

    async def guarded(work):  # type: ignore[no-untyped-def]
        try:
            return await work
        except HandoffError as error:
            raise AccessError(HANDOFF_STATUS.get(error.code, 400), error.code, error.message) from error

    @api.get("/api/admin/handoff/queue", dependencies=[Depends(staff)])
    async def queue() -> dict:
        return {"items": await to_thread.run_sync(desk.queue)}

    @api.get("/api/admin/conversations/{conversation_id}", dependencies=[Depends(staff)])
    async def conversation(conversation_id: str) -> dict:
        slots = await desk.rasa.slots(conversation_id)

        def work() -> dict:
            with access.sessions() as session:
                row = _conversation(session, conversation_id)
                return {"conversation": summary(row),
                        "messages": [for_agents(m) for m in desk.store.since(conversation_id, 0)],
                        "orders": shopper_orders(session, slots)}
        return await to_thread.run_sync(work)

    @api.get("/api/admin/conversations", dependencies=[Depends(staff)])
    async def search(start: dt.date | None = Query(None, alias="from"), end: dt.date | None = Query(None, alias="to"),
                     channel: str | None = None, intent: str | None = None, q: str = "",
                     limit: int = 50, offset: Offset = 0) -> dict:
        """Transcripts by date, channel, intent (Rasa's tracker store) and words, newest first; personal
        data masked."""
        try:
            since, until = analytics.day_range(*analytics.resolve_range(start, end))
        except ValueError as error:
            raise AccessError(400, "invalid_range", str(error)) from error
        limit = max(1, min(limit, 200))

        def work() -> dict:
            with access.sessions() as session:
                return browse(session, tracker, since, until, channel, intent, q.strip(), limit, offset)
        return await to_thread.run_sync(work)

    @api.post("/api/admin/conversations/{conversation_id}/reveal")
    async def reveal(conversation_id: str, who: Principal = Depends(owner)) -> dict:
        """The transcript unmasked, for an owner; every reveal is written to the audit log."""
        def work() -> dict:
            with access.sessions() as session:
                row = _conversation(session, conversation_id)
                accounts.audit(session, who.username, "reveal", conversation_id,
                               fields=["messages", "caller_phone", "callback_contact"])
                session.commit()
                return {"conversation_id": conversation_id, "caller_phone": row.caller_phone,
                        "callback_contact": row.callback_contact,
                        "messages": [m.wire() for m in desk.store.since(conversation_id, 0)]}
        return await to_thread.run_sync(work)

    @api.post("/api/admin/conversations/{conversation_id}/take")
    async def take(conversation_id: str, who: Principal = Depends(staff)) -> dict:
        return await guarded(desk.take(conversation_id, who))

    @api.post("/api/admin/conversations/{conversation_id}/release")
    async def release(conversation_id: str, who: Principal = Depends(staff)) -> dict:
        return await guarded(desk.release(conversation_id, who))

    @api.post("/api/admin/conversations/{conversation_id}/messages", status_code=201)
    async def reply(conversation_id: str, request: Request, who: Principal = Depends(staff)) -> dict:
        data = AgentReply.model_validate_json(await request.body())
        return await guarded(desk.say(conversation_id, who, data.text.strip()))

    @api.websocket("/ws/agent")
    async def agent_socket(websocket: WebSocket) -> None:
        """Live events for a console: {"type": "queue", "conversations": [...]} whenever the queue
        changes, {"type": "message", "conversation_id", "message"} for every message of a queued
        conversation. Needs the console's session cookie and a same-origin page."""
        token = websocket.cookies.get(COOKIE)
        who = await to_thread.run_sync(access.resolve_cookie, token) if token else None
        if who is None or not protocol.from_own_pages(websocket):
            await websocket.close(code=4401)  # before accept: the handshake is refused
            return
        await websocket.accept()
        push = websocket.send_json
        await desk.agent_joined(push)
        try:
            while True:
                await websocket.receive_text()  # pings; everything the agent does goes through the API
        except WebSocketDisconnect:
            pass
        finally:
            desk.agent_left(push)

    return api

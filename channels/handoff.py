"""Live handoff between the bot and human agents.

A conversation is answered by the bot, waits for an agent (the bot still answers meanwhile), or is
answered by an agent: then Rasa's conversation is paused (its ``pause`` event), shopper messages go
to the agents' inbox instead of Rasa, and the agent's replies go to the shopper's widget. Handing it
back resumes Rasa. Agents' consoles follow everything over ``/ws/agent``.

A conversation is handed over when Rasa says so (the shopper asked for a human, a complaint, a
claim the bot cannot settle) or when the bot could not answer twice in a row.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from anyio import to_thread
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from assistant.commerce.models import Conversation, utcnow
from assistant.privacy import contacts, mask, mask_contact, mask_phone
from channels.admin.accounts import Principal
from channels.rasa_client import RasaClient
from channels.transcripts import Stored, TranscriptStore

log = logging.getLogger("kefu.gateway.handoff")
FALLBACKS_BEFORE_HANDOFF = 2
Push = Callable[[dict[str, Any]], Awaitable[None]]

NOTICES = {  # what the shopper reads when an agent joins or leaves
    "agent_joined": ("{name}（人工客服）已接入，正在为您服务。", "{name} (human agent) has joined and will help you now."),
    "agent_left": ("人工客服已结束服务，智能助手继续为您服务。", "The agent has left; the assistant is back to help you."),
}


class HandoffError(Exception):
    """``code``: not_found, taken, not_yours, not_live."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class HandoffDesk:
    def __init__(self, sessions: sessionmaker[Session], store: TranscriptStore, rasa: RasaClient) -> None:
        self.sessions, self.store, self.rasa = sessions, store, rasa
        self.widgets: dict[str, set[Push]] = {}
        self.agents: set[Push] = set()

    # ------------------------------------------------------------------ who is listening
    def widget_joined(self, conversation_id: str, push: Push) -> None:
        self.widgets.setdefault(conversation_id, set()).add(push)

    def widget_left(self, conversation_id: str, push: Push) -> None:
        self.widgets.get(conversation_id, set()).discard(push)
        if not self.widgets.get(conversation_id):
            self.widgets.pop(conversation_id, None)

    async def agent_joined(self, push: Push) -> None:
        self.agents.add(push)
        await push({"type": "queue", "conversations": await to_thread.run_sync(self.queue)})

    def agent_left(self, push: Push) -> None:
        self.agents.discard(push)

    async def _to_widgets(self, conversation_id: str, message: dict[str, Any]) -> None:
        for push in list(self.widgets.get(conversation_id, ())):
            try:
                await push(message)
            except Exception:  # a closed socket: the widget replays from its last seq when it reconnects
                self.widget_left(conversation_id, push)

    async def _to_agents(self, event: dict[str, Any]) -> None:
        for push in list(self.agents):
            try:
                await push(event)
            except Exception:  # a closed console tab
                self.agents.discard(push)

    async def _queue_changed(self) -> None:
        await self._to_agents({"type": "queue", "conversations": await to_thread.run_sync(self.queue)})

    # ------------------------------------------------------------------ state
    def queue(self) -> list[dict[str, Any]]:
        """Conversations waiting for an agent or answered by one, oldest request first."""
        with self.sessions() as session:
            rows = session.scalars(select(Conversation).where(Conversation.handoff_status.in_(("waiting", "agent")))
                                   .order_by(Conversation.handoff_requested_at)).all()
            return [summary(row) for row in rows]

    def status(self, conversation_id: str) -> str:
        with self.sessions() as session:
            row = session.get(Conversation, conversation_id)
            return row.handoff_status if row else "bot"

    # ------------------------------------------------------------------ events from the shopper's side
    async def after_bot_turn(self, conversation_id: str, replies: list[tuple[str, dict[str, Any]]]) -> None:
        """Rasa answered: a handoff payload, or a second "could not answer" in a row, hands the
        conversation over."""
        kinds = [kind for kind, _ in replies]
        handoff = next((body for kind, body in replies if kind == "handoff"), None)
        reason = (handoff.get("reason") or "requested") if handoff is not None else None
        if handoff is not None and handoff.get("after_hours"):  # the bot asked for a phone or email instead
            return await self.request(conversation_id, str(reason)[:32], status="callback")

        def streak() -> int:
            streak = Conversation.fallback_streak + 1 if "unanswered" in kinds else 0
            with self.sessions() as session:
                value = session.execute(update(Conversation).where(Conversation.id == conversation_id)
                                        .values(fallback_streak=streak).returning(Conversation.fallback_streak)
                                        ).scalar_one()  # read before the commit: SQLite closes it then
                session.commit()
                return value
        if await to_thread.run_sync(streak) >= FALLBACKS_BEFORE_HANDOFF and reason is None:
            reason = "fallback_twice"
        if reason:
            await self.request(conversation_id, str(reason)[:32])

    async def request(self, conversation_id: str, reason: str, status: str = "waiting") -> None:
        def work() -> bool:
            with self.sessions() as session:
                changed = session.execute(update(Conversation).where(
                    Conversation.id == conversation_id, Conversation.handoff_status.in_(("bot", "callback"))).values(
                    handoff_status=status, handoff_reason=reason, handoff_requested_at=utcnow(), handoff=True))
                session.commit()
                return changed.rowcount > 0  # type: ignore[attr-defined]
        if await to_thread.run_sync(work):
            log.info("handoff requested conversation=%s reason=%s status=%s", conversation_id, reason, status)
            if status == "waiting":
                await self._queue_changed()

    async def leave_contact(self, conversation_id: str, text: str) -> str | None:
        """After hours, the shopper's answer to "leave your phone or email": with one in it, the
        conversation joins the agents' queue for a call back and the shopper gets a confirmation;
        without, the shopper has moved on (None: the bot answers as usual)."""
        found = contacts(text)

        def work() -> str:
            with self.sessions() as session:
                row = session.get(Conversation, conversation_id)
                if found:
                    row.callback_contact = found[0][1][:128]
                    row.handoff_status, row.handoff_reason, row.handoff_requested_at = "waiting", "callback", utcnow()
                else:
                    row.handoff_status = "bot"
                session.commit()
                return row.language
        language = await to_thread.run_sync(work)
        if not found:
            return None
        shown = mask_contact(found[0][1])
        log.info("call back requested conversation=%s contact=%s", conversation_id, shown)
        await self._queue_changed()
        return (f"好的，已记下您的联系方式（{shown}），客服上班后会第一时间联系您。" if language == "zh" else
                f"Thank you: we have your contact ({shown}); an agent will get in touch as soon as they are back.")

    async def shopper_message(self, conversation_id: str, stored: Stored) -> None:
        """Every stored message of a conversation in the queue reaches the agents' consoles."""
        await self._to_agents({"type": "message", "conversation_id": conversation_id, "message": for_agents(stored)})

    async def _post(self, conversation_id: str, sender: str, type_: str, body: dict[str, Any]) -> Stored:
        """A message from the agents' side: stored, then shown in the widget and the consoles."""
        stored = await to_thread.run_sync(self.store.append, conversation_id, sender, type_, body)
        await self._to_widgets(conversation_id, stored.wire())
        await self.shopper_message(conversation_id, stored)
        return stored

    # ------------------------------------------------------------------ the agent's actions
    async def take(self, conversation_id: str, agent: Principal) -> dict[str, Any]:
        def claim() -> tuple[str, str]:
            with self.sessions() as session:
                row = session.get(Conversation, conversation_id)
                if row is None:
                    raise HandoffError("not_found", f"no conversation {conversation_id!r}")
                if row.handoff_status == "agent" and row.agent_user_id != agent.user_id:
                    raise HandoffError("taken", f"{row.agent_name} is already answering this conversation")
                row.handoff_status, row.agent_user_id, row.agent_name = "agent", agent.user_id, agent.display_name
                row.handoff_requested_at = row.handoff_requested_at or utcnow()
                row.handoff_reason = row.handoff_reason or "agent_joined"
                row.handoff, row.fallback_streak = True, 0
                session.commit()
                return row.language, row.agent_name or agent.display_name
        language, name = await to_thread.run_sync(claim)
        await self._rasa_event(conversation_id, "pause")
        await self._notice(conversation_id, "agent_joined", language, name)
        await self._queue_changed()
        log.info("agent took conversation=%s agent=%s", conversation_id, agent.username)
        return await to_thread.run_sync(self.conversation_summary, conversation_id)

    async def release(self, conversation_id: str, agent: Principal) -> dict[str, Any]:
        def hand_back() -> str:
            with self.sessions() as session:
                row = self._owned(session, conversation_id, agent)
                row.handoff_status, row.agent_user_id, row.agent_name = "bot", None, None
                row.fallback_streak = 0
                session.commit()
                return row.language
        language = await to_thread.run_sync(hand_back)
        await self._rasa_event(conversation_id, "resume")
        await self._notice(conversation_id, "agent_left", language, agent.display_name)
        await self._queue_changed()
        log.info("agent handed back conversation=%s agent=%s", conversation_id, agent.username)
        return await to_thread.run_sync(self.conversation_summary, conversation_id)

    async def say(self, conversation_id: str, agent: Principal, text: str) -> dict[str, Any]:
        await to_thread.run_sync(self._check_owned, conversation_id, agent)
        stored = await self._post(conversation_id, "agent", "text", {"text": text, "agent_name": agent.display_name})
        return stored.wire()

    def _owned(self, session: Session, conversation_id: str, agent: Principal) -> Conversation:
        row = session.get(Conversation, conversation_id)
        if row is None:
            raise HandoffError("not_found", f"no conversation {conversation_id!r}")
        if row.handoff_status != "agent":
            raise HandoffError("not_live", "no agent is answering this conversation; take it over first")
        if row.agent_user_id != agent.user_id:
            raise HandoffError("not_yours", f"{row.agent_name} is answering this conversation")
        return row

    def _check_owned(self, conversation_id: str, agent: Principal) -> None:
        with self.sessions() as session:
            self._owned(session, conversation_id, agent)

    async def _notice(self, conversation_id: str, kind: str, language: str, name: str) -> None:
        zh, en = NOTICES[kind]
        text = (zh if language == "zh" else en).format(name=name)
        await self._post(conversation_id, "system", kind, {"text": text, "agent_name": name})

    async def _rasa_event(self, conversation_id: str, event: str) -> None:
        """Pause or resume Rasa's conversation."""
        if not await self.rasa.tracker_event(conversation_id, event):
            # the gateway stops sending shopper messages to Rasa while an agent answers, paused or not
            log.error("rasa could not be told to %s conversation=%s", event, conversation_id)

    def conversation_summary(self, conversation_id: str) -> dict[str, Any]:
        with self.sessions() as session:
            row = session.get(Conversation, conversation_id)
            if row is None:
                raise HandoffError("not_found", f"no conversation {conversation_id!r}")
            return summary(row)


def summary(row: Conversation) -> dict[str, Any]:
    return {"id": row.id, "status": row.handoff_status, "reason": row.handoff_reason, "language": row.language,
            "channel": row.channel, "agent_name": row.agent_name, "agent_user_id": row.agent_user_id,
            "requested_at": row.handoff_requested_at.isoformat() if row.handoff_requested_at else None,
            "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat(),
            "last_seq": row.last_seq, "caller": mask_phone(row.caller_phone) if row.caller_phone else None,
            "contact": mask_contact(row.callback_contact) if row.callback_contact else None}


def for_agents(stored: Stored) -> dict[str, Any]:
    """A transcript message as an agent sees it: the shopper's phone numbers, emails and addresses masked."""
    wire = stored.wire()
    if stored.sender == "shopper" and isinstance(wire.get("text"), str):
        wire["text"] = mask(wire["text"])
    return wire

"""Conversation transcripts in the SQL database, with per-conversation sequence numbers."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from assistant.commerce.models import Conversation, TranscriptMessage, utcnow


@dataclass(frozen=True)
class Stored:
    id: str
    seq: int
    sender: str
    type: str
    body: dict[str, Any]
    duplicate: bool = False  # the client had already sent this message (same client_id)
    client_id: str | None = None  # the widget's id of a shopper's message

    def wire(self) -> dict[str, Any]:
        wire = {**self.body, "id": self.id, "seq": self.seq, "type": self.type, "sender": self.sender}
        return {**wire, "client_id": self.client_id} if self.client_id else wire


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(12)}"


class TranscriptStore:
    """Synchronous; the gateway calls it from a worker thread."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def open(self, conversation_id: str | None, language: str, channel: str = "widget",
             caller_phone: str | None = None) -> tuple[str, bool]:
        """(conversation id, existed). An unknown id starts a new conversation."""
        with self.sessions() as session:
            if conversation_id and session.get(Conversation, conversation_id) is not None:
                return conversation_id, True
            conversation = Conversation(id=new_id("c"), language=language, channel=channel, caller_phone=caller_phone)
            session.add(conversation)
            session.commit()
            return conversation.id, False

    def append(self, conversation_id: str, sender: str, type_: str, body: dict[str, Any],
               client_id: str | None = None) -> Stored:
        with self.sessions() as session:
            if client_id:
                existing = session.scalar(select(TranscriptMessage).where(
                    TranscriptMessage.conversation_id == conversation_id, TranscriptMessage.client_id == client_id))
                if existing:
                    return Stored(existing.id, existing.seq, existing.sender, existing.type, existing.body, True,
                                  client_id)
            seq = session.execute(update(Conversation).where(Conversation.id == conversation_id)
                                  .values(last_seq=Conversation.last_seq + 1, updated_at=utcnow())
                                  .returning(Conversation.last_seq)).scalar_one()
            message = TranscriptMessage(id=new_id("m"), conversation_id=conversation_id, seq=seq, sender=sender,
                                        type=type_, body=body, client_id=client_id)
            session.add(message)
            session.commit()
            return Stored(message.id, seq, sender, type_, body, client_id=client_id)

    def append_all(self, conversation_id: str, sender: str, messages: list[tuple[str, dict[str, Any]]]) -> list[Stored]:
        """Several messages (a turn's replies) in one transaction: all stored, or none."""
        if not messages:
            return []
        with self.sessions() as session:
            last = session.execute(update(Conversation).where(Conversation.id == conversation_id)
                                   .values(last_seq=Conversation.last_seq + len(messages), updated_at=utcnow())
                                   .returning(Conversation.last_seq)).scalar_one()
            stored = []
            for seq, (type_, body) in enumerate(messages, start=last - len(messages) + 1):
                message = TranscriptMessage(id=new_id("m"), conversation_id=conversation_id, seq=seq, sender=sender,
                                            type=type_, body=body)
                session.add(message)
                stored.append(Stored(message.id, seq, sender, type_, body))
            session.commit()
            return stored

    def sent(self, conversation_id: str, client_id: str) -> Stored | None:
        """The shopper's message with this client id, when it has been stored already."""
        with self.sessions() as session:
            row = session.scalar(select(TranscriptMessage).where(
                TranscriptMessage.conversation_id == conversation_id, TranscriptMessage.client_id == client_id))
            return Stored(row.id, row.seq, row.sender, row.type, row.body, True, client_id) if row else None

    def since(self, conversation_id: str, last_seq: int) -> list[Stored]:
        with self.sessions() as session:
            rows = session.scalars(select(TranscriptMessage).where(
                TranscriptMessage.conversation_id == conversation_id, TranscriptMessage.seq > last_seq)
                .order_by(TranscriptMessage.seq))
            return [Stored(r.id, r.seq, r.sender, r.type, r.body, client_id=r.client_id) for r in rows]

    def replies_after(self, conversation_id: str, seq: int) -> list[Stored]:
        """What answered the shopper message at ``seq``: the bot's and agents' messages up to the next
        shopper message (an error reply is not an answer: the message is to be sent again)."""
        out = []
        for message in self.since(conversation_id, seq):
            if message.sender == "shopper":
                break
            if message.sender != "system":
                out.append(message)
        return out

    def last_seq(self, conversation_id: str) -> int:
        with self.sessions() as session:
            return session.get(Conversation, conversation_id).last_seq

"""The ``/ws/chat`` session: an explicit state machine (waiting for hello -> open -> closed)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from anyio import to_thread
from fastapi import WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from assistant.settings import Settings
from channels import protocol
from channels.handoff import HandoffDesk
from channels.limits import SlidingWindow
from channels.photos import PhotoError, PhotoService
from channels.rasa_client import RasaClient, RasaUnavailable
from channels.transcripts import Stored, TranscriptStore, new_id
from channels.voice.service import AudioError, VoiceService

log = logging.getLogger("kefu.gateway.chat")
_MEDIA_FRAME = re.compile(r'\s*\{\s*"type"\s*:\s*"(image|audio)"')


@dataclass
class ChatHub:
    """What every chat session shares: settings, storage, Rasa, one lock per conversation."""

    settings: Settings
    store: TranscriptStore
    rasa: RasaClient
    photos: PhotoService
    voice: VoiceService
    desk: HandoffDesk
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    per_address: SlidingWindow = field(init=False)  # messages from one client address, across its conversations

    def __post_init__(self) -> None:
        self.per_address = SlidingWindow(self.settings.widget_messages_per_address_minute, 60)

    def lock(self, conversation_id: str) -> asyncio.Lock:
        return self.locks.setdefault(conversation_id, asyncio.Lock())


class ChatSession:
    def __init__(self, hub: ChatHub, websocket: WebSocket) -> None:
        self.hub = hub
        self.ws = websocket
        self.conversation_id: str | None = None
        self.language = "zh"
        self.customer_token: str | None = None
        self.address = websocket.client.host if websocket.client else "-"
        self.per_session = SlidingWindow(hub.settings.widget_messages_per_minute, 60)
        self.replying_to: str | None = None  # the client id of the message being handled

    async def run(self) -> None:
        await self.ws.accept()
        try:
            while True:
                frame = await protocol.receive_frame(self.ws)
                if frame is None:
                    await self.error("binary_frame")
                    continue
                await self.handle_frame(frame)
        except WebSocketDisconnect:
            log.info("widget disconnected conversation=%s", self.conversation_id)
        finally:
            if self.conversation_id:
                self.hub.desk.widget_left(self.conversation_id, self.ws.send_json)

    async def handle_frame(self, frame: str) -> None:
        self.replying_to = None
        if not self.per_session.allow("session") or not self.hub.per_address.allow(self.address):
            return await self.error("rate_limited", store=False)  # a flood must not fill the transcript
        size = len(frame.encode())
        settings = self.hub.settings
        if size > settings.max_frame_bytes:  # only a photo or a voice message may be bigger, up to its own limit
            media = _MEDIA_FRAME.match(frame[:200])
            if not media:
                return await self.error("frame_too_large")
            limit = settings.max_photo_bytes if media.group(1) == "image" else settings.max_audio_bytes
            if size > limit * 4 // 3 + 4096:
                code = "photo_too_large" if media.group(1) == "image" else "audio_too_large"
                return await self.error(code, limit_mb=limit // (1024 * 1024))
        try:
            raw = protocol.parse_json(frame)
        except ValueError:  # json.JSONDecodeError is one
            return await self.error("malformed_json")
        if isinstance(raw, dict) and isinstance(raw.get("client_id"), str):
            self.replying_to = raw["client_id"][:64]
        if not isinstance(raw, dict) or raw.get("type") not in protocol.CLIENT_TYPES:
            return await self.error("unknown_type", got=str(raw.get("type") if isinstance(raw, dict) else type(raw).__name__)[:40])
        if raw["type"] == "text" and isinstance(raw.get("text"), str) and \
                len(raw["text"]) > self.hub.settings.max_text_chars:
            return await self.error("text_too_long", limit=self.hub.settings.max_text_chars)
        try:
            message = protocol.client_message.validate_python(raw)
        except ValidationError as error:
            fields = sorted({".".join(str(p) for p in e["loc"][1:]) or "message" for e in error.errors()})
            return await self.error("invalid_message", fields=fields)
        if isinstance(message, (protocol.Hello, protocol.Resume)):
            return await self.start(message)
        if self.conversation_id is None:
            return await self.error("not_started")
        if isinstance(message, protocol.AudioMessage):
            return await self.voice(message)
        if isinstance(message, protocol.ImageMessage):
            return await self.photo(message)
        if isinstance(message, protocol.Text):
            await self.turn(message.text, {"text": message.text}, "text", message.client_id)
        elif isinstance(message, protocol.Postback):
            await self.turn(message.payload, {"text": message.title or message.payload, "payload": message.payload},
                            "postback", message.client_id)

    async def photo(self, message: protocol.ImageMessage) -> None:
        """Check, classify and store a photo, show it as the shopper's message, and tell Rasa what
        it shows (intent ``report_defect`` with ``defect_type``, ``defect_confidence``, ``photo_id``)."""
        data = message.data.split(",", 1)[1] if message.data.startswith("data:") else message.data
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return await self.error("photo_invalid_base64")
        try:
            accepted = await to_thread.run_sync(self.hub.photos.accept, raw, self.conversation_id)
        except PhotoError as error:
            return await self.error(f"photo_{error.code}",
                                    limit_mb=self.hub.settings.max_photo_bytes // (1024 * 1024))
        body = {"photo_id": accepted.id, "url": accepted.url, "width": accepted.width, "height": accepted.height}
        await self.turn("/report_defect" + json.dumps(accepted.entities()), body, "image", message.client_id)

    async def voice(self, message: protocol.AudioMessage) -> None:
        """Transcribe a voice message, show the shopper what was heard (with the recording), and
        answer it like typed text, in the language it was spoken in."""
        data = message.data.split(",", 1)[1] if message.data.startswith("data:") else message.data
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return await self.error("audio_invalid_base64")
        settings = self.hub.settings
        sent = await to_thread.run_sync(self.hub.store.sent, self.conversation_id, message.client_id)
        if sent is not None:  # resent after a reconnect: answered from the transcript, not heard twice
            return await self.turn(sent.body.get("text", ""), sent.body, sent.type, message.client_id)
        await self.ws.send_json({"type": "typing", "id": new_id("t"), "sender": "system", "stage": "transcribing",
                                 "seq": await to_thread.run_sync(self.hub.store.last_seq, self.conversation_id)})
        try:
            accepted = await to_thread.run_sync(self.hub.voice.accept, raw, self.conversation_id)
        except AudioError as error:
            return await self.error(f"audio_{error.code}", limit_mb=settings.max_audio_bytes // (1024 * 1024),
                                    limit_s=round(settings.max_audio_seconds))
        # a transcript is speech, never a button: a leading slash would read as an intent to Rasa
        text = accepted.transcript.text.lstrip("/").strip()
        await self.turn(text, accepted.body(), "voice", message.client_id, language=accepted.transcript.language)

    async def start(self, message: protocol.Hello | protocol.Resume) -> None:
        requested = message.conversation_id if isinstance(message, protocol.Resume) else None
        self.language = message.language or self.language
        self.customer_token = message.customer_token or self.customer_token
        conversation_id, existed = await to_thread.run_sync(self.hub.store.open, requested, self.language)
        if self.conversation_id and self.conversation_id != conversation_id:
            self.hub.desk.widget_left(self.conversation_id, self.ws.send_json)
        self.conversation_id = conversation_id
        self.hub.desk.widget_joined(conversation_id, self.ws.send_json)  # an agent's replies reach this socket
        last_seq = message.last_seq if isinstance(message, protocol.Resume) and existed else 0
        await self.ws.send_json({"type": "welcome", "id": new_id("w"), "conversation_id": conversation_id,
                                 "seq": await to_thread.run_sync(self.hub.store.last_seq, conversation_id),
                                 "resumed": existed, "sender": "system"})
        if requested and not existed:
            await self.error("unknown_conversation")
        for stored in await to_thread.run_sync(self.hub.store.since, conversation_id, last_seq):
            await self.ws.send_json(stored.wire())
        log.info("conversation %s %s", conversation_id, "resumed" if existed else "started")

    async def turn(self, text_for_rasa: str, body: dict[str, Any], type_: str, client_id: str,
                   language: str | None = None) -> None:
        conversation_id = self.conversation_id
        assert conversation_id is not None
        async with self.hub.lock(conversation_id):
            shopper = await to_thread.run_sync(self.hub.store.append, conversation_id, "shopper", type_, body, client_id)
            await self.ws.send_json(shopper.wire())
            status = await to_thread.run_sync(self.hub.desk.status, conversation_id)
            if status == "callback" and not shopper.duplicate and isinstance(body.get("text"), str):
                confirmation = await self.hub.desk.leave_contact(conversation_id, body["text"])
                if confirmation is not None:
                    stored = await to_thread.run_sync(self.hub.store.append, conversation_id, "bot", "text",
                                                      {"text": confirmation})
                    return await self.ws.send_json({**stored.wire(), "reply_to": client_id})
                status = "bot"
            if status != "bot" and not shopper.duplicate:
                await self.hub.desk.shopper_message(conversation_id, shopper)
            if status == "agent":  # a human answers; Rasa is paused
                return
            if shopper.duplicate:  # resent after a reconnect or a retry: replay the answer when there is one
                replies = await to_thread.run_sync(self.hub.store.replies_after, conversation_id, shopper.seq)
                if replies:
                    for stored in replies:
                        await self.ws.send_json({**stored.wire(), "reply_to": client_id})
                    return
            await self.ws.send_json({"type": "typing", "id": new_id("t"), "seq": shopper.seq, "sender": "bot"})
            metadata = {"language": language or self.language, "channel": "widget"}
            if self.customer_token:
                metadata["customer_token"] = self.customer_token
            try:  # Rasa answers a resent message from its tracker if it has seen it: never processed twice
                replies = await self.hub.rasa.send(conversation_id, text_for_rasa, metadata, message_id=client_id,
                                                   resend=shopper.duplicate)
            except RasaUnavailable as failure:
                log.warning("turn failed conversation=%s seq=%d code=%s", conversation_id, shopper.seq, failure.code)
                return await self.error("upstream_unavailable", retry=True)
            stored_replies = await to_thread.run_sync(self.hub.store.append_all, conversation_id, "bot", replies)
            await self.hub.desk.after_bot_turn(conversation_id, replies)  # before the shopper reads "leave your phone"
            for stored in stored_replies:
                await self.ws.send_json({**stored.wire(), "reply_to": client_id})
                if status == "waiting":
                    await self.hub.desk.shopper_message(conversation_id, stored)

    async def error(self, code: str, store: bool = True, retry: bool = False, **detail: Any) -> None:
        """An error reply in the shopper's language, stored in the conversation unless ``store`` is False.
        It names the message it answers (``reply_to``); ``retry`` says sending that message again
        (same client id) may succeed."""
        zh, en = protocol.ERROR_TEXT[code]
        body = {"code": code, "text": (zh if self.language == "zh" else en).format(**detail), **detail}
        context = {"reply_to": self.replying_to, "retry": retry} if self.replying_to else {}
        if self.conversation_id and store:
            stored: Stored = await to_thread.run_sync(self.hub.store.append, self.conversation_id, "system",
                                                      "error", body)
            await self.ws.send_json({**stored.wire(), **context})
        else:
            await self.ws.send_json({**body, "type": "error", "id": new_id("e"), "seq": 0, "sender": "system",
                                     **context})
        log.info("error reply code=%s conversation=%s", code, self.conversation_id)


"""Phone calls on ``/ws/voice``, speaking the Twilio Media Streams protocol, so a Twilio number
(TwiML ``<Connect><Stream url="wss://your-kefu/ws/voice">``) or any SIP gateway that speaks it
can be pointed at kefu.

Caller -> kefu (JSON text frames):
  {"event": "connected", "protocol": "Call", "version": "1.0.0"}
  {"event": "start", "streamSid", "start": {"callSid", "tracks", "mediaFormat": {"encoding": "audio/x-mulaw",
   "sampleRate": 8000, "channels": 1}, "customParameters": {"from"?: "+86...", "language"?: "zh"|"en"}}}
  {"event": "media", "streamSid", "media": {"track": "inbound", "payload": base64 8 kHz μ-law}}
  {"event": "mark", "streamSid", "mark": {"name"}}   a mark we sent has been played (or cleared)
  {"event": "dtmf", "dtmf": {"digit"}}                keypad digits, ended by "#" or a 2 s pause
  {"event": "stop", ...}
kefu -> caller: {"event": "media", "streamSid", "media": {"payload"}}, {"event": "mark", "streamSid",
  "mark": {"name"}} after each spoken message, and {"event": "clear", "streamSid"} when the caller
  talks over the bot (barge-in: what is still buffered is dropped).

The call is one conversation (channel "phone") in the same transcript store as chats: the
caller's turns are stored as ``voice`` messages with what was heard, the bot's as what it said.
Everything is driven by the caller's audio frames (Twilio sends them continuously, silence
included), so "8 seconds of silence" means 400 quiet frames, not a wall-clock timer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from anyio import to_thread
from fastapi import WebSocket, WebSocketDisconnect

from assistant.privacy import mask_phone
from channels.protocol import parse_json, receive_frame
from channels.rasa_client import RasaUnavailable
from channels.voice.audio import SAMPLE_RATE, AudioError, is_silent
from channels.voice.speech import Speaker, sentences
from channels.voice.telephony import (
    FRAME_MS,
    FRAME_SAMPLES,
    PHONE_RATE,
    TurnDetector,
    resample,
    ulaw_decode,
    ulaw_encode,
)

log = logging.getLogger("kefu.gateway.phone")

SAY = {
    "greeting": ("您好，这里是客服，请问有什么可以帮您？", "Hello, this is customer service. How can I help you?"),
    "not_heard": ("抱歉，我没有听清，请再说一遍。", "Sorry, I could not hear that. Could you say it again?"),
    "trouble": ("抱歉，系统有点忙，请稍后再说一遍。", "Sorry, I'm having trouble right now. Please say that again."),
    "you_can_say": ("您可以说：", "You can say: "),
    "found": ("为您找到：", "I found: "),
    "coupon": ("优惠券 {title}，券码 {code}。", "Coupon {title}, code {code}."),
    "checkout": ("实付 {total} 元，结算链接已发送。", "Your total is {total} yuan; the checkout link has been sent."),
}


def say(key: str, language: str, **values: Any) -> str:
    zh, en = SAY[key]
    return (zh if language == "zh" else en).format(**values)


_LONG_NUMBER = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{0,3})(\d{5,})(?![0-9])")
_YUAN = re.compile(r"[¥￥]\s*(\d+(?:\.\d+)?)")


def spell_numbers(text: str) -> str:
    """Order and tracking numbers read out the way a person reads them on the phone, letter by
    letter and digits in groups of four with a pause between groups:
    "KF10296356" -> "K F, 1 0 2 9, 6 3 5 6" (not "ten million ...")."""
    def spell(match: re.Match[str]) -> str:
        letters, digits = match.group(1).upper(), match.group(2)
        groups = [" ".join(digits[i:i + 4]) for i in range(0, len(digits), 4)]
        return ", ".join(([" ".join(letters)] if letters else []) + groups)
    return _LONG_NUMBER.sub(spell, text)


def for_the_ear(text: str, language: str) -> str:
    text = spell_numbers(text)
    return _YUAN.sub(lambda m: m.group(1) + ("元" if language == "zh" else " yuan"), text)


def speakable(kind: str, body: dict[str, Any], language: str) -> str | None:
    """What a reply sounds like on the phone; cards and links become sentences."""
    if kind in ("text", "error"):
        return for_the_ear(body["text"], language) if body.get("text") else None
    if kind == "buttons":
        titles = [b["title"] for b in body.get("buttons", []) if b.get("title")]
        tail = (say("you_can_say", language) + ("、" if language == "zh" else ", ").join(titles)) if titles else ""
        return " ".join(part for part in (body.get("text", ""), tail) if part) or None
    if kind == "product_cards":
        names = [for_the_ear(f"{p['name']} {p.get('price_text', '')}".strip(), language)
                 for p in body.get("products", [])[:3]]
        return say("found", language) + ("；" if language == "zh" else "; ").join(names) if names else None
    if kind == "coupon":
        return say("coupon", language, title=body.get("title", ""), code=" ".join(str(body.get("code", ""))))
    if kind == "checkout":
        return say("checkout", language, total=body.get("total", ""))
    return None  # order, handoff, return, stock...: the text that comes with them says it


@dataclass
class CallState:
    stream_sid: str = ""
    call_sid: str = ""
    caller: str | None = None
    language: str = "zh"
    conversation_id: str | None = None
    marks: set[str] = field(default_factory=set)  # sent and not yet played
    quiet_frames: int = 0
    reprompts: int = 0
    bad_frames: int = 0
    started: bool = False
    ended: bool = False
    turn_ended_at: float | None = None  # when the last turn of the caller ended (for latency)
    latencies_ms: list[float] = field(default_factory=list)


class PhoneCall:
    """One call: waiting for ``start`` -> in call -> ended (``stop`` or the socket closes)."""

    SILENCE_REPROMPT_MS = 8_000  # the caller said nothing for this long after the bot finished
    MAX_REPROMPTS = 2
    KEYPAD_PAUSE_MS = 2_000  # keypad digits end with "#" or this long without another key

    def __init__(self, hub: Any, websocket: WebSocket, speaker: Speaker) -> None:
        self.hub = hub  # channels.chat.ChatHub
        self.ws = websocket
        self.speaker = speaker
        self.state = CallState(language=hub.settings.phone_language)
        self.detector = TurnDetector()
        self.buffer = bytearray()
        # a turn of speech, ("keypad", digits), the key of something to say, or None: the call ended
        self.turns: asyncio.Queue[np.ndarray | tuple[str, str] | str | None] = asyncio.Queue()
        self.worker: asyncio.Task | None = None
        self.send_lock = asyncio.Lock()
        self.mark_counter = 0
        self.barge_ins = 0  # what is being spoken stops when this changes
        self.keys = ""  # keypad digits not yet sent (ended by "#" or a pause)
        self.keys_quiet_frames = 0

    # ---- the socket

    async def run(self) -> None:
        await self.ws.accept()
        try:
            while not self.state.ended:
                frame = await receive_frame(self.ws)
                if frame is None:
                    log.info("phone: binary frame ignored")
                    continue
                await self.handle(frame)
        except WebSocketDisconnect:
            pass
        finally:
            self.state.ended = True
            if self.worker:
                await self.turns.put(None)
                try:
                    await asyncio.wait_for(self.worker, timeout=5)
                except (TimeoutError, asyncio.CancelledError):
                    self.worker.cancel()
            log.info("call ended conversation=%s", self.state.conversation_id)

    async def handle(self, frame: str) -> None:
        try:
            event = parse_json(frame)
        except ValueError:
            log.info("phone: malformed frame ignored")
            return
        if not isinstance(event, dict):
            return
        kind = event.get("event")
        if kind == "start":
            await self.start(event)
        elif kind == "media" and self.state.started:
            await self.media(event.get("media") or {})
        elif kind == "mark":
            name = (event.get("mark") or {}).get("name")
            self.state.marks.discard(str(name))
            if not self.state.marks:
                self.state.quiet_frames = 0  # the silence timer starts when the bot has finished
        elif kind == "dtmf" and self.state.started:
            digit = str((event.get("dtmf") or {}).get("digit", ""))
            if digit == "#" and self.keys:
                await self.turns.put(("keypad", self.keys))
                self.keys = ""
            elif digit.isdigit() and len(digit) == 1 and len(self.keys) < 32:
                self.keys += digit
                self.keys_quiet_frames = 0
                self.state.quiet_frames = 0
        elif kind == "stop":
            rest = self.detector.flush()
            if rest is not None:
                await self.turns.put(rest)
            self.state.ended = True
        # "connected", "dtmf" and anything unknown: nothing to do

    async def start(self, event: dict[str, Any]) -> None:
        if self.state.started:
            return
        start = event.get("start") or {}
        params = start.get("customParameters") or {}
        self.state.stream_sid = str(event.get("streamSid") or start.get("streamSid") or "")
        self.state.call_sid = str(start.get("callSid") or "")
        caller = params.get("from") or params.get("From") or params.get("caller")
        self.state.caller = str(caller)[:32] if caller else None
        if params.get("language") in ("zh", "en"):
            self.state.language = params["language"]
        media_format = start.get("mediaFormat") or {}
        if media_format and (media_format.get("encoding"), media_format.get("sampleRate")) != ("audio/x-mulaw",
                                                                                                 PHONE_RATE):
            log.warning("phone: unexpected media format %s; treating it as 8 kHz μ-law", media_format)
        self.state.conversation_id, _ = await to_thread.run_sync(
            lambda: self.hub.store.open(None, self.state.language, channel="phone", caller_phone=self.state.caller))
        self.state.started = True
        self.worker = asyncio.create_task(self.work())
        log.info("call started conversation=%s caller=%s", self.state.conversation_id,
                 mask_phone(self.state.caller or ""))
        await self.speak_and_store(say("greeting", self.state.language), self.state.language)

    async def media(self, media: dict[str, Any]) -> None:
        if media.get("track") not in (None, "inbound", "inbound_track"):
            return
        try:
            data = base64.b64decode(str(media.get("payload", "")), validate=True)
        except (binascii.Error, ValueError):
            self.state.bad_frames += 1
            if self.state.bad_frames == 1 or self.state.bad_frames % 250 == 0:  # once, then every 5 s of it
                await self.turns.put("not_heard")
            return
        self.buffer.extend(data)
        while len(self.buffer) >= FRAME_SAMPLES:
            chunk = bytes(self.buffer[:FRAME_SAMPLES])
            del self.buffer[:FRAME_SAMPLES]
            await self.frame(ulaw_decode(chunk))

    async def frame(self, samples: np.ndarray) -> None:
        if self.keys:
            self.keys_quiet_frames += 1
            if self.keys_quiet_frames * FRAME_MS >= self.KEYPAD_PAUSE_MS:
                await self.turns.put(("keypad", self.keys))
                self.keys = ""
        event = self.detector.push(samples)
        if isinstance(event, str):  # the caller started talking
            self.state.quiet_frames = 0
            if self.state.marks:  # ... over the bot: stop playback at once
                self.barge_ins += 1
                await self.send({"event": "clear", "streamSid": self.state.stream_sid})
                log.info("barge-in conversation=%s", self.state.conversation_id)
            return
        if event is not None:
            self.state.turn_ended_at = time.perf_counter()
            self.state.quiet_frames = 0
            await self.turns.put(event)
            return
        if not self.detector.speaking and not self.state.marks and self.turns.empty():
            self.state.quiet_frames += 1
            if self.state.quiet_frames * FRAME_MS >= self.SILENCE_REPROMPT_MS:
                self.state.quiet_frames = 0
                if self.state.reprompts < self.MAX_REPROMPTS:
                    self.state.reprompts += 1
                    await self.turns.put("not_heard")

    # ---- turns, one at a time, in order

    async def work(self) -> None:
        while True:
            item = await self.turns.get()
            if item is None:
                return
            try:
                if isinstance(item, str):
                    await self.speak_and_store(say(item, self.state.language), self.state.language)
                elif isinstance(item, tuple):
                    await self.keypad(item[1])
                else:
                    await self.turn(item)
            except (RuntimeError, OSError) as error:
                log.warning("phone turn failed conversation=%s: %s", self.state.conversation_id, type(error).__name__)

    async def turn(self, samples8k: np.ndarray) -> None:
        conversation_id = self.state.conversation_id
        assert conversation_id is not None
        audio = resample(samples8k, PHONE_RATE, SAMPLE_RATE)
        transcript = None
        if not is_silent(audio):
            try:
                transcript = await to_thread.run_sync(self.hub.voice.transcribe, audio)
            except AudioError:
                return await self.speak_and_store(say("trouble", self.state.language), self.state.language)
        if transcript is None or not transcript.text.strip(" .,。，!?！？…-"):
            return await self.speak_and_store(say("not_heard", self.state.language), self.state.language)
        self.state.language = transcript.language
        body = {"text": transcript.text, "duration_s": round(len(samples8k) / PHONE_RATE, 1),
                "language": transcript.language}
        await self.answer(transcript.text.lstrip("/"), "voice", body)

    async def keypad(self, digits: str) -> None:
        """Digits the caller typed on the keypad (DTMF): a turn like spoken words, and the
        reliable way to give the last digits of a phone on a noisy line."""
        await self.answer(digits, "text", {"text": digits, "keypad": True, "language": self.state.language})

    async def answer(self, text: str, type_: str, body: dict[str, Any]) -> None:
        conversation_id = self.state.conversation_id
        assert conversation_id is not None
        self.state.reprompts = 0
        language = self.state.language
        async with self.hub.lock(conversation_id):
            heard = await to_thread.run_sync(self.hub.store.append, conversation_id, "shopper", type_, body)
            metadata = {"language": language, "channel": "phone"}
            try:
                replies = await self.hub.rasa.send(conversation_id, text, metadata, message_id=heard.id)
            except RasaUnavailable:
                return await self.speak_and_store(say("trouble", language), language)
            spoken = []
            for kind, reply_body in replies:
                await to_thread.run_sync(self.hub.store.append, conversation_id, "bot", kind, reply_body)
                text = speakable(kind, reply_body, language)
                if text:
                    spoken.append(text)
            await self.hub.desk.after_bot_turn(conversation_id, replies)  # a human: the agents' inbox, with the number
        if spoken:
            await self.speak(" ".join(spoken), language)

    # ---- speaking

    async def speak_and_store(self, text: str, language: str) -> None:
        assert self.state.conversation_id is not None
        await to_thread.run_sync(self.hub.store.append, self.state.conversation_id, "bot", "text", {"text": text})
        await self.speak(text, language)

    async def speak(self, text: str, language: str) -> None:
        """Synthesise sentence by sentence (the first one plays while the rest is made) and
        stream μ-law back, with a mark after each sentence so we know when playback is done."""
        barge_ins = self.barge_ins
        for sentence in sentences(text) or [text]:
            if self.state.ended or self.barge_ins != barge_ins:
                return
            samples, rate = await to_thread.run_sync(self.speaker.speak, sentence, language)
            if self.barge_ins != barge_ins:
                return
            payload = ulaw_encode(resample(samples, rate, PHONE_RATE))
            self.mark_counter += 1
            name = f"say-{self.mark_counter}"
            self.state.marks.add(name)
            if self.state.turn_ended_at is not None:
                self.state.latencies_ms.append((time.perf_counter() - self.state.turn_ended_at) * 1000)
                log.info("reply audio %.0f ms after the caller stopped conversation=%s",
                         self.state.latencies_ms[-1], self.state.conversation_id)
                self.state.turn_ended_at = None
            for offset in range(0, len(payload), FRAME_SAMPLES * 10):  # 200 ms per media message
                await self.send({"event": "media", "streamSid": self.state.stream_sid,
                                 "media": {"payload": base64.b64encode(payload[offset:offset + FRAME_SAMPLES * 10])
                                           .decode()}})
            await self.send({"event": "mark", "streamSid": self.state.stream_sid, "mark": {"name": name}})

    async def send(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            try:
                await self.ws.send_text(json.dumps(message))
            except (WebSocketDisconnect, RuntimeError):
                self.state.ended = True

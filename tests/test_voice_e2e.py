"""Voice messages through the whole stack: widget frame -> gateway checks -> Whisper -> the
transcript shown to the shopper -> Rasa -> the answer, like typed text."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from assistant.commerce.db import session_factory
from assistant.commerce.models import TranscriptMessage, VoiceClip
from channels.voice.audio import SAMPLE_RATE, to_wav
from tests.chat_client import ChatClient, of_type, texts
from tests.voice_audio import convert, read_out, speak, spoken_order

pytestmark = pytest.mark.e2e


def spelled(order_no: str) -> str:
    """How a shopper reads an order number aloud: "K F 1 0 2 9 ..." """
    return " ".join(order_no)


def test_a_spoken_order_question_is_transcribed_and_answered(stack):
    own, digits = spoken_order(stack)
    chat = ChatClient(stack.ws_url, "en")
    question = convert(speak("Where is my order?"), "webm")  # what Chrome's MediaRecorder sends
    replies = chat.voice(question, "audio/webm;codecs=opus", client_id="voice-1")
    heard = replies[0]
    assert heard["type"] == "voice" and heard["sender"] == "shopper", heard
    assert "where is my order" in heard["text"].lower() and heard["language"] == "en", heard
    assert heard["audio_url"].startswith("/audio/") and heard["duration_s"] > 0.5
    assert "order number" in texts(replies), texts(replies)

    replies = chat.voice(speak(f"My order number is {spelled(own)}.", speed=130))
    assert "last 4 digits" in texts(replies), (replies[0]["text"], texts(replies))
    replies = chat.voice(speak(read_out(digits), speed=130))
    orders = of_type(replies, "order")
    assert orders and orders[0]["order_id"] == own, (replies[0]["text"], texts(replies))

    again = chat.voice(question, "audio/webm;codecs=opus", client_id="voice-1")  # resent after a reconnect
    assert again[0]["id"] == heard["id"] and "order number" in texts(again)  # replayed, not heard twice

    played = httpx.get(stack.gateway + heard["audio_url"])
    assert played.status_code == 200 and played.content == question
    assert played.headers["content-type"] == "audio/webm"
    assert httpx.get(stack.gateway + "/audio/" + "x" * 24).status_code == 404
    with session_factory(stack.settings.db_url)() as session:
        clips = session.scalars(select(VoiceClip).where(VoiceClip.conversation_id == chat.conversation_id)).all()
        assert len(clips) == 3 and {c.language for c in clips} == {"en"}
        assert all(c.transcribe_ms and c.model.startswith("faster-whisper") for c in clips)
        stored = session.scalars(select(TranscriptMessage).where(
            TranscriptMessage.conversation_id == chat.conversation_id, TranscriptMessage.type == "voice")).all()
        assert len(stored) == 3
    chat.close()


def test_bad_voice_messages_get_clear_errors_and_the_chat_goes_on(stack):
    chat = ChatClient(stack.ws_url, "en")
    cases = [
        (b"", "audio_empty"),
        (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n" * 3, "audio_unsupported_type"),
        (speak("hello")[:60], "audio_corrupt"),  # a WAV header and nothing after it
        (b"OggS" + bytes(400), "audio_corrupt"),
        (to_wav(np.zeros(SAMPLE_RATE * 3, np.float32)), "audio_silent"),
        (convert(to_wav(np.full(SAMPLE_RATE * 70, 0.01, np.float32)), "flac"), "audio_too_long"),
    ]
    for data, code in cases:
        replies = chat.voice(data)
        assert [r["type"] for r in replies] == ["error"] and replies[0]["code"] == code, (code, replies)
        assert replies[0]["text"] and replies[0]["sender"] == "system"
    chat.send_raw(json.dumps({"type": "audio", "data": "not base64!!", "client_id": "a-bad"}))
    assert chat.recv()["code"] == "audio_invalid_base64"
    chat.send_raw(json.dumps({"type": "audio", "client_id": "a-nodata"}))
    assert chat.recv()["code"] == "invalid_message"
    huge = base64.b64encode(b"RIFF" + bytes(5 * 1024 * 1024)).decode()
    chat.send_raw(json.dumps({"type": "audio", "data": huge, "client_id": "a-huge"}))
    refused = chat.recv()
    assert refused["code"] == "audio_too_large" and "4 MB" in refused["text"]

    answered = chat.say("where is my order?")
    assert "order number" in texts(answered)  # the conversation goes on
    with session_factory(stack.settings.db_url)() as session:
        assert not session.scalars(select(VoiceClip).where(VoiceClip.conversation_id == chat.conversation_id)).all()
        shopper = session.scalars(select(TranscriptMessage).where(
            TranscriptMessage.conversation_id == chat.conversation_id, TranscriptMessage.sender == "shopper")).all()
        assert [m.type for m in shopper] == ["text"]
    chat.close()

"""The bad-input corpus (tests/bad_inputs/) against the widget's WebSocket, the console API and the
NLU server: every bad frame gets an error reply and the session goes on; injection strings are
stored and returned verbatim, never run; nothing said is lost; no server error anywhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from assistant.commerce import db
from assistant.commerce.models import TranscriptMessage
from assistant.settings import Settings
from tests.test_console_api import OWNER, database_with_accounts, login
from tests.test_widget_limits import gateway

CORPUS = Path(__file__).with_name("bad_inputs")
STRINGS = [s for key, values in json.loads((CORPUS / "strings.json").read_text()).items() if key != "_about"
           for s in values]
FRAMES = json.loads((CORPUS / "frames.json").read_text())["frames"]


@pytest.fixture()
def app(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    database_with_accounts(tmp_path)
    yield from gateway(tmp_path, widget_messages_per_minute=10_000, widget_messages_per_address_minute=10_000,
                       admin_login_per_minute=10_000)


def next_frame(widget) -> dict:  # type: ignore[no-untyped-def]
    while True:
        frame = widget.receive_json()
        if frame["type"] != "typing":
            return frame


def test_bad_frames_get_errors_and_the_conversation_goes_on(app):
    client, url = app
    with client.websocket_connect("/ws/chat") as widget:
        widget.send_json({"type": "hello", "language": "en"})
        conversation_id = next_frame(widget)["conversation_id"]
        bad = [*FRAMES, "[" * 5000 + "]" * 5000, "{\"a\":" * 3000 + "1" + "}" * 3000, "x" * 70_000]
        for n, frame in enumerate(bad):
            widget.send_text(frame)
            reply = next_frame(widget)
            assert reply["type"] == "error" and reply["text"], (frame[:60], reply)
            widget.send_json({"type": "text", "text": f"still here {n}", "client_id": f"ok{n}"})
            assert next_frame(widget)["text"] == f"still here {n}"
            assert next_frame(widget)["text"] == "ok"  # the stand-in Rasa answered: the session is fine
        widget.send_bytes(b"\x00\x01binary")
        assert next_frame(widget)["code"] == "binary_frame"
    with db.session_factory(url)() as session:
        shopper = [m.body["text"] for m in session.query(TranscriptMessage).filter_by(
            conversation_id=conversation_id, sender="shopper").order_by(TranscriptMessage.seq)]
    assert shopper == [f"still here {n}" for n in range(len(bad))]


def test_injection_strings_are_stored_verbatim_in_order(app):
    client, url = app
    with client.websocket_connect("/ws/chat") as widget:
        widget.send_json({"type": "hello", "language": "zh"})
        conversation_id = next_frame(widget)["conversation_id"]
        for n, text in enumerate(STRINGS):
            widget.send_json({"type": "text", "text": text, "client_id": f"s{n}"})
            echo = next_frame(widget)
            if echo["type"] == "error":  # only what the protocol refuses: blank text (\x0b\x0c count as blank)
                assert not text.strip() and echo["code"] == "invalid_message", (text, echo)
                continue
            assert echo["text"] == text and next_frame(widget)["text"] == "ok"
    with db.session_factory(url)() as session:
        rows = session.query(TranscriptMessage).filter_by(conversation_id=conversation_id).order_by(
            TranscriptMessage.seq).all()
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))  # no gap, no duplicate
    assert [r.body["text"] for r in rows if r.sender == "shopper"] == [s for s in STRINGS if s.strip()]


def test_the_console_api_stores_or_refuses_every_string_and_never_fails(app):
    client, _ = app
    csrf = login(client, *OWNER)
    created = 0
    for n, text in enumerate(STRINGS):
        entry = {"key": f"bad_{n}", "category": "service", "tags": [text[:50]], "questions_zh": [text[:300] or "问"],
                 "answer_zh": f"答案 {text}"[:4000], "questions_en": [], "answer_en": ""}
        response = client.post("/api/admin/kb/faqs", json=entry, headers=csrf)
        assert response.status_code in (201, 400), (text, response.status_code, response.text)
        if response.status_code == 201:
            created += 1
            stored = client.get(f"/api/admin/kb/faqs/{response.json()['id']}").json()
            assert stored["answer_zh"] == f"答案 {text}".strip() and "json" in client.get(
                f"/api/admin/kb/faqs/{response.json()['id']}").headers["content-type"]
        for path, params in (("/api/admin/kb/faqs", {"q": text}), ("/api/admin/kb/unanswered", {"language": text}),
                             ("/api/admin/conversations", {"q": text, "intent": text, "channel": text}),
                             ("/api/admin/audit", {})):
            status = client.get(path, params=params).status_code
            assert status in (200, 400), (path, text, status)
        assert client.post("/api/admin/kb/preview", json={"text": text or "?"}, headers=csrf).status_code in (400, 503)
        other = TestClient(client.app)
        assert other.post("/api/admin/auth/login", json={"username": text or "x", "password": text or "x"}
                          ).status_code in (400, 401)
        csv_body = f"key,category,tags,questions_zh,questions_en,answer_zh,answer_en,status\nimp_{n},service,,\"{text}\",,x,,\n"
        assert client.post("/api/admin/kb/import?format=csv", content=csv_body.encode("utf-8", "surrogatepass"),
                           headers=csrf).status_code in (200, 400)
    assert created > len(STRINGS) // 2  # most are ordinary text to the shop and are kept as such
    for payload in (b"[" * 5000 + b"]" * 5000, b"\xff\xfe\x00", b"{" * 100, b"null", b"[]", b"\"x\"" * 10000):
        for path in ("/api/admin/kb/faqs", "/api/admin/users", "/api/admin/kb/preview", "/api/admin/auth/login"):
            status = client.post(path, content=payload, headers=csrf).status_code
            assert status == 400, (path, payload[:20], status)


def test_the_nlu_server_parses_every_string():
    from nlu.server import create_app

    model = Settings().nlu_model_path
    assert (model / "model.json").exists() or any(model.iterdir()), "make test trains the intent model first"
    with TestClient(create_app(model)) as client:
        for text in STRINGS:
            response = client.post("/model/parse", json={"text": text})
            assert response.status_code == 200 and response.json()["intent"]["name"], (text, response.text)
        for payload in (b"[" * 5000 + b"]" * 5000, b"\xff", b"{\"text\": 5}", b"{}"):
            assert client.post("/model/parse", content=payload).status_code == 400, payload[:20]

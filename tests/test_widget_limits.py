"""The widget's WebSocket: the allow-list of origins and the rate limits per conversation and per
client address. The gateway app in-process with a stand-in Rasa that answers every message."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from assistant.commerce import db
from assistant.commerce.models import TranscriptMessage
from assistant.settings import Settings
from channels.limits import SlidingWindow


class EchoRasa(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        reply = json.dumps([{"recipient_id": body["sender"], "text": "ok"}]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args) -> None:
        pass


def gateway(tmp_path: Path, **limits) -> Iterator[tuple[TestClient, str]]:  # type: ignore[no-untyped-def]
    from channels.app import create_app

    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoRasa)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    db.upgrade(url)
    settings = Settings(_env_file=None, var_dir=tmp_path, database_url=url, kb_port=9,
                        rasa_port=server.server_address[1], **limits)
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        yield client, url
    server.shutdown()


@pytest.fixture()
def strict(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    yield from gateway(tmp_path, widget_messages_per_minute=3, widget_messages_per_address_minute=5,
                       widget_connections_per_address_minute=3, widget_origins="https://shop.example.com")


def replies(widget, n: int) -> list[dict]:  # type: ignore[no-untyped-def]
    out = []
    while len(out) < n:
        frame = widget.receive_json()
        if frame["type"] != "typing":
            out.append(frame)
    return out


def test_a_flood_in_one_conversation_is_refused_without_filling_the_transcript(strict):
    client, url = strict
    with client.websocket_connect("/ws/chat") as widget:
        widget.send_json({"type": "hello", "language": "en"})  # 1
        conversation_id = widget.receive_json()["conversation_id"]
        for i in range(2):  # 2, 3
            widget.send_json({"type": "text", "text": f"hi {i}", "client_id": f"m{i}"})
            assert [f["sender"] for f in replies(widget, 2)] == ["shopper", "bot"]
        widget.send_json({"type": "text", "text": "one too many", "client_id": "m9"})
        refused = widget.receive_json()
        assert refused["type"] == "error" and refused["code"] == "rate_limited" and "too fast" in refused["text"]
    with db.session_factory(url)() as session:
        stored = session.query(TranscriptMessage).filter_by(conversation_id=conversation_id).all()
    assert len(stored) == 4 and all(m.type != "error" for m in stored)  # two turns, no refusal stored


def test_one_address_is_limited_across_its_conversations_and_connections(strict):
    client, _ = strict
    sent = 0
    for n in range(2):
        with client.websocket_connect("/ws/chat") as widget:
            widget.send_json({"type": "hello", "language": "zh"})
            widget.receive_json()
            sent += 1
            widget.send_json({"type": "text", "text": "你好", "client_id": f"a{n}"})
            replies(widget, 2)
            sent += 1
    assert sent == 4
    with client.websocket_connect("/ws/chat") as widget:  # the 5th message from the address passes, the 6th not
        widget.send_json({"type": "hello", "language": "zh"})
        widget.receive_json()
        widget.send_json({"type": "text", "text": "你好", "client_id": "b1"})
        refused = widget.receive_json()
        assert refused["code"] == "rate_limited" and "太快" in refused["text"]
    with pytest.raises(WebSocketDisconnect) as closed:  # a 4th connection within the minute
        with client.websocket_connect("/ws/chat") as widget:
            widget.receive_json()
    assert closed.value.code == 4429


def test_only_allowed_origins_open_the_widget(tmp_path):
    for client, _ in gateway(tmp_path, widget_origins="https://shop.example.com, https://m.shop.example.com/"):
        for origin in ("https://shop.example.com", "https://m.shop.example.com", "http://testserver", None):
            headers = {"origin": origin} if origin else {}
            with client.websocket_connect("/ws/chat", headers=headers) as widget:
                widget.send_json({"type": "hello", "language": "en"})
                assert widget.receive_json()["type"] == "welcome", origin
        for origin in ("https://evil.example", "https://shop.example.com.evil.example", "null"):
            with pytest.raises(WebSocketDisconnect) as closed:
                with client.websocket_connect("/ws/chat", headers={"origin": origin}) as widget:
                    widget.receive_json()
            assert closed.value.code == 4403, origin


def test_sliding_window_forgets_old_events():
    now = [0.0]
    window = SlidingWindow(2, 10, clock=lambda: now[0])
    assert window.allow("a") and window.allow("a") and not window.allow("a")
    assert window.wait_s("a") == pytest.approx(10)
    assert window.allow("b")
    now[0] = 10.01
    assert window.allow("a") and window.wait_s("b") == 0

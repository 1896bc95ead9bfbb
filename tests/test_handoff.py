"""Live handoff through the gateway's API and the agents' WebSocket, with a recording stand-in for
Rasa's HTTP API (the real Rasa is exercised by the browser test in test_console_browser.py)."""

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
from assistant.commerce.models import Conversation
from assistant.settings import Settings
from channels.admin import accounts
from channels.transcripts import TranscriptStore
from tests.test_console_api import AGENT, OWNER, login


class RasaRecorder(BaseHTTPRequestHandler):
    events: list[tuple[str, dict]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        RasaRecorder.events.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_GET(self) -> None:  # noqa: N802  the tracker: a shopper who verified an order
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"slots": {"verified_order": RasaRecorder.verified}}).encode())

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def gateway(tmp_path: Path) -> Iterator[tuple[TestClient, str, TranscriptStore]]:
    from channels.app import create_app

    server = ThreadingHTTPServer(("127.0.0.1", 0), RasaRecorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    RasaRecorder.events, RasaRecorder.verified = [], None
    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    db.upgrade(url)
    with db.session_factory(url)() as session:
        accounts.create_user(session, *OWNER, role="owner", display_name="店主")
        accounts.create_user(session, *AGENT, role="agent", display_name="小王")
        session.commit()
    settings = Settings(_env_file=None, var_dir=tmp_path, database_url=url, kb_port=9,
                        rasa_port=server.server_address[1], admin_login_per_minute=1000)
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        yield client, url, TranscriptStore(db.session_factory(url))
    server.shutdown()


def test_agent_takes_over_answers_and_hands_back(gateway):
    client, url, store = gateway
    conversation_id, _ = store.open(None, "zh")
    store.append(conversation_id, "shopper", "text", {"text": "转人工，我的电话是13812345678"})
    agent = TestClient(client.app, base_url="http://testserver")
    csrf = login(agent, *AGENT)
    origin = {"origin": "http://testserver"}
    with agent.websocket_connect("/ws/agent", headers=origin) as live:
        assert live.receive_json() == {"type": "queue", "conversations": []}
        with client.websocket_connect("/ws/chat") as widget:
            widget.send_json({"type": "resume", "conversation_id": conversation_id, "last_seq": 1})
            assert widget.receive_json()["type"] == "welcome"
            # the bot's "I can't" twice in a row (Rasa's "unanswered" payloads, as the chat session passes them on)
            hub_desk = client.app.state.desk
            client.portal.call(hub_desk.after_bot_turn, conversation_id, [("unanswered", {})])
            client.portal.call(hub_desk.after_bot_turn, conversation_id, [("text", {"text": "?"}), ("unanswered", {})])
            queued = live.receive_json()
            assert queued["type"] == "queue" and queued["conversations"][0]["id"] == conversation_id
            assert queued["conversations"][0]["reason"] == "fallback_twice"

            taken = agent.post(f"/api/admin/conversations/{conversation_id}/take", headers=csrf)
            assert taken.status_code == 200 and taken.json()["status"] == "agent"
            joined = widget.receive_json()
            assert joined["type"] == "agent_joined" and "小王" in joined["text"]
            assert RasaRecorder.events[-1] == (f"/conversations/{conversation_id}/tracker/events", {"event": "pause"})

            said = agent.post(f"/api/admin/conversations/{conversation_id}/messages", json={"text": "您好，我来帮您"},
                              headers=csrf)
            assert said.status_code == 201
            reply = widget.receive_json()
            assert (reply["sender"], reply["text"], reply["agent_name"]) == ("agent", "您好，我来帮您", "小王")

            # the owner cannot speak in a conversation the agent holds, nor take it from them
            owner = TestClient(client.app, base_url="http://testserver")
            owner_csrf = login(owner, *OWNER)
            assert owner.post(f"/api/admin/conversations/{conversation_id}/messages", json={"text": "hi"},
                              headers=owner_csrf).json()["error"] == "not_yours"
            assert owner.post(f"/api/admin/conversations/{conversation_id}/take", headers=owner_csrf).status_code == 409

            detail = agent.get(f"/api/admin/conversations/{conversation_id}").json()
            shopper_lines = [m["text"] for m in detail["messages"] if m["sender"] == "shopper"]
            assert shopper_lines == ["转人工，我的电话是[phone]"]  # masked for agents
            assert [m["sender"] for m in detail["messages"]][-2:] == ["system", "agent"]

            released = agent.post(f"/api/admin/conversations/{conversation_id}/release", headers=csrf)
            assert released.json()["status"] == "bot"
            assert widget.receive_json()["type"] == "agent_left"
            assert RasaRecorder.events[-1][1] == {"event": "resume"}
    with db.session_factory(url)() as session:
        row = session.get(Conversation, conversation_id)
        assert row.handoff and row.handoff_status == "bot" and row.agent_user_id is None


def test_handoff_errors_are_clear(gateway):
    client, _, store = gateway
    csrf = login(client, *AGENT)
    missing = client.post("/api/admin/conversations/c_missing/take", headers=csrf)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    conversation_id, _ = store.open(None, "en")
    not_live = client.post(f"/api/admin/conversations/{conversation_id}/messages", json={"text": "hi"}, headers=csrf)
    assert not_live.status_code == 409 and not_live.json()["error"] == "not_live"
    assert client.post(f"/api/admin/conversations/{conversation_id}/release", headers=csrf).status_code == 409
    empty = client.post(f"/api/admin/conversations/{conversation_id}/messages", json={"text": ""}, headers=csrf)
    assert empty.status_code == 400
    assert client.post(f"/api/admin/conversations/{conversation_id}/messages", content=b"{", headers=csrf).status_code == 400


def test_the_agent_socket_needs_a_console_session_from_the_same_site(gateway):
    client, _, _ = gateway
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/ws/agent", headers={"origin": "http://testserver"}):
            pass
    login(client, *AGENT)
    with pytest.raises(WebSocketDisconnect):  # another site's page, with the agent's cookie
        with client.websocket_connect("/ws/agent", headers={"origin": "http://evil.example"}):
            pass
    with client.websocket_connect("/ws/agent", headers={"origin": "http://testserver"}) as live:
        assert live.receive_json()["type"] == "queue"

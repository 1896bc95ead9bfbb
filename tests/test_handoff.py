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
from channels.transcripts import TranscriptStore
from tests.test_console_api import AGENT, OWNER, database_with_accounts, login


class RasaRecorder(BaseHTTPRequestHandler):
    events: list[tuple[str, dict]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        RasaRecorder.events.append((self.path, body))
        reply: object = {}
        if self.path == "/webhooks/kefu/webhook":  # what Rasa answers after hours (assistant/actions/support.py)
            reply = [{"recipient_id": body["sender"], "text": "现在是非人工服务时间，请留下您的手机号或邮箱。"},
                     {"recipient_id": body["sender"], "custom": {"type": "handoff", "reason": "human_agent",
                                                                 "after_hours": True}}] \
                if body["message"] == "转人工" else [{"recipient_id": body["sender"], "text": "机器人的回答"}]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(reply).encode())

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
    url = database_with_accounts(tmp_path)
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


def _bot_answer(widget) -> list[dict]:  # type: ignore[no-untyped-def]
    """The stored frames of one turn (echo and replies), up to the fake Rasa's last reply."""
    frames = []
    while True:
        frame = widget.receive_json()
        if frame["type"] == "typing":
            continue
        frames.append(frame)
        if frame["type"] == "handoff" or frame.get("text") == "机器人的回答":
            return frames


def test_after_hours_the_bot_takes_a_phone_number_for_a_call_back(gateway, caplog):
    client, url, _ = gateway
    agent = TestClient(client.app, base_url="http://testserver")
    login(agent, *AGENT)
    with agent.websocket_connect("/ws/agent", headers={"origin": "http://testserver"}) as live:
        assert live.receive_json()["conversations"] == []
        with client.websocket_connect("/ws/chat") as widget:
            widget.send_json({"type": "hello", "language": "zh"})
            conversation_id = widget.receive_json()["conversation_id"]
            widget.send_json({"type": "text", "text": "转人工", "client_id": "a1"})
            frames = _bot_answer(widget)
            assert [f["type"] for f in frames if f["sender"] == "bot"] == ["text", "handoff"]
            assert "手机号或邮箱" in frames[-2]["text"]
            with db.session_factory(url)() as session:
                assert session.get(Conversation, conversation_id).handoff_status == "callback"

            widget.send_json({"type": "text", "text": "我的手机是 13812345678，明天上午打给我", "client_id": "a2"})
            assert widget.receive_json()["sender"] == "shopper"
            confirmation = widget.receive_json()
            assert confirmation["sender"] == "bot" and "*******5678" in confirmation["text"]
            assert "13812345678" not in confirmation["text"]
            queued = live.receive_json()["conversations"]
            assert (queued[0]["id"], queued[0]["reason"], queued[0]["status"]) == (conversation_id, "callback", "waiting")
            assert queued[0]["contact"].endswith("5678") and "1381234" not in queued[0]["contact"]
            assert not any(e[1].get("message", "").startswith("我的手机") for e in RasaRecorder.events)

        with client.websocket_connect("/ws/chat") as widget:  # another shopper moves on instead
            widget.send_json({"type": "hello", "language": "zh"})
            other = widget.receive_json()["conversation_id"]
            widget.send_json({"type": "text", "text": "转人工", "client_id": "b1"})
            _bot_answer(widget)
            widget.send_json({"type": "text", "text": "算了，羽绒服有货吗", "client_id": "b2"})
            frames = _bot_answer(widget)
            assert frames[-1]["text"] == "机器人的回答"  # Rasa answers it
            with db.session_factory(url)() as session:
                row = session.get(Conversation, other)
                assert row.handoff_status == "bot" and row.callback_contact is None
    with db.session_factory(url)() as session:
        assert session.get(Conversation, conversation_id).callback_contact == "13812345678"
    assert "13812345678" not in caplog.text


def test_support_hours_in_the_shops_time_zone():
    import datetime as dt

    utc = dt.timezone.utc
    day = Settings(_env_file=None, support_hours="09:00-22:00", support_timezone="Asia/Shanghai")
    assert day.agents_on_duty(dt.datetime(2026, 11, 23, 1, 0, tzinfo=utc))  # 09:00 in Shanghai
    assert not day.agents_on_duty(dt.datetime(2026, 11, 23, 0, 59, tzinfo=utc))  # 08:59
    assert not day.agents_on_duty(dt.datetime(2026, 11, 23, 14, 0, tzinfo=utc))  # 22:00
    night = Settings(_env_file=None, support_hours="20:00-02:00", support_timezone="UTC")
    assert night.agents_on_duty(dt.datetime(2026, 11, 23, 1, 30, tzinfo=utc))
    assert not night.agents_on_duty(dt.datetime(2026, 11, 23, 12, 0, tzinfo=utc))
    assert Settings(_env_file=None, support_hours="00:00-00:00").agents_on_duty()


def test_the_handoff_action_asks_for_a_contact_after_hours(monkeypatch):
    from rasa_sdk import Tracker
    from rasa_sdk.executor import CollectingDispatcher

    from assistant.actions import support

    tracker = Tracker("c_1", {"language": "en"}, {"intent": {"name": "human_agent"}, "text": "human please"},
                      [], False, None, {}, "")
    for on_duty, expected in ((False, "Leave your phone number or email"), (True, "Connecting you")):
        monkeypatch.setattr(Settings, "agents_on_duty", lambda self, now=None, value=on_duty: value)
        dispatcher = CollectingDispatcher()
        support.ActionHandoff().run(dispatcher, tracker, {})
        assert expected in dispatcher.messages[0]["text"]
        assert dispatcher.messages[1]["custom"] == {"type": "handoff", "reason": "human_agent"} | (
            {} if on_duty else {"after_hours": True})

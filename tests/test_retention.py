"""Personal-data requests and retention on a hand-built shop: which conversations belong to a
shopper (a call, a call-back contact, a typed number, an order verified in Rasa's tracker), the
export, the deletion (files, rows, tracker events, an anonymised record) and the purge of old
conversations; through the owner's API and the `kefu privacy` commands."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from assistant import retention
from assistant.commerce import db
from assistant.commerce.models import (
    Conversation,
    Customer,
    Order,
    Photo,
    ReturnRequest,
    TranscriptMessage,
    VoiceClip,
)
from assistant.settings import Settings
from tests.test_console_api import AGENT, OWNER, database_with_accounts, login

NOW = dt.datetime(2026, 11, 20, 12, 0)
PHONE, EMAIL = "13911112222", "wang.fang@example.com"


def build(tmp_path: Path) -> tuple[str, Path]:
    url = database_with_accounts(tmp_path)
    (tmp_path / "photos").mkdir()
    (tmp_path / "audio").mkdir()
    with db.session_factory(url)() as session:
        wang = Customer(name="王芳", phone=PHONE, email=EMAIL, address="上海市南京西路1266号", language="zh",
                        created_at=NOW)
        other = Customer(name="李雷", phone="13833334444", email="li.lei@example.com", address="北京市长安街1号",
                         language="zh", created_at=NOW)
        session.add_all([wang, other])
        session.flush()
        order = Order(order_no="KF1", customer_id=wang.id, status="delivered", created_at=NOW, total=9900,
                      shipping_address=wang.address)
        session.add_all([order, Order(order_no="KF2", customer_id=other.id, status="paid", created_at=NOW, total=100,
                                      shipping_address=other.address)])
        session.flush()
        for cid, days_ago, caller, contact, text in (
                ("c_call", 1, "+86" + PHONE, None, "喂"),
                ("c_callback", 2, None, EMAIL, "晚上回电"),
                ("c_typed", 3, None, None, f"我的手机 {PHONE}"),
                ("c_verified", 4, None, None, "查订单"),
                ("c_other", 1, None, None, "我是李雷"),
                ("c_old", 400, None, None, "去年的问题")):
            at = NOW - dt.timedelta(days=days_ago)
            session.add(Conversation(id=cid, created_at=at, updated_at=at, caller_phone=caller,
                                     callback_contact=contact, last_seq=1))
            session.add(TranscriptMessage(id=f"{cid}-1", conversation_id=cid, seq=1, sender="shopper", type="text",
                                          body={"text": text}, created_at=at))
        for pid, cid in (("p_evidence", "c_typed"), ("p_chat", "c_typed"), ("p_old", "c_old")):
            (tmp_path / "photos" / f"{pid}.jpg").write_bytes(b"jpeg")
            session.add(Photo(id=pid, conversation_id=cid, media_type="image/jpeg", path=f"{pid}.jpg", bytes=4,
                              width=1, height=1, sha256="0" * 64))
        session.add(ReturnRequest(rma_no="RMA1", order_id=order.id, reason="broken", photo_id="p_evidence",
                                  conversation_id="c_typed"))
        (tmp_path / "audio" / "v1.webm").write_bytes(b"webm")
        session.add(VoiceClip(id="v1", conversation_id="c_callback", media_type="audio/webm", path="v1.webm", bytes=4,
                              seconds=1.0, sha256="0" * 64))
        session.commit()
    tracker = tmp_path / "tracker.db"
    with sqlite3.connect(tracker) as connection:
        connection.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, sender_id VARCHAR(255) NOT NULL, "
                           "type_name VARCHAR(255) NOT NULL, timestamp FLOAT, intent_name VARCHAR(255), "
                           "action_name VARCHAR(255), data TEXT)")
        slot = lambda name, value: json.dumps({"event": "slot", "name": name, "value": value})  # noqa: E731
        connection.executemany("INSERT INTO events (sender_id, type_name, data) VALUES (?,?,?)", [
            ("c_verified", "slot", slot("verified_order", "KF1")), ("c_verified", "user", "{}"),
            ("c_other", "slot", slot("verified_order", "KF2")), ("c_old", "user", "{}")])
    return url, tracker


def test_a_shoppers_conversations_export_and_deletion(tmp_path):
    url, tracker = build(tmp_path)
    engine = create_engine(f"sqlite:///{tracker}")
    with db.session_factory(url)() as session:
        wang = retention.find_customer(session, phone="+86 139 1111 2222")
        assert retention.find_customer(session, email=EMAIL.upper()).id == wang.id
        with pytest.raises(retention.ShopperNotFound):
            retention.find_customer(session, phone="13900000000")
        with pytest.raises(ValueError):
            retention.find_customer(session)
        assert retention.conversations_of(session, engine, wang) == ["c_call", "c_callback", "c_typed", "c_verified"]
        exported = retention.export_shopper(session, engine, wang)
        assert exported["customer"]["phone"] == PHONE and exported["orders"][0]["order_no"] == "KF1"
        typed = next(c for c in exported["conversations"] if c["id"] == "c_typed")
        assert typed["messages"][0]["text"] == f"我的手机 {PHONE}" and set(typed["photos"]) == {"p_evidence", "p_chat"}

        removed = retention.delete_shopper(session, engine, wang, tmp_path / "photos", tmp_path / "audio")
        session.commit()
        assert (removed.conversations, removed.messages, removed.photos, removed.voice_clips,
                removed.tracker_events) == (4, 4, 1, 1, 2)
        assert session.get(Customer, wang.id).phone == f"deleted-{wang.id}" and not session.get(Customer, wang.id).email
        assert session.scalar(select(Order).where(Order.order_no == "KF1")).shipping_address == retention.DELETED
        assert session.get(Photo, "p_evidence").conversation_id is None  # the return keeps its evidence
        assert session.get(Conversation, "c_other") is not None  # another shopper's data is untouched
    assert not (tmp_path / "photos" / "p_chat.jpg").exists() and (tmp_path / "photos" / "p_evidence.jpg").exists()
    assert not (tmp_path / "audio" / "v1.webm").exists()
    with sqlite3.connect(tracker) as connection:
        assert {r[0] for r in connection.execute("SELECT sender_id FROM events")} == {"c_other", "c_old"}


def test_purge_removes_conversations_past_the_retention_period(tmp_path):
    url, tracker = build(tmp_path)
    with db.session_factory(url)() as session:
        with pytest.raises(ValueError):
            retention.purge(session, None, 0, tmp_path / "photos", tmp_path / "audio", now=NOW)
        removed = retention.purge(session, create_engine(f"sqlite:///{tracker}"), 365, tmp_path / "photos",
                                  tmp_path / "audio", now=NOW)
        session.commit()
        assert (removed.conversations, removed.photos, removed.tracker_events) == (1, 1, 1)
        assert session.get(Conversation, "c_old") is None and session.get(Conversation, "c_call") is not None
    assert not (tmp_path / "photos" / "p_old.jpg").exists()


def test_owner_api_and_commands(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from assistant.cli import app as cli
    from assistant.settings import get_settings
    from channels.app import create_app

    url, tracker = build(tmp_path)
    settings = Settings(_env_file=None, var_dir=tmp_path, database_url=url, kb_port=9, tracker_db=tracker,
                        photos_dir=tmp_path / "photos", audio_dir=tmp_path / "audio")
    with TestClient(create_app(settings)) as client:
        agent = TestClient(client.app)
        agent_csrf = login(agent, *AGENT)
        assert agent.get("/api/admin/shoppers/export", params={"phone": PHONE}).status_code == 403
        csrf = login(client, *OWNER)
        exported = client.get("/api/admin/shoppers/export", params={"phone": PHONE})
        assert exported.status_code == 200 and exported.json()["customer"]["email"] == EMAIL
        assert client.get("/api/admin/shoppers/export", params={"phone": "13900000000"}).status_code == 404
        assert client.post("/api/admin/shoppers/delete", json={"phone": PHONE}, headers=csrf).status_code == 400
        assert agent.post("/api/admin/shoppers/delete", json={"phone": PHONE, "confirm": True},
                          headers=agent_csrf).status_code == 403
        deleted = client.post("/api/admin/shoppers/delete", json={"phone": PHONE, "confirm": True}, headers=csrf)
        assert deleted.status_code == 200 and deleted.json()["conversations"] == 4
        actions = [e["action"] for e in client.get("/api/admin/audit").json()["items"]]
        assert "shopper_export" in actions and "shopper_deleted" in actions

    monkeypatch.setenv("KEFU_DATABASE_URL", url)
    monkeypatch.setenv("KEFU_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("KEFU_TRACKER_DB", str(tracker))
    monkeypatch.setenv("KEFU_PHOTOS_DIR", str(tmp_path / "photos"))
    monkeypatch.setenv("KEFU_AUDIO_DIR", str(tmp_path / "audio"))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        out = tmp_path / "li-lei.json"
        made = runner.invoke(cli, ["privacy", "export", "--email", "li.lei@example.com", "--out", str(out)])
        assert made.exit_code == 0, made.output
        assert json.loads(out.read_text())["conversations"][0]["id"] == "c_other" and out.stat().st_mode & 0o077 == 0
        dry = runner.invoke(cli, ["privacy", "delete", "--email", "li.lei@example.com"])
        assert "1 conversations would be deleted" in dry.output
        done = runner.invoke(cli, ["privacy", "delete", "--email", "li.lei@example.com", "--yes"])
        assert done.exit_code == 0 and "conversations=1" in done.output
        assert runner.invoke(cli, ["privacy", "delete", "--phone", "12"]).exit_code == 2
        purged = runner.invoke(cli, ["privacy", "purge", "--days", "30"])
        assert purged.exit_code == 0 and "conversations=1" in purged.output  # c_old (the rest went above)
    finally:
        get_settings.cache_clear()

"""The console's analytics on a hand-built week of conversations: every figure checked against what
was put in, the date range, the CSV export, and intents read from a tracker store laid out like
Rasa's SQLTrackerStore (the real one is read in test_console_browser.py)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from assistant.commerce import db
from assistant.commerce.models import CheckoutOpen, Conversation, TranscriptMessage
from assistant.settings import Settings
from channels.admin import accounts, analytics
from knowledge_base.models import UnansweredQuestion
from tests.test_console_api import OWNER, login

DAY = dt.datetime(2026, 11, 2, 10, 0)


def conversation(session, cid: str, day: int, turns: list[tuple[str, str, float]], handoff: bool = False) -> None:  # type: ignore[no-untyped-def]
    """``turns``: (sender, type, seconds after the conversation opened)."""
    opened = DAY + dt.timedelta(days=day)
    session.add(Conversation(id=cid, created_at=opened, updated_at=opened, handoff=handoff, last_seq=len(turns)))
    for seq, (sender, kind, after) in enumerate(turns, start=1):
        session.add(TranscriptMessage(id=f"{cid}-{seq}", conversation_id=cid, seq=seq, sender=sender, type=kind,
                                      body={"text": "=HYPERLINK(\"x\")" if kind == "text" else ""},
                                      created_at=opened + dt.timedelta(seconds=after)))


@pytest.fixture()
def shop(tmp_path: Path) -> tuple[str, Path]:
    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    db.upgrade(url)
    with db.session_factory(url)() as session:
        conversation(session, "c1", 0, [("shopper", "text", 0), ("bot", "product_cards", 1.0), ("shopper", "text", 5),
                                        ("bot", "coupon", 6), ("bot", "checkout", 6.5)])  # bought: automated
        conversation(session, "c2", 0, [("shopper", "text", 0), ("bot", "unanswered", 3.0)])  # fallback
        conversation(session, "c3", 2, [("shopper", "text", 0), ("bot", "handoff", 2.0), ("agent", "text", 30)],
                     handoff=True)
        conversation(session, "c4", 2, [])  # opened, never spoke: not counted
        conversation(session, "c5", 9, [("shopper", "text", 0), ("bot", "text", 1.0)])  # outside the range
        session.add(CheckoutOpen(token_sha256="a" * 64, first_opened_at=DAY + dt.timedelta(minutes=5)))
        session.add(UnansweredQuestion(text="=cmd|' /C calc'!A0", language="en", count=4, examples=[], reason="low",
                                       status="open", first_seen=DAY, last_seen=DAY))
        session.add(UnansweredQuestion(text="可以刻字吗", language="zh", count=7, examples=[], reason="low",
                                       status="open", first_seen=DAY, last_seen=DAY))
        accounts.create_user(session, *OWNER, role="owner")
        session.commit()
    tracker = tmp_path / "tracker.db"
    with sqlite3.connect(tracker) as connection:  # Rasa 3.6 SQLTrackerStore's table
        connection.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, sender_id VARCHAR(255) NOT NULL, "
                           "type_name VARCHAR(255) NOT NULL, timestamp FLOAT, intent_name VARCHAR(255), "
                           "action_name VARCHAR(255), data TEXT)")
        at = (DAY - dt.datetime(1970, 1, 1)).total_seconds()
        rows = [("c1", "user", at, "product_search"), ("c1", "user", at + 5, "ask_promotion"),
                ("c2", "user", at, "nlu_fallback"), ("c3", "user", at + 86400 * 2, "human_agent"),
                ("c1", "action", at + 1, None), ("c9", "user", at + 86400 * 30, "greet"),
                ("c6", "user", at + 60, "product_search")]
        connection.executemany("INSERT INTO events (sender_id, type_name, timestamp, intent_name) VALUES (?,?,?,?)", rows)
    return url, tracker


def test_the_figures_match_the_conversations(shop):
    url, tracker = shop
    from sqlalchemy import create_engine

    with db.session_factory(url)() as session:
        data = analytics.report(session, create_engine(f"sqlite:///{tracker}"), dt.date(2026, 11, 2),
                                dt.date(2026, 11, 8))
    assert data["conversations"] == 3
    assert [d["conversations"] for d in data["per_day"]] == [2, 0, 1, 0, 0, 0, 0]
    assert data["automated_resolution_rate"] == round(1 / 3, 4)
    assert data["handoff_rate"] == round(1 / 3, 4) and data["fallback_rate"] == round(1 / 3, 4)
    assert data["fallback_message_rate"] == 0.25  # 1 "could not answer" for 4 shopper messages
    assert (data["coupons_issued"], data["checkout_links_sent"], data["checkout_links_opened"]) == (1, 1, 1)
    assert data["checkout_open_rate"] == 1.0
    assert data["first_response_s"] == 2.0  # (1 + 3 + 2) / 3
    assert data["top_intents"][0] == {"intent": "product_search", "count": 2}
    assert {i["intent"] for i in data["top_intents"]} == {"product_search", "ask_promotion", "nlu_fallback",
                                                          "human_agent"}
    assert [q["text"] for q in data["top_unanswered"]] == ["可以刻字吗", "=cmd|' /C calc'!A0"]
    with pytest.raises(ValueError, match="ends"):
        analytics.day_range(dt.date(2026, 11, 8), dt.date(2026, 11, 2))


def test_analytics_api_csv_and_a_missing_tracker(shop, tmp_path):
    from channels.app import create_app

    url, tracker = shop
    settings = Settings(_env_file=None, var_dir=tmp_path, database_url=url, kb_port=9, tracker_db=tracker)
    with TestClient(create_app(settings)) as client:
        login(client, *OWNER)
        data = client.get("/api/admin/analytics", params={"from": "2026-11-02", "to": "2026-11-08"}).json()
        assert data["conversations"] == 3 and data["top_intents"]
        assert client.get("/api/admin/analytics", params={"from": "2026-11-08", "to": "2026-11-02"}).status_code == 400
        assert client.get("/api/admin/analytics", params={"from": "yesterday"}).status_code == 400
        exported = client.get("/api/admin/analytics.csv", params={"from": "2026-11-02", "to": "2026-11-08"})
        assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
        assert ["summary", "conversations", "3"] in rows and ["per_day", "2026-11-04", "1"] in rows
        assert ["top_unanswered", "'=cmd|' /C calc'!A0", "4"] in rows  # no formula reaches a spreadsheet
    missing = Settings(_env_file=None, var_dir=tmp_path, database_url=url, kb_port=9,
                       tracker_db=tmp_path / "nowhere" / "tracker.db")
    with TestClient(create_app(missing)) as client:
        login(client, *OWNER)
        data = client.get("/api/admin/analytics", params={"from": "2026-11-02", "to": "2026-11-08"}).json()
        assert data["top_intents"] == [] and data["conversations"] == 3
    assert not (tmp_path / "nowhere" / "tracker.db").exists()  # read-only: nothing created


def test_conversations_are_searched_masked_and_revealed_to_owners_with_an_audit(shop, tmp_path):
    from channels.app import create_app
    from channels.admin.models import AuditEntry

    url, tracker = shop
    with db.session_factory(url)() as session:
        opened = DAY + dt.timedelta(days=1)
        session.add(Conversation(id="c7", created_at=opened, updated_at=opened, channel="phone", last_seq=1,
                                 caller_phone="+8613912345678"))
        session.add(TranscriptMessage(id="c7-1", conversation_id="c7", seq=1, sender="shopper", type="voice",
                                      body={"text": "我的手机13912345678，寄到上海市南京西路100号"}, created_at=opened))
        session.commit()
    settings = Settings(_env_file=None, var_dir=tmp_path, database_url=url, kb_port=9, tracker_db=tracker)
    with TestClient(create_app(settings)) as client:
        csrf = login(client, *OWNER)
        week = {"from": "2026-11-02", "to": "2026-11-08"}
        found = client.get("/api/admin/conversations", params=week).json()
        assert found["total"] == 4 and {i["id"] for i in found["items"]} == {"c1", "c2", "c3", "c7"}
        phone = client.get("/api/admin/conversations", params={**week, "channel": "phone"}).json()["items"]
        assert [i["id"] for i in phone] == ["c7"] and phone[0]["caller"] == "+*********5678"
        assert "13912345678" not in phone[0]["first_message"] and "[phone]" in phone[0]["first_message"]
        assert "[address]" in phone[0]["first_message"]
        by_intent = client.get("/api/admin/conversations", params={**week, "intent": "ask_promotion"}).json()
        assert [i["id"] for i in by_intent["items"]] == ["c1"]
        by_words = client.get("/api/admin/conversations", params={**week, "q": "南京西路"}).json()
        assert [i["id"] for i in by_words["items"]] == ["c7"]
        detail = client.get("/api/admin/conversations/c7").json()
        assert "13912345678" not in str(detail) and detail["conversation"]["caller"].endswith("5678")
        revealed = client.post("/api/admin/conversations/c7/reveal", headers=csrf).json()
        assert revealed["caller_phone"] == "+8613912345678" and "13912345678" in revealed["messages"][0]["text"]
        assert client.post("/api/admin/conversations/nope/reveal", headers=csrf).status_code == 404
    with db.session_factory(url)() as session:
        audit = session.query(AuditEntry).filter_by(action="reveal").all()
        assert [(a.username, a.target) for a in audit] == [(OWNER[0], "c7")]

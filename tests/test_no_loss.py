"""No lost messages: the gateway, the Rasa server, the action server and the NLU server are each
killed (SIGKILL, no shutdown handlers) and started again while shoppers are in the middle of their
conversations. Every message is answered after recovery or gets an explicit retry error first; the
stored transcript and Rasa's tracker hold every message once, in order, with no gap; the widget
resumes by sequence number (tests/chat_client.py's ResilientShopper behaves like widget.js; the
real widget's retry button and offline queue are driven in Chromium at the end)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from assistant.commerce.db import session_factory
from assistant.commerce.models import TranscriptMessage
from tests.chat_client import ResilientShopper
from tests.stack import ProcessStack, process_stack

pytestmark = pytest.mark.e2e

SCRIPTS = {
    "en": ["hi", "I'm looking for running shoes", "do you have any coupons?", "how much is shipping?",
           "where is my order", "thanks", "bye"],
    "zh": ["在吗", "想买一件羽绒服", "有优惠券吗", "运费多少", "我的快递到哪了", "谢谢", "拜拜"],
}
KILLED_IN_TURN = ["gateway", "rasa", "actions", "nlu"]


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory, output_dir: Path) -> Iterator[ProcessStack]:
    with process_stack(tmp_path_factory.mktemp("no-loss"), output_dir / "no-loss-stack.log") as stack:
        yield stack


class Chatting(threading.Thread):
    """One shopper going through a script again and again until told to stop."""

    def __init__(self, shopper: ResilientShopper, script: list[str]) -> None:
        super().__init__(daemon=True)
        self.shopper, self.script = shopper, script
        self.stop = threading.Event()
        self.in_flight = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for text in self.script:
                    self.in_flight.set()
                    self.shopper.say(text)
                    self.in_flight.clear()
                    time.sleep(0.2)
                    if self.stop.is_set():
                        break
        except BaseException as error:  # reported by the test thread
            self.failure = error


def wait_for_progress(chats: list[Chatting], turns: int = 2, timeout_s: float = 300) -> None:
    """Until every shopper has had ``turns`` more answers (the stack works again)."""
    goal = [len(chat.shopper.answers) + turns for chat in chats]
    deadline = time.monotonic() + timeout_s
    while any(len(chat.shopper.answers) < g for chat, g in zip(chats, goal)):
        failed = [chat.failure for chat in chats if chat.failure]
        assert not failed, failed[0]
        assert time.monotonic() < deadline, "the shoppers made no progress"
        time.sleep(0.2)


def kill_mid_turn(processes: ProcessStack, chats: list[Chatting], name: str) -> None:
    """Kill ``name`` while at least one shopper waits for an answer, then start it again."""
    deadline = time.monotonic() + 30
    while not any(chat.in_flight.is_set() for chat in chats) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert processes.processes is not None
    processes.processes.kill(name)
    time.sleep(2)  # shoppers keep typing into the outage
    processes.restart(name)


def test_no_message_is_lost_when_each_process_dies_mid_conversation(processes: ProcessStack) -> None:
    shoppers = [ResilientShopper(processes.ws_url, language, f"s{i}{language}")
                for i, language in enumerate(["en", "zh", "en", "zh"])]
    chats = [Chatting(shopper, SCRIPTS[shopper.language]) for shopper in shoppers]
    for chat in chats:
        chat.start()
    try:
        wait_for_progress(chats)
        for name in KILLED_IN_TURN:
            kill_mid_turn(processes, chats, name)
            wait_for_progress(chats)
    finally:
        for chat in chats:
            chat.stop.set()
        for chat in chats:
            chat.join(timeout=120)
    failures = [chat.failure for chat in chats if chat.failure]
    assert not failures, failures[0]

    retried = sum(len(shopper.errors) for shopper in shoppers)
    assert retried, "an outage of Rasa, its NLU or action server must show the shopper a retry error"
    assert sum(shopper.reconnects for shopper in shoppers), "the gateway's restart must make widgets resume"
    for shopper in shoppers:
        sent = [client_id for client_id, _ in shopper.sent]
        assert set(shopper.answers) == set(sent), f"{shopper.name}: unanswered {set(sent) - set(shopper.answers)}"
        check_transcript(processes, shopper)
        check_tracker(processes, shopper)


def check_transcript(processes: ProcessStack, shopper: ResilientShopper) -> None:
    """Sequence numbers 1..n with no gap; every message once, in the order typed; each answered by
    the bot before the next (error replies in between are allowed: they asked for the retry)."""
    with session_factory(processes.settings.db_url)() as session:
        rows = session.scalars(select(TranscriptMessage).where(
            TranscriptMessage.conversation_id == shopper.conversation_id).order_by(TranscriptMessage.seq)).all()
    assert [row.seq for row in rows] == list(range(1, len(rows) + 1)), f"{shopper.name}: a gap in the sequence"
    typed = [row.client_id for row in rows if row.sender == "shopper"]
    assert typed == [client_id for client_id, _ in shopper.sent], f"{shopper.name}: transcript {typed}"
    turns = split_turns([(row.sender, row.body.get("text", "")) for row in rows])
    for client_id, replies in zip(typed, turns):
        assert any(sender == "bot" for sender, _ in replies), f"{shopper.name}: {client_id} has no stored answer"
        assert [text for _, text in replies if _ == "bot"] == [m.get("text", "") for m in shopper.answers[client_id]
                                                               if m["sender"] == "bot"], \
            f"{shopper.name}: {client_id}: what the shopper saw is not what was stored"


def split_turns(messages: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    turns: list[list[tuple[str, str]]] = []
    for sender, text in messages:
        if sender == "shopper":
            turns.append([])
        elif turns:
            turns[-1].append((sender, text))
    return turns


def check_tracker(processes: ProcessStack, shopper: ResilientShopper) -> None:
    """Rasa's tracker holds each message once, in order (by the widget's client id), and the bot's
    texts of each turn are those the transcript stored."""
    response = httpx.get(f"{processes.settings.rasa_url}/conversations/{shopper.conversation_id}/tracker",
                         params={"include_events": "ALL"}, timeout=30)
    response.raise_for_status()
    events = response.json()["events"]
    assert not [e for e in events if e["event"] == "rewind"], "no turn needed undoing"
    user = [e.get("message_id") for e in events if e["event"] == "user"]
    assert user == [client_id for client_id, _ in shopper.sent], f"{shopper.name}: tracker has {user}"
    turns = split_turns([("shopper" if e["event"] == "user" else "bot", e.get("text") or "")
                         for e in events if e["event"] in ("user", "bot")])
    for (client_id, _), replies in zip(shopper.sent, turns):
        seen = [m.get("text", "") for m in shopper.answers[client_id] if m["sender"] == "bot" and m.get("text")]
        assert [text for _, text in replies if text] == seen, f"{shopper.name}: {client_id}: tracker and widget differ"


def test_a_resent_message_is_answered_from_the_tracker_not_processed_again(processes: ProcessStack) -> None:
    """What the gateway does after it died between Rasa's answer and storing it: the same message
    id again, marked resent, gets the same answer and leaves one user event in the tracker."""
    body = {"sender": "resend-check", "message": "where is my order", "message_id": "r-1",
            "metadata": {"language": "en", "channel": "widget"}}
    url = f"{processes.settings.rasa_url}/webhooks/kefu/webhook"
    first = httpx.post(url, json=body, timeout=60)
    again = httpx.post(url, json={**body, "resend": True}, timeout=60)
    assert first.status_code == again.status_code == 200
    assert first.json() and again.json() == first.json()
    events = httpx.get(f"{processes.settings.rasa_url}/conversations/resend-check/tracker", timeout=30).json()["events"]
    assert [e.get("message_id") for e in events if e["event"] == "user"] == ["r-1"]
    bad = httpx.post(url, json={"sender": "resend-check", "message": ""}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"


@pytest.mark.browser
def test_the_widget_offers_a_retry_and_sends_what_was_typed_offline(processes: ProcessStack, output_dir: Path) -> None:
    """In Chromium: with the NLU server down the widget shows the error with a "Send again" button,
    which (NLU back) gets the answer; with the gateway down a typed message waits, and is sent and
    answered when the widget has reconnected, resuming where it was."""
    from playwright.sync_api import expect, sync_playwright

    from tests.test_browser import _SHOWN, ANSWER_TIMEOUT_MS, CHROMIUM, CHROMIUM_ARGS

    assert processes.processes is not None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860}, locale="en-US")
        page.goto(processes.gateway + "/?lang=en")
        page.click("#kefu-launcher")
        expect(page.locator(".kefu-status").first).to_have_text("online", timeout=ANSWER_TIMEOUT_MS)

        processes.processes.kill("nlu")
        page.fill(".kefu-input", "do you have any coupons?")
        page.click(".kefu-send")
        again = page.locator(".kefu-error .kefu-retry")
        expect(again).to_have_text("Send again", timeout=ANSWER_TIMEOUT_MS)
        page.screenshot(path=str(output_dir / "no-loss-1-retry.png"))
        processes.restart("nlu")
        before = page.evaluate(_SHOWN)
        again.click()
        page.wait_for_function(f"{_SHOWN} > {before} && document.querySelectorAll('.kefu-coupon').length > 0",
                               timeout=ANSWER_TIMEOUT_MS)
        assert page.locator(".kefu-shopper").count() == 1, "the retried message is not shown twice"

        bot_before = page.locator(".kefu-bot").count()
        processes.processes.kill("gateway")
        expect(page.locator(".kefu-status").first).to_have_text("reconnecting…", timeout=ANSWER_TIMEOUT_MS)
        page.fill(".kefu-input", "how much is shipping?")
        page.click(".kefu-send")
        expect(page.locator(".kefu-shopper.kefu-pending")).to_have_text("how much is shipping?")  # shown, waiting
        page.screenshot(path=str(output_dir / "no-loss-2-offline.png"))
        processes.restart("gateway")
        expect(page.locator(".kefu-status").first).to_have_text("online", timeout=ANSWER_TIMEOUT_MS)
        expect(page.locator(".kefu-shopper").nth(1)).to_have_text("how much is shipping?", timeout=ANSWER_TIMEOUT_MS)
        page.wait_for_function(f"document.querySelectorAll('.kefu-bot').length > {bot_before}", timeout=ANSWER_TIMEOUT_MS)
        expect(page.locator(".kefu-pending")).to_have_count(0)
        page.screenshot(path=str(output_dir / "no-loss-3-answered.png"))
        assert page.locator(".kefu-shopper").count() == 2

        # typed during an outage, then the tab closed: the message waits in localStorage and goes
        # out when the shopper comes back
        processes.processes.kill("gateway")
        expect(page.locator(".kefu-status").first).to_have_text("reconnecting…", timeout=ANSWER_TIMEOUT_MS)
        page.fill(".kefu-input", "do you have running shoes?")
        page.click(".kefu-send")
        expect(page.locator(".kefu-shopper.kefu-pending")).to_have_text("do you have running shoes?")
        page.goto("about:blank")
        processes.restart("gateway")
        page.goto(processes.gateway + "/?lang=en")
        page.click("#kefu-launcher")
        expect(page.locator(".kefu-status").first).to_have_text("online", timeout=ANSWER_TIMEOUT_MS)
        shopper = page.locator(".kefu-shopper")
        expect(shopper.nth(2)).to_have_text("do you have running shoes?", timeout=ANSWER_TIMEOUT_MS)
        expect(page.locator(".kefu-pending")).to_have_count(0, timeout=ANSWER_TIMEOUT_MS)
        page.wait_for_function("!document.querySelector('.kefu-log').lastElementChild.matches('.kefu-shopper, .kefu-typing')",
                               timeout=ANSWER_TIMEOUT_MS)  # answered
        page.screenshot(path=str(output_dir / "no-loss-4-after-reload.png"))
        assert shopper.count() == 3, "history replayed once, the kept message sent once"
        assert page.evaluate("JSON.stringify(JSON.parse(localStorage.getItem('kefu:' + location.origin)).pending)") == "{}"
        browser.close()

"""The scaled-out shape (Procfile.scaleout, tests/stack.py's scaleout_stack): two Rasa replicas
behind the gateway with a PostgreSQL tracker store and a Redis lock store, kefu's database in
PostgreSQL and the knowledge base in a Chroma server, all on this machine's own PostgreSQL and
Redis. The main end-to-end tests run against it in a pytest of their own; here, what only this
shape has: one conversation's concurrent messages on two replicas, and a replica dying."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from assistant.settings import PROJECT_ROOT
from tests.chat_client import ResilientShopper
from tests.stack import ProcessStack, scaleout_stack

pytestmark = pytest.mark.e2e

MAIN_E2E = ["tests/test_chat_e2e.py", "tests/test_photo_e2e.py", "tests/test_phone_e2e.py"]


def test_the_main_end_to_end_tests_pass_against_the_scaled_out_shape(output_dir: Path) -> None:
    """Runs first (before this module's own stack starts): the same tests, the other shape."""
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *MAIN_E2E],
                         cwd=PROJECT_ROOT, env={**os.environ, "KEFU_TEST_SHAPE": "scaleout"},
                         capture_output=True, text=True, timeout=2400)
    (output_dir / "scaleout-e2e.txt").write_text(run.stdout + run.stderr)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-2000:]
    assert run.returncode == 0, f"end-to-end tests against the scaled-out shape: {summary}\n{run.stdout[-6000:]}"
    assert " passed" in summary and "skipped" not in summary, summary


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory, output_dir: Path) -> Iterator[ProcessStack]:
    with scaleout_stack(tmp_path_factory.mktemp("scaleout"), output_dir / "scaleout-own-stack.log") as stack:
        yield stack


def test_one_conversation_on_two_replicas_is_never_interleaved(scaled: ProcessStack) -> None:
    """Messages of one conversation sent at the same moment, alternately to each replica: Redis'
    lock makes them take turns, so the tracker holds whole turns one after the other (each user
    message, the replies it got, ``action_listen``) and every request got its own replies."""
    replicas = scaled.settings.rasa_replicas
    assert len(replicas) == 2
    sender = "interleave-check"
    texts = ["hi", "I'm looking for running shoes", "do you have any coupons?", "how much is shipping?",
             "where is my order", "thanks"]
    answers: dict[str, list[dict]] = {}

    def send(index: int) -> None:
        response = httpx.post(f"{replicas[index % 2]}/webhooks/kefu/webhook", timeout=120, json={
            "sender": sender, "message": texts[index], "message_id": f"m{index}",
            "metadata": {"language": "en", "channel": "widget"}})
        response.raise_for_status()
        answers[f"m{index}"] = response.json()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [f"m{i}" for i in range(len(texts))]

    events = httpx.get(f"{replicas[0]}/conversations/{sender}/tracker", timeout=30).json()["events"]
    turns: list[tuple[str, list[str], str]] = []  # (message id, bot texts, the turn's last action)
    for event in events:
        if event["event"] == "user":
            turns.append((event["message_id"], [], ""))
        elif turns and event["event"] == "bot":
            turns[-1][1].append(event.get("text") or "")
        elif turns and event["event"] == "action":
            turns[-1] = (turns[-1][0], turns[-1][1], event["name"])
    assert sorted(t[0] for t in turns) == sorted(answers), "every message once in the tracker"
    for message_id, bot_texts, last_action in turns:
        assert last_action == "action_listen", f"turn {message_id} was cut into by another"
        assert bot_texts == [r.get("text") or "" for r in answers[message_id]], \
            f"turn {message_id}: the tracker holds other replies than the request got"
    # both replicas took their locks from kefu's store (Rasa's RedisLockStore loses turns here)
    assert scaled.log_path.read_text(errors="replace").count("conversation locks in Redis") == 2


def test_a_dead_replica_is_skipped_without_the_shopper_noticing(scaled: ProcessStack) -> None:
    shopper = ResilientShopper(scaled.ws_url, "en", "replica")
    shopper.say("hi")
    assert scaled.processes is not None
    scaled.processes.kill("rasa_b")
    try:
        for text in ["I'm looking for running shoes", "do you have any coupons?", "how much is shipping?", "thanks"]:
            replies = shopper.say(text)
            assert any(r["sender"] == "bot" for r in replies)
        assert not shopper.errors, f"the gateway should have used the other replica: {shopper.errors}"
    finally:
        shopper.close()
        scaled.restart("rasa_b", ready=lambda: _up(scaled.settings.rasa_replicas[1]))


def _up(url: str) -> bool:
    try:
        return bool(httpx.get(f"{url}/status", timeout=2).json().get("model_id"))
    except (httpx.HTTPError, ValueError):
        return False


def test_analytics_read_intents_from_the_postgresql_tracker_store(scaled: ProcessStack) -> None:
    shopper = ResilientShopper(scaled.ws_url, "en", "analytics")
    shopper.say("do you have any coupons?")
    shopper.close()
    deadline = time.monotonic() + 10
    while True:
        report = httpx.get(f"{scaled.gateway}/api/admin/analytics", timeout=30,
                           headers={"Authorization": "Bearer test-admin-token"}).json()
        intents = {row["intent"] for row in report.get("top_intents", [])}
        if "ask_promotion" in intents or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "ask_promotion" in intents, report.get("top_intents")

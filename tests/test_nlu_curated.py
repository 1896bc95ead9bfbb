"""A message that repeats a published FAQ question word for word parses as faq (nlu.curated)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from nlu import classifier
from nlu.curated import CuratedQuestions, QuestionFeed, normalise
from nlu.parser import MessageParser
from nlu.server import create_app
from tests.stack import free_port
from tests.test_nlu_unit import train_small

TINY = """version: "3.1"
nlu:
- intent: greet
  examples: |
    - hi
    - hello there
    - 你好
    - 在吗
- intent: ask_promotion
  examples: |
    - any coupons today
    - 有优惠券吗
    - 最近有什么活动
    - is there a discount
- intent: refund_status
  examples: |
    - where is my refund
    - 退款到哪了
    - my refund has not arrived
    - 退款怎么还没到
- intent: faq
  examples: |
    - what is your return policy
    - 运费多少
    - 退货要几天
    - how long is the warranty
"""


def train_faq_model(directory: Path) -> Path:
    """A tiny intent model with a faq intent (tests/test_kb.py uses it too)."""
    return train_small(directory, TINY)


@pytest.fixture(scope="module")
def faq_model(tmp_path_factory) -> Path:
    return train_faq_model(tmp_path_factory.mktemp("nlu-faq"))


def test_only_the_words_count():
    assert normalise("你们有礼品卡吗？") == normalise(" 你们 有礼品卡吗 ") == "你们有礼品卡吗"
    assert normalise("Do you sell GIFT cards?!") == normalise("do you sell gift cards") == "doyousellgiftcards"
    assert normalise("ＧＩＦＴ　ｃａｒｄ１００") == "giftcard100"  # full width, ideographic space
    assert normalise("?!…  🙂") == ""
    questions = CuratedQuestions()
    questions.replace([("你们有礼品卡吗", "gift_cards"), ("?", "noise"), ("A", "one_letter"),
                       ("do you sell gift cards", "gift_cards")], version=7)
    assert len(questions) == 2 and questions.version == 7
    assert questions.match("你们有礼品卡吗?") == "gift_cards" and questions.match("Do you sell gift cards??") == "gift_cards"
    assert questions.match("你们有礼品卡") is None and questions.match("a") is None and questions.match("") is None
    questions.replace([], version=8)  # an unpublished question stops matching
    assert questions.match("你们有礼品卡吗") is None


def test_a_published_question_overrides_the_model_and_keeps_its_ranking(faq_model):
    model = classifier.IntentModel.load(faq_model)
    questions = CuratedQuestions()
    parser = MessageParser(model, threshold=0.0, curated=questions)
    before = parser.parse("你们有礼品卡吗")
    questions.replace([("你们有礼品卡吗", "gift_cards")], version=1)
    after = parser.parse("你们有礼品卡吗？")
    assert after.intent.name == "faq" and after.intent.confidence == 1.0
    names = [score.name for score in after.intent_ranking]
    assert names[0] == "faq" and names.count("faq") == 1
    assert set(names) == {score.name for score in before.intent_ranking}
    assert parser.parse("有优惠券吗") == MessageParser(model, threshold=0.0).parse("有优惠券吗")  # others untouched
    assert parser.parse('/greet').intent.name == "greet"  # postbacks first
    # below the threshold the model would say nlu_fallback; the merchant's question still wins
    strict = MessageParser(model, threshold=1.0, curated=questions)
    assert strict.parse("你们有礼品卡吗").intent.name == "faq"
    assert [s.name for s in strict.parse("你们有礼品卡吗").intent_ranking].count("nlu_fallback") == 0


def test_a_model_sure_of_an_intent_that_starts_a_flow_keeps_it(faq_model):
    """The demo FAQ answers "where is my refund" in general; the dialog looks up this shopper's refund."""
    model = classifier.IntentModel.load(faq_model)
    reading = MessageParser(model, threshold=0.0).parse("where is my refund").intent
    assert reading.name == "refund_status"
    questions = CuratedQuestions(sure=reading.confidence - 0.01)
    questions.replace([("Where is my refund?", "refund_time"), ("有优惠券吗", "coupons_faq")], version=1)
    parser = MessageParser(model, threshold=0.0, curated=questions)
    assert parser.parse("where is my refund").intent == reading
    promotion = MessageParser(model, threshold=0.0).parse("有优惠券吗").intent
    assert promotion.name == "ask_promotion" and promotion.confidence > questions.sure  # answering intents give way
    assert parser.parse("有优惠券吗").intent.name == "faq"
    questions.sure = reading.confidence + 0.01  # the model unsure: the merchant's wording decides
    assert parser.parse("where is my refund").intent.name == "faq"


def test_models_without_a_faq_intent_ignore_the_questions(tmp_path):
    model = classifier.IntentModel.load(train_small(tmp_path, TINY.split("- intent: refund_status")[0], epochs=3,
                                                    fasttext_epochs=5))
    questions = CuratedQuestions(sure=1.01)  # would override any reading: only the missing faq intent stops it
    questions.replace([("hi", "greeting_faq")], version=1)
    assert MessageParser(model, curated=questions).parse("hi").intent.name != "faq"


def _knowledge_base(state: dict) -> httpx.MockTransport:
    """The knowledge base's GET /questions as the NLU server sees it; ``state['down']`` refuses."""

    def handle(request: httpx.Request) -> httpx.Response:
        state["asked"].append(dict(request.url.params))
        if state.get("down"):
            return httpx.Response(503, json={"error": "starting"})
        if request.url.params.get("since") == str(state["last_change"]):
            return httpx.Response(200, json={"last_change": state["last_change"], "changed": False})
        return httpx.Response(200, json={"last_change": state["last_change"], "changed": True,
                                         "questions": [{"text": t, "language": "zh", "key": k}
                                                       for t, k in state["questions"]]})

    return httpx.MockTransport(handle)


def test_the_feed_asks_only_for_changes_and_rides_out_an_outage():
    state = {"asked": [], "last_change": 3, "questions": [("可以刻字吗", "engraving")], "down": True}
    questions = CuratedQuestions()
    feed = QuestionFeed("http://kb/questions", questions, interval=0.0)

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=_knowledge_base(state)) as client:
            with pytest.raises(httpx.HTTPStatusError):
                await feed.refresh(client)
            assert len(questions) == 0  # nothing yet: the model alone decides
            state["down"] = False
            assert await feed.refresh(client) and questions.match("可以刻字吗？") == "engraving"
            assert not await feed.refresh(client)  # asked `since` 3: nothing changed, nothing sent
            assert state["asked"][-1] == {"since": "3"}
            state["down"] = True
            with pytest.raises(httpx.HTTPStatusError):
                await feed.refresh(client)
            assert questions.match("可以刻字吗") == "engraving"  # an outage keeps what was known
            state.update(down=False, last_change=5, questions=[])
            assert await feed.refresh(client) and len(questions) == 0 and questions.version == 5

    asyncio.run(scenario())
    bad = httpx.MockTransport(lambda request: httpx.Response(200, content=json.dumps(["not", "a", "dict"])))

    async def malformed() -> None:
        async with httpx.AsyncClient(transport=bad) as client:
            with pytest.raises(ValueError, match="last_change"):
                await feed.refresh(client)

    asyncio.run(malformed())


def test_without_a_knowledge_base_the_model_alone_decides(faq_model, unused_port_url, caplog):
    """A knowledge base that is not running: parses as the model reads them, no questions, one warning."""
    model = classifier.IntentModel.load(faq_model)
    with TestClient(create_app(faq_model, threshold=0.0, questions_url=unused_port_url,
                               questions_interval=0.02)) as client:
        time.sleep(0.3)  # several polls
        parsed = client.post("/model/parse", json={"text": "where is my refund"}).json()
        assert parsed == MessageParser(model, threshold=0.0).parse("where is my refund").to_rasa()
        status = client.get("/status").json()["curated_questions"]
        assert status == {"count": 0, "knowledge_base_change": None, "source": unused_port_url}
    warnings = [r for r in caplog.records if "curated FAQ questions unavailable" in r.getMessage()]
    assert len(warnings) == 1


@pytest.fixture
def unused_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/questions"

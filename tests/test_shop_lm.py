"""The shop's language model, which chooses among Whisper's best transcripts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from channels.voice.shop_lm import KneserNey, ShopLanguageModel, shop_texts, units
from channels.voice.transcriber import FasterWhisper
from tests.voice_audio import speak

SHOP_EN = ["my cup arrived broken", "the mug I received is cracked", "where is my order",
           "I received the wrong size", "the cup is broken, can I get a refund", "is the black backpack in stock",
           "how much is the wool sweater", "I want to return these shoes"]
SHOP_ZH = ["我的订单到哪了", "杯子收到就碎了", "这件毛衣多少钱", "我要退货"]


def test_probabilities_after_any_context_add_up_to_one() -> None:
    model = KneserNey([units(text, "en") for text in SHOP_EN], order=3)
    vocabulary = sorted(model.vocabulary)
    for context in [("<s>", "<s>"), ("my", "cup"), ("is", "the"), ("never", "seen")]:
        # every known unit, plus the one share an unknown unit gets
        total = sum(model.probability(context, unit) for unit in vocabulary)
        total += model.probability(context, "zebra")
        assert total == pytest.approx(1.0, abs=1e-9), context
    assert model.probability(("my", "cup"), "arrived") > model.probability(("my", "cup"), "sweater") > 0


def test_the_shop_model_picks_what_a_shopper_would_say_over_a_likelier_sounding_mishearing() -> None:
    model = ShopLanguageModel.build({"en": SHOP_EN, "zh": SHOP_ZH})
    # Whisper's own first choice, then the right one a little behind (mean log-probability per token)
    heard = [("Marker piracy is broken.", -0.31), ("The cup I received is broken.", -0.36),
             ("The cop I received is broken.", -0.40)]
    assert model.rescore(heard, "en") == 1
    # a candidate Whisper is far surer of still wins: the model tips close calls only
    assert model.rescore([("Marker piracy is broken.", -0.1), ("The cup I received is broken.", -1.5)], "en") == 0
    assert model.rescore([("我的定单到哪了", -0.30), ("我的订单到哪了", -0.33)], "zh") == 1  # 定单: a mishearing
    assert model.per_unit("杯子碎了", "zh") > model.per_unit("被子岁了", "zh")


def test_without_a_model_for_the_language_or_a_choice_whisper_s_first_stays() -> None:
    english_only = ShopLanguageModel.build({"en": SHOP_EN})
    assert not english_only.covers("zh") and english_only.rescore([("甲", -0.5), ("乙", -0.1)], "zh") == 0
    assert english_only.rescore([("where is my order", -0.2)], "en") == 0
    assert english_only.rescore([("", -0.01), ("where is my order", -0.4)], "en") == 1  # an empty guess never wins


def test_numbers_are_one_unit_whatever_their_digits() -> None:
    assert units("Order KF10321231 cost 12.50", "en") == ["order", "kf", "0", "cost", "0"]
    assert units("订单KF10321231，三百块", "zh") == ["订", "单", "kf", "0", "三", "百", "块"]
    model = ShopLanguageModel.build({"en": ["my order is KF10000001", "where is order KF10000002"]})
    assert model.per_unit("my order is KF99999999", "en") == pytest.approx(model.per_unit("my order is KF1", "en"))


@pytest.fixture()
def shop(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A shop database with one product and a published and a draft FAQ entry: its session factory."""
    from assistant.commerce import db
    from assistant.commerce.models import Category, Product
    from knowledge_base.models import FaqEntry

    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    db.upgrade(url)
    sessions = db.session_factory(url)
    with sessions() as session:
        cups = Category(key="cups", name_zh="杯具", name_en="Cups")
        session.add(cups)
        session.flush()
        session.add(Product(sku="C1", category_id=cups.id, brand="kefu", name_zh="珐琅马克杯", name_en="Enamel mug",
                            description_zh="", description_en="", price=3900, cost=1500, image_hue=10))
        for status, question in (("published", "Do you gift-wrap orders?"), ("draft", "Is the draft leaking?")):
            session.add(FaqEntry(key=status, category="service", questions_zh=["可以礼品包装吗"], questions_en=[question],
                                 answer_zh="可以", answer_en="Yes", status=status))
        session.commit()
    return sessions


def test_the_gateway_builds_it_from_intent_examples_faq_and_catalog(shop) -> None:  # type: ignore[no-untyped-def]
    from channels.voice.service import NLU_DATA

    texts = shop_texts(shop, [NLU_DATA])
    assert len(texts["en"]) > 1000 and len(texts["zh"]) > 1000  # the intent examples
    assert {"Enamel mug", "Cups", "Do you gift-wrap orders?"} <= set(texts["en"])
    assert {"珐琅马克杯", "杯具", "可以礼品包装吗"} <= set(texts["zh"])
    assert "Is the draft leaking?" not in texts["en"]  # only what the shop published
    model = ShopLanguageModel.build(texts)
    assert model.covers("en") and model.covers("zh")
    assert model.per_unit("where is my order", "en") > model.per_unit("wear is my odor", "en")


def test_a_new_product_reaches_the_voice_biasing_without_a_restart(shop, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant.commerce.models import Product
    from assistant.settings import Settings
    from channels.voice import service as voice_service
    from channels.voice.transcriber import Transcript

    heard: list[tuple[dict, ShopLanguageModel]] = []

    class Recorder:
        name = "recorder"

        def warm_up(self) -> None:
            pass

        def transcribe(self, audio, language=None, hotwords=None, language_model=None):  # type: ignore[no-untyped-def]
            heard.append((dict(hotwords), language_model))
            return Transcript("hello", "en", 1.0, 1.0, 0.01, self.name)

    clock = [1000.0]
    monkeypatch.setattr(voice_service.time, "monotonic", lambda: clock[0])
    voice = voice_service.VoiceService(Settings(var_dir=tmp_path / "var"), shop, transcriber=Recorder())
    voice.transcribe(np.zeros(16_000, np.float32))
    with shop() as session:
        session.add(Product(sku="C2", category_id=1, brand="kefu", name_zh="竹纤维毛巾", name_en="Bamboo towel",
                            description_zh="", description_en="", price=2900, cost=900, image_hue=90))
        session.commit()
    clock[0] += 60
    voice.transcribe(np.zeros(16_000, np.float32))
    assert "Bamboo towel" not in heard[-1][0]["en"] and heard[-1][1] is heard[0][1]  # read a minute ago
    clock[0] += voice_service.REFRESH_S
    voice.transcribe(np.zeros(16_000, np.float32))
    assert "Bamboo towel" in heard[-1][0]["en"] and "竹纤维毛巾" in heard[-1][0]["zh"]
    assert heard[-1][1] is not heard[0][1]
    assert heard[-1][1].per_unit("bamboo towel", "en") > heard[0][1].per_unit("bamboo towel", "en")


def test_faster_whisper_hands_the_model_its_best_transcripts() -> None:
    seen: list[list[tuple[str, float]]] = []

    class Spy(ShopLanguageModel):
        def rescore(self, candidates, language, weight=None):  # type: ignore[no-untyped-def]
            seen.append(list(candidates))
            return len(candidates) - 1  # the last: shows that the choice is the model's

    spy = Spy.build({"en": SHOP_EN})
    whisper = FasterWhisper("tiny.en", beam_size=5, candidates=4)
    result = whisper.transcribe(_samples("Where is my order?"), language_model=spy)
    assert len(seen) == 1 and len(seen[0]) == 4
    assert all(math.isfinite(score) and score < 0 for _, score in seen[0])
    assert result.text == seen[0][-1][0].strip()
    plain = whisper.transcribe(_samples("Where is my order?"))  # no model: one transcript, Whisper's first
    assert len(seen) == 1 and plain.text


def _samples(text: str):  # type: ignore[no-untyped-def]
    from channels.voice.audio import decode

    return decode(speak(text)).samples

"""NLU pieces: Rasa YAML reading, postbacks, entities, train -> persist -> load -> same predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from nlu import classifier, data
from nlu.classifier import IntentModel, TrainConfig
from nlu.entities import EntityExtractor, chinese_number
from nlu.parser import MessageParser, parse_postback
from nlu.server import create_app

TINY = """version: "3.1"
nlu:
- intent: greet
  examples: |
    - hi
    - hello there
    - 你好
    - 在吗
    - hey
    - 亲在吗
- intent: order_status
  examples: |
    - where is my order [KF10234567](order_id)
    - track my package
    - 我的快递到哪了
    - 订单[KF10087421](order_id)发货了吗
    - has it shipped
    - 物流查一下
- lookup: color
  examples: |
    - 黑色
    - black
"""


def train_small(directory: Path, rasa_yaml: str, epochs: int = 25, fasttext_epochs: int = 50) -> Path:
    """A tiny intent model trained in seconds from ``rasa_yaml``, saved under ``directory / "model"``."""
    (directory / "data.yml").write_text(rasa_yaml)
    training = data.load([directory / "data.yml"])
    model = classifier.train(training.examples, data_sha256=training.sha256, lookups=training.lookups,
                             config=TrainConfig(epochs=epochs, fasttext_epochs=fasttext_epochs,
                                                validation_fraction=0.0))
    model.save(directory / "model")
    return directory / "model"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return train_small(tmp_path_factory.mktemp("nlu"), TINY)


def test_rasa_annotations_are_stripped_with_offsets():
    example = data.parse_example("订单[KF10087421](order_id)发货了吗", "order_status")
    assert example.text == "订单KF10087421发货了吗"
    name, value, start, end = example.entities[0]
    assert (name, value) == ("order_id", "KF10087421") and example.text[start:end] == "KF10087421"
    json_form = data.parse_example('i want [red]{"entity": "color", "value": "red"} shoes', "x")
    assert json_form.text == "i want red shoes" and json_form.entities[0][:2] == ("color", "red")


def test_postbacks_parse_like_rasas_regex_message_handler():
    result = parse_postback('/place_order{"product": "AP000", "size": ["M", "L"]}')
    assert result.intent.name == "place_order" and result.intent.confidence == 1.0
    assert [(e.entity, e.value) for e in result.entities] == [("product", "AP000"), ("size", "M"), ("size", "L")]
    text = '/place_order{"product": "AP000", "size": ["M", "L"]}'
    assert result.entities[0].start == text.index("{") and result.entities[0].end == len(text)
    assert parse_postback("/greet@0.5").intent.confidence == 0.5
    assert parse_postback("/greet{broken").entities == []
    assert parse_postback("hello") is None
    assert parse_postback("/unknown_intent", known_intents={"greet"}) is None


def test_entities_handle_chinese_numerals_and_full_width_digits():
    extractor = EntityExtractor({"color": ["黑色", "black"], "product": ["羽绒服"]})
    found = {(e.entity, e.value) for e in extractor.extract("我要两件黑色羽绒服，三百块以内，订单ＫＦ１０２３４５６７")}
    assert {("quantity", 2), ("color", "黑色"), ("product", "羽绒服"), ("amount", 300),
            ("order_id", "KF10234567")} <= found
    english = {(e.entity, e.value) for e in extractor.extract("black boots under $80, mail me at a@b.com, 13812345678")}
    assert {("color", "black"), ("amount", 80), ("email", "a@b.com"), ("phone", "13812345678")} <= english
    assert chinese_number("一千二百") == 1200 and chinese_number("十五") == 15 and chinese_number("两") == 2


def test_train_persist_load_same_predictions(tiny_model):
    texts = ["你好呀", "where's my parcel", "订单到哪了", "hello"]
    loaded = IntentModel.load(tiny_model)
    again = IntentModel.load(tiny_model)
    assert np.allclose(loaded.predict_proba(texts), again.predict_proba(texts))
    meta = loaded.meta
    assert meta["labels"] == ["greet", "order_status"] and meta["data_sha256"] and meta["version"]
    predicted = [loaded.labels[i] for i in loaded.predict_proba(["hello there", "我的快递到哪了"]).argmax(1)]
    assert predicted == ["greet", "order_status"]


def test_one_message_alone_scores_as_it_does_in_a_padded_batch(tiny_model):
    """A message on its own skips packing (nothing is padded); it must score exactly as it does
    beside longer messages, where it is padded and masked."""
    model = IntentModel.load(tiny_model)
    texts = ["hi", "where's my parcel, it was due on monday", "订单到哪了", "hello there my friend"]
    batch = model.predict_proba(texts)
    alone = np.vstack([model.predict_proba([t]) for t in texts])
    assert np.allclose(batch, alone, atol=1e-5)


def test_one_message_in_numpy_scores_as_pytorch_does(tiny_model):
    """A single message goes through the numpy forward pass (nlu.classifier.OneMessage); its
    logits must be PyTorch's, for known words, unseen words (fastText subword vectors), Chinese
    and a one-token message, and it must follow the network when training changes a weight."""
    import torch

    from nlu.classifier import encode_batch

    model = IntentModel.load(tiny_model)
    texts = ["hi", "where's my parcel, it was due on monday", "订单到哪了", "zxqwv flurbished gizmo??", "退"]
    for text in texts:
        inputs = encode_batch([model.tokens(text)], model.vocab, model.network.embedding_dim,
                              model.network.ngram_buckets, model.fasttext)
        with torch.inference_mode():
            expected = model.network(*inputs).numpy()
        got = model.logits([text]).numpy()
        assert got.shape == expected.shape
        assert np.allclose(got, expected, atol=1e-4), text
    before = model.logits(["hi"]).numpy()
    with torch.no_grad():
        model.network.members[0].output.bias += 1.0  # as an optimizer step would, in place
    after = model.logits(["hi"]).numpy()
    assert np.allclose(after, before + 1.0 / len(model.network.members), atol=1e-4)


def test_predictions_without_onednn_score_the_same_and_leave_the_switch_as_it_was(tiny_model):
    import torch

    from nlu.classifier import encode_batch

    model = IntentModel.load(tiny_model)
    texts = ["hi", "where's my parcel, it was due on monday", "订单到哪了"]
    assert torch.backends.mkldnn.enabled
    with torch.inference_mode():  # oneDNN's LSTM, as training runs it
        inputs = encode_batch([model.tokens(t) for t in texts], model.vocab, model.network.embedding_dim,
                              model.network.ngram_buckets, model.fasttext)
        with_onednn = torch.softmax(model.network(*inputs) / model.temperature, dim=-1).numpy()
    assert np.allclose(model.predict_proba(texts), with_onednn, atol=1e-5)
    assert torch.backends.mkldnn.enabled, "training after a prediction still gets oneDNN"


def test_loading_checks_the_artifact(tmp_path, tiny_model):
    with pytest.raises(FileNotFoundError, match="kefu nlu train"):
        IntentModel.load(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "meta.json").write_text('{"version": "something.else"}')
    with pytest.raises(ValueError, match="Retrain"):
        IntentModel.load(broken)


def test_server_never_fails_and_falls_back_below_threshold(tiny_model):
    with TestClient(create_app(tiny_model, threshold=0.999)) as client:
        low = client.post("/model/parse", json={"text": "hello there"}).json()
        assert low["intent"]["name"] == "nlu_fallback" and low["intent_ranking"][1]["name"] == "greet"
        assert client.post("/model/parse", content=b"\xff\xfe").status_code == 400
        assert client.get("/status").json()["labels"] == ["greet", "order_status"]
    with TestClient(create_app(tiny_model, threshold=0.0)) as client:
        ok = client.post("/model/parse", json={"text": "where is my order KF10234567", "message_id": "m"}).json()
        assert ok["intent"]["name"] == "order_status"
        assert any(e["entity"] == "order_id" and e["value"] == "KF10234567" for e in ok["entities"])


def test_parser_errors_become_nlu_fallback(tiny_model, monkeypatch):
    with TestClient(create_app(tiny_model, threshold=0.0)) as client:
        def explode(self, text):
            raise RuntimeError("boom")
        monkeypatch.setattr(MessageParser, "parse", explode)
        reply = client.post("/model/parse", json={"text": "hi"})
        assert reply.status_code == 200 and reply.json()["intent"] == {"name": "nlu_fallback", "confidence": 1.0}


@pytest.mark.parametrize("text, expected", [
    ("我的电话 138 1234 5678", [("phone", "13812345678", "138 1234 5678")]),
    ("手机+86-139-1234-5678", [("phone", "13912345678", "+86-139-1234-5678")]),
    ("尾号５６７８", [("phone", "5678", "５６７８")]),
    ("订单 KF 1023 4567 到哪了", [("order_id", "KF10234567", "KF 1023 4567")]),
    ("订单ＫＦ１０２３４５６７", [("order_id", "KF10234567", "ＫＦ１０２３４５６７")]),
    ("预算三百", [("amount", 300, "三百")]),
    ("两百左右的毛衣", [("amount", 200, "两百")]),
    ("一千二百块", [("amount", 1200, "一千二百块")]),
    ("买2双42码的", [("quantity", 2, "2双"), ("size", "42", "42")]),
    ("来十五个", [("quantity", 15, "十五个")]),
    ("running shoes under $80", [("amount", 80, "$80")]),
    ("my budget is 50", [("amount", 50, "50")]),
    ("I want two pairs in size L", [("quantity", 2, "two pairs"), ("size", "L", "L")]),
    ("a couple of bottles", [("quantity", 2, "a couple of bottles")]),
    ("it ends in 1234", [("phone", "1234", "1234")]),
    ("email me at Li.Ming+shop@example.co.uk", [("email", "li.ming+shop@example.co.uk", "Li.Ming+shop@example.co.uk")]),
    ("use CP1a2b3c4d", [("coupon_code", "CP1A2B3C4D", "CP1a2b3c4d")]),
    ("邮箱chen@example.com", [("email", "chen@example.com", "chen@example.com")]),
])
def test_entity_rules_on_tricky_cases(text, expected):
    found = [(e.entity, e.value, text[e.start:e.end]) for e in EntityExtractor({}).extract(text) if e.entity != "language"]
    assert found == expected


def test_entity_offsets_follow_rasas_format():
    text = "要两件黑色羽绒服"
    entity = next(e for e in EntityExtractor({"color": ["黑色"]}).extract(text) if e.entity == "color")
    assert (entity.start, entity.end, entity.extractor) == (3, 5, "KefuEntityExtractor")
    assert set(vars(entity)) == {"entity", "value", "start", "end", "extractor", "confidence_entity"}


def test_longest_lookup_mention_wins_and_synonyms_map_to_catalog_words():
    extractor = EntityExtractor({"category": ["鞋", "shoes"], "product": ["跑步鞋", "running shoes", "thermos"],
                                 "synonym:insulated bottle": ["thermos"]})
    found = [(e.entity, e.value) for e in extractor.extract("跑步鞋多少钱") if e.entity != "language"]
    assert found == [("product", "跑步鞋")]
    found = [(e.entity, e.value) for e in extractor.extract("running shoes or a thermos") if e.entity != "language"]
    assert found == [("product", "running shoes"), ("product", "insulated bottle")]


def test_long_numbers_tokenise_by_shape():
    from nlu.text import tokenize

    assert tokenize("订单KF10998877到哪了") == ["订", "单", "kf", "<num8>", "到", "哪", "了"]
    assert tokenize("KF10234567") == tokenize("KF10998877")
    assert tokenize("42码 2件") == ["42", "码", "2", "件"]
    assert tokenize("我的订单KF10998877", "jieba") == ["我", "的", "订单", "kf", "<num8>"]


def test_tagger_labels_decode_and_merge():
    from nlu import tagger
    from nlu.types import Entity

    example = data.parse_example("有没有[黑色](color)的[保温壶](product) size [M](size)", "product_search")
    tokens, labels = tagger.bio_labels(example)
    assert list(zip(tokens, labels))[3:9] == [("黑", "B-color"), ("色", "I-color"), ("的", "O"),
                                               ("保", "B-product"), ("温", "I-product"), ("壶", "I-product")]
    assert labels[-1] == "B-size"
    spans = tagger.token_spans(example.text)
    decoded = tagger._decode(example.text, spans, labels, [0.9] * len(labels))
    assert [(e.entity, e.value, e.start, e.end) for e in decoded] == [
        (name, value, start, end) for name, value, start, end in example.entities]
    # an I- tag without a B- still starts a span; a rule/lookup match always wins an overlap
    repaired = tagger._decode("red hat", tagger.token_spans("red hat"), ["O", "I-product"], [0.8, 0.8])
    assert [(e.entity, e.value) for e in repaired] == [("product", "hat")]
    found = [Entity("color", "黑色", 3, 5)]
    tagged = [Entity("color", "黑色的", 3, 6), Entity("product", "保温壶", 6, 9)]
    assert [e.value for e in tagger.merge(found, tagged)] == ["黑色", "保温壶"]


def test_fasttext_vectors_that_diverge_are_trained_again_at_half_the_rate(tmp_path, monkeypatch, caplog):
    import fasttext

    real = fasttext.train_unsupervised
    rates: list[float] = []

    def diverges_once(path, **kwargs):  # type: ignore[no-untyped-def]
        rates.append(kwargs["lr"])
        if len(rates) == 1:
            raise RuntimeError("Encountered NaN.")
        return real(path, **kwargs)

    monkeypatch.setattr(fasttext, "train_unsupervised", diverges_once)
    (tmp_path / "once").mkdir()
    (tmp_path / "twice").mkdir()
    assert (train_small(tmp_path / "once", TINY, epochs=2, fasttext_epochs=5) / "fasttext.bin").exists()
    # the real retry can diverge too (seen once in a full run): then it goes on halving
    lr = TrainConfig().fasttext_lr
    assert rates == [lr / 2 ** i for i in range(len(rates))] and len(rates) >= 2 and "diverged" in caplog.text

    tries: list[float] = []

    def always_diverges(path, **kwargs):  # type: ignore[no-untyped-def]
        tries.append(kwargs["lr"])
        raise RuntimeError("Encountered NaN.")

    monkeypatch.setattr(fasttext, "train_unsupervised", always_diverges)
    with pytest.raises(RuntimeError, match="NaN"):
        train_small(tmp_path / "twice", TINY, epochs=2, fasttext_epochs=5)
    assert tries == [lr / 2 ** i for i in range(classifier.FASTTEXT_ATTEMPTS)]

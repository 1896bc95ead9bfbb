"""The NLU toolchain as users run it: `kefu nlu convert / train / evaluate`, the data split, augmentation."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nlu import augment, convert, data
from nlu.classifier import calibrate_threshold
from nlu.server import create_app

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
TRAIN = [ROOT / "assistant" / "data" / "nlu"]
TEST = ROOT / "assistant" / "tests" / "nlu"
KEFU = [sys.executable, "-m", "assistant.cli"]
needs_datasets = pytest.mark.skipif(not DATASETS.exists(), reason="../shared/datasets is not beside the project")


def kefu(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(KEFU + list(args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


# --- training data --------------------------------------------------------------------------

def test_every_intent_has_60_hand_written_examples_per_language():
    intents = set(data.load([ROOT / "assistant" / "data" / "nlu" / "zh.yml"]).intents)
    assert len(intents) == 24 + 4  # INTENTS.md: 24 rows, social row holds 5 intents
    for language in ("zh", "en"):
        files = [TRAIN[0] / f"{language}.yml", TRAIN[0] / language]
        counts = Counter(e.intent for e in data.load(files).examples)
        assert set(counts) == intents
        thin = {intent: n for intent, n in counts.items() if n < 60}
        assert not thin, f"{language}: fewer than 60 hand-written examples: {thin}"


def test_held_out_split_is_never_trained_on():
    training = {e.text.strip().lower() for e in data.load(TRAIN).examples}
    test = data.load([TEST]).examples
    assert len(test) >= 28 * 15 * 2
    leaked = [e.text for e in test if e.text.strip().lower() in training]
    assert not leaked, f"test examples also in training data: {leaked[:10]}"
    assert Counter(e.intent for e in test).most_common()[-1][1] >= 15


def test_augmentation_keeps_intents_and_entities_and_adds_variety():
    examples = [data.parse_example("有没有[黑色](color)的[卫衣](product)", "product_search"),
                data.parse_example("Where is my order? I haven't received it", "order_status")]
    lookups = {"color": ["白色", "红色"], "product": ["羽绒服", "保温杯"]}
    variants = augment.augment(examples, lookups, per_example=3, seed=1)
    assert len(variants) == 6 and len({v.text for v in variants} | {e.text for e in examples}) == 8
    assert {v.intent for v in variants[:3]} == {"product_search"} and {v.intent for v in variants[3:]} == {"order_status"}
    for variant in variants:
        for name, value, start, end in variant.entities:
            assert variant.text[start:end] == value
    assert augment.augment(examples, lookups, per_example=3, seed=1) == variants  # reproducible


# --- converters ------------------------------------------------------------------------------

def test_converters_write_rasa_yaml_that_loads(tmp_path):
    clinc = tmp_path / "clinc.json"
    clinc.write_text(json.dumps({"train": [["what's the weather", "weather"], ["set a timer [now]", "timer"]],
                                 "oos_train": [["how old is the sun", "oos"]], "val": [], "test": []}))
    banking = tmp_path / "banking.csv"
    banking.write_text('text,category\n"My card, it never came?",card_arrival\nhow do i top up,top_up\n')
    seq = tmp_path / "snips"
    seq.mkdir()
    (seq / "seq.in").write_text("play madonna on spotify\nrate this book 5 stars\n")
    (seq / "label").write_text("PlayMusic\nRateBook\n")
    (seq / "seq.out").write_text("O B-artist O B-service\nO B-object_select I-object_select B-rating_value O\n")
    for source, out in ((clinc, "c.yml"), (banking, "b.yml"), (seq, "s.yml")):
        kefu("nlu", "convert", str(source), "--out", str(tmp_path / out))
    c = data.load([tmp_path / "c.yml"])
    assert {(e.text, e.intent) for e in c.examples} == {("what's the weather", "weather"),
                                                        ("set a timer [now]", "timer"),
                                                        ("how old is the sun", "out_of_scope")}
    assert data.load([tmp_path / "b.yml"]).examples[0].text == "My card, it never came?"
    snips = data.load([tmp_path / "s.yml"]).examples
    assert snips[0].text == "play madonna on spotify"
    assert [(name, value) for name, value, *_ in snips[0].entities] == [("artist", "madonna"), ("service", "spotify")]
    assert snips[1].entities[0][:2] == ("object_select", "this book")


@needs_datasets
def test_converters_read_the_public_datasets(tmp_path):
    assert len(convert.read("clinc150", DATASETS / "clinc150" / "data_full.json", "test")) == 5500
    assert len(convert.read("banking77", DATASETS / "banking77" / "test.csv")) == 3080
    assert len(convert.read("seq", DATASETS / "hwu64" / "test")) == 1076
    snips = convert.read("seq", DATASETS / "snips" / "test")
    assert len(snips) == 700 and sum("](" in text for text, _ in snips) > 600


# --- train and evaluate any Rasa-format file ------------------------------------------------

@pytest.fixture(scope="module")
def snips_slice(tmp_path_factory) -> tuple[Path, Path]:
    """A small SNIPS slice in Rasa format (converted from the repo's layout when it is there)."""
    directory = tmp_path_factory.mktemp("snips")
    if DATASETS.exists():
        rows = convert.read("seq", DATASETS / "snips" / "train")
        test_rows = convert.read("seq", DATASETS / "snips" / "test")
    else:  # pragma: no cover - the CI machine has ../shared
        pytest.skip("../shared/datasets is not beside the project")
    per_intent: dict[str, list] = {}
    for text, label in rows:
        per_intent.setdefault(label, [])
        if len(per_intent[label]) < 40:
            per_intent[label].append((text, label))
    (directory / "train.yml").write_text(convert.to_rasa_yaml([r for group in per_intent.values() for r in group]))
    (directory / "test.yml").write_text(convert.to_rasa_yaml(test_rows[:210]))
    return directory / "train.yml", directory / "test.yml"


def test_train_and_evaluate_any_rasa_file_write_rasa_reports(snips_slice, tmp_path):
    train_file, test_file = snips_slice
    model_dir, report = tmp_path / "model", tmp_path / "report"
    trained = kefu("nlu", "train", "--data", str(train_file), "--out", str(model_dir), "--epochs", "12")
    assert "intent model saved" in trained.stdout and "training BiLSTM" in trained.stderr  # progress bar
    meta = json.loads((model_dir / "meta.json").read_text())
    assert meta["version"] == "kefu.intent.fasttext-bilstm.v2" and len(meta["labels"]) == 7
    assert meta["tokenizer"]["chinese"] == "chars" and 0 <= meta["threshold"] < 1 and meta["temperature"] > 0
    kefu("nlu", "evaluate", "--model", str(model_dir), "--data", str(test_file), "--report", str(report))
    intent_report = json.loads((report / "intent_report.json").read_text())
    assert {"accuracy", "macro avg", "weighted avg", "PlayMusic"} <= set(intent_report)
    assert set(intent_report["PlayMusic"]) >= {"precision", "recall", "f1-score", "support", "confused_with"}
    assert intent_report["accuracy"] > 0.8  # 40 examples per intent already separate SNIPS's 7 intents
    errors = json.loads((report / "intent_errors.json").read_text())
    assert all({"text", "intent", "intent_prediction"} <= set(e) for e in errors)
    for png in ("intent_confusion_matrix.png", "intent_histogram.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((report / "summary.json").read_text())
    assert summary["examples"] == 210 and summary["single_utterance_ms"]["p50"] > 0


def test_parse_contract(snips_slice, tmp_path):
    train_file, _ = snips_slice
    model_dir = tmp_path / "model"
    kefu("nlu", "train", "--data", str(train_file), "--out", str(model_dir), "--epochs", "3")
    with TestClient(create_app(model_dir)) as client:
        parsed = client.post("/model/parse", json={"text": "play some jazz on spotify", "message_id": "m1"}).json()
        assert set(parsed) == {"text", "intent", "entities", "intent_ranking"}
        assert set(parsed["intent"]) == {"name", "confidence"} and len(parsed["intent_ranking"]) <= 10
        assert client.post("/model/parse", json={"text": "/RateBook"}).json()["intent"] == \
            {"name": "RateBook", "confidence": 1.0}
        empty = client.post("/model/parse", json={"text": "   "}).json()
        assert empty["intent"]["name"] == "nlu_fallback" and empty["entities"] == []
        long = client.post("/model/parse", json={"text": "play music " * 1000})
        assert long.status_code == 200 and long.json()["intent"]["name"]
        for bad in (b"\xff\xfe\x00", b"{not json", b'{"text": 5}', b"[]", b'{"message_id": "x"}'):
            reply = client.post("/model/parse", content=bad)
            assert reply.status_code == 400 and reply.json()["error"] == "invalid_request"
            assert "text" in reply.json()["message"]
        batch = client.post("/model/parse_batch", json={"texts": ["play jazz", "book a table"]}).json()
        assert len(batch) == 2
        assert client.post("/model/parse_batch", content=b'{"texts": "oops"}').status_code == 400


def test_threshold_calibration_spends_at_most_the_budget():
    import numpy as np

    labels = ["a", "b", "out_of_scope"]
    probs = np.array([[0.9, 0.05, 0.05]] * 90 + [[0.4, 0.3, 0.3]] * 10 + [[0.35, 0.33, 0.32]] * 10)
    gold = np.array([0] * 100 + [2] * 10)
    threshold, info = calibrate_threshold(probs, gold, labels, budget=0.05)  # may drop 5 of 100 correct
    assert threshold == 0.4 and info["oos_recall"] == 1.0 and info["in_scope_accuracy"] == 1.0
    loose, info = calibrate_threshold(probs, gold, labels, budget=0.1)  # may drop all ten 0.4s
    assert loose == 0.9 and info["in_scope_accuracy"] == 0.9
    assert calibrate_threshold(probs, gold, labels, budget=0.0)[0] == 0.4

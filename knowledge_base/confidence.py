"""Calibrated retrieval confidence: the probability that the top passage answers the question.

Training data comes from the loaded FAQ itself, so it works for any merchant's FAQ: each question
variant is held out in turn (5 folds; an entry keeps at least one variant per language) and searched
for against an index without it; the example is positive when the entry comes back first. Negatives
are the wrong top results plus a bilingual set of shop questions that no FAQ answers
(``data/out_of_scope.yml``). A logistic regression per language and search mode maps the search
features to a probability; the threshold is the one that best separates "answer" from "refuse"
(balanced accuracy), so both a wrong answer and a needless refusal count.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from knowledge_base.index import MODES, KnowledgeIndex, Target

VERSION = "kefu.kb.confidence.v4"
OUT_OF_SCOPE_PATH = Path(__file__).with_name("data") / "out_of_scope.yml"
FEATURES = ["top_dense", "top_bm25", "dense_margin", "bm25_margin", "agree", "fused_margin", "zh", "rerank_top",
            "rerank_margin"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 3000) -> tuple[np.ndarray, np.ndarray,
                                                                                          np.ndarray]:
    """Standardised logistic regression by gradient descent: (weights, mean, scale)."""
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    # class-balanced: answerable and unanswerable questions weigh the same in total
    pos = max(y.sum(), 1.0)
    neg = max(len(y) - y.sum(), 1.0)
    sample = np.where(y == 1, 0.5 / pos, 0.5 / neg)
    for _ in range(steps):
        p = _sigmoid(z @ w)
        grad = z.T @ ((p - y) * sample) + l2 * np.r_[w[:-1], 0.0]
        w -= 1.0 * grad
    return w, mean, scale


def best_threshold(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The threshold with the highest balanced accuracy, and that accuracy."""
    best_t, best_score = 0.5, -1.0
    for t in np.unique(np.r_[p, 0.5]):
        answer = p >= t
        tpr = (answer & (y == 1)).sum() / max((y == 1).sum(), 1)
        tnr = (~answer & (y == 0)).sum() / max((y == 0).sum(), 1)
        if (score := (tpr + tnr) / 2) > best_score:
            best_t, best_score = float(t), float(score)
    return best_t, best_score


@dataclass
class Reranker:
    """Per query language, a logistic regression over pair features (``index.PAIR_FEATURES``) that
    reorders the fused candidates; trained on held-out question variants, so it knows no particular
    FAQ entry. One per language because each language has its own dense model, whose similarities
    are spread differently: when the English model was tuned on the FAQ, one shared regression
    followed the English similarities and Chinese hybrid R@1 fell from 0.892 to 0.854."""

    models: dict[str, dict[str, list[float]]]  # language -> weights, mean, scale

    def scores(self, rows: list[list[float]], language: str) -> list[float]:
        model = self.models.get(language) or self.models.get("en") or next(iter(self.models.values()))
        x = np.clip((np.asarray(rows, dtype=np.float64) - np.asarray(model["mean"])) / np.asarray(model["scale"]),
                    -4, 4)
        return _sigmoid(np.hstack([x, np.ones((len(x), 1))]) @ np.asarray(model["weights"])).tolist()

    @classmethod
    def fit(cls, pairs: list[tuple[list[float], int, str]]) -> Reranker | None:
        """From (pair features, 1 when the candidate is the right entry, query language)."""
        models = {}
        for language in sorted({lang for *_, lang in pairs}):
            rows = [(f, y) for f, y, lang in pairs if lang == language]
            if any(y for _, y in rows) and not all(y for _, y in rows):
                weights, mean, scale = fit_logistic(np.asarray([f for f, _ in rows]),
                                                    np.asarray([y for _, y in rows], dtype=np.float64))
                models[language] = {"weights": weights.tolist(), "mean": mean.tolist(), "scale": scale.tolist()}
        return cls(models) if models else None


@dataclass
class ConfidenceModel:
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # "mode/lang" -> weights, mean, scale, threshold
    meta: dict[str, Any] = field(default_factory=dict)
    reranker: Reranker | None = None

    def predict(self, features: list[float], language: str, mode: str = "hybrid") -> float:
        model = self.models.get(f"{mode}/{language}") or self.models.get(f"{mode}/en")
        if model is None:
            return 0.0
        # clipped: a feature far outside what calibration saw must not swing the answer by extrapolation
        x = np.clip((np.asarray(features) - np.asarray(model["mean"])) / np.asarray(model["scale"]), -4, 4)
        return float(_sigmoid(np.r_[x, 1.0] @ np.asarray(model["weights"])))

    def threshold(self, language: str, mode: str = "hybrid") -> float:
        model = self.models.get(f"{mode}/{language}") or self.models.get(f"{mode}/en")
        return float(model["threshold"]) if model else 1.0

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "confidence.json"
        reranker = self.reranker.__dict__ if self.reranker else None
        path.write_text(json.dumps({"version": VERSION, "features": FEATURES, "models": self.models,
                                    "reranker": reranker, **self.meta}, ensure_ascii=False, indent=2))
        return path

    @classmethod
    def load(cls, directory: Path) -> ConfidenceModel | None:
        path = directory / "confidence.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        if data.get("version") != VERSION:
            return None
        models = data.pop("models")
        reranker = data.pop("reranker", None)
        data.pop("version")
        data.pop("features", None)
        return cls(models=models, meta=data, reranker=Reranker(**reranker) if reranker else None)

    def attach(self, index: KnowledgeIndex) -> None:
        index.confidence = self
        index.reranker = self.reranker


def out_of_scope(path: Path = OUT_OF_SCOPE_PATH) -> list[tuple[str, str]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [(str(q), lang) for lang in ("zh", "en") for q in data.get(lang, [])]


def _folds(targets: list[Target], k: int, seed: int,
           kept: dict[str, int] | None = None) -> list[list[tuple[str, str, str]]]:
    """k lists of held-out (target id, language, question); each entry keeps one variant per language,
    and the first ``kept[language]`` when the language's model was tuned on those
    (``knowledge_base.tuning``): a question the model learned would make the calibration too sure."""
    rng = random.Random(seed)
    held: list[tuple[str, str, str]] = []
    for target in targets:
        if target.kind != "faq":
            continue
        for lang, questions in target.questions.items():
            held.extend((target.id, lang, q) for q in questions[max(1, (kept or {}).get(lang, 1)):])
    rng.shuffle(held)
    return [held[i::k] for i in range(k)]


def collect(make_index, targets: list[Target], modes: tuple[str, ...] = MODES, k: int = 5,
            seed: int = 13, reranker: Reranker | None = None,
            pairs: list[tuple[list[float], int, str]] | None = None,
            kept: dict[str, int] | None = None) -> dict[str, list[tuple[list[float], int, str]]]:
    """Per mode, (features, label, language) of every held-out variant and out-of-scope question.

    ``make_index()`` returns an empty KnowledgeIndex (in memory); the caller's embedder should cache
    vectors, since every fold re-adds nearly the same texts.
    """
    examples: dict[str, list[tuple[list[float], int, str]]] = {mode: [] for mode in modes}
    negatives = out_of_scope()
    for fold_no, fold in enumerate(_folds(targets, k, seed, kept)):
        held = {(t, lang, q) for t, lang, q in fold}
        index: KnowledgeIndex = make_index()
        index.reranker = reranker
        index.upsert([_without(target, held) for target in targets])
        queries = [(q, lang, t) for t, lang, q in fold]
        # each out-of-scope question is asked in exactly one fold
        queries += [(q, lang, None) for i, (q, lang) in enumerate(negatives) if i % k == fold_no]
        for text, lang, expected in queries:
            for mode in modes:
                result = index.search(text, lang, k=5, mode=mode)
                top = result.passages[0].id if result.passages else None
                if pairs is not None and mode == "hybrid" and expected is not None:
                    pairs.extend((f, int(t == expected), lang) for t, f in result.candidates)
                examples[mode].append((result.features, int(expected is not None and top == expected), lang))
    return examples


def _without(target: Target, held: set[tuple[str, str, str]]) -> Target:
    questions = {lang: [q for q in qs if (target.id, lang, q) not in held] for lang, qs in target.questions.items()}
    return Target(id=target.id, kind=target.kind, key=target.key, category=target.category, questions=questions,
                  answers=target.answers, faq_id=target.faq_id, source=target.source, document_id=target.document_id,
                  tags=target.tags)


def fit(examples: dict[str, list[tuple[list[float], int, str]]], embedding_model: str) -> ConfidenceModel:
    model = ConfidenceModel(meta={
        "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "embedding_model": embedding_model, "metrics": {}})
    for mode, rows in examples.items():
        for lang in ("zh", "en"):
            subset = [(f, y) for f, y, lg in rows if lg == lang]
            if len(subset) < 10:
                continue
            x = np.asarray([f for f, _ in subset], dtype=np.float64)
            y = np.asarray([y for _, y in subset], dtype=np.float64)
            weights, mean, scale = fit_logistic(x, y)
            z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
            p = _sigmoid(z @ weights)
            threshold, balanced = best_threshold(p, y)
            model.models[f"{mode}/{lang}"] = {"weights": weights.tolist(), "mean": mean.tolist(),
                                              "scale": scale.tolist(), "threshold": threshold}
            model.meta["metrics"][f"{mode}/{lang}"] = {
                "examples": len(y), "positives": int(y.sum()), "balanced_accuracy": round(balanced, 4),
                "answered_correctly": round(float(((p >= threshold) & (y == 1)).sum() / max(y.sum(), 1)), 4),
                "refused_when_wrong_or_unanswerable": round(float(((p < threshold) & (y == 0)).sum()
                                                                  / max((y == 0).sum(), 1)), 4)}
    return model


def calibrate(sessions, embedders, out_dir: Path, modes: tuple[str, ...] = MODES,  # type: ignore[no-untyped-def]
              kept: dict[str, int] | None = None) -> ConfidenceModel:
    """Fit the confidence model on the FAQ in the database and save it under ``out_dir``; ``kept``:
    per language, the leading question variants its model was tuned on (never held out)."""
    import uuid

    import chromadb
    from chromadb.config import Settings

    from knowledge_base.embeddings import LanguageEmbedders
    from knowledge_base.sync import all_targets

    with sessions() as session:
        targets = all_targets(session)
    embedders = LanguageEmbedders.of(embedders)
    cached = embedders.cached()
    client = chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False, allow_reset=True))
    made: list[KnowledgeIndex] = []

    def make_index() -> KnowledgeIndex:
        for index in made:  # one fold's collections at a time
            for collection in index.collections.values():
                client.delete_collection(collection.name)
        made.clear()
        made.append(KnowledgeIndex(cached, client, collection=f"calibration_{uuid.uuid4().hex[:8]}"))
        return made[0]

    pairs: list[tuple[list[float], int, str]] = []
    collect(make_index, targets, ("hybrid",), pairs=pairs, kept=kept)  # first pass: what the reranker learns from
    reranker = Reranker.fit(pairs)
    examples = collect(make_index, targets, modes, reranker=reranker, kept=kept)
    model = fit(examples, embedders.name)
    model.reranker = reranker
    model.meta["reranker_pairs"] = len(pairs)
    model.meta["faq_targets"] = len(targets)
    model.meta["tuned_variants_kept"] = kept or {}
    model.save(out_dir)
    return model

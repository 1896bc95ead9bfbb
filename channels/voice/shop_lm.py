"""The shop's own language model, for choosing among Whisper's best guesses.

Whisper's beam search keeps several transcripts of one recording; on a robotic or noisy voice the
right one is often among them but not first ("the cup I received is broken" against "marker piracy
is broken"). A small n-gram model of how this shop's shoppers write — the intent examples, the FAQ
questions, the product names — knows which of them a shopper would say. ``rescore`` adds its
log-probability to Whisper's own score (shallow fusion over the n-best list, the weight tuned on
spoken sentences the model never saw: ``benchmarks/voice.py``).

English is modelled over words, Chinese over characters; both with interpolated Kneser-Ney
smoothing, so a word the shop never wrote costs a lot but not everything.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from nlu.text import detect_language

ORDER = {"en": 3, "zh": 4}
DISCOUNT = 0.75
BOS, EOS = "<s>", "</s>"
# Whisper's own score is a mean log-probability per token; the language model's is added per token
# too, so a long transcript is not favoured or punished for its length. Chosen on the tuning set in
# benchmarks/voice.py (spoken sentences of the NLU test split, which the model never reads).
WEIGHT = {"en": 0.3, "zh": 0.3}

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_HAN = re.compile(r"[\u4e00-\u9fff]|[a-z0-9]+")


def units(text: str, language: str) -> list[str]:
    """Words (English, lower case, apostrophes kept) or characters (Chinese; Latin runs stay
    whole). Every number is the same unit: the model knows where shoppers say numbers (order
    numbers, phone digits, amounts), not which."""
    text = _NUMBER.sub(" 0 ", text.lower())
    return _HAN.findall(text) if language == "zh" else _WORD.findall(text)


class KneserNey:
    """An interpolated Kneser-Ney n-gram model over one language's units."""

    def __init__(self, sentences: Iterable[Sequence[str]], order: int, discount: float = DISCOUNT) -> None:
        self.order = order
        self.discount = discount
        counts: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order + 1)]
        for sentence in sentences:
            padded = [BOS] * (order - 1) + list(sentence) + [EOS]
            for n in range(1, order + 1):
                for i in range(max(0, order - 1 - (n - 1)), len(padded) - n + 1):
                    gram = tuple(padded[i:i + n])
                    if n < order and gram[-1] == BOS:
                        continue
                    counts[n][gram] += 1
        self.vocabulary = {gram[0] for gram in counts[1]} | {EOS}
        # the highest order uses raw counts; lower orders count distinct left contexts (continuations)
        self.counts: list[dict[tuple[str, ...], float]] = [{} for _ in range(order + 1)]
        self.counts[order] = dict(counts[order])
        for n in range(1, order):
            continuation: Counter[tuple[str, ...]] = Counter()
            for gram in counts[n + 1]:
                continuation[gram[1:]] += 1
            self.counts[n] = dict(continuation)
        # per context: the total count and how many different units followed it
        self.totals: list[dict[tuple[str, ...], float]] = [defaultdict(float) for _ in range(order + 1)]
        self.kinds: list[dict[tuple[str, ...], int]] = [defaultdict(int) for _ in range(order + 1)]
        for n in range(1, order + 1):
            for gram, count in self.counts[n].items():
                self.totals[n][gram[:-1]] += count
                self.kinds[n][gram[:-1]] += 1

    def probability(self, context: tuple[str, ...], unit: str) -> float:
        probability = 1.0 / (len(self.vocabulary) + 1)  # the unknown unit's share at order zero
        for n in range(1, self.order + 1):
            history = context[len(context) - (n - 1):] if n > 1 else ()
            total = self.totals[n].get(history, 0.0)
            if not total:
                continue  # never seen this history: keep the lower order's estimate
            count = self.counts[n].get(history + (unit,), 0.0)
            backoff = self.discount * self.kinds[n][history] / total
            probability = max(count - self.discount, 0.0) / total + backoff * probability
        return probability

    def logprob(self, sentence: Sequence[str]) -> float:
        """Natural log-probability of a whole sentence, its end included."""
        context = (BOS,) * (self.order - 1)
        total = 0.0
        for unit in [*sentence, EOS]:
            total += math.log(self.probability(context, unit))
            context = (context + (unit,))[1:] if self.order > 1 else ()
        return total


@dataclass
class ShopLanguageModel:
    """One n-gram model per language, built from the shop's text."""

    models: dict[str, KneserNey]
    sentences: dict[str, int]
    weights: dict[str, float] = field(default_factory=lambda: dict(WEIGHT))  # per language, for ``rescore``

    @classmethod
    def build(cls, texts: dict[str, Iterable[str]]) -> ShopLanguageModel:
        models, sizes = {}, {}
        for language, lines in texts.items():
            sentences = [u for u in (units(line, language) for line in lines) if u]
            if sentences:
                models[language] = KneserNey(sentences, ORDER.get(language, 3))
                sizes[language] = len(sentences)
        return cls(models, sizes)

    def covers(self, language: str) -> bool:
        return language in self.models

    def per_unit(self, text: str, language: str) -> float:
        """Mean natural log-probability per unit (the sentence end counts as one)."""
        sentence = units(text, language)
        return self.models[language].logprob(sentence) / (len(sentence) + 1)

    def rescore(self, candidates: Sequence[tuple[str, float]], language: str, weight: float | None = None) -> int:
        """Which of Whisper's ``(text, mean log-probability per token)`` candidates to keep: the one
        with the best sum of Whisper's score and ``weight`` times this model's per-unit score.
        Without a model for ``language``, Whisper's first."""
        if len(candidates) < 2 or language not in self.models:
            return 0
        weight = self.weights.get(language, 0.3) if weight is None else weight
        scores = [score + weight * self.per_unit(text, language) if text.strip() else -math.inf
                  for text, score in candidates]
        return max(range(len(scores)), key=lambda i: (scores[i], -i))


def shop_texts(sessions, nlu_paths: Sequence) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """What the shop's shoppers say, by language: the intent examples of the NLU training data
    (annotations removed), the published FAQ questions, and the active products' names and
    categories."""
    from sqlalchemy import select

    from assistant.commerce.models import Category, Product
    from knowledge_base.models import FaqEntry
    from nlu import data as nlu_data

    texts: dict[str, list[str]] = {"zh": [], "en": []}
    files = [p for p in nlu_paths if p.exists()]
    if files:
        for example in nlu_data.load(files).examples:
            texts[detect_language(example.text) or "en"].append(example.text)
    with sessions() as session:
        for entry in session.scalars(select(FaqEntry).where(FaqEntry.status == "published")):
            texts["zh"] += list(entry.questions_zh or [])
            texts["en"] += list(entry.questions_en or [])
        names = select(Product.name_zh, Product.name_en, Category.name_zh, Category.name_en).join(
            Category, Product.category_id == Category.id).where(Product.active.is_(True))
        for name_zh, name_en, category_zh, category_en in session.execute(names):
            texts["zh"] += [name_zh, category_zh]
            texts["en"] += [name_en, category_en]
    return texts

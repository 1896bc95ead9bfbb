"""Generated variants of hand-written training examples: the noise real shoppers type.

Used only on the training portion; the held-out test split (``assistant/tests/nlu``) and the
validation split never see it. Every variant keeps the intent; annotated entities are swapped
for other values of the same lookup table (another product, colour, category), and the rest is
surface noise: dropped punctuation and politeness words, chat particles, typos, case,
full-width characters, Chinese numerals for digits.
"""

from __future__ import annotations

import random
import re

from nlu.text import detect_language
from nlu.types import TrainingExample

_ZH_OPENERS = ["亲", "亲，", "在吗", "在吗？", "你好", "请问", "老板", "客服", "hi", "亲亲", "麻烦问下"]
_ZH_PARTICLES = ["啊", "呢", "呀", "哈", "吧", "嘛", "哦", "～", "??", "！", "。。。"]
_EN_OPENERS = ["hi", "hey", "hello", "excuse me", "quick question", "um", "so"]
_EN_SWAPS = [("do not", "don't"), ("don't", "dont"), ("can't", "cant"), ("i'm", "im"), ("please", "pls"),
             ("please", "plz"), ("you", "u"), ("are", "r"), ("what is", "whats"), ("what's", "whats"),
             ("it's", "its"), ("thanks", "thx"), ("order", "oder"), ("received", "recieved"),
             ("address", "adress"), ("available", "availible"), ("because", "cuz")]
_PUNCT = re.compile(r"[，。！？、,.!?~～]+")
_CN_DIGIT = dict(zip("0123456789", "零一二三四五六七八九"))


def augment(examples: list[TrainingExample], lookups: dict[str, list[str]], per_example: int, seed: int
            ) -> list[TrainingExample]:
    """``per_example`` new variants of each example (fewer when they would repeat)."""
    rng = random.Random(seed)
    seen = {e.text for e in examples}
    values = {name: [v for v in vs if v.strip()] for name, vs in lookups.items() if not name.startswith("synonym:")}
    out: list[TrainingExample] = []
    for example in examples:
        for _ in range(per_example):
            for _attempt in range(4):
                variant = _variant(example, values, rng)
                if variant.text.strip() and variant.text not in seen:
                    seen.add(variant.text)
                    out.append(variant)
                    break
    return out


def _variant(example: TrainingExample, lookups: dict[str, list[str]], rng: random.Random) -> TrainingExample:
    example = _swap_entities(example, lookups, rng)
    text = example.text
    zh = detect_language(text) == "zh"
    noises = _ZH_NOISE if zh else _EN_NOISE
    for noise in rng.sample(noises, k=rng.randint(1, 2)):
        text = noise(text, rng)
    # surface noise moves characters: keep entity offsets only when the entity text survived as is
    entities = tuple(e for e in example.entities if text[e[2]:e[3]] == example.text[e[2]:e[3]])
    return TrainingExample(text=text.strip(), intent=example.intent, entities=entities)


def _swap_entities(example: TrainingExample, lookups: dict[str, list[str]], rng: random.Random) -> TrainingExample:
    """Replace annotated product / colour / category mentions with other lookup values."""
    text, entities, shift = example.text, [], 0
    for name, value, start, end in sorted(example.entities, key=lambda e: e[2]):
        start, end = start + shift, end + shift
        pool = lookups.get(name)
        if pool and rng.random() < 0.7:
            new = rng.choice(pool)
            text = text[:start] + new + text[end:]
            shift += len(new) - (end - start)
            entities.append((name, new, start, start + len(new)))
        else:
            entities.append((name, value, start, end))
    return TrainingExample(text=text, intent=example.intent, entities=tuple(entities))


def _drop_punctuation(text: str, rng: random.Random) -> str:
    return _PUNCT.sub(" ", text).strip() if rng.random() < 0.8 else text


def _zh_opener(text: str, rng: random.Random) -> str:
    return rng.choice(_ZH_OPENERS) + text


def _zh_particle(text: str, rng: random.Random) -> str:
    return _PUNCT.sub("", text) + rng.choice(_ZH_PARTICLES)


def _zh_numerals(text: str, rng: random.Random) -> str:
    """Short digit runs (not order numbers or phones) as Chinese numerals; full-width for the rest."""
    def convert(match: re.Match[str]) -> str:
        digits = match.group()
        if len(digits) <= 2:
            return "".join(_CN_DIGIT[d] for d in digits) if len(digits) == 1 else digits
        return digits.translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789"}) if rng.random() < 0.3 else digits
    return re.sub(r"\d+", convert, text)


def _zh_drop_char(text: str, rng: random.Random) -> str:
    """Drop one function character (的/了/吗/一下): how people type in a hurry."""
    spots = [m.start() for m in re.finditer("[的了吗呢一下请]", text)]
    if not spots:
        return text
    i = rng.choice(spots)
    return text[:i] + text[i + 1:]


def _en_lower(text: str, rng: random.Random) -> str:
    return text.lower() if rng.random() < 0.7 else text.upper() if rng.random() < 0.1 else text


def _en_opener(text: str, rng: random.Random) -> str:
    return f"{rng.choice(_EN_OPENERS)} {text[:1].lower()}{text[1:]}"


def _en_swap(text: str, rng: random.Random) -> str:
    lowered = text.lower()
    options = [(a, b) for a, b in _EN_SWAPS if re.search(rf"\b{re.escape(a)}\b", lowered)]
    if not options:
        return _en_typo(text, rng)
    a, b = rng.choice(options)
    return re.sub(rf"\b{re.escape(a)}\b", b, text, count=1, flags=re.I)


def _en_typo(text: str, rng: random.Random) -> str:
    """Swap two neighbouring letters, or drop one, inside a word longer than four letters."""
    words = [m for m in re.finditer(r"[A-Za-z]{5,}", text)]
    if not words:
        return text
    word = rng.choice(words)
    i = rng.randrange(word.start() + 1, word.end() - 2)
    if rng.random() < 0.5:
        return text[:i] + text[i + 1] + text[i] + text[i + 2:]
    return text[:i] + text[i + 1:]


_ZH_NOISE = [_drop_punctuation, _zh_opener, _zh_particle, _zh_numerals, _zh_drop_char]
_EN_NOISE = [_drop_punctuation, _en_lower, _en_opener, _en_swap, _en_typo]

"""BM25 over words: jieba words plus characters and character bigrams for Chinese, stemmed English words.

Shoppers and merchants name the same thing differently (邮费/运费, parcel/package), so both sides of
the match go through a small table of shop-domain synonyms (``data/synonyms.yml``) that maps each
word to the first word of its group.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from nlu.text import normalize

SYNONYMS_PATH = Path(__file__).with_name("data") / "synonyms.yml"
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

EN_STOPWORDS = frozenset("""a an the is are was were be been being am do does did doing have has had having i me my
mine we us our you your yours he she it its they them their this that these those there here of to in on at by for
with from as into about and or but if so than then too very can could would should will shall may might must just
what which who whom whose when where why how please hi hello thanks thank any some s t don't doesn't can't won't
i'm it's one get got""".split())
ZH_STOPWORDS = frozenset("""的 了 吗 呢 吧 啊 呀 哦 嘛 么 是 我 你 您 他 她 它 我们 你们 们 这 那 这个 那个 一下 请问 请 问 一个 个 有 没有
在 和 与 就 都 也 还 要 会 能 可以 怎么 怎么办 怎样 如何 什么 多少 哪 哪里 哪些 为什么 想 想要 给 把 被 让 对 啥 咋 能不能
可不可以 是不是 有没有 好 嗯 亲""".split())


@lru_cache(maxsize=1)
def synonym_map() -> dict[str, str]:
    groups = yaml.safe_load(SYNONYMS_PATH.read_text(encoding="utf-8"))["groups"]
    mapping: dict[str, str] = {}
    for group in groups:
        head = normalize(str(group[0]))
        for word in group:
            mapping.setdefault(normalize(str(word)), head)
    return mapping


@lru_cache(maxsize=1)
def _jieba():  # type: ignore[no-untyped-def]
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    for word in synonym_map():  # keep domain words whole
        if _CJK.search(word) and len(word) > 1:
            jieba.add_word(word, freq=2000)
    jieba.initialize()
    return jieba


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 3 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def tokens(text: str) -> list[str]:
    """Index terms of ``text`` in either language (mixed text gives both kinds)."""
    text = normalize(text)
    synonyms = synonym_map()
    out: list[str] = []
    # English words, with phrase synonyms ("money back", "out of stock") matched before single words
    words = _WORD.findall(_CJK.sub(" ", text))
    i = 0
    while i < len(words):
        for n in (3, 2):
            phrase = " ".join(words[i:i + n]) if i + n <= len(words) else ""
            if phrase in synonyms:
                out.append(synonyms[phrase])
                i += n
                break
        else:
            phrase = ""
        if phrase:
            continue
        word = words[i]
        i += 1
        if word in EN_STOPWORDS:
            continue
        word = synonyms.get(word, word)
        stemmed = _stem(word)
        out.append(synonyms.get(stemmed, stemmed))
    # Chinese: jieba words (domain words kept whole, synonyms folded) and character bigrams
    jieba = _jieba()
    for run in _CJK.findall(text):
        words_zh = [synonyms.get(w, w) for w in jieba.lcut(run, HMM=True) if w not in ZH_STOPWORDS]
        out.extend(words_zh)
        # characters and bigrams across the content words bridge segmentation differences (能退 / 退货)
        folded = "".join(words_zh)
        out.extend("#" + folded[k:k + 2] for k in range(len(folded) - 1))
        out.extend("@" + char for char in folded)
    return out


def content_words(text: str) -> list[str]:
    """The words of ``tokens`` without the character and bigram features added for Chinese."""
    return [t for t in tokens(text) if not t.startswith(("#", "@"))]


class BM25Index:
    """An in-memory, incrementally updated BM25 (Okapi, k1=1.2, b=0.75) over documents keyed by id."""

    def __init__(self, k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b
        self.doc_ids: list[str | None] = []  # slot -> doc id (None: removed)
        self.slot: dict[str, int] = {}
        self.lengths: list[int] = []
        self.postings: dict[str, dict[int, int]] = {}
        self.doc_terms: list[tuple[str, ...]] = []
        self.total_length = 0
        # what a search reads, as arrays built on first use after a change (building them from the
        # dicts on every search was most of a query's time at 10,000 entries)
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # term -> (slots, term frequencies)
        self._lengths: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.slot)

    def add(self, doc_id: str, text: str) -> None:
        self.remove(doc_id)
        terms = Counter(tokens(text))
        slot = len(self.doc_ids)
        self.doc_ids.append(doc_id)
        self.slot[doc_id] = slot
        length = sum(terms.values())
        self.lengths.append(length)
        self.doc_terms.append(tuple(terms))
        self.total_length += length
        for term, tf in terms.items():
            self.postings.setdefault(term, {})[slot] = tf
            self._arrays.pop(term, None)
        self._lengths = None

    def remove(self, doc_id: str) -> None:
        slot = self.slot.pop(doc_id, None)
        if slot is None:
            return
        self.doc_ids[slot] = None
        self.total_length -= self.lengths[slot]
        self.lengths[slot] = 0
        for term in self.doc_terms[slot]:
            posting = self.postings[term]
            posting.pop(slot, None)
            self._arrays.pop(term, None)
            if not posting:
                del self.postings[term]
        self.doc_terms[slot] = ()
        self._lengths = None

    def _posting_arrays(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        arrays = self._arrays.get(term)
        if arrays is None:
            posting = self.postings.get(term)
            if not posting:
                return None
            arrays = (np.fromiter(posting.keys(), dtype=np.int64, count=len(posting)),
                      np.fromiter(posting.values(), dtype=np.float32, count=len(posting)))
            self._arrays[term] = arrays
        return arrays

    def idf(self, term: str) -> float:
        df = len(self.postings.get(term, ()))
        n = max(len(self.slot), 1)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def search(self, query: str | list[str], k: int = 20) -> tuple[list[tuple[str, float]], float]:
        """The ``k`` best documents for a query (text, or its ``tokens``) with their scores, and the score a
        perfect match would get (each query term once at average length), which makes scores comparable
        across queries."""
        terms = Counter(tokens(query) if isinstance(query, str) else query)
        if not terms or not self.slot:
            return [], 1.0
        scores = np.zeros(len(self.doc_ids), dtype=np.float32)
        if self._lengths is None:
            self._lengths = np.asarray(self.lengths, dtype=np.float32)
        lengths = self._lengths
        avg = self.total_length / max(len(self.slot), 1)
        ceiling = 0.0
        for term, qtf in terms.items():
            idf = self.idf(term)
            ceiling += idf * qtf
            arrays = self._posting_arrays(term)
            if arrays is None:
                continue
            slots, tf = arrays
            norm = self.k1 * (1 - self.b + self.b * lengths[slots] / avg)
            scores[slots] += qtf * idf * tf * (self.k1 + 1) / (tf + norm)
        if k < len(scores):  # the k best without sorting every document
            top = np.argpartition(-scores, k)[:k]
            top = top[np.argsort(-scores[top], kind="stable")]
        else:
            top = np.argsort(-scores, kind="stable")[:k]
        return [(self.doc_ids[i], float(scores[i])) for i in top if scores[i] > 0], max(ceiling, 1e-6)

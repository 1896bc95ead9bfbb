"""Text normalisation and tokenisation shared by training and prediction.

Chinese is split into characters, Latin script into lower-cased words, digits into runs, so
code-switched messages ("这个sku有货吗") tokenise sensibly without a segmenter.
"""

from __future__ import annotations

import re
import unicodedata

_TOKEN = re.compile(r"<num\d+>|[\u3400-\u9fff\uf900-\ufaff]|[a-z]+(?:'[a-z]+)?|\d+|[^\s\w]", re.UNICODE)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


def normalize(text: str) -> str:
    """NFKC (full-width digits and letters become ASCII) and lower case; offsets are kept."""
    out = unicodedata.normalize("NFKC", text)
    # NFKC may change the length (ligatures); fall back to per-character mapping then
    if len(out) != len(text):
        out = "".join(unicodedata.normalize("NFKC", c)[:1] or c for c in text)
    return out.lower()


_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
CHINESE_MODES = ("chars", "jieba")


def token_spans(text: str) -> list[tuple[str, int, int]]:
    """Characters-mode tokens with their offsets into ``text`` (normalisation keeps offsets)."""
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(normalize(text))]


_LONG_NUMBER = re.compile(r"\d{3,}")


def _shape(match: re.Match[str]) -> str:
    return f" <num{min(len(match.group()), 12)}> "


def tokenize(text: str, chinese: str = "chars") -> list[str]:
    """Tokens for the classifier; ``chinese="jieba"`` segments Chinese runs into jieba words.

    Numbers of three or more digits become their shape (``<num8>`` for an order number, ``<num11>``
    for a phone): the intent lies in the shape, not in which order it is.
    """
    normalized = _LONG_NUMBER.sub(_shape, normalize(text))
    if chinese == "chars" or not _CJK.search(normalized):
        return _TOKEN.findall(normalized)
    if chinese != "jieba":
        raise ValueError(f"unknown Chinese tokenisation {chinese!r}; choose one of {', '.join(CHINESE_MODES)}")
    tokens: list[str] = []
    cursor = 0
    for run in _CJK_RUN.finditer(normalized):
        tokens += _TOKEN.findall(normalized[cursor:run.start()])
        tokens += _jieba().lcut(run.group(), HMM=True)
        cursor = run.end()
    return tokens + _TOKEN.findall(normalized[cursor:])


def _jieba():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


def detect_language(text: str) -> str | None:
    """'zh' when the text has Chinese characters, 'en' when it has English words, else None."""
    if _CJK.search(text):
        return "zh"
    if len(_LATIN_WORD.findall(text)) >= 2:
        return "en"
    return None

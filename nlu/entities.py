"""Rule- and lookup-based entity extraction with character offsets into the original text.

Rules cover ``order_id``, ``phone``, ``email``, ``amount``, ``quantity``, ``coupon_code`` and
``size``, robust to full-width digits and Chinese numerals (两件, 三百块); lookup tables from the
catalog cover ``product``, ``category``, ``color`` (and more sizes). ``language`` is added when
the message clearly is Chinese or English.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from nlu.text import detect_language, normalize
from nlu.types import Entity

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10000}
_CN_NUM = "[零〇一二两三四五六七八九十百千万]+"
_NUM = rf"(?:\d+(?:\.\d+)?|{_CN_NUM})"
_MEASURE_WORDS = "件|个|双|瓶|盒|支|套|条|台|包|袋|罐|只|份"

_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("email", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("order_id", re.compile(r"(?<![a-z0-9])(?:kf[\s-]?)(\d{8})(?!\d)|(?<![a-z0-9])(\d{8})(?!\d)")),
    ("phone", re.compile(r"(?<!\d)(1[3-9]\d{9})(?!\d)")),
    ("phone", re.compile(r"(?:尾号|后四位|后4位|last\s*(?:4|four)(?:\s*digits?)?(?:\s*(?:of\s*(?:my\s*)?phone))?"
                         r"(?:\s*(?:are|is|:))?)\s*(?:是|为|:)?\s*(\d{4})(?!\d)")),
    ("coupon_code", re.compile(r"(?<![a-z0-9])((?:cp|vip)[0-9a-f]{8})(?![a-z0-9])")),
    ("amount", re.compile(rf"(?:[¥￥$]|rmb\s*)\s*(\d+(?:\.\d+)?)|({_NUM})\s*(?:元|块钱|块|rmb|yuan|dollars?|usd|bucks)")),
    ("quantity", re.compile(rf"({_NUM})\s*(?:{_MEASURE_WORDS})|(?<![\w])(\d+)\s*(?:pcs|pieces|items|pairs?|units|bottles|boxes)\b")),
    ("size", re.compile(r"(?:size|尺码|码数|穿)\s*(xxl|xl|s|m|l|\d{2})(?![\w])|(?<!\d)(\d{2})\s*(?:码|号)|(?<![\w])(xxl|xl)(?![\w])")),
]
_SIZE_LETTER = re.compile(r"(?<![A-Za-z])(XXL|XL|S|M|L)(?![A-Za-z])")  # case-sensitive on the raw text


def chinese_number(text: str) -> int | None:
    """三百 -> 300, 两 -> 2, 十五 -> 15, 一千二百 -> 1200; None when it is not a numeral."""
    if text.isdigit():
        return int(text)
    total, section, digit = 0, 0, None
    for char in text:
        if char in _CN_DIGITS:
            digit = _CN_DIGITS[char]
        elif char in _CN_UNITS:
            unit = _CN_UNITS[char]
            if unit == 10000:
                total += (section + (digit or 0)) * unit
                section = 0
            else:
                section += (1 if digit is None else digit) * unit
            digit = None
        else:
            return None
    return total + section + (digit or 0)


def _number(text: str) -> float | int | None:
    try:
        value = float(text)
        return int(value) if value.is_integer() else value
    except ValueError:
        return chinese_number(text)


class EntityExtractor:
    def __init__(self, lookups: dict[str, list[str]] | None = None) -> None:
        self.lookups: dict[str, list[str]] = {}
        for name, values in (lookups or {}).items():
            if name.startswith("synonym:"):
                continue
            cleaned = sorted({normalize(v).strip() for v in values if v.strip()}, key=len, reverse=True)
            self.lookups[name] = cleaned
        self.synonyms = {normalize(v): name.split(":", 1)[1]
                         for name, values in (lookups or {}).items() if name.startswith("synonym:")
                         for v in values}
        self._patterns = {name: self._lookup_pattern(values) for name, values in self.lookups.items() if values}

    @staticmethod
    def _lookup_pattern(values: Iterable[str]) -> re.Pattern[str]:
        parts = []
        for value in values:
            escaped = re.escape(value)
            # latin words need word boundaries; Chinese does not have them
            if value[:1].isascii() and value[:1].isalnum():
                escaped = r"(?<![a-z0-9])" + escaped
            if value[-1:].isascii() and value[-1:].isalnum():
                escaped = escaped + r"(?![a-z0-9])"
            parts.append(escaped)
        return re.compile("|".join(parts))

    def extract(self, text: str) -> list[Entity]:
        norm = normalize(text)
        found: list[Entity] = []
        taken: list[tuple[int, int]] = []

        def add(name: str, value: object, start: int, end: int) -> None:
            if any(start < e and s < end for s, e in taken):
                return
            taken.append((start, end))
            found.append(Entity(entity=name, value=value, start=start, end=end))

        for name, pattern in _RULES:
            for match in pattern.finditer(norm):
                group = next((i for i in range(1, (match.lastindex or 0) + 1) if match.group(i)), 0)
                raw = match.group(group)
                value: object = raw
                if name == "order_id":
                    value = f"KF{raw}"
                elif name in ("amount", "quantity"):
                    value = _number(raw)
                    if value is None:
                        continue
                elif name == "coupon_code":
                    value = raw.upper()
                elif name == "size":
                    value = raw.upper()
                add(name, value, match.start(), match.end())
        for match in _SIZE_LETTER.finditer(text):
            add("size", match.group(1), match.start(), match.end())
        for name, pattern in self._patterns.items():
            for match in pattern.finditer(norm):
                surface = text[match.start():match.end()]
                add(name, self.synonyms.get(match.group(0), surface), match.start(), match.end())
        language = detect_language(text)
        if language:
            found.append(Entity(entity="language", value=language, start=0, end=len(text)))
        return sorted(found, key=lambda e: (e.start, e.end))

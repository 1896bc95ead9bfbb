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

_EN_NUMBERS = {"one": 1, "a": 1, "an": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
               "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple of": 2, "a pair of": 1}
_EN_NUM = "(?:" + "|".join(sorted(map(re.escape, _EN_NUMBERS), key=len, reverse=True)) + ")"
_EN_UNITS = r"pcs|pieces?|items?|pairs?|units?|bottles?|boxes|box|packs?|sets?|cases?"
_SEP = r"[\s-]?"  # people type phone and order numbers in groups: 138 1234 5678, KF 1023-4567

_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("email", re.compile(r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+")),
    ("order_id", re.compile(rf"(?<![a-z0-9])(?:kf{_SEP})(\d{{4}}{_SEP}\d{{4}})(?!\d)|(?<![a-z0-9])(\d{{8}})(?!\d)")),
    ("phone", re.compile(rf"(?:(?<!\d)(?:\+?86{_SEP})?)(?<!\d)(1[3-9]\d{_SEP}\d{{4}}{_SEP}\d{{4}})(?!\d)")),
    ("phone", re.compile(r"(?:尾号|后四位|后4位|last\s*(?:4|four)(?:\s*digits?)?(?:\s*(?:of\s*(?:my\s*)?phone))?"
                         r"(?:\s*(?:are|is|:))?|ends?\s*(?:in|with))\s*(?:是|为|:)?\s*(\d{4})(?!\d)")),
    ("coupon_code", re.compile(r"(?<![a-z0-9])((?:cp|vip)[0-9a-f]{8})(?![a-z0-9])")),
    ("amount", re.compile(rf"(?:[¥￥$]|rmb\s*)\s*(\d+(?:\.\d+)?)"
                          rf"|({_NUM})\s*(?:元|块钱|块|rmb|yuan|dollars?|usd|bucks)"
                          rf"|(?:预算|budget(?:\s*is)?|under|below|less than|within|不超过|低于)\s*({_NUM})(?![\d件个双码号])"
                          rf"|({_NUM})\s*(?:以内|以下|左右|上下)")),
    ("quantity", re.compile(rf"({_NUM})\s*(?:{_MEASURE_WORDS})|(?<![\w])(\d+|{_EN_NUM})\s+(?:{_EN_UNITS})\b"
                            rf"|(?<![\w])(?:x|qty:?\s*)(\d+)\b")),
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
    if text in _EN_NUMBERS:
        return _EN_NUMBERS[text]
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

    def entity_types(self) -> set[str]:
        """Every entity type this extractor can produce (rules plus lookup tables)."""
        return {name for name, _ in _RULES} | {"size"} | set(self._patterns)

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
                    value = "KF" + re.sub(r"\D", "", raw)
                elif name == "phone":
                    value = re.sub(r"\D", "", raw)
                elif name in ("amount", "quantity"):
                    value = _number(raw)
                    if value is None:
                        continue
                elif name == "coupon_code":
                    value = raw.upper()
                elif name == "size":
                    value = raw.upper()
                # the span is the value itself ("尾号[5678]", "预算[三百]", "[42]码"), except where the
                # unit is part of how people write it ("三百块", "$80", "两件")
                keep_unit = name in ("order_id", "email", "coupon_code", "quantity") or \
                    (name == "amount" and group <= 2) or (name == "phone" and len(raw) > 4)
                start, end = (match.start(), match.end()) if keep_unit else (match.start(group), match.end(group))
                add(name, value, start, end)
        for match in _SIZE_LETTER.finditer(text):
            add("size", match.group(1), match.start(), match.end())
        # lookups: the longest mention wins across tables (跑步鞋 is a product, not the category 鞋)
        mentions = [(match.end() - match.start(), match.start(), match.end(), name, match.group(0))
                    for name, pattern in self._patterns.items() for match in pattern.finditer(norm)]
        for _length, start, end, name, matched in sorted(mentions, key=lambda m: (-m[0], m[1])):
            add(name, self.synonyms.get(matched, text[start:end]), start, end)
        language = detect_language(text)
        if language:
            found.append(Entity(entity="language", value=language, start=0, end=len(text)))
        return sorted(found, key=lambda e: (e.start, e.end))

"""Masking personal data (phone numbers, emails, street addresses) before text is stored for
merchants' review or written to a log."""

from __future__ import annotations

import re
from functools import lru_cache

_ADDRESS_ZH = re.compile(r"[\u4e00-\u9fff]{0,12}(?:路|街|巷|弄|道)\s*[0-9０-９一二三四五六七八九十百]+\s*号"
                         r"(?:\s*[0-9０-９]+\s*(?:栋|幢|单元|室|楼|层))*")
_ADDRESS_EN = re.compile(r"\b\d{1,5}\s+(?:[A-Za-z]+\s+){0,3}(?:street|st|road|rd|avenue|ave|lane|ln|boulevard|blvd|"
                         r"drive|dr|way)\b\.?(?:,?\s*(?:apt|unit|suite|#)\s*\w+)?", re.I)
_LONG_DIGITS = re.compile(r"(?<!\d)(?:\+?\d[\d \-]{8,}\d)(?!\d)")


@lru_cache(maxsize=1)
def _extractor():  # type: ignore[no-untyped-def]
    from nlu.entities import EntityExtractor

    return EntityExtractor()


def mask(text: str) -> str:
    """``text`` with phone numbers, emails and street addresses replaced by [phone], [email], [address]."""
    spans = [(e.start, e.end, e.entity) for e in _extractor().extract(text) if e.entity in ("phone", "email")]
    out, last = [], 0
    for start, end, kind in sorted(spans):
        if start < last:
            continue
        out.append(text[last:start])
        out.append(f"[{kind}]")
        last = end
    out.append(text[last:])
    masked = "".join(out)
    masked = _ADDRESS_ZH.sub("[address]", masked)
    masked = _ADDRESS_EN.sub("[address]", masked)
    # any remaining long run of digits (a phone typed oddly) is masked too; order numbers keep prefixes
    return _LONG_DIGITS.sub(lambda m: "[phone]" if len(re.sub(r"\D", "", m.group(0))) >= 10 else m.group(0), masked)


def mask_phone(number: str) -> str:
    """A caller's number for a log line: "+86******5678" (the last four digits identify a call to a
    merchant without exposing the number)."""
    digits = re.sub(r"\D", "", number)
    if not digits:
        return "-"
    return ("+" if number.strip().startswith("+") else "") + "*" * max(0, len(digits) - 4) + digits[-4:]


def contacts(text: str) -> list[tuple[str, str]]:
    """The phone numbers and emails in ``text``, as (kind, value) in the order written."""
    found = sorted((e.start, e.entity, str(e.value)) for e in _extractor().extract(text) if e.entity in ("phone", "email"))
    return [(kind, value) for _, kind, value in found]


def mask_contact(value: str) -> str:
    """A phone number or an email for agents' screens: "+86******5678", "z***@example.com"."""
    if "@" in value:
        name, _, domain = value.partition("@")
        return f"{name[:1]}***@{domain}"
    return mask_phone(value)

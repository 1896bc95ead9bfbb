"""Bulk FAQ import/export (CSV, XLSX, JSONL) and policy documents (Markdown, HTML, PDF text).

An import validates every row first and writes nothing when any row is bad; each error names the row
(as the spreadsheet numbers it: the header is row 1), the column and the reason. List cells (questions,
tags) hold one item per line or items separated by ``|``. Existing keys are updated (a new version),
new keys are created; a blank status means draft.

Documents are split at their headings into chunks (long sections further at paragraphs), each with
the heading's anchor, so an answer can cite ``returns.md#refunds``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from assistant.commerce.models import utcnow
from knowledge_base import faq
from knowledge_base.faq import FaqInput
from knowledge_base.models import FaqEntry, KbChunk, KbDocument
from nlu.text import detect_language

COLUMNS = ("key", "category", "tags", "status", "questions_zh", "questions_en", "answer_zh", "answer_en")
LIST_COLUMNS = ("tags", "questions_zh", "questions_en")
REQUIRED_COLUMNS = ("key", "category")
FORMATS = ("csv", "xlsx", "jsonl")
MAX_ROWS = 20_000
MAX_CHUNK_CHARS = 800


@dataclass
class RowError:
    row: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column}: {self.reason}"


class ImportFailed(Exception):
    def __init__(self, errors: list[RowError]):
        super().__init__(f"{len(errors)} problem(s); nothing was imported")
        self.errors = errors


def format_of(path: Path, fmt: str | None = None) -> str:
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ValueError(f"unsupported format {fmt or '(none)'}: use .csv, .xlsx or .jsonl")
    return fmt


def _split_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [part.strip() for part in re.split(r"[\n|]", str(value)) if part.strip()]


def read_rows(data: bytes, fmt: str) -> tuple[list[tuple[int, dict[str, Any]]], list[RowError]]:
    """(row number, raw values) of every row, plus file-level problems (columns, encoding, syntax)."""
    errors: list[RowError] = []
    rows: list[tuple[int, dict[str, Any]]] = []
    if fmt == "jsonl":
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return [], [RowError(0, "-", "the file is not UTF-8 text")]
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                errors.append(RowError(number, "-", f"not valid JSON ({error.msg})"))
                continue
            if not isinstance(value, dict):
                errors.append(RowError(number, "-", "each line must be a JSON object"))
                continue
            rows.append((number, value))
        return rows, errors
    if fmt == "csv":
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return [], [RowError(0, "-", "the file is not UTF-8 text (save the spreadsheet as CSV UTF-8)")]
        reader = csv.reader(io.StringIO(text))
        table = list(reader)
    else:
        from openpyxl import load_workbook

        try:
            book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception:  # openpyxl raises many kinds for a file that is not a workbook
            return [], [RowError(0, "-", "the file is not a readable .xlsx workbook")]
        sheet = book.worksheets[0]
        table = [["" if cell is None else cell for cell in row] for row in sheet.iter_rows(values_only=True)]
        book.close()
    if not table:
        return [], [RowError(1, "-", "the file is empty")]
    header = [str(h).strip().lower() for h in table[0]]
    unknown = [h for h in header if h and h not in COLUMNS]
    for name in unknown:
        errors.append(RowError(1, name, f"unknown column (expected: {', '.join(COLUMNS)})"))
    for name in REQUIRED_COLUMNS:
        if name not in header:
            errors.append(RowError(1, name, "required column is missing"))
    if errors:
        return [], errors
    for number, cells in enumerate(table[1:], start=2):
        if not any(str(c).strip() for c in cells):
            continue
        rows.append((number, {h: cells[i] if i < len(cells) else "" for i, h in enumerate(header) if h}))
    return rows, errors


def validate(rows: list[tuple[int, dict[str, Any]]], publish: bool = False) -> tuple[list[tuple[int, FaqInput]],
                                                                                       list[RowError]]:
    errors: list[RowError] = []
    valid: list[tuple[int, FaqInput]] = []
    seen: dict[str, int] = {}
    if len(rows) > MAX_ROWS:
        return [], [RowError(MAX_ROWS + 1, "-", f"too many rows (at most {MAX_ROWS})")]
    for number, raw in rows:
        unknown = [k for k in raw if k not in COLUMNS]
        for name in unknown:
            errors.append(RowError(number, name, "unknown field"))
        values: dict[str, Any] = {}
        for name in COLUMNS:
            value = raw.get(name)
            if name in LIST_COLUMNS:
                values[name] = _split_list(value)
            elif value is not None:
                values[name] = str(value).strip()
        if publish or not values.get("status"):
            values["status"] = "published" if publish else "draft"
        try:
            data = FaqInput(**{k: v for k, v in values.items() if k in COLUMNS})
        except ValidationError as error:
            for problem in error.errors():
                column = str(problem["loc"][0]) if problem["loc"] else _column_of(problem["msg"])
                errors.append(RowError(number, column, problem["msg"].removeprefix("Value error, ")))
            continue
        if data.key in seen:
            errors.append(RowError(number, "key", f"duplicate key {data.key!r} (also on row {seen[data.key]})"))
            continue
        seen[data.key] = number
        valid.append((number, data))
    return valid, errors


def _column_of(message: str) -> str:
    """The column a row-level message names first, or '-'."""
    found = [(message.find(name), name) for name in COLUMNS if name in message]
    return min(found)[1] if found else "-"


def import_faq(session: Session, data: bytes, fmt: str, author: str, publish: bool = False) -> dict[str, int]:
    """Validate everything, then create or update every row in the caller's transaction."""
    rows, errors = read_rows(data, fmt)
    valid, row_errors = validate(rows, publish) if not errors else ([], [])
    errors += row_errors
    if errors:
        raise ImportFailed(errors)
    created = updated = unchanged = 0
    for _number, item in valid:
        existing = faq.by_key(session, item.key)
        if existing is None:
            faq.create(session, item, author=author, action="import")
            created += 1
        else:
            version = existing.version
            faq.update(session, existing.id, item, author=author, action="import")
            if existing.version == version:
                unchanged += 1
            else:
                updated += 1
    return {"rows": len(valid), "created": created, "updated": updated, "unchanged": unchanged}


def entries_to_export(session: Session, status: str | None = None) -> list[FaqEntry]:
    query = select(FaqEntry).order_by(FaqEntry.key)
    if status:
        query = query.where(FaqEntry.status == status)
    return list(session.scalars(query).all())


def export_faq(entries: list[FaqEntry], fmt: str) -> bytes:
    records = [{name: getattr(e, name) for name in COLUMNS} for e in entries]
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    flat = [{k: "\n".join(v) if isinstance(v, list) else v for k, v in r.items()} for r in records]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(flat)
        return out.getvalue().encode("utf-8-sig")  # the BOM lets Excel read Chinese correctly
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "faq"
    sheet.append(list(COLUMNS))
    for row in flat:
        sheet.append([row[c] for c in COLUMNS])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------- policy documents

@dataclass
class Section:
    heading: str
    anchor: str
    text: str


def slug(heading: str) -> str:
    """An anchor like GitHub's: lower case, spaces to '-', CJK kept, other punctuation dropped."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\u3400-\u9fff\s-]", "", text)
    return re.sub(r"\s+", "-", text).strip("-") or "section"


def markdown_sections(text: str, title: str) -> list[Section]:
    sections: list[Section] = []
    heading, lines = title, []
    for line in text.splitlines():
        match = re.match(r"^(#{1,4})\s+(.+?)\s*#*\s*$", line)
        if match:
            if "".join(lines).strip():
                sections.append(Section(heading, slug(heading), "\n".join(lines).strip()))
            heading, lines = match.group(2), []
        else:
            lines.append(line)
    if "".join(lines).strip():
        sections.append(Section(heading, slug(heading), "\n".join(lines).strip()))
    return sections


class _HtmlSections(HTMLParser):
    HEADINGS = {"h1", "h2", "h3", "h4"}
    SKIP = {"script", "style", "nav", "footer", "head"}
    BLOCKS = {"p", "li", "div", "br", "tr", "section", "article"}

    def __init__(self, title: str):
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self.heading, self.anchor, self.parts = title, slug(title), []
        self.in_heading: str | None = None
        self.heading_text: list[str] = []
        self.heading_id: str | None = None
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.HEADINGS:
            self._flush()
            self.in_heading, self.heading_text = tag, []
            self.heading_id = dict(attrs).get("id")
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag == self.in_heading:
            self.heading = " ".join("".join(self.heading_text).split()) or self.heading
            self.anchor = self.heading_id or slug(self.heading)
            self.in_heading = None

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        (self.heading_text if self.in_heading else self.parts).append(data)

    def _flush(self) -> None:
        text = re.sub(r"\n\s*\n+", "\n", "".join(self.parts)).strip()
        if text:
            self.sections.append(Section(self.heading, self.anchor, text))
        self.parts = []

    def close(self) -> None:
        super().close()
        self._flush()


def html_sections(text: str, title: str) -> list[Section]:
    parser = _HtmlSections(title)
    parser.feed(text)
    parser.close()
    return parser.sections


def pdf_sections(data: bytes, title: str) -> list[Section]:
    """PDF text by page; a short line that looks like a numbered or stand-alone heading starts a section."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError) as error:  # pypdf's errors for a damaged file
        raise ValueError(f"{title}: not a readable PDF ({type(error).__name__})") from error
    sections: list[Section] = []
    heading, anchor, lines = title, slug(title), []
    for page_no, text in enumerate(pages, start=1):
        for line in text.splitlines():
            stripped = line.strip()
            looks_like_heading = (0 < len(stripped) <= 40 and not re.search(r"[。.，,;；:：]$", stripped)
                                  and (re.match(r"^(\d+(\.\d+)*[.、]?\s*|第.{1,3}[章节条]\s*)", stripped)
                                       or stripped.isupper()))
            if looks_like_heading:
                if "".join(lines).strip():
                    sections.append(Section(heading, anchor, "\n".join(lines).strip()))
                heading, anchor, lines = stripped, f"page-{page_no}-{slug(stripped)}", []
            else:
                lines.append(stripped)
    if "".join(lines).strip():
        sections.append(Section(heading, anchor, "\n".join(lines).strip()))
    return sections


def split_long(section: Section) -> list[Section]:
    if len(section.text) <= MAX_CHUNK_CHARS:
        return [section]
    pieces, current = [], ""
    for paragraph in re.split(r"\n+", section.text):
        while len(paragraph) > MAX_CHUNK_CHARS:  # one huge paragraph: cut at a sentence end if possible
            cut = max(paragraph.rfind(p, 0, MAX_CHUNK_CHARS) for p in "。.!?！？") + 1 or MAX_CHUNK_CHARS
            pieces.append(paragraph[:cut])
            paragraph = paragraph[cut:]
        if current and len(current) + len(paragraph) + 1 > MAX_CHUNK_CHARS:
            pieces.append(current)
            current = ""
        current = f"{current}\n{paragraph}" if current else paragraph
    if current:
        pieces.append(current)
    return [Section(section.heading, section.anchor if i == 0 else f"{section.anchor}-{i + 1}", text.strip())
            for i, text in enumerate(pieces) if text.strip()]


def read_document(path: Path, data: bytes | None = None) -> tuple[str, list[Section]]:
    """(title, sections) of a Markdown, HTML or PDF file."""
    data = path.read_bytes() if data is None else data
    suffix = path.suffix.lower()
    title = path.stem.replace("_", " ").replace("-", " ")
    if suffix == ".pdf":
        sections = pdf_sections(data, title)
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise ValueError(f"{path.name} is not UTF-8 text") from error
        if suffix in (".md", ".markdown", ".txt"):
            first = re.search(r"^#\s+(.+)$", text, re.M)
            title = first.group(1).strip() if first else title
            sections = markdown_sections(text, title)
        elif suffix in (".html", ".htm"):
            found = re.search(r"<title>(.*?)</title>", text, re.S | re.I)
            title = " ".join(found.group(1).split()) if found else title
            sections = html_sections(text, title)
        else:
            raise ValueError(f"{path.name}: documents must be Markdown, HTML or PDF")
    chunks = [piece for section in sections for piece in split_long(section)]
    if not chunks:
        raise ValueError(f"{path.name} has no text to index")
    return title, chunks


def ingest_document(session: Session, path: Path, source: str | None = None, data: bytes | None = None) -> KbDocument:
    """Store (or replace) a policy document's chunks; unchanged files are left as they are."""
    data = path.read_bytes() if data is None else data
    source = source or path.name
    digest = hashlib.sha256(data).hexdigest()
    existing = session.query(KbDocument).filter_by(source=source).one_or_none()
    if existing is not None and existing.sha256 == digest:
        return existing
    title, sections = read_document(path, data)
    language = detect_language(" ".join(s.text for s in sections)[:2000]) or "zh"
    document = existing or KbDocument(source=source)
    document.title, document.language, document.sha256, document.status = title[:255], language, digest, "published"
    document.updated_at = utcnow()
    if existing is not None:
        document.chunks.clear()
    seen: dict[str, int] = {}
    for position, section in enumerate(sections):
        anchor = section.anchor
        if anchor in seen:  # two sections with the same heading get distinct anchors
            seen[anchor] += 1
            anchor = f"{anchor}-{seen[section.anchor]}"
        seen.setdefault(section.anchor, 1)
        document.chunks.append(KbChunk(position=position, heading=section.heading[:255], anchor=anchor[:255],
                                       text=section.text))
    session.add(document)
    session.flush()
    faq.record_change(session, "document", document.id)
    return document


def remove_document(session: Session, source: str) -> bool:
    document = session.query(KbDocument).filter_by(source=source).one_or_none()
    if document is None:
        return False
    doc_id = document.id
    session.delete(document)
    faq.record_change(session, "document", doc_id)
    return True

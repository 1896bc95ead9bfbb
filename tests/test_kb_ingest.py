"""FAQ import/export (CSV, XLSX, JSONL) and policy documents (Markdown, HTML, PDF), through the CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook

from assistant.commerce import db
from assistant.settings import PROJECT_ROOT
from knowledge_base import faq, ingest
from knowledge_base.models import FaqEntry, KbDocument

KEFU = str(PROJECT_ROOT / ".venv" / "bin" / "kefu")
GOOD = {"key": "gift_cards", "category": "payment", "tags": "礼品卡|gift card", "status": "published",
        "questions_zh": "有礼品卡吗\n卖购物卡吗", "questions_en": "do you sell gift cards",
        "answer_zh": "礼品卡面值100元和500元。", "answer_en": "Gift cards come in ¥100 and ¥500."}


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    db.upgrade(url)
    return {**os.environ, "KEFU_DATABASE_URL": url, "KEFU_VAR_DIR": str(tmp_path), "PYTHONWARNINGS": "ignore"}


def kefu(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([KEFU, "kb", *args], env=env, capture_output=True, text=True, timeout=300)


def entries(env: dict[str, str]) -> dict[str, FaqEntry]:
    with db.session_factory(env["KEFU_DATABASE_URL"])() as session:
        return {e.key: e for e in session.query(FaqEntry)}


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_csv_with_bad_rows_imports_nothing_and_names_row_column_reason(env, tmp_path):
    rows = [GOOD,
            {**GOOD, "key": "Bad Key"},
            {**GOOD, "key": "no_answer", "answer_en": ""},
            {**GOOD, "key": "gift_cards"},
            {**GOOD, "key": "odd_status", "status": "live"}]
    result = kefu(env, "import", str(write_csv(tmp_path / "faq.csv", rows)))
    assert result.returncode == 1 and "nothing was imported" in result.stderr
    assert "row 3, column key:" in result.stderr
    assert "row 4, column answer_en: answer_en is empty while questions_en is given" in result.stderr
    assert "row 5, column key: duplicate key 'gift_cards' (also on row 2)" in result.stderr
    assert "row 6, column status: must be one of draft, published" in result.stderr
    assert entries(env) == {}

    result = kefu(env, "import", str(write_csv(tmp_path / "ok.csv", [GOOD, {**GOOD, "key": "vouchers",
                                                                           "status": ""}])))
    assert result.returncode == 0, result.stderr
    stored = entries(env)
    assert stored["gift_cards"].questions_zh == ["有礼品卡吗", "卖购物卡吗"] and stored["gift_cards"].tags == ["礼品卡", "gift card"]
    assert stored["gift_cards"].status == "published" and stored["vouchers"].status == "draft"
    again = kefu(env, "import", str(tmp_path / "ok.csv"))
    assert "0 created, 0 updated, 2 unchanged" in again.stdout


def test_unknown_columns_and_wrong_files_are_refused(env, tmp_path):
    bad_header = tmp_path / "faq.csv"
    bad_header.write_text("key,category,colour\nx1,y,z\n", encoding="utf-8")
    result = kefu(env, "import", str(bad_header))
    assert result.returncode == 1 and "row 1, column colour: unknown column" in result.stderr
    (tmp_path / "faq.txt").write_text("hi")
    assert kefu(env, "import", str(tmp_path / "faq.txt")).returncode == 2
    (tmp_path / "fake.xlsx").write_bytes(b"PK\x03\x04 this is not a workbook")
    result = kefu(env, "import", str(tmp_path / "fake.xlsx"))
    assert result.returncode == 1 and "not a readable .xlsx workbook" in result.stderr
    (tmp_path / "latin1.csv").write_bytes("key,category\ncafé,x\n".encode("latin-1"))
    assert "not UTF-8" in kefu(env, "import", str(tmp_path / "latin1.csv")).stderr


def test_xlsx_and_jsonl_import_and_export_round_trip(env, tmp_path):
    book = Workbook()
    sheet = book.active
    sheet.append(list(GOOD))
    sheet.append(list(GOOD.values()))
    sheet.append([*list({**GOOD, "key": "presale_deposit", "tags": 618}.values())])
    sheet.append(["", "", "", "", "", "", "", ""])  # blank rows are skipped
    sheet.append([*list({**GOOD, "key": "broken", "questions_zh": "", "questions_en": "",
                          "answer_zh": "", "answer_en": ""}.values())])
    book.save(tmp_path / "faq.xlsx")
    result = kefu(env, "import", str(tmp_path / "faq.xlsx"))
    assert result.returncode == 1 and "row 5, column -: give at least one question" in result.stderr

    sheet.delete_rows(5)
    book.save(tmp_path / "faq.xlsx")
    assert kefu(env, "import", str(tmp_path / "faq.xlsx")).returncode == 0
    assert entries(env)["presale_deposit"].tags == ["618"]

    lines = [json.dumps({"key": "jsonl_entry", "category": "x", "questions_en": ["a question"],
                         "answer_en": "An answer.", "status": "published"}), "{not json", json.dumps([1, 2])]
    (tmp_path / "faq.jsonl").write_text("\n".join(lines), encoding="utf-8")
    result = kefu(env, "import", str(tmp_path / "faq.jsonl"))
    assert "row 2, column -: not valid JSON" in result.stderr and "row 3, column -: each line must be a JSON object" in result.stderr
    (tmp_path / "faq.jsonl").write_text(lines[0] + "\n", encoding="utf-8")
    assert kefu(env, "import", str(tmp_path / "faq.jsonl")).returncode == 0

    for fmt in ("csv", "xlsx", "jsonl"):
        out = tmp_path / f"export.{fmt}"
        assert kefu(env, "export", str(out)).returncode == 0
        rows, errors = ingest.read_rows(out.read_bytes(), fmt)
        valid, problems = ingest.validate(rows)
        assert not errors and not problems and {v.key for _, v in valid} == {"gift_cards", "presale_deposit",
                                                                              "jsonl_entry"}
    exported = load_workbook(tmp_path / "export.xlsx").active
    assert [c.value for c in exported[1]] == list(ingest.COLUMNS)


def _pdf(lines: list[str]) -> bytes:
    """A one-page PDF with these lines of ASCII text in Helvetica."""
    stream = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) Tj T*" for line in lines) + " ET"
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               "/Resources << /Font << /F1 5 0 R >> >> >>",
               f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n{body}\nendobj\n".encode())
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def test_policy_documents_are_chunked_at_headings_with_anchors(env, tmp_path):
    (tmp_path / "returns.md").write_text(
        "# 退换货政策\n\n适用于本店所有商品。\n\n## 无理由退货\n\n签收后7天内可无理由退货。\n\n## 质量问题\n\n"
        + "质量问题30天内包退，运费由我们承担。" * 60 + "\n", encoding="utf-8")
    (tmp_path / "shipping.html").write_text(
        "<html><head><title>Shipping policy</title><style>p{}</style></head><body><nav>menu</nav>"
        "<h2 id='fees'>Fees</h2><p>Orders over 99 yuan ship free.</p><h2>Remote areas</h2><p>Xinjiang &amp; "
        "Tibet pay 15 yuan.</p><script>alert(1)</script></body></html>", encoding="utf-8")
    (tmp_path / "warranty.pdf").write_bytes(_pdf(["1. Coverage", "Electronics have a one-year warranty.",
                                                 "2. Exclusions", "Water damage is not covered."]))
    result = kefu(env, "ingest", str(tmp_path / "returns.md"), str(tmp_path / "shipping.html"),
                  str(tmp_path / "warranty.pdf"))
    assert result.returncode == 0, result.stderr
    with db.session_factory(env["KEFU_DATABASE_URL"])() as session:
        docs = {d.source: d for d in session.query(KbDocument)}
        md = docs["returns.md"]
        assert md.title == "退换货政策" and md.language == "zh"
        anchors = [c.anchor for c in md.chunks]
        assert anchors[:2] == ["退换货政策", "无理由退货"] and anchors[2] == "质量问题" and anchors[3] == "质量问题-2"
        assert all(len(c.text) <= ingest.MAX_CHUNK_CHARS for c in md.chunks)
        html = docs["shipping.html"]
        assert [(c.heading, c.anchor) for c in html.chunks] == [("Fees", "fees"), ("Remote areas", "remote-areas")]
        assert "Xinjiang & Tibet" in html.chunks[1].text and "alert" not in html.chunks[1].text
        assert "menu" not in " ".join(c.text for c in html.chunks)
        pdf = docs["warranty.pdf"]
        assert [c.heading for c in pdf.chunks] == ["1. Coverage", "2. Exclusions"]
        assert "one-year warranty" in pdf.chunks[0].text and pdf.chunks[0].anchor.startswith("page-1-")

    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    broken = kefu(env, "ingest", str(tmp_path / "broken.pdf"))
    assert broken.returncode == 1 and "not a readable PDF" in broken.stderr and "Traceback" not in broken.stderr
    (tmp_path / "empty.md").write_text("# Title only\n", encoding="utf-8")
    failed = kefu(env, "ingest", str(tmp_path / "empty.md"))
    assert failed.returncode == 1 and "no text to index" in failed.stderr
    assert kefu(env, "ingest", "--remove", str(tmp_path / "shipping.html")).stdout.strip().endswith("removed")


def test_document_chunks_are_searchable_with_their_source(tmp_path):
    from assistant.settings import Settings
    from knowledge_base.service import KnowledgeBase

    url = f"sqlite:///{tmp_path / 'kb.db'}"
    db.upgrade(url)
    sessions = db.session_factory(url)
    (tmp_path / "care.md").write_text("# Care guide\n\n## Cashmere\n\nHand-wash cashmere sweaters in cold water "
                                      "with wool detergent and dry them flat.\n", encoding="utf-8")
    with sessions() as session:
        faq.seed_demo(session)
        ingest.ingest_document(session, tmp_path / "care.md")
        session.commit()
    kb = KnowledgeBase(Settings(_env_file=None, var_dir=tmp_path, database_url=url))
    kb.sync.rebuild()
    top = kb.search("how do I wash a cashmere sweater", "en").passages[0]
    assert top.kind == "doc" and top.source == "care.md#cashmere" and "cold water" in top.answer
    with sessions() as session:
        ingest.remove_document(session, "care.md")
        session.commit()
    kb.sync.catch_up()
    assert all(p.kind == "faq" for p in kb.search("how do I wash a cashmere sweater", "en").passages)

"""The figures in ``docs/benchmarks.md``: each benchmark owns one section between
``<!-- name:start -->`` and ``<!-- name:end -->`` and rewrites only that."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(name: str, body: str, doc: Path = DOC) -> None:
    """Replace section ``name`` of ``doc`` by ``body`` (a heading and its text), or append it."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n{body.strip()}\n{end}"
    doc.parent.mkdir(exist_ok=True)
    text = doc.read_text(encoding="utf-8") if doc.exists() else \
        "# Benchmarks\n\nFigures measured on this project's machines.\n"
    if start in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    doc.write_text(text, encoding="utf-8")

"""Retrieval evaluation: Recall@1, Recall@5, MRR, refusals of unanswerable questions, latency.

Queries are JSON lines ``{"text": ..., "lang": "zh"|"en", "faq_id": <id or key> | null}``; null marks a
question the FAQ does not answer, which the bot should refuse (confidence below the threshold).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from knowledge_base.index import KnowledgeIndex

K = 5


class QueryFileError(ValueError):
    pass


def load_queries(path: Path) -> list[dict[str, Any]]:
    queries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise QueryFileError(f"line {number}: not valid JSON ({error.msg})") from error
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
            raise QueryFileError(f"line {number}: expected an object with a non-empty \"text\"")
        if item.get("lang") not in ("zh", "en"):
            raise QueryFileError(f"line {number}: \"lang\" must be zh or en")
        if not isinstance(item.get("faq_id"), int | str | type(None)):
            raise QueryFileError(f"line {number}: \"faq_id\" must be an FAQ id, an FAQ key or null")
        queries.append(item)
    if not queries:
        raise QueryFileError("the query file is empty")
    return queries


def evaluate(index: KnowledgeIndex, queries: list[dict[str, Any]], threshold, mode: str = "hybrid",  # type: ignore[no-untyped-def]
             report_dir: Path | None = None) -> dict[str, Any]:
    """Search every query; ``threshold(lang)`` is the confidence below which the bot refuses."""
    by_key = {t.key: t.id for t in index.targets.values()}
    by_id = {t.faq_id: t.id for t in index.targets.values() if t.faq_id is not None}
    rows: list[dict[str, Any]] = []
    for query in queries:
        expected = query.get("faq_id")
        target = by_id.get(expected) if isinstance(expected, int) else by_key.get(expected) if expected else None
        if expected is not None and target is None:
            raise QueryFileError(f"faq_id {expected!r} of {query['text']!r} is not a published FAQ entry")
        result = index.search(query["text"], query["lang"], k=K, mode=mode)
        ids = [p.id for p in result.passages]
        rank = ids.index(target) + 1 if target in ids else None
        answered = bool(result.passages) and result.confidence >= threshold(query["lang"])
        rows.append({"text": query["text"], "lang": query["lang"], "expected": expected, "rank": rank,
                     "top": result.passages[0].key if result.passages else None,
                     "confidence": round(result.confidence, 4), "answered": answered,
                     "ms": result.elapsed_ms})
    summary: dict[str, Any] = {"mode": mode, "queries": len(rows), "faq_targets": len(index.targets)}
    for name, subset in [("all", rows), *[(lang, [r for r in rows if r["lang"] == lang]) for lang in ("zh", "en")]]:
        summary[name] = _metrics(subset)
    times = [r["ms"] for r in rows]
    summary["latency_ms"] = {"p50": round(float(np.percentile(times, 50)), 3),
                             "p95": round(float(np.percentile(times, 95)), 3), "mean": round(float(np.mean(times)), 3)}
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / "kb_report.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2))
        errors = [r for r in rows if (r["expected"] is not None and (r["rank"] != 1 or not r["answered"]))
                  or (r["expected"] is None and r["answered"])]
        (report_dir / "kb_errors.json").write_text(json.dumps(errors, ensure_ascii=False, indent=2))
        plot_confidence(rows, threshold, report_dir / "kb_confidence.png", mode)
    return summary


def _metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    answerable = [r for r in rows if r["expected"] is not None]
    unanswerable = [r for r in rows if r["expected"] is None]
    n = max(len(answerable), 1)
    refused = [r for r in rows if not r["answered"]]
    refused_unanswerable = [r for r in unanswerable if not r["answered"]]
    return {
        "answerable": len(answerable), "unanswerable": len(unanswerable),
        "recall_at_1": round(sum(r["rank"] == 1 for r in answerable) / n, 4),
        "recall_at_5": round(sum(r["rank"] is not None for r in answerable) / n, 4),
        "mrr": round(sum(1 / r["rank"] for r in answerable if r["rank"]) / n, 4),
        # after the confidence threshold: what the shopper experiences
        "answered_correctly": round(sum(r["rank"] == 1 and r["answered"] for r in answerable) / n, 4),
        "answered_wrongly": round(sum(r["rank"] != 1 and r["answered"] for r in answerable) / n, 4),
        "unanswerable_refusal_recall": round(len(refused_unanswerable) / max(len(unanswerable), 1), 4),
        "unanswerable_refusal_precision": round(len(refused_unanswerable) / max(len(refused), 1), 4),
    }


def plot_confidence(rows: list[dict[str, Any]], threshold, path: Path, mode: str) -> None:  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, lang in zip(axes, ("zh", "en")):
        groups = {
            "answerable, right entry first": [r["confidence"] for r in rows if r["lang"] == lang and r["rank"] == 1],
            "answerable, wrong entry first": [r["confidence"] for r in rows
                                              if r["lang"] == lang and r["expected"] is not None and r["rank"] != 1],
            "unanswerable": [r["confidence"] for r in rows if r["lang"] == lang and r["expected"] is None],
        }
        for (label, values), color in zip(groups.items(), ("tab:green", "tab:orange", "tab:red")):
            if values:
                ax.hist(values, bins=20, range=(0, 1), alpha=0.55, label=f"{label} ({len(values)})", color=color)
        ax.axvline(threshold(lang), color="black", linestyle="--", label=f"threshold {threshold(lang):.2f}")
        ax.set_title(f"{lang}: retrieval confidence ({mode})")
        ax.set_xlabel("confidence")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("questions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

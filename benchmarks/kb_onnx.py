"""The knowledge base's English encoder through ONNX Runtime against PyTorch, in one process.

    .venv/bin/python benchmarks/kb_onnx.py

Builds the 100-entry benchmark FAQ (benchmarks/kb.py), calibrates it, then asks every query of
benchmarks/data/kb_queries.jsonl twice in hybrid mode, alternating the packaged MiniLM between
ONNX Runtime and PyTorch (one thread, as the knowledge-base server runs). Prints p50 per language
and backend and whether the top results agree; writes benchmarks/results/kb_onnx.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.kb import QUERIES, build  # noqa: E402
from knowledge_base.confidence import calibrate  # noqa: E402
from knowledge_base.evaluate import load_queries  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "kb_onnx.json"
BACKENDS = ("onnx", "torch")


def main() -> None:
    import torch

    torch.set_num_threads(1)  # one query at a time, as the knowledge-base server runs
    with tempfile.TemporaryDirectory(prefix="kefu-kb-onnx-") as tmp:
        work = Path(tmp)
        kb, _, _ = build(100, work)
        calibrate(kb.sessions, kb.embedders, work / "confidence").attach(kb.index)
        english = kb.embedders.for_language("en")
        onnx = english.onnx
        if onnx is None:
            raise SystemExit("the knowledge base did not load MiniLM through ONNX Runtime (see its warning)")
        queries = load_queries(QUERIES)
        times: dict[str, dict[str, list[float]]] = {name: {"en": [], "zh": []} for name in BACKENDS}
        tops: dict[str, list[str | None]] = {name: [] for name in BACKENDS}
        for round_no in range(2):
            for query in queries:
                for name in BACKENDS:
                    english.onnx = onnx if name == "onnx" else None
                    result = kb.index.search(query["text"], query["lang"], k=5, mode="hybrid")
                    times[name][query["lang"]].append(result.elapsed_ms)
                    if round_no == 0:
                        tops[name].append(result.passages[0].key if result.passages else None)
        english.onnx = onnx
    p50 = {name: {lang: round(statistics.median(v), 2) for lang, v in by_lang.items()} for name, by_lang in times.items()}
    same = sum(a == b for a, b in zip(tops["onnx"], tops["torch"]))
    ratio = round(p50["onnx"]["en"] / p50["torch"]["en"], 3)
    print("| backend | p50 ms en | p50 ms zh |\n|---|---:|---:|")
    for name in BACKENDS:
        print(f"| {name} | {p50[name]['en']} | {p50[name]['zh']} |")
    print(f"English p50 ONNX/PyTorch x{ratio}; same top result for {same} of {len(queries)} queries")
    RESULTS.write_text(json.dumps({"p50_ms": p50, "en_ratio": ratio, "same_top": same, "queries": len(queries)},
                                  indent=2))


if __name__ == "__main__":
    main()

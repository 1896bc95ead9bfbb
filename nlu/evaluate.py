"""Evaluate an intent model on Rasa-format data and write what ``rasa test nlu`` writes.

``intent_report.json`` (per intent precision / recall / F1 / support / confused_with, accuracy,
macro and weighted averages), ``intent_errors.json`` (every wrong prediction with its
confidence), ``intent_confusion_matrix.png`` and ``intent_histogram.png``; plus
``KefuEntityExtractor_report.json`` / ``_errors.json`` for annotated entities, and
``summary.json`` with the figures Rasa does not compute: out-of-scope recall, the in-scope
accuracy with the fallback threshold applied, and prediction latency.

Predictions below the model's threshold become ``nlu_fallback``, as Rasa's FallbackClassifier
would do. For out-of-scope detection, ``nlu_fallback`` on an ``out_of_scope`` example counts as
detected.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from nlu.classifier import OUT_OF_SCOPE, IntentModel
from nlu.types import FALLBACK_INTENT, TrainingExample

BATCH = 256
EXTRACTOR = "KefuEntityExtractor"  # rules + lookup tables (+ the learned tagger when it is switched on)


def predict(model: IntentModel, texts: list[str]) -> np.ndarray:
    return np.concatenate([model.predict_proba(texts[i:i + BATCH]) for i in range(0, len(texts), BATCH)]) \
        if texts else np.zeros((0, len(model.labels)), dtype=np.float32)


def classification_report(gold: list[str], predicted: list[str]) -> dict:
    """sklearn's ``classification_report(output_dict=True)`` plus Rasa's ``confused_with``."""
    labels = sorted(set(gold) | set(predicted))
    confusion = Counter(zip(gold, predicted))
    report: dict = {}
    for label in labels:
        tp = confusion[(label, label)]
        predicted_n = sum(1 for p in predicted if p == label)
        support = sum(1 for g in gold if g == label)
        precision = tp / predicted_n if predicted_n else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        confused = Counter({p: n for (g, p), n in confusion.items() if g == label and p != label})
        report[label] = {"precision": precision, "recall": recall, "f1-score": f1, "support": support,
                         "confused_with": dict(confused.most_common(3))}
    gold_labels = [label for label in labels if report[label]["support"]]
    total = len(gold)
    report["accuracy"] = sum(confusion[(g, g)] for g in labels) / total if total else 0.0
    for name, weights in (("macro avg", {g: 1.0 for g in gold_labels}),
                          ("weighted avg", {g: report[g]["support"] for g in gold_labels})):
        norm = sum(weights.values()) or 1.0
        report[name] = {metric: sum(report[g][metric] * w for g, w in weights.items()) / norm
                        for metric in ("precision", "recall", "f1-score")}
        report[name]["support"] = total
    return report


def evaluate(model: IntentModel, examples: list[TrainingExample], report_dir: Path | None = None,
             threshold: float | None = None) -> dict:
    """Evaluate and (when ``report_dir`` is given) write the report files; returns the summary."""
    if not examples:
        raise ValueError("no examples to evaluate")
    threshold = model.threshold if threshold is None else threshold
    texts = [e.text for e in examples]
    gold = [e.intent for e in examples]
    started = time.perf_counter()
    probabilities = predict(model, texts)
    batch_seconds = time.perf_counter() - started
    top = probabilities.argmax(1)
    confidence = probabilities.max(1)
    raw = [model.labels[i] for i in top]
    predicted = [FALLBACK_INTENT if c < threshold else p for p, c in zip(raw, confidence)]
    report = classification_report(gold, predicted)

    unknown = sorted(set(gold) - set(model.labels))
    in_scope = [i for i, g in enumerate(gold) if g != OUT_OF_SCOPE]
    oos = [i for i, g in enumerate(gold) if g == OUT_OF_SCOPE]
    detected = {OUT_OF_SCOPE, FALLBACK_INTENT}
    summary = {
        "examples": len(examples),
        "intents": len(set(gold)),
        "threshold": threshold,
        "accuracy": report["accuracy"],
        "accuracy_without_threshold": float(np.mean([r == g for r, g in zip(raw, gold)])),
        "macro_f1": report["macro avg"]["f1-score"],
        "weighted_f1": report["weighted avg"]["f1-score"],
        "fallback_rate": float(np.mean([p == FALLBACK_INTENT for p in predicted])),
        "in_scope_accuracy": float(np.mean([predicted[i] == gold[i] for i in in_scope])) if in_scope else None,
        "oos_recall": float(np.mean([predicted[i] in detected for i in oos])) if oos else None,
        "oos_precision": _oos_precision(gold, predicted),
        "batch_ms_per_utterance": 1000 * batch_seconds / len(texts),
        "single_utterance_ms": _single_latency(model, texts),
        "intents_unknown_to_model": unknown,
        "model": {k: model.meta.get(k) for k in ("version", "data_sha256", "tokenizer", "trained_at")},
    }
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
    entity_summary = evaluate_entities(model, examples, report_dir)
    if entity_summary is not None:
        summary["entities"] = entity_summary
    if report_dir is not None:
        (report_dir / "intent_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
        errors = [{"text": t, "intent": g, "intent_prediction": {"name": p, "confidence": float(c)}}
                  for t, g, p, c in zip(texts, gold, predicted, confidence) if p != g]
        (report_dir / "intent_errors.json").write_text(json.dumps(errors, indent=2, ensure_ascii=False))
        (report_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
        hits = np.array([p == g for p, g in zip(predicted, gold)])
        plot_confusion_matrix(gold, predicted, report_dir / "intent_confusion_matrix.png")
        plot_histogram(confidence[hits], confidence[~hits], threshold, report_dir / "intent_histogram.png")
    return summary


def evaluate_entities(model: IntentModel, examples: list[TrainingExample], report_dir: Path | None) -> dict | None:
    """Rasa's ``<extractor>_report.json`` / ``_errors.json`` for the entity types kefu extracts.

    A prediction counts when type, start and end all match an annotation. Annotated types
    the extractor does not know (SNIPS's ``artist``, say) are listed, not scored.
    """
    from nlu.parser import MessageParser

    parser = MessageParser(model)
    known = parser.entities.entity_types() | ({"product", "category", "color", "size"}
                                              if model.tagger is not None and model.tagger.enabled else set())
    annotated = [e for e in examples if e.entities]
    if not annotated:
        return None
    gold_types = {name for e in annotated for name, *_ in e.entities}
    scored = sorted(gold_types & known)
    tp: Counter = Counter()
    n_gold: Counter = Counter()
    n_pred: Counter = Counter()
    errors = []
    for example in annotated:
        gold = {(name, start, end) for name, _value, start, end in example.entities if name in scored}
        predicted = {(e.entity, e.start, e.end) for e in parser.extract_entities(example.text) if e.entity in scored}
        for name, *_ in gold:
            n_gold[name] += 1
        for name, *_ in predicted:
            n_pred[name] += 1
        for name, *_ in gold & predicted:
            tp[name] += 1
        if gold != predicted:
            errors.append({"text": example.text,
                           "entities": [{"entity": n, "start": a, "end": b, "value": example.text[a:b]} for n, a, b in sorted(gold)],
                           "predicted_entities": [{"entity": n, "start": a, "end": b, "value": example.text[a:b]}
                                                  for n, a, b in sorted(predicted)]})
    report: dict = {}
    for name in scored:
        precision = tp[name] / n_pred[name] if n_pred[name] else 0.0
        recall = tp[name] / n_gold[name] if n_gold[name] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report[name] = {"precision": precision, "recall": recall, "f1-score": f1, "support": n_gold[name]}
    total_tp, total_pred, total_gold = sum(tp.values()), sum(n_pred.values()), sum(n_gold.values())
    micro_p = total_tp / total_pred if total_pred else 0.0
    micro_r = total_tp / total_gold if total_gold else 0.0
    report["micro avg"] = {"precision": micro_p, "recall": micro_r, "support": total_gold,
                           "f1-score": 2 * micro_p * micro_r / (micro_p + micro_r) if micro_p + micro_r else 0.0}
    if report_dir is not None:
        (report_dir / f"{EXTRACTOR}_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
        (report_dir / f"{EXTRACTOR}_errors.json").write_text(json.dumps(errors, indent=2, ensure_ascii=False))
    return {"micro_f1": report["micro avg"]["f1-score"], "scored_types": scored,
            "not_extracted_types": sorted(gold_types - known),
            "per_type_f1": {name: report[name]["f1-score"] for name in scored}}


def _oos_precision(gold: list[str], predicted: list[str]) -> float | None:
    flagged = [g for g, p in zip(gold, predicted) if p in (OUT_OF_SCOPE, FALLBACK_INTENT)]
    if OUT_OF_SCOPE not in gold or not flagged:
        return None
    return sum(1 for g in flagged if g == OUT_OF_SCOPE) / len(flagged)


def _single_latency(model: IntentModel, texts: list[str], n: int = 200) -> dict:
    """p50/p99 milliseconds of one-message predictions (what a chat turn costs)."""
    sample = texts[:n]
    model.predict_proba(sample[:5])  # warm-up
    times = []
    for text in sample:
        started = time.perf_counter()
        model.predict_proba([text])
        times.append(1000 * (time.perf_counter() - started))
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99)), "n": len(times)}


def plot_confusion_matrix(gold: list[str], predicted: list[str], path: Path, what: str = "intent") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted(set(gold) | set(predicted))
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for g, p in zip(gold, predicted):
        matrix[index[g], index[p]] += 1
    size = min(40.0, max(7.0, 0.28 * len(labels)))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=max(4, 9 - len(labels) // 30))
    ax.set_yticks(range(len(labels)), labels, fontsize=max(4, 9 - len(labels) // 30))
    if len(labels) <= 40:
        peak = matrix.max() or 1
        for (row, col), value in np.ndenumerate(matrix):
            if value:
                ax.text(col, row, str(value), ha="center", va="center", fontsize=7,
                        color="white" if value > peak / 2 else "black")
    ax.set_xlabel(f"predicted {what}")
    ax.set_ylabel(f"true {what}")
    ax.set_title(f"{what.capitalize()} confusion matrix ({len(gold)} examples)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_histogram(correct: np.ndarray, wrong: np.ndarray, threshold: float, path: Path) -> None:
    """Rasa's intent histogram: confidences of correct and wrong predictions side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = np.linspace(0, 1, 21)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=False)
    for ax, values, title, colour in ((axes[0], correct, "correct", "#2a9d8f"), (axes[1], wrong, "wrong", "#e76f51")):
        ax.hist(values, bins=bins, color=colour, edgecolor="white")
        ax.axvline(threshold, color="#264653", linestyle="--", label=f"fallback threshold {threshold:.2f}")
        ax.set_title(f"{title} predictions ({len(values)})")
        ax.set_xlabel("confidence")
        ax.set_ylabel("number of examples")
        ax.legend(loc="upper left")
    fig.suptitle("Intent prediction confidence")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

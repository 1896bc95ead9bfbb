"""``kefu vision evaluate``: accuracy, per-class precision/recall/F1, the "unsure" outcome's
coverage and the accuracy of what it lets through, calibration, and two plots (confusion matrix,
reliability diagram), like ``kefu nlu evaluate`` writes for intents."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from nlu.evaluate import classification_report, plot_confusion_matrix
from vision.model import VisionModel
from vision.train import expected_calibration_error, read_folder


def evaluate(model: VisionModel, data: Path, report_dir: Path | None = None, batch_size: int = 16) -> dict[str, Any]:
    from PIL import Image
    from tqdm import tqdm

    folder = read_folder(data, model.labels)
    probs = np.zeros((len(folder.files), len(model.labels)), dtype=np.float32)
    started = time.perf_counter()
    for start in tqdm(range(0, len(folder.files), batch_size), desc="classifying", unit="batch", file=sys.stderr):
        batch = []
        for path in folder.files[start:start + batch_size]:
            with Image.open(path) as image:
                image.draft("RGB", (model.input_size, model.input_size))
                batch.append(model.preprocess(image.convert("RGB")))
        probs[start:start + len(batch)] = model.probabilities(np.stack(batch))
    seconds = time.perf_counter() - started
    gold = np.asarray(folder.targets)
    top = probs.argmax(1)
    confidence = probs.max(1)
    accepted = confidence >= model.threshold
    correct = top == gold
    gold_labels = [model.labels[i] for i in gold]
    predicted = [model.labels[i] for i in top]
    report: dict[str, Any] = {
        "model": model.meta.get("arch"), "data": str(data), "images": len(gold),
        "accuracy": float(correct.mean()) if len(gold) else 0.0,
        "unsure_threshold": model.threshold,
        "unsure_rate": float(1 - accepted.mean()) if len(gold) else 0.0,
        "accepted_accuracy": float(correct[accepted].mean()) if accepted.any() else 0.0,
        "unsure_among_wrong": float((~accepted[~correct]).mean()) if (~correct).any() else None,
        "ece": expected_calibration_error(probs, gold),
        "images_per_second": len(gold) / seconds if seconds else None,
        "classes": classification_report(gold_labels, predicted),
    }
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / "vision_report.json").write_text(json.dumps(report, indent=2))
        errors = [{"file": str(folder.files[i].relative_to(folder.root)), "label": gold_labels[i],
                   "predicted": predicted[i], "confidence": round(float(confidence[i]), 4),
                   "unsure": bool(not accepted[i])}
                  for i in np.nonzero(~correct)[0]]
        (report_dir / "vision_errors.json").write_text(json.dumps(errors, indent=2))
        plot_confusion_matrix(gold_labels, predicted, report_dir / "vision_confusion_matrix.png", what="class")
        plot_reliability(confidence, correct, model.threshold, report_dir / "vision_reliability.png")
    return report


def plot_reliability(confidence: np.ndarray, correct: np.ndarray, threshold: float, path: Path, bins: int = 10) -> None:
    """Accuracy against calibrated confidence per bin (the diagonal is perfect calibration), and
    how many photos fall in each bin, with the "unsure" threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.linspace(0, 1, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    accuracy = np.full(bins, np.nan)
    counts = np.zeros(bins, dtype=int)
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        inside = (confidence > lo) & (confidence <= hi)
        counts[i] = int(inside.sum())
        if inside.any():
            accuracy[i] = correct[inside].mean()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    top.bar(centres, np.nan_to_num(accuracy), width=1 / bins * 0.9, color="#2a9d8f", edgecolor="white",
            label="accuracy in bin")
    top.plot([0, 1], [0, 1], "--", color="#264653", label="perfect calibration")
    top.axvline(threshold, color="#e76f51", linestyle=":", label=f"unsure below {threshold:.2f}")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1.02)
    top.legend(loc="upper left")
    top.set_title(f"Reliability of calibrated confidence ({len(confidence)} photos)")
    bottom.bar(centres, counts, width=1 / bins * 0.9, color="#8ab17d", edgecolor="white")
    bottom.axvline(threshold, color="#e76f51", linestyle=":")
    bottom.set_xlabel("confidence of the top class")
    bottom.set_ylabel("photos")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""The defect classifier: a ResNet (transformers' ``ResNetForImageClassification``) and what it
needs to be used on its own: labels, input size, normalisation, temperature, the "unsure"
threshold, and a description of how it was trained (``vision.json``)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vision.images import IMAGENET_MEAN, IMAGENET_STD, to_array

FORMAT_VERSION = 1
UNSURE = "unsure"
_TRANSFORMERS_IMPORT = threading.Lock()
ARCHS: dict[str, dict[str, Any]] = {
    "resnet50": {"layer_type": "bottleneck", "depths": [3, 4, 6, 3], "hidden_sizes": [256, 512, 1024, 2048]},
    "resnet18": {"layer_type": "basic", "depths": [2, 2, 2, 2], "hidden_sizes": [64, 128, 256, 512]},
}


def build(arch: str, labels: list[str], init: str | None = None, pooling: str = "max") -> torch.nn.Module:
    """A ResNet for ``labels``: random weights, or ``init``'s (a local directory or a hub name
    such as ``microsoft/resnet-50``) with a new classification head."""
    from transformers import ResNetConfig, ResNetForImageClassification

    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
    id2label = dict(enumerate(labels))
    label2id = {label: i for i, label in id2label.items()}
    if init:
        network = ResNetForImageClassification.from_pretrained(init, num_labels=len(labels), id2label=id2label,
                                                               label2id=label2id, ignore_mismatched_sizes=True)
    else:
        config = ResNetConfig(num_labels=len(labels), id2label=id2label, label2id=label2id, **ARCHS[arch])
        network = ResNetForImageClassification(config)
        if ARCHS[arch]["layer_type"] == "bottleneck":
            zero_init_residuals(network)
    return use_pooling(network, pooling)


def zero_init_residuals(network: torch.nn.Module) -> None:
    """Start every residual block as the identity (its last batch norm's scale at zero, Goyal et
    al. 2017): a deep ResNet trained from scratch then starts out as a shallow one. Measured on the
    generated photos: without it a ResNet-50's training loss rose above chance in its first epochs;
    a ResNet-18 learned faster without it, so only the bottleneck networks get it."""
    with torch.no_grad():
        for stage in network.resnet.encoder.stages:
            for block in stage.layers:
                block.layer[-1].normalization.weight.zero_()


def use_pooling(network: torch.nn.Module, pooling: str) -> torch.nn.Module:
    """Global max pooling instead of ResNet's average: a scratch covering 2% of a photo moves a
    maximum as much as a whole-surface texture, where an average would dilute it 50 times."""
    if pooling == "max":
        network.resnet.pooler = torch.nn.AdaptiveMaxPool2d((1, 1))
    elif pooling != "avg":
        raise ValueError(f"unknown pooling {pooling!r}; choose max or avg")
    return network


@dataclass
class Prediction:
    label: str  # the most likely class
    confidence: float  # its calibrated probability
    unsure: bool  # below the calibrated threshold: ask for another photo
    probabilities: dict[str, float]

    @property
    def outcome(self) -> str:
        return UNSURE if self.unsure else self.label

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "outcome": self.outcome, "confidence": round(self.confidence, 4),
                "unsure": self.unsure, "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()}}


class VisionModel:
    """A trained classifier loaded for inference (thread-safe; one forward pass at a time)."""

    def __init__(self, network: torch.nn.Module, meta: dict[str, Any]) -> None:
        self.network = network.eval()
        self.meta = meta
        self.labels: list[str] = list(meta["labels"])
        self.input_size: int = int(meta["input_size"])
        self.temperature: float = float(meta.get("temperature", 1.0))
        self.threshold: float = float(meta.get("unsure_threshold", 0.0))
        self.mean = np.array(meta.get("mean", IMAGENET_MEAN), dtype=np.float32)
        self.std = np.array(meta.get("std", IMAGENET_STD), dtype=np.float32)
        self._lock = threading.Lock()

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.network.save_pretrained(directory, safe_serialization=True)
        (directory / "vision.json").write_text(json.dumps(self.meta, indent=2, ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path) -> VisionModel:
        meta_path = directory / "vision.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{directory} holds no kefu vision model (vision.json is missing)")
        with _TRANSFORMERS_IMPORT:  # transformers' lazy module is not safe to import from two threads at once
            from transformers import ResNetForImageClassification
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{directory}: vision model format {meta.get('format_version')}, "
                             f"this kefu reads {FORMAT_VERSION}; train it again")
        network = use_pooling(ResNetForImageClassification.from_pretrained(directory), meta.get("pooling", "avg"))
        return cls(network, meta)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return to_array(image, self.input_size, self.mean, self.std)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        with self._lock, torch.inference_mode():
            return self.network(pixel_values=torch.from_numpy(batch)).logits.float().numpy()

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        logits = self.logits(batch) / self.temperature
        logits -= logits.max(1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(1, keepdims=True)

    def predict(self, images: list[Image.Image], batch_size: int = 16) -> list[Prediction]:
        results: list[Prediction] = []
        for start in range(0, len(images), batch_size):
            batch = np.stack([self.preprocess(image) for image in images[start:start + batch_size]])
            results += [self._prediction(row) for row in self.probabilities(batch)]
        return results

    def _prediction(self, row: np.ndarray) -> Prediction:
        best = int(row.argmax())
        confidence = float(row[best])
        return Prediction(self.labels[best], confidence, confidence < self.threshold,
                          {label: float(p) for label, p in zip(self.labels, row)})

"""Train an intent model from Rasa YAML, skipping the work when nothing it depends on changed."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from nlu import classifier, data


def config_for(*, epochs: int | None = None, augment: int = 0, chinese: str = "chars") -> classifier.TrainConfig:
    return classifier.with_overrides(classifier.TrainConfig(), epochs=epochs, augment=augment, chinese=chinese)


def is_up_to_date(data_paths: list[Path], out: Path, config: classifier.TrainConfig) -> bool:
    meta = out / "meta.json"
    if not meta.exists():
        return False
    try:
        stored = json.loads(meta.read_text())
    except json.JSONDecodeError:
        return False
    return stored.get("version") == classifier.ARTIFACT_VERSION and \
        stored.get("training_recipe") == classifier.TRAINING_RECIPE and \
        stored.get("config") == asdict(config) and \
        stored.get("data_sha256") == data.load(data_paths).sha256


def train_from_files(data_paths: list[Path], out: Path, config: classifier.TrainConfig = classifier.TrainConfig(),
                     validation: list[Path] | None = None,
                     progress: classifier.Progress | None = None) -> classifier.IntentModel:
    training = data.load(data_paths)
    if not training.examples:
        raise ValueError(f"{', '.join(map(str, data_paths))} hold lookup tables but no intent examples")
    held_out = data.load(validation).examples if validation else None
    model = classifier.train(training.examples, data_sha256=training.sha256, lookups=training.lookups,
                             config=config, validation=held_out, progress=progress)
    model.save(out)
    return model


class ProgressBar:
    """tqdm bars on stderr, one per training stage."""

    def __init__(self) -> None:
        self._bar = None
        self._stage = ""

    def __call__(self, stage: str, step: int, steps: int, loss: float) -> None:
        from tqdm import tqdm

        if stage != self._stage:
            if self._bar is not None:
                self._bar.close()
            self._stage = stage
            self._bar = tqdm(total=steps, desc=f"training {stage}", unit="epoch" if steps > 1 else "step",
                             file=sys.stderr)
        if loss == loss:  # not NaN
            self._bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        self._bar.update(step - self._bar.n)
        if step >= steps:
            self._bar.close()
            self._bar = None
            self._stage = ""

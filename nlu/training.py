"""Train an intent model from Rasa YAML, skipping the work when the data has not changed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from nlu import classifier, data


def is_up_to_date(data_paths: list[Path], out: Path) -> bool:
    meta = out / "meta.json"
    if not meta.exists():
        return False
    try:
        stored = json.loads(meta.read_text())
    except json.JSONDecodeError:
        return False
    return stored.get("version") == classifier.ARTIFACT_VERSION and \
        stored.get("training_recipe") == classifier.TRAINING_RECIPE and \
        stored.get("data_sha256") == data.load(data_paths).sha256


def train_from_files(data_paths: list[Path], out: Path, config: classifier.TrainConfig = classifier.TrainConfig(),
                     progress: Callable[[int, int, float], None] | None = None) -> classifier.IntentModel:
    training = data.load(data_paths)
    if not training.examples:
        raise ValueError(f"{', '.join(map(str, data_paths))} hold lookup tables but no intent examples")
    model = classifier.train(training.examples, data_sha256=training.sha256, lookups=training.lookups,
                             config=config, progress=progress)
    model.save(out)
    return model

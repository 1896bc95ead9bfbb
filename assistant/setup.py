"""Prepare everything ``make run`` and ``make test`` need, skipping work that is already done:
database schema, demo shop, catalog lookup tables, the intent model and the Rasa dialogue model."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from assistant.settings import PROJECT_ROOT, Settings

ASSISTANT_DIR = PROJECT_ROOT / "assistant"
RASA_INPUTS = ["domain.yml", "config.yml", "data/rules.yml", "data/stories.yml"]


def rasa_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in RASA_INPUTS:
        digest.update(name.encode() + b"\0" + (ASSISTANT_DIR / name).read_bytes())
    return digest.hexdigest()


def rasa_env(settings: Settings) -> dict[str, str]:
    """Environment variables assistant/endpoints.yml reads."""
    return {
        "KEFU_HOST": settings.host,
        "KEFU_NLU_PORT": str(settings.nlu_port),
        "KEFU_ACTIONS_PORT": str(settings.actions_port),
        "KEFU_TRACKER_DB": str(settings.tracker_db or settings.var_dir / "tracker.db"),
    }


def train_rasa(settings: Settings, echo=print) -> Path:  # type: ignore[no-untyped-def]
    out = settings.rasa_model_dir
    stamp = out / "fingerprint.txt"
    fingerprint = rasa_fingerprint()
    models = sorted(out.glob("*.tar.gz"))
    if models and stamp.exists() and stamp.read_text().strip() == fingerprint:
        echo(f"Rasa dialogue model {models[-1].name} is up to date")
        return models[-1]
    for old in models:
        old.unlink()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **rasa_env(settings)}
    subprocess.run([str(settings.rasa_venv / "bin" / "rasa"), "train", "core", "--domain", "domain.yml",
                    "--stories", "data", "--config", "config.yml", "--out", str(out)],
                   cwd=ASSISTANT_DIR, env=env, check=True)
    stamp.write_text(fingerprint)
    return sorted(out.glob("*.tar.gz"))[-1]

"""Shoppers' photos in the gateway: validate, strip metadata, classify, store.

The classifier is loaded once, in the background at startup; until it is there (or when no model
has been trained) a photo is still stored and answered, with the outcome "unsure", so the dialog
asks for a human rather than guessing.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from assistant.commerce.models import Photo, utcnow
from assistant.settings import Settings
from channels.files import fetch, keep
from vision.images import Limits, PhotoError, open_photo
from vision.model import UNSURE, VisionModel

log = logging.getLogger("kefu.gateway.photos")
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png"}


@dataclass
class AcceptedPhoto:
    id: str
    url: str
    width: int
    height: int
    outcome: str  # a defect label, "no_visible_defect" or "unsure"
    confidence: float
    timings_ms: dict[str, float]

    def entities(self) -> dict[str, Any]:
        """What Rasa gets with the photo (``/report_defect{...}``)."""
        return {"defect_type": self.outcome, "defect_confidence": round(self.confidence, 3), "photo_id": self.id}


class PhotoService:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.limits = Limits(settings.max_photo_bytes, settings.max_photo_pixels)
        self.root = settings.photos_path
        self._model: VisionModel | None = None
        self._loaded = threading.Event()
        self._lock = threading.Lock()

    def load_model(self) -> VisionModel | None:
        with self._lock:
            if not self._loaded.is_set():
                try:
                    self._model = VisionModel.load(self.settings.vision_model_path)
                    log.info("defect classifier loaded from %s", self.settings.vision_model_path)
                except (OSError, ValueError) as error:
                    log.warning("no defect classifier (%s): photos are answered as unsure", error)
                self._loaded.set()
        return self._model

    def start_loading(self) -> None:
        threading.Thread(target=self.load_model, name="vision-model", daemon=True).start()

    def accept(self, data: bytes, conversation_id: str) -> AcceptedPhoto:
        """Validate, classify and store one photo; raises ``PhotoError`` when it is refused."""
        timings: dict[str, float] = {}
        started = time.perf_counter()
        model = self.load_model()
        photo = open_photo(data, self.limits, decode_size=model.input_size if model else None)
        timings["decode_ms"] = (time.perf_counter() - started) * 1000
        label, outcome, confidence, probabilities = None, UNSURE, 0.0, None
        if model is not None:
            prediction = model.predict([photo.image])[0]
            label, outcome, confidence = prediction.label, prediction.outcome, prediction.confidence
            probabilities = {k: round(v, 4) for k, v in prediction.probabilities.items()}
        timings["classify_ms"] = (time.perf_counter() - started) * 1000 - timings["decode_ms"]
        photo_id = secrets.token_urlsafe(18)
        now = utcnow()
        relative = keep(self.root, photo_id, EXTENSIONS[photo.media_type], photo.stored, now)
        with self.sessions() as session:
            session.add(Photo(id=photo_id, conversation_id=conversation_id, media_type=photo.media_type,
                              path=relative, bytes=len(photo.stored), width=photo.width, height=photo.height,
                              sha256=hashlib.sha256(photo.stored).hexdigest(), label=label, outcome=outcome,
                              confidence=confidence, probabilities=probabilities,
                              model=_model_name(model), created_at=now))
            session.commit()
        timings["total_ms"] = (time.perf_counter() - started) * 1000
        log.info("photo %s: %s (%.2f) in %.0f ms", photo_id, outcome, confidence, timings["total_ms"])
        return AcceptedPhoto(photo_id, f"/photos/{photo_id}", photo.width, photo.height, outcome, confidence, timings)

    def read(self, photo_id: str) -> tuple[bytes, str] | None:
        return fetch(self.sessions, Photo, self.root, photo_id)


def _model_name(model: VisionModel | None) -> str | None:
    if model is None:
        return None
    return f"{model.meta.get('arch')}@{model.meta.get('created', '')}"[:64]


__all__ = ["AcceptedPhoto", "PhotoError", "PhotoService"]

"""Voice messages in the gateway: check, store, transcribe.

Whisper loads once, in the background at startup. The shop's product names bias the decoding, so
"linen shirt" or "保温杯" come out spelled the way the catalog spells them, and the shop's language
model (built from the intent examples, FAQ questions and catalog at the same time) chooses among
Whisper's best transcripts.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from assistant.commerce.models import Product, VoiceClip, utcnow
from assistant.settings import PROJECT_ROOT, Settings
from channels.files import fetch, keep
from channels.voice.audio import AudioError, AudioLimits, decode, is_silent
from channels.voice.shop_lm import ShopLanguageModel, shop_texts
from channels.voice.transcriber import LANGUAGES, Transcriber, Transcript, load_transcriber

log = logging.getLogger("kefu.gateway.voice")
EXTENSIONS = {"audio/wav": "wav", "audio/ogg": "ogg", "audio/webm": "webm", "audio/flac": "flac",
              "audio/mpeg": "mp3", "audio/mp4": "m4a", "audio/aac": "aac", "audio/amr": "amr"}
HOTWORDS = 40  # product names per language in Whisper's prompt
REFRESH_S = 600.0  # the catalog and FAQ are read again this long after the last reading
NLU_DATA = PROJECT_ROOT / "assistant" / "data" / "nlu"  # what shoppers say, for the language model


@dataclass(frozen=True)
class AcceptedVoice:
    id: str
    url: str
    seconds: float
    transcript: Transcript

    def body(self) -> dict:
        """The shopper's message as the widget shows it: what was heard, and the recording."""
        return {"text": self.transcript.text, "audio_id": self.id, "audio_url": self.url,
                "duration_s": round(self.seconds, 1), "language": self.transcript.language}


class VoiceService:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session],
                 transcriber: Transcriber | None = None) -> None:
        self.settings = settings
        self.sessions = sessions
        self.limits = AudioLimits(settings.max_audio_bytes, settings.max_audio_seconds)
        self.root = settings.audio_path
        self.transcriber = transcriber or load_transcriber(
            settings.whisper_backend, settings.whisper_model, models_dir=settings.models_dir,
            beam_size=settings.whisper_beam_size, threads=settings.whisper_threads,
            compute_type=settings.whisper_compute_type, candidates=settings.whisper_candidates)
        self._hotwords: dict[str, list[str]] = {}
        self._language_model: ShopLanguageModel | None = None
        self._read_at = 0.0  # monotonic time the shop's words were read
        self._lock = threading.Lock()  # one transcription at a time: Whisper already uses every core

    def start_loading(self) -> None:
        threading.Thread(target=self.warm_up, name="whisper-model", daemon=True).start()

    def warm_up(self) -> None:
        try:
            with self._lock:
                self.transcriber.warm_up()
                self.language_model()
        except (OSError, ValueError, RuntimeError) as error:
            log.warning("no speech recognition (%s): voice messages are refused", error)

    def _refresh_if_stale(self) -> None:
        """A product or FAQ entry the merchant adds reaches the voice biasing within ``REFRESH_S``."""
        if time.monotonic() - self._read_at > REFRESH_S:
            self._hotwords.clear()
            self._language_model = None
            self._read_at = time.monotonic()

    def hotwords(self, language: str) -> list[str]:
        self._refresh_if_stale()
        if language not in self._hotwords:
            with self.sessions() as session:
                column = Product.name_zh if language == "zh" else Product.name_en
                names = session.scalars(select(column).where(Product.active.is_(True)).order_by(Product.id)).all()
            self._hotwords[language] = list(dict.fromkeys(names))[:HOTWORDS]
        return self._hotwords[language]

    def language_model(self) -> ShopLanguageModel:
        """The shop's n-gram model (built in about 0.3 s for the demo shop; again after ``REFRESH_S``)."""
        self._refresh_if_stale()
        if self._language_model is None:
            self._language_model = ShopLanguageModel.build(shop_texts(self.sessions, [NLU_DATA]))
            log.info("shop language model: %s sentences", self._language_model.sentences)
        return self._language_model

    def transcribe(self, samples: np.ndarray) -> Transcript:
        """16 kHz float samples to text, biased toward the catalog's product names, the transcript
        chosen by the shop's language model."""
        try:
            with self._lock:
                return self.transcriber.transcribe(samples, hotwords={lang: self.hotwords(lang) for lang in LANGUAGES},
                                                   language_model=self.language_model())
        except (OSError, ValueError, RuntimeError) as error:
            log.warning("transcription failed: %s", type(error).__name__)
            raise AudioError("unavailable", "speech recognition is not available") from error

    def accept(self, data: bytes, conversation_id: str) -> AcceptedVoice:
        """Check, store and transcribe one voice message; raises ``AudioError`` when refused."""
        clip = decode(data, self.limits)
        if is_silent(clip.samples):
            raise AudioError("silent", f"{clip.seconds:.1f} s without any sound")
        transcript = self.transcribe(clip.samples)
        if not transcript.text.strip(" .,。，!?！？…-"):
            raise AudioError("no_speech", f"nothing could be made out in {clip.seconds:.1f} s")
        clip_id = secrets.token_urlsafe(18)
        now = utcnow()
        relative = keep(self.root, clip_id, EXTENSIONS[clip.media_type], data, now)
        with self.sessions() as session:
            session.add(VoiceClip(id=clip_id, conversation_id=conversation_id, media_type=clip.media_type,
                                  path=relative, bytes=len(data), seconds=round(clip.seconds, 2),
                                  sha256=hashlib.sha256(data).hexdigest(), language=transcript.language,
                                  model=transcript.model[:64], transcribe_ms=round(transcript.seconds * 1000),
                                  created_at=now))
            session.commit()
        log.info("voice %s: %.1f s, %s, transcribed in %.0f ms (RTF %.2f)", clip_id, clip.seconds,
                 transcript.language, transcript.seconds * 1000, transcript.rtf)
        return AcceptedVoice(clip_id, f"/audio/{clip_id}", clip.seconds, transcript)

    def read(self, clip_id: str) -> tuple[bytes, str] | None:
        return fetch(self.sessions, VoiceClip, self.root, clip_id)


__all__ = ["AcceptedVoice", "AudioError", "VoiceService"]

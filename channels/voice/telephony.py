"""Telephone audio: G.711 μ-law at 8 kHz (what Twilio Media Streams and SIP gateways carry),
resampling between the phone's 8 kHz and Whisper's 16 kHz, and turn-taking by voice activity."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PHONE_RATE = 8_000  # samples per second on the line
FRAME_MS = 20  # Twilio sends 20 ms of audio per media message
FRAME_SAMPLES = PHONE_RATE * FRAME_MS // 1000  # 160 samples (and 160 μ-law bytes) per frame

_BIAS, _CLIP = 0x84, 32635


def _decode_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


_DECODE = _decode_table()


def ulaw_decode(data: bytes) -> np.ndarray:
    """μ-law bytes to float32 samples in [-1, 1]."""
    return _DECODE[np.frombuffer(data, dtype=np.uint8)].astype(np.float32) / 32768.0


def ulaw_encode(samples: np.ndarray) -> bytes:
    """float samples in [-1, 1] to μ-law bytes (ITU-T G.711)."""
    pcm = np.clip(np.asarray(samples, dtype=np.float64) * 32768.0, -32768, 32767).astype(np.int32)
    sign = np.where(pcm < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(pcm), _CLIP) + _BIAS
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling (FFmpeg's, through PyAV) of float mono samples."""
    if from_rate == to_rate or len(samples) == 0:
        return np.asarray(samples, dtype=np.float32)
    import av

    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
    frame.sample_rate = from_rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=to_rate)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return (np.concatenate(out).astype(np.float32) / 32768.0) if out else np.zeros(0, np.float32)


@dataclass
class TurnDetector:
    """Splits the caller's audio into turns, 20 ms frame by frame, with WebRTC's voice activity
    detector: a turn starts after ``start_ms`` of speech (with ``preroll_ms`` kept from before, so
    the first syllable is not cut) and ends after ``end_ms`` of quiet or at ``max_turn_ms``.

    ``push`` returns an event: "speech_started" (the caller began talking: barge-in), a finished
    turn's samples, or None."""

    aggressiveness: int = 2  # 0-3: how readily WebRTC's VAD calls noise "not speech"
    start_ms: int = 120
    end_ms: int = 700
    preroll_ms: int = 300
    max_turn_ms: int = 30_000
    _vad: object = field(default=None, repr=False)
    _speaking: bool = False
    _run: int = 0  # consecutive frames of speech (when quiet) or of quiet (when speaking)
    _frames: list[np.ndarray] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(self.aggressiveness)

    @property
    def speaking(self) -> bool:
        return self._speaking

    def push(self, frame: np.ndarray) -> str | np.ndarray | None:
        """One frame of ``FRAME_SAMPLES`` float samples at 8 kHz."""
        pcm = (np.clip(frame, -1, 1) * 32767).astype("<i2").tobytes()
        voiced = self._vad.is_speech(pcm, PHONE_RATE)  # type: ignore[attr-defined]
        self._frames.append(frame)
        if not self._speaking:
            self._run = self._run + 1 if voiced else 0
            keep = (self.preroll_ms + self.start_ms) // FRAME_MS
            del self._frames[:-keep]
            if self._run * FRAME_MS >= self.start_ms:
                self._speaking, self._run = True, 0
                return "speech_started"
            return None
        self._run = 0 if voiced else self._run + 1
        if self._run * FRAME_MS >= self.end_ms or len(self._frames) * FRAME_MS >= self.max_turn_ms:
            turn = np.concatenate(self._frames)
            self.reset()
            return turn
        return None

    def flush(self) -> np.ndarray | None:
        """What the caller was saying when the call ended, if anything."""
        turn = np.concatenate(self._frames) if self._speaking and self._frames else None
        self.reset()
        return turn

    def reset(self) -> None:
        self._speaking, self._run, self._frames = False, 0, []

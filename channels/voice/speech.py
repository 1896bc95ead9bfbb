"""Text to speech for phone calls: one ``Speaker`` protocol; espeak-ng is the default backend.

espeak-ng's plain Mandarin voice (``cmn``) reads many characters as their pinyin with the tone
digit spoken in English; ``cmn-latn-pinyin`` reads characters properly, so Chinese uses it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Protocol

import numpy as np

from channels.voice.audio import decode

VOICES = {"en": "en-us", "zh": "cmn-latn-pinyin"}
_SENTENCE = re.compile(r"(?<=[.!?。！？；;])\s*")


class Speaker(Protocol):
    name: str

    def speak(self, text: str, language: str) -> tuple[np.ndarray, int]:
        """Float32 mono samples of ``text`` spoken in ``language`` ("zh"/"en"), and their rate."""


class Espeak:
    def __init__(self, speed_wpm: int = 145, binary: str | None = None) -> None:  # unhurried: phone lines blur
        self.binary = binary or shutil.which("espeak-ng") or "espeak-ng"
        self.speed_wpm = speed_wpm
        self.name = "espeak-ng"

    def speak(self, text: str, language: str) -> tuple[np.ndarray, int]:
        try:
            result = subprocess.run([self.binary, "-v", VOICES.get(language, "en-us"), "-s", str(self.speed_wpm),
                                     "--stdout"], input=text.encode(), capture_output=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise RuntimeError(f"espeak-ng could not speak: {error}; install it (apt-get install espeak-ng)") from error
        if result.returncode != 0 or not result.stdout:
            reason = result.stderr.decode(errors="replace")[:200]
            raise RuntimeError(f"espeak-ng failed ({result.returncode}): {reason}")
        clip = decode(result.stdout)  # to 16 kHz mono
        return clip.samples, 16_000


def sentences(text: str) -> list[str]:
    """Split a reply so its first sentence can be spoken while the rest is synthesised."""
    return [part for part in (p.strip() for p in _SENTENCE.split(text)) if part]

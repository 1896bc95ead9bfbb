"""Test speech: espeak-ng says a sentence; sox and PyAV turn it into what browsers and phones send."""

from __future__ import annotations

import io
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from channels.voice.audio import SAMPLE_RATE, decode


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing: `make system-deps` installs it")
    return path


@lru_cache(maxsize=64)
def speak(text: str, voice: str = "en-us", speed: int = 150) -> bytes:
    """WAV bytes (22,050 Hz mono) of espeak-ng saying ``text``."""
    result = subprocess.run([need("espeak-ng"), "-v", voice, "-s", str(speed), "--stdout", text],
                            capture_output=True, check=True)
    return result.stdout


def convert(wav: bytes, kind: str) -> bytes:
    """The same speech as Ogg/Vorbis or FLAC (sox) or WebM/Opus (PyAV, what Chrome records)."""
    if kind == "webm":
        return webm_opus(decode(wav).samples)
    result = subprocess.run([need("sox"), "-t", "wav", "-", "-t", kind, "-"], input=wav, capture_output=True,
                            check=True)
    return result.stdout


def webm_opus(samples: np.ndarray) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="webm") as out:
        stream = out.add_stream("libopus", rate=48000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray((np.clip(samples, -1, 1) * 32767).astype(np.int16).reshape(1, -1),
                                           format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for resampled in av.AudioResampler(format="s16", layout="mono", rate=48000).resample(frame):
            for packet in stream.encode(resampled):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def spoken_order(stack, status: str = "shipped") -> tuple[str, str]:
    """(order number, last 4 phone digits) of an English shopper's order whose digits espeak-ng says
    clearly: its "nine" is swallowed after other digits ("0 2 9 1" is heard as "021" even by Whisper
    base), a limit of the robotic test voice that benchmarks/voice.py measures, not of the dialog."""
    from sqlalchemy import select

    from assistant.commerce.db import session_factory
    from assistant.commerce.models import Customer, Order

    with session_factory(stack.settings.db_url)() as session:
        for order in session.scalars(select(Order).join(Customer).where(Order.status == status,
                                                                         Customer.language == "en")
                                      .order_by(Order.id)):  # the same order on SQLite and PostgreSQL
            if "9" not in order.customer.phone[-4:] and "9" not in order.order_no:
                return order.order_no, order.customer.phone[-4:]
    pytest.fail(f"no {status} order with clearly speakable digits")


def read_out(digits: str) -> str:
    return "The last four digits are " + ", ".join(digits) + "."

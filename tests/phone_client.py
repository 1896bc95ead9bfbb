"""A caller for tests: plays Twilio's side of a Media Streams call against ``/ws/voice``.

Like Twilio it sends 20 ms μ-law frames continuously (silence when the caller is not talking),
plays what it receives in real time, reports each mark once the audio before it has played, and
on ``clear`` drops what it has not played yet and reports the pending marks at once.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
from websockets.sync.client import connect

from channels.voice.audio import SAMPLE_RATE, decode
from channels.voice.telephony import FRAME_SAMPLES, PHONE_RATE, resample, ulaw_decode, ulaw_encode

FRAME_S = FRAME_SAMPLES / PHONE_RATE
SILENCE = ulaw_encode(np.zeros(FRAME_SAMPLES, np.float32))


@dataclass
class Utterance:
    """What the bot said between two pauses: its audio (8 kHz float) and when it started."""

    audio: np.ndarray
    first_byte_at: float
    marks: list[str] = field(default_factory=list)

    @property
    def samples16k(self) -> np.ndarray:
        return resample(self.audio, PHONE_RATE, SAMPLE_RATE)


class Caller:
    def __init__(self, url: str, *, caller: str = "+8613800138000", language: str | None = "en",
                 pace: float = 1.0) -> None:
        self.ws = connect(url, max_size=None)
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.pace = pace  # 1.0: real time, like a phone line; higher streams faster
        self.lock = threading.Lock()
        self.outgoing: list[bytes] = []  # μ-law frames queued to say
        self.received: list[tuple[float, bytes]] = []  # (arrival time, μ-law bytes) since the last take
        self.events: list[dict] = []
        self.pending_marks: list[tuple[float, str]] = []  # (play-out time, name)
        self.play_until = 0.0
        self.sent_speech_until = 0.0  # wall time when the last speech frame was sent
        self.closed = False
        self.sequence = 0
        self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        params = {"from": caller}
        if language:
            params["language"] = language
        self._send({"event": "start", "streamSid": self.stream_sid, "start": {
            "streamSid": self.stream_sid, "callSid": "CA" + uuid.uuid4().hex, "accountSid": "AC" + "0" * 32,
            "tracks": ["inbound"], "customParameters": params,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})
        self.threads = [threading.Thread(target=self._pump, daemon=True),
                        threading.Thread(target=self._listen, daemon=True)]
        for thread in self.threads:
            thread.start()

    # ---- what the test does

    def say(self, wav: bytes, *, trailing_silence_s: float = 0.0) -> None:
        """Queue speech (any sound file espeak-ng or sox made) to be streamed as the caller's voice."""
        samples = resample(decode(wav).samples, SAMPLE_RATE, PHONE_RATE)
        self.say_samples(samples)
        if trailing_silence_s:
            self.say_samples(np.zeros(int(trailing_silence_s * PHONE_RATE), np.float32))

    def say_samples(self, samples: np.ndarray) -> None:
        self.say_ulaw(ulaw_encode(samples))

    def say_ulaw(self, data: bytes) -> None:
        frames = [data[i:i + FRAME_SAMPLES] for i in range(0, len(data), FRAME_SAMPLES)]
        with self.lock:
            self.outgoing.extend(frames)

    def press(self, keys: str) -> None:
        """Keypad digits, as Twilio reports them (one ``dtmf`` event per key)."""
        for key in keys:
            self._send({"event": "dtmf", "streamSid": self.stream_sid, "dtmf": {"track": "inbound_track", "digit": key}})
            time.sleep(0.15)

    def discard(self) -> None:
        """Forget the bot audio received so far (what the next ``listen`` hears starts after)."""
        with self.lock:
            self.received = []

    def send_raw(self, message: dict) -> None:
        self._send(message)

    def speaking(self) -> bool:
        with self.lock:
            return bool(self.outgoing)

    def wait_done_speaking(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.speaking():
            if time.monotonic() > deadline:
                raise TimeoutError("the caller's speech was not sent in time")
            time.sleep(0.02)

    def wait_for_audio(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if self.received:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("the bot said nothing")
            time.sleep(0.02)

    def listen(self, timeout: float = 60, quiet_s: float = 1.2) -> Utterance:
        """Wait for the bot to speak, then collect its audio until it pauses for ``quiet_s``."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if self.received and time.monotonic() - self.received[-1][0] >= quiet_s and not self._unplayed():
                    chunks, self.received = self.received, []
                    marks = [e["mark"]["name"] for e in self.events if e.get("event") == "mark"]
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("the bot said nothing")
            time.sleep(0.05)
        audio = ulaw_decode(b"".join(c for _, c in chunks))
        return Utterance(audio, chunks[0][0], marks)

    def hang_up(self) -> None:
        self._send({"event": "stop", "streamSid": self.stream_sid, "stop": {}})
        self.close()

    def close(self) -> None:
        self.closed = True
        try:
            self.ws.close()
        except OSError:
            pass

    def clears(self) -> int:
        with self.lock:
            return sum(1 for e in self.events if e.get("event") == "clear")

    # ---- Twilio's side

    def _unplayed(self) -> bool:
        return bool(self.pending_marks)

    def _send(self, message: dict) -> None:
        self.sequence += 1
        message = {**message, "sequenceNumber": str(self.sequence)}
        try:
            self.ws.send(json.dumps(message))
        except Exception:  # noqa: BLE001 - the server closed the call; the test sees it elsewhere
            self.closed = True

    def _pump(self) -> None:
        """Send one frame per 20 ms (divided by ``pace``): speech when queued, silence otherwise;
        report marks whose audio has played."""
        next_at = time.monotonic()
        while not self.closed:
            with self.lock:
                frame = self.outgoing.pop(0) if self.outgoing else None
                now = time.monotonic()
                due = [name for at, name in self.pending_marks if at <= now]
                self.pending_marks = [(at, name) for at, name in self.pending_marks if at > now]
            if frame is not None:
                self.sent_speech_until = time.monotonic()
            payload = frame if frame is not None else SILENCE
            self._send({"event": "media", "streamSid": self.stream_sid,
                        "media": {"track": "inbound", "payload": base64.b64encode(payload).decode()}})
            for name in due:
                self._send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})
            next_at += FRAME_S / self.pace
            time.sleep(max(0.0, next_at - time.monotonic()))

    def _listen(self) -> None:
        while not self.closed:
            try:
                message = json.loads(self.ws.recv(timeout=0.5))
            except TimeoutError:
                continue
            except Exception:  # noqa: BLE001 - closed
                self.closed = True
                return
            now = time.monotonic()
            with self.lock:
                self.events.append(message)
                kind = message.get("event")
                if kind == "media":
                    data = base64.b64decode(message["media"]["payload"])
                    self.received.append((now, data))
                    self.play_until = max(self.play_until, now) + len(data) / PHONE_RATE
                elif kind == "mark":
                    self.pending_marks.append((max(self.play_until, now), message["mark"]["name"]))
                elif kind == "clear":  # drop what has not played; its marks come back at once
                    self.play_until = now
                    self.pending_marks = [(now, name) for _, name in self.pending_marks]

"""A small synchronous client of the widget protocol, for tests."""

from __future__ import annotations

import itertools
import json
from typing import Any

from websockets.sync.client import ClientConnection, connect

_ids = itertools.count()


class ChatClient:
    def __init__(self, url: str, language: str = "zh", *, resume: tuple[str, int] | None = None,
                 customer_token: str | None = None) -> None:
        self.ws: ClientConnection = connect(url, max_size=None)
        hello: dict[str, Any] = {"type": "hello", "language": language}
        if resume:
            hello = {"type": "resume", "conversation_id": resume[0], "last_seq": resume[1], "language": language}
        if customer_token:
            hello["customer_token"] = customer_token
        self.ws.send(json.dumps(hello))
        self.welcome = self.recv()
        assert self.welcome["type"] == "welcome", self.welcome
        self.conversation_id: str = self.welcome["conversation_id"]

    def recv(self, timeout: float = 60) -> dict[str, Any]:
        while True:
            message = json.loads(self.ws.recv(timeout=timeout))
            if message["type"] != "typing":
                return message

    def drain(self, timeout: float = 1.5) -> list[dict[str, Any]]:
        out = []
        try:
            while True:
                out.append(self.recv(timeout=timeout))
        except TimeoutError:
            return out

    def send_raw(self, frame: str) -> None:
        self.ws.send(frame)

    def say(self, text: str, client_id: str | None = None, settle: float = 2.5) -> list[dict[str, Any]]:
        """Send a text and collect everything until the bot goes quiet (the shopper's echo first)."""
        self.ws.send(json.dumps({"type": "text", "text": text, "client_id": client_id or f"t{next(_ids)}"}))
        first = self.recv()
        return [first] + self._replies(settle)

    def photo(self, data: bytes, name: str = "photo.jpg", settle: float = 2.5) -> list[dict[str, Any]]:
        """Send a photo the way the widget does (base64 in an ``image`` frame) and collect the replies."""
        import base64

        self.ws.send(json.dumps({"type": "image", "data": base64.b64encode(data).decode(), "name": name,
                                 "client_id": f"i{next(_ids)}"}))
        first = self.recv()
        if first["type"] == "error":
            return [first]
        return [first] + self._replies(settle)

    def voice(self, data: bytes, mime: str = "audio/wav", settle: float = 2.5,
              client_id: str | None = None) -> list[dict[str, Any]]:
        """Send a voice message the way the widget does (base64 in an ``audio`` frame); an error
        comes back alone, a transcript is followed by the bot's answer."""
        import base64

        self.ws.send(json.dumps({"type": "audio", "data": base64.b64encode(data).decode(), "mime": mime,
                                 "client_id": client_id or f"a{next(_ids)}"}))
        first = self.recv(timeout=120)
        if first["type"] == "error":
            return [first]
        return [first] + self._replies(settle)

    def postback(self, payload: str, title: str = "") -> list[dict[str, Any]]:
        self.ws.send(json.dumps({"type": "postback", "payload": payload, "title": title,
                                 "client_id": f"p{next(_ids)}"}))
        return [self.recv()] + self._replies(2.5)

    def _replies(self, settle: float) -> list[dict[str, Any]]:
        replies = [self.recv(timeout=60)]  # the first answer may take a while (Rasa, actions)
        return replies + self.drain(settle)

    def close(self) -> None:
        self.ws.close()


def of_type(messages: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == type_]


def texts(messages: list[dict[str, Any]]) -> str:
    return "\n".join(m.get("text", "") for m in messages if m.get("sender") == "bot")

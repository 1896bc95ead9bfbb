"""A small synchronous client of the widget protocol, for tests."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from websockets.exceptions import WebSocketException
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


class ResilientShopper:
    """A shopper whose widget behaves like widget.js when processes die under it: a message stays
    pending (by client id) until a reply names it; a lost connection is opened again with ``resume``
    and the last sequence number seen, and every pending message is sent again; an error marked
    ``retry`` is answered by sending the same message again after a pause. Used by the no-loss test
    and the load benchmark."""

    def __init__(self, url: str, language: str, name: str, deadline_s: float = 300) -> None:
        self.url, self.language, self.name = url, language, name
        self.deadline_s = deadline_s
        self.conversation_id: str | None = None
        self.last_seq = 0
        self.sent: list[tuple[str, str]] = []  # (client id, text) in the order the shopper typed them
        self.answers: dict[str, list[dict[str, Any]]] = {}  # client id -> the replies that named it
        self.errors: list[dict[str, Any]] = []
        self.reconnects = 0
        self.ws: ClientConnection | None = None

    def _connect(self) -> None:
        pause = 0.25
        while True:
            try:
                self.ws = connect(self.url, max_size=None, open_timeout=5)
                hello: dict[str, Any] = {"type": "hello", "language": self.language}
                if self.conversation_id:
                    hello = {"type": "resume", "conversation_id": self.conversation_id, "last_seq": self.last_seq,
                             "language": self.language}
                self.ws.send(json.dumps(hello))
                while (welcome := json.loads(self.ws.recv(timeout=10)))["type"] == "typing":
                    pass
                assert welcome["type"] == "welcome", welcome
                assert self.conversation_id in (None, welcome["conversation_id"]), "resume opened another conversation"
                self.conversation_id = welcome["conversation_id"]
                return
            except (OSError, TimeoutError, WebSocketException):
                self.reconnects += 1
                time.sleep(pause)
                pause = min(2.0, pause * 2)

    def say(self, text: str) -> list[dict[str, Any]]:
        """Send ``text`` and return its answer, however many reconnects and retries it takes."""
        client_id = f"{self.name}-{len(self.sent)}"
        self.sent.append((client_id, text))
        frame = json.dumps({"type": "text", "text": text, "client_id": client_id})
        give_up = time.monotonic() + self.deadline_s
        retry_pause = 0.5
        if self.ws is None:
            self._connect()
        assert self.ws is not None
        needs_send = True
        while time.monotonic() < give_up:
            try:
                if needs_send:
                    self.ws.send(frame)
                    needs_send = False
                message = json.loads(self.ws.recv(timeout=60))
            except (OSError, TimeoutError, WebSocketException):
                self._connect()  # the gateway went away: resume and send the pending message again
                needs_send = True
                continue
            if message.get("seq"):
                self.last_seq = max(self.last_seq, message["seq"])
            if message.get("reply_to") != client_id or message.get("sender") == "shopper":
                continue
            if message["type"] == "error":
                self.errors.append(message)
                assert message.get("retry"), f"an error that cannot be retried: {message}"
                time.sleep(retry_pause)
                retry_pause = min(4.0, retry_pause * 2)
                needs_send = True
                continue
            replies = [message] + self._rest_of_answer(client_id)
            self.answers[client_id] = replies
            return replies
        raise TimeoutError(f"{self.name}: no answer to {client_id} within {self.deadline_s}s")

    def _rest_of_answer(self, client_id: str, settle: float = 0.6) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        assert self.ws is not None
        try:
            while True:
                message = json.loads(self.ws.recv(timeout=settle))
                if message.get("seq"):
                    self.last_seq = max(self.last_seq, message["seq"])
                if message.get("reply_to") == client_id and message["type"] != "typing":
                    out.append(message)
        except (TimeoutError, OSError, WebSocketException):  # quiet, or the connection broke: what came is the answer
            pass
        return out

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()

"""Talks to the Rasa server through its REST channel and turns replies into widget messages."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx

log = logging.getLogger("kefu.gateway.rasa")

PAYLOAD_TYPES = {"product_cards", "coupon", "checkout", "order", "stock", "price", "price_protection", "return",
                 "citations", "unanswered", "handoff"}


class RasaUnavailable(Exception):
    """No answer this time; the same message may be sent again (with ``resend``) once Rasa, its NLU
    server or its action server is back. ``code`` says which part failed."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


class RasaClient:
    """One or more Rasa replicas (they share the tracker store and, when there are several, a Redis
    lock store). Turns go through kefu's channel (assistant/addons/kefu_channel.py), which makes a
    resent message safe: a message Rasa already answered is answered from its tracker, never
    processed twice. A replica that cannot be reached is skipped for ``cooldown_s``.

    At most ``in_flight`` x (number of replicas) turns are with Rasa at once (one pool: when a
    replica is down the others take its share); the rest wait here, in order, for up to
    ``queue_s`` seconds. Rasa works through a queue at the same rate either way, but
    a turn that waits inside Rasa counts against ``timeout_s``: under a crowd every late turn would
    time out, be abandoned by the shopper's retry error and still cost Rasa its work. Waiting
    here costs nothing, and ``timeout_s`` measures Rasa's own work again."""

    def __init__(self, base_urls: str | list[str], timeout_s: float, cooldown_s: float = 5.0,
                 in_flight: int = 8, queue_s: float = 120.0) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("at least one Rasa URL is needed")
        self.bases = [url.rstrip("/") for url in urls]
        self.timeout_s = timeout_s
        self.cooldown_s = cooldown_s
        self.queue_s = queue_s
        self._slots = asyncio.Semaphore(in_flight * len(self.bases))
        self.waiting = 0  # turns queued for a slot (the gateway's /health shows it)
        self._down_until: dict[str, float] = {}
        self._next = 0
        self._client = httpx.AsyncClient(timeout=timeout_s)

    @property
    def client(self) -> httpx.AsyncClient:
        """The connection pool; opened again when the app starts after a shutdown closed it."""
        if self._client.is_closed:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        return self._client

    def _replicas(self) -> list[str]:
        """Every replica once, starting with the next in turn, those that just failed last."""
        self._next = (self._next + 1) % len(self.bases)
        ordered = self.bases[self._next:] + self.bases[:self._next]
        now = time.monotonic()
        return sorted(ordered, key=lambda base: self._down_until.get(base, 0.0) > now)

    async def send(self, conversation_id: str, text: str, metadata: dict[str, Any], message_id: str,
                   resend: bool = False) -> list[tuple[str, dict]]:
        """Rasa's replies as (type, body) pairs for the widget. ``message_id`` identifies the shopper's
        message across retries; ``resend`` says it may have reached Rasa before."""
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout=self.queue_s)
        except asyncio.TimeoutError:
            log.warning("rasa busy conversation=%s: no turn slot within %.0f s", conversation_id, self.queue_s)
            raise RasaUnavailable("rasa_busy", f"queued {self.queue_s:.0f} s") from None
        finally:
            self.waiting -= 1
        try:
            return await self._send(conversation_id, text, metadata, message_id, resend)
        finally:
            self._slots.release()

    async def _send(self, conversation_id: str, text: str, metadata: dict[str, Any], message_id: str,
                    resend: bool) -> list[tuple[str, dict]]:
        last: RasaUnavailable | None = None
        for base in self._replicas():
            body = {"sender": conversation_id, "message": text, "message_id": message_id, "metadata": metadata,
                    "resend": resend}
            try:
                response = await self.client.post(base + "/webhooks/kefu/webhook", json=body)
            except httpx.HTTPError as error:  # this replica is down or restarting: the next one
                log.warning("rasa call failed conversation=%s replica=%s error=%s", conversation_id, base,
                            type(error).__name__)
                self._down_until[base] = time.monotonic() + self.cooldown_s
                last = RasaUnavailable("rasa_unavailable", type(error).__name__)
                resend = True  # the request may have been processed before the connection broke
                continue
            if response.status_code == 503:  # a turn abandoned because the NLU or action server is down
                code = _error_code(response)
                log.warning("rasa turn failed conversation=%s code=%s", conversation_id, code)
                if code == "not_ready":  # this replica is still loading its model
                    last = RasaUnavailable("rasa_unavailable", code)
                    continue
                raise RasaUnavailable(code)
            try:
                response.raise_for_status()
                replies = response.json()
            except (httpx.HTTPError, ValueError) as error:
                log.warning("rasa answered badly conversation=%s status=%d", conversation_id, response.status_code)
                raise RasaUnavailable("rasa_error", type(error).__name__) from error
            return [converted for reply in replies if (converted := to_widget(reply))]
        assert last is not None
        raise last

    async def tracker_event(self, conversation_id: str, event: str, attempts: int = 3) -> bool:
        """Appends an event such as ``pause`` or ``resume`` to Rasa's conversation (its HTTP API,
        enabled with --enable-api); False when Rasa could not be told."""
        for attempt in range(attempts):
            base = self._replicas()[0]
            try:
                response = await self.client.post(f"{base}/conversations/{conversation_id}/tracker/events",
                                                  json={"event": event})
                response.raise_for_status()
                return True
            except httpx.HTTPError as error:
                self._down_until[base] = time.monotonic() + self.cooldown_s
                log.warning("rasa %s failed conversation=%s attempt=%d error=%s", event, conversation_id,
                            attempt + 1, type(error).__name__)
                await asyncio.sleep(0.2 * (attempt + 1))
        return False

    async def slots(self, conversation_id: str) -> dict[str, Any]:
        """The conversation's slots in Rasa's tracker; empty when Rasa cannot be reached."""
        for base in self._replicas():
            try:
                response = await self.client.get(f"{base}/conversations/{conversation_id}/tracker",
                                                 params={"include_events": "NONE"})
                response.raise_for_status()
                return response.json().get("slots") or {}
            except (httpx.HTTPError, ValueError):
                continue
        log.info("rasa tracker not reachable for conversation=%s", conversation_id)
        return {}

    async def aclose(self) -> None:
        await self._client.aclose()


def to_widget(reply: dict[str, Any]) -> tuple[str, dict] | None:
    custom = reply.get("custom")
    if isinstance(custom, dict):
        kind = custom.get("type")
        if kind not in PAYLOAD_TYPES:
            log.warning("dropping custom payload of unknown type %r", kind)
            return None
        return kind, {k: v for k, v in custom.items() if k != "type"}
    if reply.get("buttons"):
        buttons = [{"title": str(b.get("title", "")), "payload": str(b.get("payload", ""))} for b in reply["buttons"]]
        return "buttons", {"text": reply.get("text", ""), "buttons": buttons}
    if reply.get("text"):
        return "text", {"text": reply["text"]}
    if reply.get("image"):
        return "text", {"text": "", "image": reply["image"]}
    return None


def _error_code(response: httpx.Response) -> str:
    try:
        code = response.json().get("error")
    except (ValueError, AttributeError):
        code = None
    return code if isinstance(code, str) else "rasa_unavailable"

"""Talks to the Rasa server through its REST channel and turns replies into widget messages."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

log = logging.getLogger("kefu.gateway.rasa")

PAYLOAD_TYPES = {"product_cards", "coupon", "checkout", "order", "stock", "price", "price_protection", "return",
                 "citations", "unanswered", "handoff"}


class RasaUnavailable(Exception):
    pass


class RasaClient:
    def __init__(self, base_url: str, timeout_s: float) -> None:
        self.base = base_url.rstrip("/")
        self.url = self.base + "/webhooks/rest/webhook"
        self.timeout_s = timeout_s
        self._client = httpx.AsyncClient(timeout=timeout_s)

    @property
    def client(self) -> httpx.AsyncClient:
        """The connection pool; opened again when the app starts after a shutdown closed it."""
        if self._client.is_closed:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        return self._client

    async def send(self, conversation_id: str, text: str, metadata: dict[str, Any]) -> list[tuple[str, dict]]:
        """Rasa's replies as (type, body) pairs for the widget."""
        try:
            response = await self.client.post(self.url, json={"sender": conversation_id, "message": text,
                                                              "metadata": metadata})
            response.raise_for_status()
            replies = response.json()
        except (httpx.HTTPError, ValueError) as error:
            log.warning("rasa call failed conversation=%s error=%s", conversation_id, type(error).__name__)
            raise RasaUnavailable(str(error)) from error
        return [converted for reply in replies if (converted := to_widget(reply))]

    async def tracker_event(self, conversation_id: str, event: str, attempts: int = 3) -> bool:
        """Appends an event such as ``pause`` or ``resume`` to Rasa's conversation (its HTTP API,
        enabled with --enable-api); False when Rasa could not be told."""
        url = f"{self.base}/conversations/{conversation_id}/tracker/events"
        for attempt in range(attempts):
            try:
                response = await self.client.post(url, json={"event": event})
                response.raise_for_status()
                return True
            except httpx.HTTPError as error:
                log.warning("rasa %s failed conversation=%s attempt=%d error=%s", event, conversation_id,
                            attempt + 1, type(error).__name__)
                await asyncio.sleep(0.2 * (attempt + 1))
        return False

    async def slots(self, conversation_id: str) -> dict[str, Any]:
        """The conversation's slots in Rasa's tracker; empty when Rasa cannot be reached."""
        try:
            response = await self.client.get(f"{self.base}/conversations/{conversation_id}/tracker",
                                             params={"include_events": "NONE"})
            response.raise_for_status()
            return response.json().get("slots") or {}
        except (httpx.HTTPError, ValueError):
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

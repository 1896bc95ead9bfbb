"""Talks to the Rasa server through its REST channel and turns replies into widget messages."""

from __future__ import annotations

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
        self.url = base_url.rstrip("/") + "/webhooks/rest/webhook"
        self.client = httpx.AsyncClient(timeout=timeout_s)

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

    async def aclose(self) -> None:
        await self.client.aclose()


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

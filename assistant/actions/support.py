"""Knowledge-base answers and the handoff to a human agent."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import httpx
from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from assistant.actions.context import language, shop_session, t
from assistant.actions.orders import STATUS_TEXT
from assistant.commerce.models import Order
from assistant.settings import get_settings

log = logging.getLogger(__name__)

RETURN_DAYS, QUALITY_RETURN_DAYS, PRICE_PROTECTION_DAYS, WARRANTY_DAYS = 7, 30, 7, 365


def _date(value: dt.datetime | None, lang: str) -> str:
    if value is None:
        return ""
    return f"{value.month}月{value.day}日" if lang == "zh" else value.strftime("%d %b %Y").lstrip("0")


def order_slots(order: Order, lang: str) -> dict[str, str]:
    """The shopper's details an FAQ answer may mention (its [[...{slot}...]] segments)."""
    events = {e.status: e.occurred_at for e in order.events}
    delivered = events.get("delivered") if order.status in ("delivered", "returned") else None
    shipped = events.get("picked_up") or events.get("packed")
    electronics = any(i.variant.product.category.key == "electronics" for i in order.items)
    slots = {"order_no": order.order_no, "order_date": _date(order.created_at, lang),
             "order_status": STATUS_TEXT[order.status][0 if lang == "zh" else 1],
             "shipped_date": _date(shipped, lang), "delivered_date": _date(delivered, lang)}
    if delivered:
        slots["return_deadline"] = _date(delivered + dt.timedelta(days=RETURN_DAYS), lang)
        slots["quality_return_deadline"] = _date(delivered + dt.timedelta(days=QUALITY_RETURN_DAYS), lang)
        slots["price_protection_deadline"] = _date(delivered + dt.timedelta(days=PRICE_PROTECTION_DAYS), lang)
        if electronics:
            slots["warranty_until"] = _date(delivered + dt.timedelta(days=WARRANTY_DAYS), lang)
    return {k: v for k, v in slots.items() if v}


def shopper_slots(tracker: Tracker, lang: str) -> dict[str, str]:
    """Details of the order this shopper verified in the conversation, or of the latest order of the
    customer the shop vouched for (signed token); nothing for an anonymous shopper."""
    order_no = tracker.get_slot("verified_order")
    customer_id = tracker.get_slot("customer_id")
    if not order_no and customer_id is None:
        return {}
    with shop_session() as session:
        query = select(Order)
        if order_no:
            query = query.where(Order.order_no == order_no)
        else:
            query = query.where(Order.customer_id == int(customer_id)).order_by(Order.created_at.desc())
        order = session.scalars(query.limit(1)).first()
        return order_slots(order, lang) if order else {}


def ask_knowledge_base(question: str, lang: str, slots: dict[str, str], reason: str) -> dict[str, Any]:
    settings = get_settings()
    response = httpx.post(f"{settings.kb_url}/answer", timeout=settings.kb_timeout_s,
                          json={"text": question[:2000], "language": lang, "slots": slots, "reason": reason})
    response.raise_for_status()
    return response.json()


class ActionAnswerFromKb(Action):
    def name(self) -> str:
        return "action_answer_from_kb"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        lang = language(tracker)
        question = (tracker.latest_message.get("text") or "").strip()
        intent = (tracker.latest_message.get("intent") or {}).get("name")
        offer = [{"title": t(lang, "转人工", "Talk to an agent"), "payload": "/human_agent"},
                 {"title": t(lang, "不用了", "No thanks"), "payload": "/deny"}]
        if not question:
            dispatcher.utter_message(text=t(lang, "您想了解什么呢？", "What would you like to know?"))
            return []
        try:
            result = ask_knowledge_base(question, lang, shopper_slots(tracker, lang),
                                        "fallback" if intent == "nlu_fallback" else "low_confidence")
        except (httpx.HTTPError, ValueError) as error:
            log.warning("knowledge base unavailable: %s", type(error).__name__)
            dispatcher.utter_message(
                text=t(lang, "抱歉，知识库暂时无法查询。要不要转人工客服帮您解答？",
                       "Sorry, I can't look that up right now. Shall I get a human agent to help?"),
                buttons=offer)
            dispatcher.utter_message(json_message={"type": "unanswered", "reason": "unavailable"})
            return []
        if not result.get("answered"):
            dispatcher.utter_message(
                text=t(lang, "这个问题我暂时不确定，不想给您错误的答案。要不要转人工客服？",
                       "I'm not sure about that one and don't want to guess. Shall I get a human agent?"),
                buttons=offer)
            dispatcher.utter_message(json_message={"type": "unanswered", "confidence": result.get("confidence")})
            return []
        dispatcher.utter_message(text=result["text"])
        dispatcher.utter_message(json_message={
            "type": "citations", "faq_ids": [c["key"] for c in result["citations"]],
            "sources": [{"key": c["key"], "title": c["title"], "faq_id": c["faq_id"], "source": c["source"]}
                        for c in result["citations"]],
            "responder": result.get("responder"), "confidence": result.get("confidence")})
        return []


class ActionHandoff(Action):
    def name(self) -> str:
        return "action_handoff"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        lang = language(tracker)
        settings = get_settings()
        start, end = settings.support_hours.split("-")
        hours = settings.support_hours.replace("-", "–") if start != end else t(lang, "全天", "around the clock")
        reason = tracker.latest_message.get("intent", {}).get("name")
        if not settings.agents_on_duty():  # nobody to hand over to: a call back instead (the gateway takes the contact)
            dispatcher.utter_message(text=t(
                lang, "现在是非人工服务时间（人工客服{hours}在线）。请留下您的手机号或邮箱，客服上班后会第一时间联系您。",
                "Our agents are offline now (they work {hours}). Leave your phone number or email and they will "
                "contact you as soon as they are back.", hours=hours))
            dispatcher.utter_message(json_message={"type": "handoff", "reason": reason, "after_hours": True})
            return []
        dispatcher.utter_message(text=t(
            lang, "正在为您转接人工客服（服务时间{hours}），请稍候，您的聊天记录会同步给客服。",
            "Connecting you to a human agent (available {hours}). Please hold on; they'll see this conversation.",
            hours=hours))
        dispatcher.utter_message(json_message={"type": "handoff", "reason": reason})
        return []

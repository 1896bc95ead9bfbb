"""Session start, order verification forms, order status, cancellation and returns.

An order is shown or changed only after the shopper proves it is theirs: the order id plus the
last 4 digits of the phone number on the order, or a signed customer token from the shop.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import ActionExecuted, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from assistant.actions.context import language, shop_session, t, yuan
from assistant.commerce.models import Order, ReturnRequest
from assistant.commerce.service import ShopError, cancel_order, create_return, price_protection, verify_order
from assistant.settings import get_settings

log = logging.getLogger(__name__)

CUSTOMER_TOKEN_SALT = "kefu.customer.v1"
MAX_VERIFICATION_FAILURES = 3
_ORDER_ID = re.compile(r"(?:KF)?\s*(\d{8})", re.I)
_LAST4 = re.compile(r"(?<!\d)(\d{4})(?!\d)")

STATUS_TEXT = {
    "paid": ("已付款，等待发货", "paid, waiting to ship"),
    "shipped": ("已发货，运输中", "shipped, on its way"),
    "delivered": ("已签收", "delivered"),
    "cancelled": ("已取消", "cancelled"),
    "returned": ("已退货退款", "returned and refunded"),
}
EVENT_TEXT = {
    "packed": ("已打包", "packed"), "picked_up": ("快递已揽收", "picked up by the courier"),
    "in_transit": ("运输中", "in transit"), "out_for_delivery": ("派送中", "out for delivery"),
    "delivered": ("已签收", "delivered"),
}


def customer_from_token(token: str) -> int | None:
    """The customer id inside a shop-signed token, or None when it is missing, forged or expired."""
    settings = get_settings()
    try:
        data = URLSafeTimedSerializer(settings.signing_key(), salt=CUSTOMER_TOKEN_SALT).loads(
            token, max_age=settings.customer_token_ttl_s)
        return int(data["customer_id"])
    except (BadSignature, KeyError, TypeError, ValueError):
        return None


class ActionSessionStart(Action):
    """Carries the widget's language and the shop's signed customer token into the slots."""

    def name(self) -> str:
        return "action_session_start"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        events: list[dict[str, Any]] = [SessionStarted()]
        carried = [SlotSet(k, v) for k, v in tracker.current_slot_values().items()
                   if v is not None and k not in ("requested_slot", "session_started_metadata")]
        events += carried
        metadata = tracker.get_slot("session_started_metadata") or {}
        if metadata.get("language") in ("zh", "en"):
            events.append(SlotSet("language", metadata["language"]))
        token = metadata.get("customer_token")
        if isinstance(token, str) and token:
            customer_id = customer_from_token(token)
            if customer_id is not None:
                events.append(SlotSet("customer_id", float(customer_id)))
        events.append(ActionExecuted("action_listen"))
        return events


class _VerifiedOrderSlots:
    """Shared slot validation of the order forms: a real order id, then proof of ownership."""

    def validate_order_id(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                          domain: dict) -> dict[str, Any]:
        lang = language(tracker)
        match = _ORDER_ID.search(str(value or ""))
        if not match:
            dispatcher.utter_message(text=t(lang, "这看起来不像订单号哦，订单号是KF开头加8位数字。",
                                            "That doesn't look like an order number: it is KF followed by 8 digits."))
            return {"order_id": None}
        order_no = f"KF{match.group(1)}"
        with shop_session() as session:
            try:
                verify_order(session, order_no, customer_id=tracker.get_slot("customer_id"))
                # the shop vouched for this shopper, who owns the order: no digits needed
                return {"order_id": order_no, "phone_last4": "token"}
            except ShopError as error:
                if error.code == "order_not_found":
                    dispatcher.utter_message(text=t(lang, "没有找到订单 {no}，请核对一下订单号。",
                                                    "I can't find order {no}. Please check the number.", no=order_no))
                    return {"order_id": None}
        return {"order_id": order_no}

    def validate_phone_last4(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                             domain: dict) -> dict[str, Any]:
        lang = language(tracker)
        if value == "token":
            return {"phone_last4": value}
        match = _LAST4.search(str(value or ""))
        if not match:
            dispatcher.utter_message(text=t(lang, "请输入4位数字，即手机号的后4位。",
                                            "Please enter 4 digits: the last 4 of your phone number."))
            return {"phone_last4": None}
        order_no = tracker.get_slot("order_id")
        with shop_session() as session:
            try:
                verify_order(session, order_no, phone_last4=match.group(1))
            except ShopError:
                failures = int(tracker.get_slot("verification_failures") or 0) + 1
                log.info("order verification failed conversation=%s attempt=%d", tracker.sender_id, failures)
                if failures >= MAX_VERIFICATION_FAILURES:
                    dispatcher.utter_message(text=t(
                        lang, "验证多次未通过，为保护买家隐私无法查看该订单。需要人工客服帮忙吗？",
                        "Verification failed several times, so I can't open this order to protect the buyer's privacy. "
                        "Would you like a human agent?"),
                        buttons=[{"title": t(lang, "转人工", "Talk to an agent"), "payload": "/human_agent"}])
                    return {"order_id": None, "phone_last4": None, "requested_slot": None,
                            "verification_failures": 0.0}
                dispatcher.utter_message(text=t(
                    lang, "手机号后4位与订单 {no} 不符，无法查看该订单。请确认是您本人的订单。",
                    "Those digits don't match order {no}, so I can't show it. Please make sure it's your own order.",
                    no=order_no))
                return {"order_id": None, "phone_last4": None, "verification_failures": float(failures)}
        return {"phone_last4": match.group(1), "verification_failures": 0.0}


class ValidateOrderLookupForm(_VerifiedOrderSlots, FormValidationAction):
    def name(self) -> str:
        return "validate_order_lookup_form"


class ValidateCancelForm(_VerifiedOrderSlots, FormValidationAction):
    def name(self) -> str:
        return "validate_cancel_form"


class ValidatePriceProtectionForm(_VerifiedOrderSlots, FormValidationAction):
    def name(self) -> str:
        return "validate_price_protection_form"


class ValidateReturnForm(_VerifiedOrderSlots, FormValidationAction):
    def name(self) -> str:
        return "validate_return_form"

    def validate_return_reason(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                               domain: dict) -> dict[str, Any]:
        reason = str(value or "").strip()
        return {"return_reason": reason[:500] if reason else None}


def _verified(tracker: Tracker, session) -> Order:  # type: ignore[no-untyped-def]
    last4 = tracker.get_slot("phone_last4")
    return verify_order(session, tracker.get_slot("order_id") or "",
                        phone_last4=None if last4 == "token" else last4,
                        customer_id=tracker.get_slot("customer_id"))


_RESET = [SlotSet("order_id", None), SlotSet("phone_last4", None), SlotSet("return_reason", None)]


class ActionOrderStatus(Action):
    def name(self) -> str:
        return "action_order_status"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        lang = language(tracker)
        zh = lang == "zh"
        with shop_session() as session:
            try:
                order = _verified(tracker, session)
            except ShopError:
                dispatcher.utter_message(text=t(lang, "无法验证该订单。", "I couldn't verify that order."))
                return _RESET
            rma = session.query(ReturnRequest).filter_by(order_id=order.id).one_or_none()
            status = STATUS_TEXT[order.status][0 if zh else 1]
            events = [{"time": e.occurred_at.isoformat(timespec="minutes"),
                       "status": EVENT_TEXT[e.status][0 if zh else 1],
                       "location": e.location_zh if zh else e.location_en} for e in order.events]
            items = [{"name": i.variant.product.name_zh if zh else i.variant.product.name_en,
                      "quantity": i.quantity, "size": i.variant.size} for i in order.items]
            text = t(lang, "订单 {no}：{status}，实付{total}。", "Order {no}: {status}, total {total}.",
                     no=order.order_no, status=status, total=yuan(order.total))
            if events:
                last = events[-1]
                text += t(lang, "\n最新物流：{time} {loc} {st}（{carrier} {tn}）",
                          "\nLatest tracking: {time} {loc}, {st} ({carrier} {tn})",
                          time=last["time"].replace("T", " "), loc=last["location"], st=last["status"],
                          carrier=order.carrier, tn=order.tracking_no)
            if rma:
                text += t(lang, "\n退货单 {rma}：{st}", "\nReturn {rma}: {st}", rma=rma.rma_no, st=rma.status)
            payload = {"type": "order", "order_id": order.order_no, "status": order.status,
                       "status_text": status, "total": order.total / 100, "carrier": order.carrier,
                       "tracking_no": order.tracking_no, "events": events, "items": items,
                       "return": {"rma": rma.rma_no, "status": rma.status} if rma else None}
            dispatcher.utter_message(text=text)
            dispatcher.utter_message(json_message=payload)
            return _RESET + [SlotSet("verified_order", order.order_no)]


class ActionCancelOrder(Action):
    def name(self) -> str:
        return "action_cancel_order"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        lang = language(tracker)
        with shop_session() as session:
            try:
                order = cancel_order(session, _verified(tracker, session))
                dispatcher.utter_message(text=t(lang, "订单 {no} 已取消，{total} 将在1-3个工作日内原路退回。",
                                                "Order {no} is cancelled; {total} goes back to your payment method within 1-3 working days.",
                                                no=order.order_no, total=yuan(order.total)))
            except ShopError as error:
                messages = {
                    "already_shipped": ("订单已经发货，不能直接取消了。签收后可以申请退货。",
                                        "The order has already shipped, so it can't be cancelled; you can return it after delivery."),
                    "already_cancelled": ("这个订单之前已经取消过了。", "That order was already cancelled."),
                }
                zh, en = messages.get(error.code, ("无法验证该订单。", "I couldn't verify that order."))
                dispatcher.utter_message(text=t(lang, zh, en))
        return _RESET


class ActionCreateReturn(Action):
    def name(self) -> str:
        return "action_create_return"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        lang = language(tracker)
        with shop_session() as session:
            try:
                order = _verified(tracker, session)
                rma = create_return(session, order, tracker.get_slot("return_reason") or "", tracker.sender_id)
                dispatcher.utter_message(text=t(
                    lang, "退货申请已提交，退货单号 {rma}。请在7天内寄回，仓库收到后1个工作日内退款。",
                    "Your return is registered as {rma}. Please send the item back within 7 days; we refund within 1 working day of receiving it.",
                    rma=rma.rma_no))
                dispatcher.utter_message(json_message={"type": "return", "rma": rma.rma_no, "order_id": order.order_no,
                                                       "status": rma.status})
            except ShopError as error:
                messages = {
                    "return_exists": ("这个订单已经有退货单 {d} 了。", "This order already has return {d}."),
                    "not_shipped": ("订单还没发货，可以直接取消订单哦。", "The order hasn't shipped yet, so you can simply cancel it."),
                    "cancelled": ("这个订单已经取消了。", "That order is cancelled."),
                    "window_closed": ("订单已于{d}签收，超过30天退货期了。需要人工客服帮忙看看吗？",
                                      "The order was delivered on {d}, more than 30 days ago. Want an agent to take a look?"),
                }
                zh, en = messages.get(error.code, ("无法验证该订单。", "I couldn't verify that order."))
                dispatcher.utter_message(text=t(lang, zh, en, d=error.detail))
        return _RESET


class ActionPriceProtection(Action):
    """Pays back a price drop on the shopper's verified order (``commerce.service.price_protection``)."""

    def name(self) -> str:
        return "action_price_protection"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        lang = language(tracker)
        payout = get_settings().price_protection_payout
        with shop_session() as session:
            try:
                order = _verified(tracker, session)
                result = price_protection(session, order, payout=payout, conversation_id=tracker.sender_id)
            except ShopError as error:
                messages = {
                    "not_eligible": ("订单 {no} 已取消或已退货，不在价保范围内。", "Order {no} was cancelled or returned, so "
                                     "price protection doesn't apply."),
                    "window_closed": ("订单 {no} 的价保期已于{d}结束（签收后7天内有效），这次没法补差价了，抱歉。",
                                      "Price protection for order {no} ended on {d} (it lasts 7 days after delivery), "
                                      "so I can't refund a difference now, sorry."),
                    "no_drop": ("帮您核对了，订单 {no} 里的商品现在的价格没有低于您购买时的价格，暂时没有差价可补。",
                                "I checked: nothing in order {no} costs less now than you paid, so there is no "
                                "difference to refund."),
                }
                zh, en = messages.get(error.code, ("无法验证该订单。", "I couldn't verify that order."))
                dispatcher.utter_message(text=t(lang, zh, en, no=tracker.get_slot("order_id") or "",
                                                d=error.detail))
                return _RESET
            zh = lang == "zh"
            claims = result.claims or result.earlier
            variants = {item.id: item.variant for item in order.items}
            lines = [{"sku": variants[c.order_item_id].sku, "quantity": c.quantity,
                      "name": variants[c.order_item_id].product.name_zh if zh
                      else variants[c.order_item_id].product.name_en,
                      "paid": c.paid_unit_price / 100, "now": c.current_unit_price / 100, "amount": c.amount / 100}
                     for c in claims]
            items = ("；" if zh else "; ").join(
                t(lang, "{n} 购买价{a}，现价{b}，×{q}", "{n}: paid {a}, now {b}, x{q}", n=line["name"],
                  a=yuan(c.paid_unit_price), b=yuan(c.current_unit_price), q=c.quantity)
                for line, c in zip(lines, claims))
            total = sum(c.amount for c in claims)
            if not result.claims:
                text = t(lang, "订单 {no} 的差价 {total} 之前已经补过了（{items}），不会重复补。",
                         "The difference on order {no}, {total}, was already paid back ({items}); it is paid once.",
                         no=order.order_no, total=yuan(total), items=items)
            elif payout == "coupon":
                text = t(lang, "价保成功！{items}。差价 {total} 已作为无门槛优惠券 {code} 发放，30天内有效。",
                         "Done! {items}. The difference, {total}, is yours as coupon {code} (no minimum spend, valid "
                         "30 days).", items=items, total=yuan(total), code=result.coupon.code)
            else:
                text = t(lang, "价保成功！{items}。差价 {total} 将在1-3个工作日内原路退回。",
                         "Done! {items}. The difference, {total}, goes back to your payment method within 1-3 working "
                         "days.", items=items, total=yuan(total))
            dispatcher.utter_message(text=text)
            dispatcher.utter_message(json_message={
                "type": "price_protection", "order_id": order.order_no, "payout": claims[0].payout,
                "amount": total / 100, "currency": "CNY", "new": bool(result.claims), "lines": lines,
                "coupon_code": result.coupon.code if result.coupon else None})
        return _RESET + [SlotSet("verified_order", order.order_no)]

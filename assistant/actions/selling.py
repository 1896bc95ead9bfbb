"""Coupons and checkout links: the conversation turns into a purchase."""

from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from assistant.actions.catalog import current_product
from assistant.actions.context import language, latest_entity, shop_session, t, yuan
from assistant.commerce import checkout
from assistant.commerce.models import Coupon
from assistant.commerce.service import CHAT_COUPON_DAYS, Prices, coupon_discount, holder_key, issue_coupon, pick_variant
from assistant.settings import get_settings


class ActionIssueCoupon(Action):
    def name(self) -> str:
        return "action_issue_coupon"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        lang = language(tracker)
        customer_id = tracker.get_slot("customer_id")
        with shop_session() as session:
            coupon, created = issue_coupon(session, holder_key(customer_id, tracker.sender_id), customer_id)
            payload = {"type": "coupon", "code": coupon.code, "discount": coupon.discount / 100,
                       "threshold": coupon.threshold / 100, "currency": "CNY",
                       "expires_at": coupon.expires_at.isoformat(timespec="minutes") + "Z",
                       "title": t(lang, "满{th}减{d}", "¥{d} off ¥{th}+", th=coupon.threshold // 100,
                                  d=coupon.discount // 100)}
        text = t(lang, "给您发了一张满{th}元减{d}元的优惠券，{days}天内有效，结算时自动使用～",
                 "Here's a coupon: ¥{d} off orders of ¥{th} or more, valid for {days} days. It's applied at checkout.",
                 th=coupon.threshold // 100, d=coupon.discount // 100, days=CHAT_COUPON_DAYS) if created else \
            t(lang, "您已经领过这张优惠券啦（每人限领一张），结算时会自动使用。",
              "You already have this coupon (one per shopper); it's applied at checkout.")
        dispatcher.utter_message(text=text)
        dispatcher.utter_message(json_message=payload)
        return [SlotSet("coupon_code", payload["code"])]


class ActionCheckoutLink(Action):
    def name(self) -> str:
        return "action_checkout_link"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        lang = language(tracker)
        settings = get_settings()
        quantity = latest_entity(tracker, "quantity") or tracker.get_slot("quantity") or 1
        quantity = max(1, min(int(float(quantity)), 99))
        with shop_session() as session:
            product = current_product(session, tracker)
            if product is None:
                dispatcher.utter_message(text=t(lang, "想买哪一款呢？先告诉我商品名，我帮您找。",
                                                "Which product would you like? Tell me and I'll find it."))
                return []
            variant = pick_variant(product, color=latest_entity(tracker, "color") or tracker.get_slot("color"),
                                   size=latest_entity(tracker, "size") or tracker.get_slot("size"))
            if variant is None or variant.stock < quantity:
                dispatcher.utter_message(text=t(lang, "抱歉，{name} 这个规格库存不足。", "Sorry, {name} is out of stock in that option.",
                                                name=product.name_zh if lang == "zh" else product.name_en))
                return []
            code = tracker.get_slot("coupon_code")
            coupon = session.scalar(select(Coupon).where(Coupon.code == code)) if code else None
            unit_price = Prices(session).of(variant)
            subtotal = unit_price * quantity
            discount, problem = coupon_discount(coupon, subtotal)
            token = checkout.sign(settings.signing_key(), [(variant.id, quantity)], coupon.code if coupon else None)
            url = f"{settings.gateway_url}/checkout/{token}?lang={lang}"
            name = product.name_zh if lang == "zh" else product.name_en
            colour = variant.color_zh if lang == "zh" else variant.color_en
            payload = {"type": "checkout", "url": url, "currency": "CNY", "subtotal": subtotal / 100,
                       "discount": discount / 100, "total": (subtotal - discount) / 100,
                       "coupon_code": coupon.code if coupon and not problem else None,
                       "expires_in_s": settings.checkout_ttl_s,
                       "items": [{"sku": variant.sku, "name": name, "color": colour, "size": variant.size,
                                  "quantity": quantity, "unit_price": unit_price / 100}]}
        if discount:
            text = t(lang, "已为您生成结算链接：{name}（{colour}/{size}）×{q}，优惠券已抵扣{d}，实付{total}。链接30分钟内有效。",
                     "Your checkout link: {name} ({colour}/{size}) ×{q}, coupon saves {d}, you pay {total}. The link is valid for 30 minutes.",
                     name=name, colour=colour, size=variant.size, q=quantity, d=yuan(discount), total=yuan(subtotal - discount))
        else:
            text = t(lang, "已为您生成结算链接：{name}（{colour}/{size}）×{q}，合计{total}。链接30分钟内有效。",
                     "Your checkout link: {name} ({colour}/{size}) ×{q}, total {total}. The link is valid for 30 minutes.",
                     name=name, colour=colour, size=variant.size, q=quantity, total=yuan(subtotal))
            if problem == "below_threshold":
                text += t(lang, "（未满{th}元，优惠券暂不可用）", " (the coupon needs ¥{th} or more)",
                          th=coupon.threshold // 100)
        dispatcher.utter_message(text=text)
        dispatcher.utter_message(json_message=payload)
        return [SlotSet("product", product.sku)]

"""Product search, product details, price and stock: answers with product cards."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.orm import Session

from assistant.actions.context import image_url, language, latest_entity, shop_session, t, yuan
from assistant.commerce.models import Product
from assistant.commerce.service import find_product, matching_variants, search_products

MAX_CARDS = 6


def product_card(product: Product, lang: str) -> dict[str, Any]:
    stock = sum(v.stock for v in product.variants)
    prices = sorted({v.price for v in product.variants})
    return {
        "sku": product.sku,
        "name": product.name_zh if lang == "zh" else product.name_en,
        "price": prices[0] / 100,
        "price_text": yuan(prices[0]) + ("+" if len(prices) > 1 else ""),
        "currency": "CNY",
        "image": image_url(product.sku),
        "stock": stock,
        "in_stock": stock > 0,
        "buttons": [
            {"title": t(lang, "立即购买", "Buy now"), "payload": f'/place_order{{"product": "{product.sku}"}}'},
            {"title": t(lang, "查库存", "Stock"), "payload": f'/check_stock{{"product": "{product.sku}"}}'},
        ],
    }


def current_product(session: Session, tracker: Tracker) -> Product | None:
    """The product the shopper is talking about: named now, named before, or the first card shown."""
    for ref in (latest_entity(tracker, "product"), tracker.get_slot("product")):
        if ref:
            product = find_product(session, ref)
            if product:
                return product
    shown = tracker.get_slot("shown_products") or []
    return find_product(session, shown[0]) if shown else None


class ActionSearchProducts(Action):
    def name(self) -> str:
        return "action_search_products"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        lang = language(tracker)
        words = [latest_entity(tracker, "product") or ""]
        category = latest_entity(tracker, "category")
        color = latest_entity(tracker, "color")
        budget = latest_entity(tracker, "amount")
        if not any(words) and not category:
            dispatcher.utter_message(
                text=t(lang, "想找什么样的商品呢？可以告诉我品类、颜色或预算。",
                       "What are you looking for? Tell me a kind of product, a colour or a budget."),
                buttons=[{"title": t(lang, zh, en), "payload": f'/product_search{{"category": "{key}"}}'}
                         for key, zh, en in [("apparel", "服饰", "Apparel"), ("shoes", "鞋靴", "Shoes"),
                                             ("skincare", "护肤", "Skincare"), ("electronics", "数码", "Electronics"),
                                             ("home", "家居", "Home"), ("food", "食品", "Food")]])
            return []
        with shop_session() as session:
            max_price = int(float(budget) * 100) if budget else None
            products = search_products(session, words=words, category=category, color=color,
                                       max_price=max_price, limit=MAX_CARDS)
            if not products and color:  # relax the colour before giving up
                products = search_products(session, words=words, category=category, max_price=max_price,
                                           limit=MAX_CARDS)
            if not products:
                dispatcher.utter_message(text=t(
                    lang, "抱歉，暂时没有找到符合条件的商品。换个关键词试试，或者放宽预算？",
                    "Sorry, I couldn't find anything matching that. Try another word or a bigger budget?"))
                return [SlotSet("shown_products", [])]
            cards = [product_card(p, lang) for p in products]
        dispatcher.utter_message(text=t(lang, "为您找到这些商品，看看喜欢哪款～", "Here's what I found for you:"))
        dispatcher.utter_message(json_message={"type": "product_cards", "products": cards})
        return [SlotSet("shown_products", [c["sku"] for c in cards])]


class ActionProductInfo(Action):
    def name(self) -> str:
        return "action_product_info"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        lang = language(tracker)
        with shop_session() as session:
            product = current_product(session, tracker)
            if product is None:
                dispatcher.utter_message(text=t(lang, "您问的是哪一款商品呢？可以先告诉我商品名。",
                                                "Which product do you mean? Tell me its name first."))
                return []
            description = product.description_zh if lang == "zh" else product.description_en
            dispatcher.utter_message(text=t(
                lang, "{name}：{desc} 更详细的参数可以转人工客服为您确认。",
                "{name}: {desc} An agent can confirm any further detail.",
                name=product.name_zh if lang == "zh" else product.name_en, desc=description))
            dispatcher.utter_message(json_message={"type": "product_cards", "products": [product_card(product, lang)]})
            return [SlotSet("product", product.sku)]


class ActionCheckPrice(Action):
    def name(self) -> str:
        return "action_check_price"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        lang = language(tracker)
        with shop_session() as session:
            product = current_product(session, tracker)
            if product is None:
                dispatcher.utter_message(text=t(lang, "想问哪款商品的价格呢？", "Which product's price would you like?"))
                return []
            prices = sorted({v.price for v in product.variants})
            span = yuan(prices[0]) if len(prices) == 1 else f"{yuan(prices[0])} - {yuan(prices[-1])}"
            dispatcher.utter_message(text=t(
                lang, "{name} 现价 {span}。在线咨询可领满199减20元优惠券哦～",
                "{name} costs {span} now. Ask me for a coupon: ¥20 off orders of ¥199 or more.",
                name=product.name_zh if lang == "zh" else product.name_en, span=span))
            return [SlotSet("product", product.sku)]


class ActionCheckStock(Action):
    def name(self) -> str:
        return "action_check_stock"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        lang = language(tracker)
        color = latest_entity(tracker, "color") or tracker.get_slot("color")
        size = latest_entity(tracker, "size") or tracker.get_slot("size")
        with shop_session() as session:
            product = current_product(session, tracker)
            if product is None:
                dispatcher.utter_message(text=t(lang, "想查哪款商品的库存呢？", "Which product should I check?"))
                return []
            name = product.name_zh if lang == "zh" else product.name_en
            variants = matching_variants(product, color=color, size=size)
            rows = []
            for v in variants:
                colour = v.color_zh if lang == "zh" else v.color_en
                state = t(lang, "有货 {n} 件", "{n} in stock", n=v.stock) if v.stock else t(lang, "缺货", "out of stock")
                rows.append({"sku": v.sku, "color": colour, "size": v.size, "stock": v.stock})
                rows[-1]["text"] = f"{colour} / {v.size}: {state}"
            dispatcher.utter_message(text=t(lang, "{name} 库存：\n", "Stock of {name}:\n", name=name)
                                     + "\n".join(r["text"] for r in rows))
            dispatcher.utter_message(json_message={"type": "stock", "sku": product.sku, "variants": rows})
            return [SlotSet("product", product.sku)]

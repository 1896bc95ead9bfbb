"""Product search, product details, price and stock: answers with product cards."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.orm import Session

from assistant.actions.context import demand_outlook, image_url, language, latest_entity, shop_session, t, yuan
from assistant.commerce.models import Product
from assistant.commerce.service import (
    PRICE_RANGE_DAYS,
    Prices,
    find_product,
    matching_variants,
    price_range,
    search_products,
)
from assistant.commerce.stock import VariantStock, variant_stock

MAX_CARDS = 6


def product_card(product: Product, lang: str, prices: Prices) -> dict[str, Any]:
    stock = sum(v.stock for v in product.variants)
    promotion = prices.promotion(product)
    amounts = sorted({prices.of(v) for v in product.variants})
    return {
        "sku": product.sku,
        "name": product.name_zh if lang == "zh" else product.name_en,
        "price": amounts[0] / 100,
        "price_text": yuan(amounts[0]) + ("+" if len(amounts) > 1 else ""),
        "currency": "CNY",
        "image": image_url(product.sku),
        "stock": stock,
        "in_stock": stock > 0,
        "promotion": (promotion.name_zh if lang == "zh" else promotion.name_en) if promotion else None,
        "buttons": [
            {"title": t(lang, "立即购买", "Buy now"), "payload": f'/place_order{{"product": "{product.sku}"}}'},
            {"title": t(lang, "查库存", "Stock"), "payload": f'/check_stock{{"product": "{product.sku}"}}'},
        ],
    }


def _date(day: dt.date, lang: str) -> str:
    return f"{day.month}月{day.day}日" if lang == "zh" else day.strftime("%-d %b")


def stock_text(facts: VariantStock, lang: str) -> str:
    """One variant's stock in words: quantity, or when it comes back and how sure that date is."""
    if facts.stock > 0:
        text = t(lang, "有货 {n} 件", "{n} in stock", n=facts.stock)
        if facts.sell_out_days is not None:
            text += t(lang, "（按近期销量，{d} 天内可能售罄）", " (at the current pace, likely to sell out within {d} days)",
                      d=facts.sell_out_days)
        return text
    if facts.restock_on is None:
        return t(lang, "缺货，暂无补货日期", "out of stock, no restock date yet")
    if facts.restock_estimated:
        return t(lang, "缺货，预计约 {day} 补货（根据销量预测估算，并非确定日期）",
                 "out of stock; restock estimated around {day} (an estimate from our sales forecast, not a "
                 "confirmed date)", day=_date(facts.restock_on, lang))
    return t(lang, "缺货，下一批预计 {day} 到货", "out of stock; the next delivery is due on {day}",
             day=_date(facts.restock_on, lang))


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
            prices = Prices(session)
            cards = [product_card(p, lang, prices) for p in products]
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
            card = product_card(product, lang, Prices(session))
            dispatcher.utter_message(json_message={"type": "product_cards", "products": [card]})
            return [SlotSet("product", product.sku)]


def price_facts(session: Session, product: Product, lang: str, variants: list | None = None,
                now: dt.datetime | None = None) -> dict[str, Any]:
    """A product's price now (promotion applied), the promotion, and the range of the last
    ``PRICE_RANGE_DAYS`` days: the same for every shopper who asks."""
    prices = Prices(session, now)
    variants = variants or list(product.variants)
    promotion = prices.promotion(product)
    current = sorted({prices.of(v) for v in variants})
    low, high = price_range(session, variants, prices.now - dt.timedelta(days=PRICE_RANGE_DAYS))
    low = min(low, current[0])  # a promotion running now is part of the recent range
    facts = {"type": "price", "sku": product.sku, "currency": "CNY", "price": current[0] / 100,
             "price_max": current[-1] / 100, "range_days": PRICE_RANGE_DAYS,
             "range": [low / 100, high / 100], "promotion": None,
             "variants": [{"sku": v.sku, "color": v.color_zh if lang == "zh" else v.color_en, "size": v.size,
                           "price": prices.of(v) / 100} for v in variants]}
    if promotion:
        facts["promotion"] = {"name": promotion.name_zh if lang == "zh" else promotion.name_en,
                              "percent_off": promotion.percent_off,
                              "ends_at": promotion.ends_at.isoformat(timespec="minutes")}
    return facts


def price_text(facts: dict[str, Any], name: str, lang: str) -> str:
    low, high = facts["price"], facts["price_max"]
    span = yuan(round(low * 100)) if low == high else f"{yuan(round(low * 100))} - {yuan(round(high * 100))}"
    text = t(lang, "{name} 现价 {span}", "{name} costs {span} now", name=name, span=span)
    promotion = facts["promotion"]
    if promotion:
        # the last day it runs: a promotion ending at midnight ends with the day before
        ends = dt.datetime.fromisoformat(promotion["ends_at"]) - dt.timedelta(seconds=1)
        text += t(lang, "（已含「{p}」优惠，活动到{m}月{d}日）", " ({p} included, until {day})", p=promotion["name"],
                  m=ends.month, d=ends.day, day=ends.strftime("%-d %b"))
    else:
        text += t(lang, "，目前没有进行中的促销活动", "; no promotion is running on it at the moment")
    r_low, r_high = facts["range"]
    if r_low != r_high:
        text += t(lang, "。近{n}天价格在 {a} 到 {b} 之间。", ". Over the last {n} days it was between {a} and {b}.",
                  n=facts["range_days"], a=yuan(round(r_low * 100)), b=yuan(round(r_high * 100)))
    else:
        text += t(lang, "。近{n}天价格没有变动。", ". The price has not changed in the last {n} days.",
                  n=facts["range_days"])
    return text


class ActionCheckPrice(Action):
    def name(self) -> str:
        return "action_check_price"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        lang = language(tracker)
        color = latest_entity(tracker, "color") or tracker.get_slot("color")
        size = latest_entity(tracker, "size") or tracker.get_slot("size")
        with shop_session() as session:
            product = current_product(session, tracker)
            if product is None:
                dispatcher.utter_message(text=t(lang, "想问哪款商品的价格呢？", "Which product's price would you like?"))
                return []
            facts = price_facts(session, product, lang, matching_variants(product, color=color, size=size))
            name = product.name_zh if lang == "zh" else product.name_en
            dispatcher.utter_message(text=price_text(facts, name, lang))
            dispatcher.utter_message(json_message=facts)
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
            outlook = demand_outlook(session)
            today = dt.date.today()
            rows = []
            for v in variants:
                colour = v.color_zh if lang == "zh" else v.color_en
                facts = variant_stock(v, outlook, today)
                rows.append({"color": colour, "size": v.size, **facts.to_dict()})
                rows[-1]["text"] = f"{colour} / {v.size}: {stock_text(facts, lang)}"
            dispatcher.utter_message(text=t(lang, "{name} 库存：\n", "Stock of {name}:\n", name=name)
                                     + "\n".join(r["text"] for r in rows))
            dispatcher.utter_message(json_message={"type": "stock", "sku": product.sku, "variants": rows})
            return [SlotSet("product", product.sku)]

"""The whole stack, as a shopper's widget sees it: gateway -> Rasa -> NLU server and actions."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from sqlalchemy import select

from assistant.commerce.db import session_factory
from assistant.commerce.models import Coupon, Customer, Order, TranscriptMessage
from tests.chat_client import ChatClient, of_type, texts

pytestmark = pytest.mark.e2e


def an_order(stack, status: str, language: str = "en") -> tuple[str, str]:
    """(order number, last 4 phone digits) of a demo order in ``status``."""
    with session_factory(stack.settings.db_url)() as session:
        order = session.scalars(select(Order).join(Customer).where(Order.status == status,
                                                                     Customer.language == language)
                                .order_by(Order.id)).first()  # the same order on SQLite and PostgreSQL
        return order.order_no, order.customer.phone[-4:]


def test_chinese_shopper_gets_cards_coupon_and_discounted_checkout(stack):
    chat = ChatClient(stack.ws_url, "zh")
    cards = of_type(chat.say("我想买一件羽绒服"), "product_cards")
    assert cards and cards[0]["products"], "a product search answers with product cards"
    product = cards[0]["products"][0]
    assert "羽绒服" in product["name"] and product["image"].endswith(".svg") and product["price"] > 0

    coupon = of_type(chat.say("有优惠券吗"), "coupon")[0]
    assert re.fullmatch(r"CP[0-9A-F]{8}", coupon["code"])
    again = of_type(chat.say("再给我一张优惠券"), "coupon")
    assert not again or again[0]["code"] == coupon["code"], "one coupon per shopper"

    checkout = of_type(chat.say("我要买这个"), "checkout")[0]
    assert checkout["discount"] == coupon["discount"] and checkout["total"] == checkout["subtotal"] - coupon["discount"]
    page = httpx.get(checkout["url"])
    assert page.status_code == 200 and coupon["code"] in page.text and "-¥20.00" in page.text

    with session_factory(stack.settings.db_url)() as session:
        stored = session.scalar(select(Coupon).where(Coupon.code == coupon["code"]))
        assert stored.threshold == 19900 and stored.discount == 2000 and stored.holder_key.startswith("visitor:")
    chat.close()


def test_checkout_link_is_signed(stack):
    chat = ChatClient(stack.ws_url, "en")
    chat.say("show me running shoes")
    url = of_type(chat.say("i'll take it"), "checkout")[0]["url"]
    token = url.split("/checkout/")[1].split("?")[0]
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert httpx.get(f"{stack.gateway}/checkout/{tampered}").status_code == 400
    chat.close()


def test_english_shopper_checks_own_order_and_is_refused_anothers(stack):
    own, own_digits = an_order(stack, "shipped")
    other, other_digits = an_order(stack, "delivered")
    wrong = "0000" if other_digits != "0000" else "1111"
    chat = ChatClient(stack.ws_url, "en")
    asked = texts(chat.say("where is my order?"))
    assert "order number" in asked
    assert "last 4 digits" in texts(chat.say(own))
    replies = chat.say(own_digits)
    order = of_type(replies, "order")[0]
    assert order["order_id"] == own and order["status"] == "shipped" and order["events"]

    chat.say(f"track my order {other}")
    refusal = chat.say(wrong)
    assert "don't match" in texts(refusal) and not of_type(refusal, "order")
    missing = chat.say("KF99999999")
    assert "can't find order KF99999999" in texts(missing)
    chat.close()


def test_bad_input_gets_clear_errors_and_loses_nothing(stack):
    chat = ChatClient(stack.ws_url, "en")
    first = chat.say("hello")
    assert of_type(first, "buttons") or of_type(first, "text")

    cases = [
        ("{not json", "malformed_json"),
        (json.dumps({"type": "sticker"}), "unknown_type"),
        (json.dumps({"type": "text", "text": 42, "client_id": "x"}), "invalid_message"),
        (json.dumps({"type": "text", "text": "x" * 2001, "client_id": "long"}), "text_too_long"),
        (json.dumps({"type": "text", "text": "y" * 70_000, "client_id": "huge"}), "frame_too_large"),
        (json.dumps([1, 2, 3]), "unknown_type"),
        (json.dumps({"type": "audio", "data": "...."}), "invalid_message"),  # no client_id
        (json.dumps({"type": "audio", "data": "....", "client_id": "a1"}), "audio_invalid_base64"),
    ]
    for frame, code in cases:
        chat.send_raw(frame)
        reply = chat.recv()
        assert reply["type"] == "error" and reply["code"] == code and reply["text"], (code, reply)

    after = chat.say("thanks")  # the session survives
    assert texts(after)
    history = ChatClient(stack.ws_url, "en", resume=(chat.conversation_id, 0)).drain()
    said = [m.get("text") for m in history if m["sender"] == "shopper"]
    assert said == ["hello", "thanks"]
    seqs = [m["seq"] for m in history]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    chat.close()


def test_reconnect_resumes_without_loss_or_duplicates(stack):
    chat = ChatClient(stack.ws_url, "zh")
    chat.say("你好", client_id="hello-1")
    last_seq = max(m["seq"] for m in chat.say("运费多少", client_id="faq-1"))
    chat.close()

    again = ChatClient(stack.ws_url, "zh", resume=(chat.conversation_id, last_seq))
    assert again.welcome["resumed"] and again.drain() == []
    resent = again.say("运费多少", client_id="faq-1")  # the widget resends an unacknowledged message
    assert resent[0]["seq"] <= last_seq, "a resent message is stored once"
    with session_factory(stack.settings.db_url)() as session:
        rows = session.scalars(select(TranscriptMessage).where(
            TranscriptMessage.conversation_id == chat.conversation_id).order_by(TranscriptMessage.seq)).all()
    shopper = [r.body["text"] for r in rows if r.sender == "shopper"]
    assert shopper == ["你好", "运费多少"]
    answer = texts(resent)
    assert "99" in answer, "the FAQ answer (free shipping over ¥99) is replayed"
    again.close()


def test_nlu_server_parses_messages_and_rejects_malformed_requests(stack):
    url = f"http://127.0.0.1:{stack.settings.nlu_port}/model/parse"
    ok = httpx.post(url, json={"text": "我想买两件黑色羽绒服", "message_id": "m1"}).json()
    assert ok["intent"]["name"] == "product_search"
    assert {"quantity", "color", "product"} <= {e["entity"] for e in ok["entities"]}
    empty = httpx.post(url, json={"text": ""}).json()
    assert empty["intent"] == {"name": "nlu_fallback", "confidence": 1.0}
    for body in (b"{broken", b'{"text": 5}', b"[]"):
        reply = httpx.post(url, content=body)
        assert reply.status_code == 400 and reply.json()["error"] == "invalid_request"
    postback = httpx.post(url, json={"text": '/place_order{"product": "AP000"}'}).json()
    assert postback["intent"] == {"name": "place_order", "confidence": 1.0}
    assert postback["entities"][0]["value"] == "AP000"


def test_a_question_asked_while_a_form_waits_is_answered_and_the_form_asks_again(stack):
    """A shopper asked for an order number asks a store-policy question instead: the knowledge base
    answers it (with its source), the form asks for the number again, and the lookup then goes on; a
    warranty question (its own intent) is answered the same way."""
    own, own_digits = an_order(stack, "shipped")
    chat = ChatClient(stack.ws_url, "en")
    assert "order number" in texts(chat.say("where is my order?"))
    replies = chat.say("do you deliver to Macau?")
    assert "mainland China" in texts(replies) and "doesn't look like an order number" not in texts(replies)
    assert of_type(replies, "citations")[0]["sources"][0]["key"] == "delivery_area"
    assert texts(replies[-1:]).startswith("What's your order number")  # asked again, last
    assert "last 4 digits" in texts(chat.say(own))
    order = of_type(chat.say(own_digits), "order")[0]
    assert order["order_id"] == own and order["status"] == "shipped"
    chat.close()

    chat = ChatClient(stack.ws_url, "zh")
    assert "订单号" in texts(chat.say("我的订单到哪了"))
    replies = chat.say("你们发货到澳门吗")
    assert "中国大陆" in texts(replies) and "不像订单号" not in texts(replies)
    assert "订单号" in texts(replies[-1:])
    replies = chat.say("耳机保修期过了坏了一边能修吗")  # a question with its own intent (warranty_repair)
    assert "1年质保" in texts(replies) and "不像订单号" not in texts(replies)
    assert "订单号" in texts(replies[-1:])
    chat.close()


def test_faq_answers_come_from_the_knowledge_base_with_sources(stack):
    chat = ChatClient(stack.ws_url, "en")
    replies = chat.say("do you deliver to Macau?")
    assert "mainland China" in texts(replies)
    sources = of_type(replies, "citations")[0]["sources"]
    assert sources[0]["key"] == "delivery_area" and sources[0]["title"]

    unknown = chat.say("do you offer engraving?")
    assert of_type(unknown, "unanswered") and "human" in texts(unknown).lower()
    auth = {"Authorization": f"Bearer {stack.env['KEFU_ADMIN_TOKEN']}"}
    inbox = httpx.get(f"{stack.gateway}/api/admin/kb/unanswered", headers=auth).json()["items"]
    assert any("engraving" in group["text"] for group in inbox)
    chat.close()


def test_a_published_faq_is_answered_in_the_widget_right_away(stack):
    auth = {"Authorization": f"Bearer {stack.env['KEFU_ADMIN_TOKEN']}"}
    entry = {"key": "engraving_service", "category": "products", "tags": ["刻字", "engraving"],
             "questions_zh": ["可以刻字吗", "能帮我刻名字吗"], "questions_en": ["can you engrave my initials",
                                                                  "do you offer engraving"],
             "answer_zh": "皮具和保温杯支持免费刻字（最多8个字符），下单时在备注里写上内容即可。",
             "answer_en": "Leather goods and tumblers can be engraved for free (up to 8 characters); "
                          "write the text in the order notes.", "status": "draft"}
    created = httpx.post(f"{stack.gateway}/api/admin/kb/faqs", json=entry, headers=auth)
    assert created.status_code == 201, created.text
    published = httpx.post(f"{stack.gateway}/api/admin/kb/faqs/{created.json()['id']}/publish", headers=auth)
    assert published.json()["status"] == "published"
    chat = ChatClient(stack.ws_url, "en")
    replies = chat.say("do you offer engraving on wallets")
    assert "engraved for free" in texts(replies)
    assert of_type(replies, "citations")[0]["sources"][0]["key"] == "engraving_service"
    chat.close()


def test_stock_answers_give_quantities_and_restock_dates(stack):
    from assistant.commerce.models import PurchaseOrder, Variant

    with session_factory(stack.settings.db_url)() as session:
        order = session.scalars(select(PurchaseOrder).join(Variant).where(
            Variant.stock == 0, PurchaseOrder.status == "open").order_by(PurchaseOrder.expected_on)).first()
        variant, product = order.variant, order.variant.product
        due = f"{order.expected_on.month}月{order.expected_on.day}日"
        expected_line = f"{variant.color_zh} / {variant.size}: 缺货，下一批预计 {due} 到货"
        sku, name_en, in_stock = product.sku, product.name_en, {v.sku: v.stock for v in product.variants}
    chat = ChatClient(stack.ws_url, "zh")
    replies = chat.say(f'/check_stock{{"product": "{sku}"}}')
    assert expected_line in texts(replies)
    rows = {r["sku"]: r for r in of_type(replies, "stock")[0]["variants"]}
    assert rows[variant.sku]["restock_on"] == order.expected_on.isoformat()
    assert not rows[variant.sku]["restock_estimated"]
    assert {s: r["stock"] for s, r in rows.items()} == in_stock
    for row in rows.values():  # urgency only for what is in stock, within two weeks
        if row["sell_out_days"] is not None:
            assert row["stock"] > 0 and 1 <= row["sell_out_days"] <= 14 and "天内可能售罄" in row["text"]
        if row["restock_estimated"]:
            assert "估算" in row["text"] and "并非确定日期" in row["text"]
    chat.close()

    english = ChatClient(stack.ws_url, "en")
    text = texts(english.say(f"is the {name_en} in stock?"))
    assert "out of stock; the next delivery is due on" in text
    english.close()


def test_merchant_gets_reorder_suggestions(stack):
    auth = {"Authorization": f"Bearer {stack.env['KEFU_ADMIN_TOKEN']}"}
    assert httpx.get(f"{stack.gateway}/api/admin/commerce/reorder").status_code == 401
    reply = httpx.get(f"{stack.gateway}/api/admin/commerce/reorder", headers=auth, timeout=60)
    assert reply.status_code == 200, reply.text
    items = reply.json()["items"]
    assert items and all(i["suggested_quantity"] > 0 for i in items)
    first = items[0]
    assert first["suggested_quantity"] >= first["demand_over_lead_time"] + first["safety_stock"] - first["stock"] \
        - first["inbound"] - 1
    forecast = httpx.get(f"{stack.gateway}/api/admin/commerce/forecast/{first['product_sku']}", headers=auth).json()
    assert len(forecast["median"]) == 28 and all(lo <= m <= hi for lo, m, hi in
                                                  zip(forecast["low"], forecast["median"], forecast["high"]))
    assert httpx.get(f"{stack.gateway}/api/admin/commerce/forecast/NOPE", headers=auth).status_code == 404


def _price_ask(stack, sku: str, language: str, customer_token: str | None = None) -> list[dict]:
    chat = ChatClient(stack.ws_url, language, customer_token=customer_token)
    try:
        return chat.postback(f'/check_price{{"product": "{sku}"}}')
    finally:
        chat.close()


def test_price_answers_give_the_price_the_promotion_and_the_recent_range(stack):
    import datetime as dt

    from assistant.commerce.models import Category, PriceChange, Product, Variant
    from assistant.commerce.service import Prices

    with session_factory(stack.settings.db_url)() as session:
        cut = session.scalars(select(PriceChange).join(Variant).join(Product).join(Category)
                              .where(PriceChange.source == "demo", Category.key != "skincare")).first()
        product = session.get(Variant, cut.variant_id).product
        prices = Prices(session)
        now_low = min(prices.of(v) for v in product.variants)
        old_high = max([c.previous for c in session.scalars(select(PriceChange).where(
            PriceChange.variant_id.in_([v.id for v in product.variants])))] + [v.price for v in product.variants])
        sku = product.sku
        skincare = session.scalars(select(Product).join(Category).where(Category.key == "skincare")).first()
        promoted = {v.sku: prices.of(v) for v in skincare.variants}
        listed = {v.sku: v.price for v in skincare.variants}
    replies = _price_ask(stack, sku, "zh")
    assert of_type(replies, "price"), replies
    facts = of_type(replies, "price")[0]
    assert facts["price"] == now_low / 100 and facts["promotion"] is None
    assert facts["range"] == [now_low / 100, old_high / 100]  # the cut: today's price is the lowest
    text = texts(replies)
    assert f"现价 ¥{now_low / 100:,.2f}".replace(".00", "") in text and "目前没有进行中的促销活动" in text
    assert "近30天价格在" in text

    english = of_type(_price_ask(stack, skincare.sku, "en"), "price")[0]
    assert english["promotion"]["name"] == "Skincare week: 10% off" and english["promotion"]["percent_off"] == 10
    assert {v["sku"]: round(v["price"] * 100) for v in english["variants"]} == promoted
    assert all(promoted[s] < listed[s] for s in listed)
    assert dt.datetime.fromisoformat(english["promotion"]["ends_at"]) > dt.datetime.now()


def test_two_shoppers_asking_at_once_get_the_same_price_and_the_engine_moves_it(stack):
    import subprocess
    import threading

    from itsdangerous import URLSafeTimedSerializer

    from assistant.actions.orders import CUSTOMER_TOKEN_SALT
    from assistant.commerce.models import PriceChange, Product, Variant
    from assistant.settings import PROJECT_ROOT

    with session_factory(stack.settings.db_url)() as session:
        product = session.scalars(select(Product).join(Variant).where(Product.sku.like("EL%"))).first()
        sku = product.sku
        customer_id = session.scalars(select(Customer.id)).first()
    token = URLSafeTimedSerializer("test-secret-key", salt=CUSTOMER_TOKEN_SALT).dumps({"customer_id": customer_id})
    answers: dict[str, dict] = {}
    start = threading.Barrier(2)

    def ask(who: str, customer_token: str | None) -> None:
        start.wait()
        answers[who] = of_type(_price_ask(stack, sku, "en", customer_token), "price")[0]

    threads = [threading.Thread(target=ask, args=("visitor", None)),
               threading.Thread(target=ask, args=("member", token))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert answers["visitor"]["variants"] == answers["member"]["variants"]
    assert answers["visitor"]["price"] == answers["member"]["price"]

    # the engine re-prices (what `kefu pricing serve` does every 15 minutes); the answer follows it
    done = subprocess.run([str(PROJECT_ROOT / ".venv" / "bin" / "kefu"), "pricing", "reprice"], env=stack.env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with session_factory(stack.settings.db_url)() as session:
        moves = session.scalars(select(PriceChange).where(PriceChange.source == "engine")).all()
        assert moves, done.stdout
        move = moves[0]
        moved = session.get(Variant, move.variant_id).product
        sku, now = moved.sku, {v.sku: v.price for v in moved.variants}
        assert all(v.cost * 1.1 <= v.price <= v.list_price * 1.3 for v in moved.variants)
    after = of_type(_price_ask(stack, sku, "en"), "price")[0]
    assert {v["sku"]: round(v["price"] * 100) for v in after["variants"]} == now
    # the range remembers the price before the move
    assert after["range"][0] <= min(move.price, move.previous) / 100
    assert after["range"][1] >= max(move.price, move.previous) / 100


def _protected_order(stack, language: str, *, dropped: bool) -> tuple[str, str, int]:
    """A recent delivered order (inside the 7-day window) with or without a price drop since;
    (order number, phone digits, the difference in fen)."""
    import datetime as dt

    from assistant.commerce.service import Prices

    with session_factory(stack.settings.db_url)() as session:
        prices = Prices(session)
        since = dt.datetime.now() - dt.timedelta(days=6)
        for order in session.scalars(select(Order).join(Customer).where(
                Order.status == "delivered", Customer.language == language).order_by(Order.created_at.desc())):
            delivered = next((e.occurred_at for e in order.events if e.status == "delivered"), None)
            if delivered is None or delivered < since:
                continue
            difference = sum(max(0, i.unit_price - prices.of(i.variant)) * i.quantity for i in order.items)
            if (difference > 0) == dropped:
                return order.order_no, order.customer.phone[-4:], difference
    pytest.fail("the demo shop has no such order")


def test_price_protection_pays_a_drop_once_through_the_dialog(stack):
    from assistant.commerce.models import PriceProtectionClaim

    order_no, digits, difference = _protected_order(stack, "en", dropped=True)
    chat = ChatClient(stack.ws_url, "en")
    asked = texts(chat.say("the price dropped right after I bought it, can I get the difference back?"))
    assert "within 7 days of delivery" in asked and "order number" in asked
    chat.say(order_no)
    replies = chat.say(digits)
    assert of_type(replies, "price_protection"), texts(replies)
    claim = of_type(replies, "price_protection")[0]
    assert claim["order_id"] == order_no and claim["new"] and claim["payout"] == "refund"
    assert round(claim["amount"] * 100) == difference
    assert "goes back to your payment method" in texts(replies)
    chat.close()
    with session_factory(stack.settings.db_url)() as session:
        stored = session.scalars(select(PriceProtectionClaim).join(Order).where(Order.order_no == order_no)).all()
        assert sum(c.amount for c in stored) == difference

    again = ChatClient(stack.ws_url, "en")
    again.postback("/price_protection")
    again.say(order_no)
    repeat = again.say(digits)
    assert "already paid back" in texts(repeat) and not of_type(repeat, "price_protection")[0]["new"]
    again.close()

    other_no, other_digits, _ = _protected_order(stack, "zh", dropped=False)
    chinese = ChatClient(stack.ws_url, "zh")
    assert "订单号" in texts(chinese.say("买了没几天就降价了，能申请价保吗"))
    chinese.say(other_no)
    wrong = "0000" if other_digits != "0000" else "1111"
    assert "不符" in texts(chinese.say(wrong))  # someone else's order: nothing about it is shown
    chinese.say(other_no)
    assert "没有差价可补" in texts(chinese.say(other_digits))
    chinese.close()

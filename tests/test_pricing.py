"""Dynamic pricing: guardrails as properties, elasticities recovered from sales, the agent's engine,
promotions, price history and price protection."""

from __future__ import annotations

import datetime as dt
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.commerce import db, demo, pricing
from assistant.commerce.models import (
    Category,
    Coupon,
    Order,
    OrderItem,
    PriceChange,
    PriceProtectionClaim,
    Product,
    Promotion,
    ShipmentEvent,
    Variant,
)
from assistant.commerce.service import Prices, ShopError, price_protection, price_range

GUARDS = st.builds(pricing.Guardrails, min_margin=st.floats(0.0, 0.5), ceiling=st.floats(1.0, 2.0),
                   max_step=st.floats(0.01, 0.2))
FEN = st.integers(100, 500_000)


@st.composite
def situations(draw):  # type: ignore[no-untyped-def]
    guards = draw(GUARDS)
    cost = draw(FEN)
    list_price = draw(st.integers(cost, cost * 4))
    current = draw(st.integers(max(10, cost // 2), list_price * 3))
    proposed = draw(st.floats(0, list_price * 5))
    return guards, proposed, current, cost, list_price


@settings(max_examples=400, deadline=None)
@given(situations())
def test_a_guarded_price_is_never_below_the_floor_nor_above_the_ceiling(case):
    guards, proposed, current, cost, list_price = case
    price = guards.apply(proposed, current, cost, list_price)
    assert price >= cost * (1 + guards.min_margin) - 1e-6
    assert price <= max(list_price * guards.ceiling, guards.floor_price(cost)) + 1e-6  # 380 x 1.9999999999999998 is 760
    assert price % 10 == 0 or price == current


@settings(max_examples=400, deadline=None)
@given(situations())
def test_a_guarded_price_moves_at_most_the_maximum_step_from_a_legal_price(case):
    guards, proposed, current, cost, list_price = case
    floor, ceiling = guards.floor_price(cost), guards.ceiling_price(list_price, cost)
    price = guards.apply(proposed, current, cost, list_price)
    if floor <= current <= ceiling:
        assert abs(price - current) <= guards.max_step * current + 1e-6
    assert guards.violations(current, price, cost, list_price) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(situations(), min_size=1, max_size=20))
def test_the_vectorised_guardrails_agree_with_the_scalar_ones(cases):
    guards = cases[0][0]
    proposed, current, cost, list_price = (np.array([c[i] for c in cases], float) for i in range(1, 5))
    many = guards.apply_many(proposed, current, cost, list_price)
    one = [guards.apply(p, int(c), int(k), int(lp)) for p, c, k, lp in zip(proposed, current, cost, list_price)]
    assert many.tolist() == one
    assert guards.count_violations(current, many, cost, list_price) == {"floor": 0, "ceiling": 0, "max_step": 0}


def test_the_violation_check_catches_what_apply_would_never_do():
    guards = pricing.Guardrails(min_margin=0.1, ceiling=1.3, max_step=0.05)
    assert guards.violations(10_000, 5_000, 6_000, 10_000) == ["floor", "max_step"]
    assert guards.violations(10_000, 14_000, 6_000, 10_000) == ["ceiling", "max_step"]
    assert guards.violations(10_000, 10_600, 6_000, 10_000) == ["max_step"]
    assert guards.violations(10_000, 10_500, 6_000, 10_000) == []


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('pricing') / 'shop.db'}"
    db.upgrade(url)
    with db.session_factory(url)() as session:
        demo.generate(session, seed=7, today=dt.date.today())
    return url


def test_elasticities_estimated_from_the_sales_history_are_negative_and_precise(shop):
    with db.session_factory(shop)() as session:
        elasticities = pricing.estimate_elasticities(session)
        products = session.query(Product).count()
    assert len(elasticities) == products
    values = np.array([e.elasticity for e in elasticities.values()])
    # the demo draws true elasticities between -2.8 and -1.1
    assert np.median(values) == pytest.approx(-1.95, abs=0.35)
    assert np.mean((values > -3.3) & (values < -0.8)) > 0.9
    assert np.median([e.std_error for e in elasticities.values()]) < 0.4
    assert all(e.daily_units > 0 for e in elasticities.values())


def _tiny_products() -> list[pricing.SimProduct]:
    return [pricing.SimProduct("A", 10_000, 4_000, -2.5, 20.0), pricing.SimProduct("B", 20_000, 6_000, -1.2, 8.0),
            pricing.SimProduct("C", 5_000, 3_000, -3.0, 40.0)]


def test_the_simulator_sells_less_at_higher_prices_and_follows_the_clock():
    sim = pricing.Simulator(_tiny_products())
    low = sim.expected_units(sim.list_price * 0.9, step=50)
    high = sim.expected_units(sim.list_price * 1.1, step=50)
    assert np.all(low > high)
    night, evening = sim.expected_units(sim.list_price, step=12), sim.expected_units(sim.list_price, step=84)
    assert np.all(evening > 5 * night)
    # a day at list price sells about the daily demand (weekday factor 0.95 on a Monday)
    day = sum(sim.expected_units(sim.list_price, step=s) for s in range(pricing.STEPS_PER_DAY))
    assert day == pytest.approx(sim.daily * 0.95, rel=1e-6)


def test_the_agent_learns_to_beat_the_rule_within_the_guardrails_and_survives_a_reload(tmp_path):
    products = _tiny_products()
    agent = pricing.train_agent(pricing.Simulator(products), pricing.AgentConfig(episodes=12, episode_days=2))
    result = pricing.evaluate(agent, products, days=14, seeds=(1,))
    assert all(p["violations_total"] == 0 for p in result["policies"].values())
    assert result["policies"]["dqn"]["gross_margin_yuan"] > result["policies"]["rule"]["gross_margin_yuan"]
    agent.save(tmp_path)
    again = pricing.Agent.load(tmp_path)
    state = pricing.Simulator(products).observe()
    assert np.array_equal(again.act(state), agent.act(state))
    assert again.meta["version"] == pricing.ARTIFACT_VERSION and again.simulated_products() == products
    plot = pricing.write_report(result, tmp_path / "report")
    assert plot.stat().st_size > 10_000 and (tmp_path / "report" / "pricing_report.json").exists()


def _shop_with_one_product(tmp_path):
    url = f"sqlite:///{tmp_path / 'one.db'}"
    db.upgrade(url)
    session = db.session_factory(url)()
    category = Category(key="home", name_zh="家居", name_en="Home")
    product = Product(sku="HO000", category=category, brand="b", name_zh="杯", name_en="Cup", description_zh="",
                      description_en="", price=10_000, cost=4_000, image_hue=0)
    product.variants = [Variant(sku=f"HO000-{i}", color_zh="白", color_en="white", size=str(i), price=10_000 + i * 1000,
                                list_price=10_000 + i * 1000, cost=4_000, stock=5) for i in range(2)]
    session.add(product)
    session.commit()
    return session, product


def test_the_engine_moves_every_variant_within_the_guardrails_and_records_the_history(tmp_path):
    session, product = _shop_with_one_product(tmp_path)
    products = [pricing.SimProduct("HO000", 10_000, 4_000, -1.2, 10.0)]  # inelastic: it should go up
    agent = pricing.train_agent(pricing.Simulator(products), pricing.AgentConfig(episodes=6, episode_days=1),
                                elasticities={"HO000": pricing.Elasticity("HO000", -1.2, 0.1, 10.0, 700)})
    engine = pricing.PricingEngine(agent)
    now = dt.datetime(2026, 11, 20, 20, 0)
    for step in range(8):
        before = {v.id: v.price for v in product.variants}
        changes = engine.reprice(session, now + dt.timedelta(minutes=15 * step))
        for change in changes:
            assert change.previous == before[change.variant_id]
            assert not agent.guardrails.violations(change.previous, change.price, 4_000,
                                                   session.get(Variant, change.variant_id).list_price)
    history = session.query(PriceChange).all()
    assert history and product.variants[0].price > 10_000
    # a running promotion freezes the product's price
    session.add(Promotion(name_zh="家居节", name_en="Home week", category_id=product.category_id, percent_off=10,
                          starts_at=now, ends_at=now + dt.timedelta(days=3)))
    session.commit()
    assert engine.reprice(session, now + dt.timedelta(hours=3)) == []


def test_promotions_and_the_recent_price_range(tmp_path):
    session, product = _shop_with_one_product(tmp_path)
    now = dt.datetime(2026, 11, 20, 12)
    variant = product.variants[0]
    session.add(PriceChange(variant_id=variant.id, price=9_000, previous=10_000, changed_at=now - dt.timedelta(days=40),
                            source="merchant"))  # too old to count
    session.add(PriceChange(variant_id=variant.id, price=10_000, previous=12_000, changed_at=now - dt.timedelta(days=5),
                            source="merchant"))
    session.add_all([
        Promotion(name_zh="全场", name_en="Shop-wide", percent_off=5, starts_at=now - dt.timedelta(days=1),
                  ends_at=now + dt.timedelta(days=1)),
        Promotion(name_zh="杯子节", name_en="Cup day", product_id=product.id, percent_off=20,
                  starts_at=now + dt.timedelta(hours=1), ends_at=now + dt.timedelta(days=1))])
    session.commit()
    prices = Prices(session, now)
    assert prices.promotion(product).name_en == "Shop-wide" and prices.of(variant) == 9_500
    later = Prices(session, now + dt.timedelta(hours=2))
    assert later.promotion(product).name_en == "Cup day" and later.of(variant) == 8_000  # its own beats the shop's
    assert price_range(session, [variant], now - dt.timedelta(days=30)) == (10_000, 12_000)


def _order(session, product, *, paid: int, delivered_days_ago: float | None, status: str = "delivered") -> Order:
    from assistant.commerce.models import Customer

    customer = Customer(name="王芳", phone="13800001234", email="w@example.cn", address="上海", language="zh",
                        created_at=dt.datetime(2025, 1, 1))
    now = dt.datetime.now().replace(microsecond=0)
    order = Order(order_no=f"KF{np.random.randint(10**7, 10**8)}", customer=customer, status=status,
                  created_at=now - dt.timedelta(days=12), total=paid * 2, shipping_address="上海")
    order.items = [OrderItem(variant=product.variants[0], quantity=2, unit_price=paid)]
    if delivered_days_ago is not None:
        order.events = [ShipmentEvent(occurred_at=now - dt.timedelta(days=delivered_days_ago), status="delivered",
                                      location_zh="上海", location_en="Shanghai")]
    session.add(order)
    session.commit()
    return order


def test_price_protection_pays_the_difference_once_inside_the_window(tmp_path):
    session, product = _shop_with_one_product(tmp_path)
    order = _order(session, product, paid=12_000, delivered_days_ago=3)
    result = price_protection(session, order, conversation_id="c1")
    assert [c.amount for c in result.claims] == [(12_000 - 10_000) * 2] and result.claims[0].payout == "refund"
    again = price_protection(session, order)
    assert again.claims == [] and [c.amount for c in again.earlier] == [4_000]
    assert session.query(PriceProtectionClaim).count() == 1

    coupon_order = _order(session, product, paid=11_000, delivered_days_ago=1)
    paid_as_coupon = price_protection(session, coupon_order, payout="coupon")
    assert paid_as_coupon.coupon.discount == 2_000 and paid_as_coupon.coupon.threshold == 0
    assert session.query(Coupon).filter_by(code=paid_as_coupon.coupon.code).one().customer_id == coupon_order.customer_id

    with pytest.raises(ShopError) as late:
        price_protection(session, _order(session, product, paid=12_000, delivered_days_ago=8))
    assert late.value.code == "window_closed"
    with pytest.raises(ShopError) as cheaper:
        price_protection(session, _order(session, product, paid=9_000, delivered_days_ago=1))
    assert cheaper.value.code == "no_drop"
    with pytest.raises(ShopError) as cancelled:
        price_protection(session, _order(session, product, paid=12_000, delivered_days_ago=None, status="cancelled"))
    assert cancelled.value.code == "not_eligible"
    on_its_way = price_protection(session, _order(session, product, paid=10_500, delivered_days_ago=None,
                                                  status="shipped"))
    assert on_its_way.amount == 1_000 and on_its_way.deadline is None


def test_two_claims_at_once_pay_once(tmp_path):
    session, product = _shop_with_one_product(tmp_path)
    order = _order(session, product, paid=12_000, delivered_days_ago=2)
    factory = db.session_factory(str(session.get_bind().url))
    results = []

    def claim() -> None:
        with factory() as own:
            results.append(price_protection(own, own.get(Order, order.id)))

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.amount for r in results) == [0, 4_000]
    assert session.query(PriceProtectionClaim).count() == 1


def test_the_demo_shop_has_price_cuts_that_orders_paid_before(shop):
    with db.session_factory(shop)() as session:
        cuts = session.query(PriceChange).filter_by(source="demo").all()
        assert cuts and all(c.price < c.previous for c in cuts)
        for cut in cuts[:50]:
            for item in session.query(OrderItem).filter_by(variant_id=cut.variant_id):
                expected = cut.previous if item.order.created_at < cut.changed_at else cut.price
                assert item.unit_price == expected
        assert Prices(session).promotions  # the skincare week runs today


def test_a_budget_search_counts_what_the_shopper_would_pay_now(tmp_path):
    from assistant.commerce.models import utcnow
    from assistant.commerce.service import search_products

    session, product = _shop_with_one_product(tmp_path)  # variants at ¥100 and ¥110
    assert search_products(session, words=["Cup"], max_price=9_600) == []
    now = utcnow()
    session.add(Promotion(name_zh="全场95折", name_en="5% off everything", percent_off=5,
                          starts_at=now - dt.timedelta(hours=1), ends_at=now + dt.timedelta(hours=1)))
    session.commit()
    assert search_products(session, words=["Cup"], max_price=9_600) == [product]  # ¥95 with the promotion


def test_the_price_answer_names_the_last_day_of_the_promotion_and_the_range():
    from assistant.actions.catalog import price_text

    facts = {"price": 80.1, "price_max": 91.8, "range": [80.1, 102.0], "range_days": 30,
             "promotion": {"name": "护肤节 9折", "percent_off": 10, "ends_at": "2026-11-30T00:00"}}
    assert price_text(facts, "洗面奶", "zh") == ("洗面奶 现价 ¥80.10 - ¥91.80（已含「护肤节 9折」优惠，活动到11月29日）。"
                                               "近30天价格在 ¥80.10 到 ¥102 之间。")
    steady = {**facts, "price_max": 80.1, "range": [80.1, 80.1], "promotion": None}
    assert price_text(steady, "Cleanser", "en") == ("Cleanser costs ¥80.10 now; no promotion is running on it at the "
                                                    "moment. The price has not changed in the last 30 days.")

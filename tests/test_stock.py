"""Stock answers and reorder suggestions: facts only, urgency only when the forecast supports it."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from assistant.commerce import db
from assistant.commerce.forecast import Forecast
from assistant.commerce.models import Category, Product, PurchaseOrder, Variant
from assistant.commerce.stock import SELL_OUT_HORIZON, Outlook, reorder_suggestions, variant_stock

TODAY = dt.date(2026, 11, 20)


def product(stock: list[int], lead_time: int = 10) -> Product:
    item = Product(sku="HO000", brand="b", name_zh="杯", name_en="cup", description_zh="", description_en="",
                   price=9900, cost=4000, image_hue=0, lead_time_days=lead_time)
    item.variants = [Variant(id=i + 1, sku=f"HO000-{i}", color_zh="白", color_en="white", size=str(i), price=9900,
                             cost=4000, stock=n) for i, n in enumerate(stock)]
    return item


def outlook(item: Product, low: float, median: float, high: float, shares: dict[int, float] | None = None,
            origin: dt.date = TODAY - dt.timedelta(days=1)) -> Outlook:
    days = [origin + dt.timedelta(days=h) for h in range(1, 29)]
    forecast = Forecast(item.sku, origin, days, np.full(28, median), np.full(28, low), np.full(28, high))
    return Outlook({item.sku: forecast}, shares or {v.id: 1.0 / len(item.variants) for v in item.variants}, TODAY)


def test_sell_out_is_claimed_only_when_even_the_low_forecast_gets_there():
    item = product([12, 12], lead_time=10)
    # each variant half the demand: low 2/day -> 12 units gone on day 6
    facts = variant_stock(item.variants[0], outlook(item, low=4, median=6, high=9), TODAY)
    assert facts.stock == 12 and facts.sell_out_days == 6
    # the median would sell out in 4 days, but the low end needs 24: no claim
    assert variant_stock(item.variants[0], outlook(item, low=1, median=6, high=9), TODAY).sell_out_days is None
    # past the horizon nobody is told to hurry
    slow = outlook(item, low=2 * 12 / (SELL_OUT_HORIZON + 1), median=3, high=5)
    assert variant_stock(item.variants[0], slow, TODAY).sell_out_days is None
    assert variant_stock(item.variants[0], None, TODAY).sell_out_days is None  # no forecast, no urgency


def test_forecast_days_already_past_are_skipped():
    item = product([10])
    stale = outlook(item, low=np.nan, median=1, high=1, origin=TODAY - dt.timedelta(days=3))
    stale.forecasts[item.sku].low[:2] = 100.0  # two days before today: must not count
    stale.forecasts[item.sku].low[2:] = 1.0
    assert variant_stock(item.variants[0], stale, TODAY).sell_out_days == 10


def test_sold_out_variants_get_the_purchase_order_date_or_an_estimate_that_says_so():
    item = product([0, 0, 0], lead_time=10)
    item.variants[0].purchase_orders = [
        PurchaseOrder(quantity=30, ordered_on=TODAY, expected_on=TODAY + dt.timedelta(days=9), status="open"),
        PurchaseOrder(quantity=30, ordered_on=TODAY, expected_on=TODAY + dt.timedelta(days=4), status="open"),
        PurchaseOrder(quantity=30, ordered_on=TODAY, expected_on=TODAY + dt.timedelta(days=2), status="cancelled")]
    item.variants[1].purchase_orders = [  # overdue: not a promise any more
        PurchaseOrder(quantity=30, ordered_on=TODAY, expected_on=TODAY - dt.timedelta(days=1), status="open")]
    demand = outlook(item, low=0.3, median=1.5, high=3)
    on_order = variant_stock(item.variants[0], demand, TODAY)
    assert on_order.restock_on == TODAY + dt.timedelta(days=4) and not on_order.restock_estimated
    estimated = variant_stock(item.variants[1], demand, TODAY)
    assert estimated.restock_on == TODAY + dt.timedelta(days=10) and estimated.restock_estimated
    assert estimated.to_dict()["restock_on"] == (TODAY + dt.timedelta(days=10)).isoformat()
    # nobody expected to want it, or no forecast at all: no date is invented
    assert variant_stock(item.variants[2], outlook(item, 0, 0.01, 0.05), TODAY).restock_on is None
    assert variant_stock(item.variants[2], None, TODAY).restock_on is None


@pytest.fixture()
def session(tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    db.upgrade(url)
    with db.session_factory(url)() as s:
        yield s


def test_reorder_suggestions_cover_lead_time_and_safety_stock_minus_stock_and_inbound(session):
    category = Category(key="home", name_zh="家居", name_en="Home")
    item = product([5, 200, 0], lead_time=7)
    item.category = category
    session.add(item)
    session.flush()
    session.add(PurchaseOrder(variant_id=item.variants[2].id, quantity=10, ordered_on=TODAY,
                              expected_on=TODAY + dt.timedelta(days=3), status="open"))
    session.add(PurchaseOrder(variant_id=item.variants[2].id, quantity=99, ordered_on=TODAY,
                              expected_on=TODAY + dt.timedelta(days=60), status="open"))  # beyond the window
    session.flush()
    demand = outlook(item, low=3, median=6, high=9)  # 2 / 3 units per variant and day
    rows = {r["sku"]: r for r in reorder_suggestions(session, demand, TODAY, review_days=7)}
    low_stock = rows["HO000-0"]
    assert low_stock["demand_over_lead_time"] == pytest.approx(2 * 14) and low_stock["safety_stock"] == pytest.approx(14)
    assert low_stock["suggested_quantity"] == 28 + 14 - 5 and low_stock["cover_days"] == 2.5
    assert rows["HO000-1"]["suggested_quantity"] == 0  # 200 on hand covers it
    assert rows["HO000-2"]["inbound"] == 10 and rows["HO000-2"]["suggested_quantity"] == 42 - 10
    ordered = list(rows)
    assert ordered.index("HO000-1") == 2  # nothing to order: listed last

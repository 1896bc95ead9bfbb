"""The demo shop generator: sizes the issue asks for, determinism, migrations."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from assistant.commerce import db, demo
from assistant.commerce.models import (Category, Coupon, Customer, DailySales, Order, Product, ShipmentEvent,
                                       Variant)

TODAY = dt.date(2026, 11, 22)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('shop') / 'kefu.db'}"
    db.upgrade(url)
    with db.session_factory(url)() as session:
        summary = demo.generate(session, seed=7, today=TODAY)
    return url, summary


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_sizes(shop):
    url, summary = shop
    with db.session_factory(url)() as session:
        assert count(session, Product) >= 150 and summary.products == count(session, Product)
        assert {c.key for c in session.scalars(select(Category))} >= {
            "apparel", "shoes", "skincare", "electronics", "home", "food"}
        assert count(session, Customer) >= 200
        assert count(session, Order) >= 1000
        assert count(session, ShipmentEvent) > count(session, Order)
        assert count(session, Coupon) > 0
        product = session.scalars(select(Product).where(Product.sku.like("AP%"))).first()
        assert product.name_zh and product.name_en and product.cost < product.price
        sizes = {v.size for v in product.variants}
        colours = {(v.color_zh, v.color_en) for v in product.variants}
        assert len(sizes) > 1 and len(colours) > 1


def test_two_years_of_daily_sales_with_promotions_and_stockouts(shop):
    url, _ = shop
    with db.session_factory(url)() as session:
        first, last = session.execute(select(func.min(DailySales.day), func.max(DailySales.day))).one()
        assert (last - first).days >= 730 and last == TODAY - dt.timedelta(days=1)
        per_product = session.execute(select(DailySales.product_id, func.count()).group_by(DailySales.product_id)).all()
        assert len(per_product) == count(session, Product) and min(n for _, n in per_product) >= 730
        assert session.scalar(select(func.count()).where(DailySales.promo)) > 0
        assert session.scalar(select(func.count()).where(DailySales.stockout)) > 0
        # Singles' Day sells more than an ordinary day
        festival = session.scalar(select(func.avg(DailySales.units)).where(DailySales.day == dt.date(2026, 11, 11)))
        ordinary = session.scalar(select(func.avg(DailySales.units)).where(DailySales.day == dt.date(2026, 10, 14)))
        assert festival > ordinary


def test_the_same_seed_gives_the_same_shop(shop, tmp_path):
    url, _ = shop
    other = f"sqlite:///{tmp_path / 'again.db'}"
    db.upgrade(other)
    with db.session_factory(other)() as session:
        demo.generate(session, seed=7, today=TODAY)

    def fingerprint(u: str) -> tuple:
        with db.session_factory(u)() as session:
            return (tuple(session.execute(select(Product.sku, Product.name_zh, Product.price)).all()),
                    tuple(session.execute(select(Order.order_no, Order.status, Order.total)).all()),
                    session.scalar(select(func.sum(DailySales.units))))
    assert fingerprint(url) == fingerprint(other)


def test_phone_numbers_and_orders_look_real(shop):
    url, _ = shop
    with db.session_factory(url)() as session:
        phones = session.scalars(select(Customer.phone)).all()
        assert all(len(p) == 11 and p.startswith("1") for p in phones)
        statuses = set(session.scalars(select(Order.status)))
        assert {"paid", "shipped", "delivered", "cancelled"} <= statuses
        assert count(session, Variant) > count(session, Product)

"""Deterministic demo-shop generator: catalog, customers, orders, coupons, sales history, FAQ.

The same seed and ``today`` always give the same shop. Run through ``kefu shop generate``.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from assistant.commerce import catalog_data as cd
from knowledge_base import faq
from assistant.commerce.models import (
    Base,
    Category,
    Coupon,
    Customer,
    DailySales,
    Order,
    OrderItem,
    PriceChange,
    Product,
    Promotion,
    PurchaseOrder,
    ReturnRequest,
    ShipmentEvent,
    Variant,
)

LEAD_TIME_DAYS = {"apparel": 14, "shoes": 18, "skincare": 10, "electronics": 21, "home": 16, "food": 7}
HISTORY_DAYS = 731  # two years of daily sales per product
N_CUSTOMERS = 240
N_ORDERS = 1200
ORDER_WINDOW_DAYS = 120  # orders are spread over the last four months


# what shoppers and the merchant produced survives regenerating the shop; the change log must keep
# growing so the search index notices the new FAQ
KEPT_TABLES = {"conversations", "transcript_messages", "kb_changes", "unanswered_questions"}


@dataclass(frozen=True)
class DemoSummary:
    categories: int
    products: int
    variants: int
    customers: int
    orders: int
    shipment_events: int
    coupons: int
    daily_sales: int
    faq_entries: int
    purchase_orders: int = 0


def shop_is_empty(session: Session) -> bool:
    return not session.scalar(select(func.count()).select_from(Product))


def generate(session: Session, *, seed: int = 7, today: dt.date | None = None) -> DemoSummary:
    """Replace whatever shop data is in the database by the demo shop."""
    today = today or dt.date.today()
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    for table in reversed(Base.metadata.sorted_tables):
        if table.name not in KEPT_TABLES:
            session.execute(delete(table))

    products, variants = _catalog(session, rng)
    customers = _customers(session, rng, today)
    markdowns = _markdowns(session, random.Random(seed + 2), today, products)
    n_orders, n_events = _orders(session, rng, today, customers, variants, markdowns)
    n_coupons = _coupons(session, rng, today, customers)
    n_sales = _sales_history(session, nprng, today, products)
    n_purchase_orders = _purchase_orders(session, random.Random(seed + 1), today, variants)
    _promotions(session, today)
    n_faq = faq.seed_demo(session)
    faq.record_change(session, "reset", None)  # the search index rebuilds from the new FAQ
    session.commit()
    return DemoSummary(
        categories=len(cd.CATEGORIES), products=len(products), variants=len(variants),
        customers=len(customers), orders=n_orders, shipment_events=n_events, coupons=n_coupons,
        daily_sales=n_sales, faq_entries=n_faq, purchase_orders=n_purchase_orders,
    )


def _catalog(session: Session, rng: random.Random) -> tuple[list[Product], list[Variant]]:
    products: list[Product] = []
    variants: list[Variant] = []
    for key, (name_zh, name_en) in cd.CATEGORIES.items():
        category = Category(key=key, name_zh=name_zh, name_en=name_en)
        session.add(category)
        for t_index, (type_zh, type_en, base_yuan, _peak) in enumerate(cd.PRODUCT_TYPES[key]):
            styles = rng.sample(cd.STYLES[key], 4)
            for s_index, (style_zh, style_en, factor) in enumerate(styles):
                brand = cd.BRANDS[key][(t_index + s_index) % len(cd.BRANDS[key])]
                brand_zh, brand_en = brand.split(" ", 1)
                price_yuan = int(round(base_yuan * factor * rng.uniform(0.9, 1.1))) // 10 * 10 + 9
                sku = f"{key[:2].upper()}{t_index:02d}{s_index}"
                product = Product(
                    sku=sku, category=category, brand=brand_en,
                    name_zh=f"{brand_zh}{style_zh}{type_zh}", name_en=f"{brand_en} {style_en} {type_en}",
                    description_zh=f"{brand_zh}{type_zh}，{style_zh}设计，{name_zh}类热销单品，七天无理由退换。",
                    description_en=f"{brand_en} {type_en} in a {style_en.lower()} cut; a best seller in "
                    f"{name_en.lower()}, with 7-day no-questions-asked returns.",
                    price=price_yuan * 100, cost=int(price_yuan * rng.uniform(0.35, 0.6)) * 100,
                    image_hue=rng.randrange(360), lead_time_days=LEAD_TIME_DAYS[key],
                )
                session.add(product)
                products.append(product)
                colours = rng.sample(cd.COLORS, 3 if key in ("apparel", "shoes") else 2) \
                    if key in cd.COLOURED else [("默认", "default")]
                sizes = cd.SIZES[key]
                if len(sizes) > 4:
                    start = rng.randrange(len(sizes) - 3)
                    sizes = sizes[start:start + 4]
                for c_index, (colour_zh, colour_en) in enumerate(colours):
                    for z_index, size in enumerate(sizes):
                        step = 1.0 + 0.15 * z_index if key in ("skincare", "food", "home") else 1.0
                        variant = Variant(
                            product=product, sku=f"{sku}-{c_index}{z_index}",
                            color_zh=colour_zh, color_en=colour_en, size=size,
                            price=(price := int(product.price * step) // 100 * 100 + (product.price % 100)),
                            list_price=price,
                            cost=int(product.cost * step),
                            stock=0 if rng.random() < 0.1 else rng.randint(1, 80),
                        )
                        session.add(variant)
                        variants.append(variant)
    session.flush()
    return products, variants


def _customers(session: Session, rng: random.Random, today: dt.date) -> list[Customer]:
    customers = []
    for i in range(N_CUSTOMERS):
        city_zh, city_en, district = rng.choice(cd.CITIES)
        if i % 4 == 3:
            name = f"{rng.choice(cd.EN_FIRST)} {rng.choice(cd.EN_LAST)}"
            address, language = f"{rng.randint(1, 299)} {district} Rd, {city_en}", "en"
            email = f"{name.lower().replace(' ', '.')}{i}@example.com"
        else:
            name = rng.choice(cd.SURNAMES) + rng.choice(cd.GIVEN)
            address, language = f"{city_zh}{district}幸福路{rng.randint(1, 299)}号", "zh"
            email = f"user{i:04d}@example.cn"
        phone = f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
        created = dt.datetime.combine(today, dt.time(9)) - dt.timedelta(days=rng.randint(130, 900))
        customers.append(Customer(name=name, phone=phone, email=email, address=address,
                                  language=language, created_at=created))
    session.add_all(customers)
    session.flush()
    return customers


def _markdowns(session: Session, rng: random.Random, today: dt.date,
               products: list[Product]) -> dict[int, tuple[dt.datetime, int]]:
    """Recent price cuts on about one product in seven (every variant of it), 2-6 days ago: the
    price history the price answers and price protection read. Returns variant id -> (when, the
    price before)."""
    out: dict[int, tuple[dt.datetime, int]] = {}
    for product in products:
        if rng.random() >= 0.15:
            continue
        when = dt.datetime.combine(today, dt.time(10)) - dt.timedelta(days=rng.randint(2, 6))
        factor = rng.choice([0.85, 0.9, 0.95])
        for variant in product.variants:
            old = variant.price
            variant.price = int(old * factor) // 10 * 10
            out[variant.id] = (when, old)
            session.add(PriceChange(variant_id=variant.id, price=variant.price, previous=old, changed_at=when,
                                    source="demo"))
    session.flush()
    return out


def _promotions(session: Session, today: dt.date) -> None:
    """One promotion running now (skincare, 10% off), one that ended, one announced."""
    skincare = session.scalar(select(Category).where(Category.key == "skincare"))
    food = session.scalar(select(Category).where(Category.key == "food"))
    start = dt.datetime.combine(today, dt.time(0))
    session.add_all([
        Promotion(name_zh="护肤节 9折", name_en="Skincare week: 10% off", category_id=skincare.id, percent_off=10,
                  starts_at=start - dt.timedelta(days=2), ends_at=start + dt.timedelta(days=8)),
        Promotion(name_zh="零食节 85折", name_en="Snack festival: 15% off", category_id=food.id, percent_off=15,
                  starts_at=start - dt.timedelta(days=40), ends_at=start - dt.timedelta(days=33)),
        Promotion(name_zh="年货节 8折", name_en="New Year sale: 20% off", category_id=food.id, percent_off=20,
                  starts_at=start + dt.timedelta(days=30), ends_at=start + dt.timedelta(days=40)),
    ])


def _orders(session: Session, rng: random.Random, today: dt.date, customers: list[Customer],
            variants: list[Variant], markdowns: dict[int, tuple[dt.datetime, int]]) -> tuple[int, int]:
    now = dt.datetime.combine(today, dt.time(12))
    orders, items, events = [], [], []
    number = 10_000_000 + rng.randrange(1_000_000)
    for i in range(N_ORDERS):
        number += rng.randint(1, 50)
        customer = rng.choice(customers)
        # the newest orders come last, so the freshest ones are still unshipped
        age_h = (N_ORDERS - i) / N_ORDERS * ORDER_WINDOW_DAYS * 24 * rng.uniform(0.8, 1.0)
        created = now - dt.timedelta(hours=age_h)
        chosen = rng.sample(variants, rng.choice([1, 1, 1, 2, 2, 3]))
        lines = [(v, rng.choice([1, 1, 1, 2])) for v in chosen]

        def paid(v: Variant) -> int:  # the price when the order was placed
            cut = markdowns.get(v.id)
            return cut[1] if cut and created < cut[0] else v.price

        subtotal = sum(paid(v) * q for v, q in lines)
        discount = 2000 if subtotal >= 19900 and rng.random() < 0.3 else 0
        roll = rng.random()
        if age_h < 30:
            status = "paid"
        elif age_h < 100:
            status = "shipped"
        else:
            status = "delivered"
        if roll < 0.05:
            status = "cancelled"
        elif roll < 0.09 and status == "delivered":
            status = "returned"
        carrier = rng.choice(cd.CARRIERS) if status in ("shipped", "delivered", "returned") else None
        order = dict(id=i + 1, order_no=f"KF{number}", customer_id=customer.id, status=status,
                     created_at=created, total=subtotal - discount, discount=discount, carrier=carrier,
                     tracking_no=f"SF{rng.randrange(10**12):012d}" if carrier else None,
                     shipping_address=customer.address)
        orders.append(order)
        items += [dict(order_id=i + 1, variant_id=v.id, quantity=q, unit_price=paid(v)) for v, q in lines]
        if carrier:
            events += _shipment_events(rng, i + 1, created, now, delivered=status != "shipped",
                                       address=customer.address)
    session.execute(insert(Order), orders)
    session.execute(insert(OrderItem), items)
    session.execute(insert(ShipmentEvent), events)
    returned = [o for o in orders if o["status"] == "returned"]
    session.execute(insert(ReturnRequest), [
        dict(rma_no=f"RMA{o['order_no'][2:]}", order_id=o["id"], reason="size did not fit / 尺码不合适",
             status="refunded", created_at=o["created_at"] + dt.timedelta(days=6)) for o in returned])
    return len(orders), len(events)


def _shipment_events(rng: random.Random, order_id: int, created: dt.datetime, now: dt.datetime,
                     *, delivered: bool, address: str) -> list[dict]:
    city_zh = next((c for c in cd.CITIES if address.startswith(c[0]) or c[1] in address), cd.CITIES[0])
    steps = [
        ("packed", cd.WAREHOUSE[0], cd.WAREHOUSE[1]),
        ("picked_up", cd.WAREHOUSE[0], cd.WAREHOUSE[1]),
        ("in_transit", f"{city_zh[0]}转运中心", f"{city_zh[1]} sorting centre"),
        ("out_for_delivery", f"{city_zh[0]}{city_zh[2]}", f"{city_zh[1]} delivery station"),
        ("delivered", f"{city_zh[0]}{city_zh[2]}", city_zh[1]),
    ]
    if not delivered:
        steps = steps[: rng.randint(2, 4)]
    t = created + dt.timedelta(hours=rng.uniform(2, 10))
    out = []
    for status, loc_zh, loc_en in steps:
        if t > now:
            break
        out.append(dict(order_id=order_id, occurred_at=t, status=status, location_zh=loc_zh, location_en=loc_en))
        t += dt.timedelta(hours=rng.uniform(3, 20))
    return out


def _coupons(session: Session, rng: random.Random, today: dt.date, customers: list[Customer]) -> int:
    rows = []
    for customer in rng.sample(customers, 150):
        created = dt.datetime.combine(today, dt.time(8)) - dt.timedelta(days=rng.randint(1, 60))
        used = rng.random() < 0.4
        rows.append(dict(
            code=f"VIP{rng.randrange(16**8):08X}", campaign="vip_autumn", holder_key=f"customer:{customer.id}",
            customer_id=customer.id, threshold=29900, discount=3000, created_at=created,
            expires_at=created + dt.timedelta(days=30), used_at=created + dt.timedelta(days=3) if used else None))
    session.execute(insert(Coupon), rows)
    return len(rows)


def _purchase_orders(session: Session, rng: random.Random, today: dt.date, variants: list[Variant]) -> int:
    """Inbound stock: most sold-out variants and some running-low ones are on order."""
    rows = []
    for variant in variants:
        if (variant.stock == 0 and rng.random() < 0.6) or (0 < variant.stock < 10 and rng.random() < 0.3):
            ordered = today - dt.timedelta(days=rng.randint(1, 10))
            rows.append(dict(variant_id=variant.id, quantity=rng.choice([20, 30, 50, 80, 100]), ordered_on=ordered,
                             expected_on=today + dt.timedelta(days=rng.randint(2, 20)), status="open"))
    if rows:
        session.execute(insert(PurchaseOrder), rows)
    return len(rows)


def _sales_history(session: Session, rng: np.random.Generator, today: dt.date,
                   products: list[Product]) -> int:
    """Daily units per product: trend, weekly and yearly seasonality, promotions, stock-outs."""
    days = [today - dt.timedelta(days=HISTORY_DAYS - d) for d in range(HISTORY_DAYS)]
    doy = np.array([d.timetuple().tm_yday for d in days])
    dow = np.array([d.weekday() for d in days])
    shopping_festival = np.array([(d.month, d.day) in {(6, 18), (11, 11), (12, 12)} for d in days])
    type_peak = {t[1]: t[3] for types in cd.PRODUCT_TYPES.values() for t in types}
    rows = []
    for product in products:
        type_en = next(t for t in type_peak if product.name_en.endswith(t))
        peak = type_peak[type_en]
        base = rng.uniform(1.5, 12.0)
        trend = np.linspace(1.0, rng.uniform(0.8, 1.5), HISTORY_DAYS)
        weekly = 1.0 + 0.25 * np.isin(dow, [5, 6])
        if peak:
            peak_doy = (peak - 0.5) * 30.4
            yearly = 1.0 + 0.8 * np.cos(2 * math.pi * (doy - peak_doy) / 365.25)
        else:
            yearly = np.ones(HISTORY_DAYS)
        promo = shopping_festival | (rng.random(HISTORY_DAYS) < 0.03)
        # the merchant moves the list price now and then (a few weeks at a time); shoppers answer
        # with the product's own price elasticity
        elasticity = rng.uniform(-2.8, -1.1)
        ratio = np.ones(HISTORY_DAYS)
        day = 0
        while day < HISTORY_DAYS:
            length = int(rng.integers(14, 43))
            ratio[day:day + length] = rng.choice([0.85, 0.9, 0.95, 1.0, 1.0, 1.0, 1.05, 1.1])
            day += length
        ratio = np.where(promo, 0.8, ratio)
        price = (product.price * ratio).astype(int)
        lam = (base * trend * weekly * np.clip(yearly, 0.2, None) * ratio ** elasticity
               * np.where(promo, 1.6, 1.0))
        units = rng.poisson(lam)
        stockout = np.zeros(HISTORY_DAYS, dtype=bool)
        for _ in range(rng.integers(0, 4)):
            start = int(rng.integers(0, HISTORY_DAYS - 10))
            stockout[start:start + int(rng.integers(2, 10))] = True
        units = np.where(stockout, 0, units)
        rows += [dict(product_id=product.id, day=day, units=int(u), price=int(p), promo=bool(pr), stockout=bool(s))
                 for day, u, p, pr, s in zip(days, units, price, promo, stockout)]
    session.execute(insert(DailySales), rows)
    return len(rows)

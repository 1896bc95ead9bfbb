"""Shop operations the dialog-to-action hooks call: search, prices, verify, coupons, cancel, return,
price protection.

Functions take a SQLAlchemy session and return value objects or raise ``ShopError`` with a
machine-readable ``code`` that the caller turns into a reply in the shopper's language.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from assistant.commerce.models import (
    Category,
    Coupon,
    Order,
    Photo,
    PriceChange,
    PriceProtectionClaim,
    Product,
    Promotion,
    ReturnRequest,
    Variant,
    utcnow,
)

CHAT_CAMPAIGN = "chat_welcome"
CHAT_COUPON_THRESHOLD = 199_00  # fen: the coupon applies to carts of ¥199 or more
CHAT_COUPON_DISCOUNT = 20_00  # fen off
CHAT_COUPON_DAYS = 7
RETURN_WINDOW_DAYS = 30  # days after delivery (7 without reason, 30 for quality problems)
PRICE_PROTECTION_DAYS = 7  # days after delivery in which a price drop is paid back
PRICE_PROTECTION_COUPON_DAYS = 30
PRICE_RANGE_DAYS = 30  # "recent" in a price answer


class ShopError(Exception):
    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


def holder_key(customer_id: int | None, conversation_id: str) -> str:
    """Who holds a coupon: the known customer, else a hash of the anonymous conversation."""
    if customer_id:
        return f"customer:{int(customer_id)}"
    return "visitor:" + hashlib.sha256(conversation_id.encode()).hexdigest()[:24]


def search_products(session: Session, *, words: list[str], category: str | None = None,
                    color: str | None = None, max_price: int | None = None, limit: int = 6) -> list[Product]:
    """Products matching any of ``words`` (zh or en names), optionally within a category,
    having a variant in ``color``, with a variant costing at most ``max_price`` fen now (price
    changes and promotions included); in-stock first, then cheapest."""
    query = select(Product).join(Category).where(Product.active).options(selectinload(Product.variants))
    words = [w.strip() for w in words if w and w.strip()]
    if words:
        query = query.where(or_(*[c.ilike(f"%{w}%") for w in words for c in (Product.name_zh, Product.name_en)]))
    if category:
        query = query.where(or_(Category.key == category, Category.name_zh == category,
                                Category.name_en.ilike(category)))
    products = [p for p in session.scalars(query.order_by(Product.id)).unique() if p.variants]
    if color:
        wanted = color.lower()
        products = [p for p in products if any(wanted in (v.color_zh, v.color_en.lower()) for v in p.variants)]
    prices = Prices(session)
    cheapest = {p.id: min(prices.of(v) for v in p.variants) for p in products}
    if max_price:
        products = [p for p in products if cheapest[p.id] <= max_price]
    products.sort(key=lambda p: (sum(v.stock for v in p.variants) == 0, cheapest[p.id]))
    return products[:limit]


def find_product(session: Session, ref: str) -> Product | None:
    """A product by SKU, exact name or name fragment."""
    ref = ref.strip()
    if not ref:
        return None
    product = session.scalar(select(Product).where(Product.sku == ref.upper()))
    if product:
        return product
    return session.scalars(select(Product).where(or_(
        Product.name_zh == ref, Product.name_en.ilike(ref),
        Product.name_zh.contains(ref), Product.name_en.ilike(f"%{ref}%"))).order_by(Product.id)).first()


def matching_variants(product: Product, *, color: str | None = None, size: str | None = None) -> list[Variant]:
    """The variants in ``color`` and ``size`` (either may be None), or all when none match."""
    def matches(v: Variant) -> bool:
        ok_colour = not color or color.lower() in (v.color_zh, v.color_en.lower())
        ok_size = not size or size.upper() in v.size.upper().split(" ")
        return ok_colour and ok_size

    return [v for v in product.variants if matches(v)] or list(product.variants)


def pick_variant(product: Product, *, color: str | None = None, size: str | None = None) -> Variant | None:
    """The variant that matches colour and size, preferring one in stock."""
    candidates = matching_variants(product, color=color, size=size)
    in_stock = [v for v in candidates if v.stock > 0]
    return (in_stock or candidates or [None])[0]


def verify_order(session: Session, order_no: str, *, phone_last4: str | None = None,
                 customer_id: int | None = None) -> Order:
    """The order, if the shopper proved it is theirs: the last 4 phone digits, or a signed
    customer identity that owns it. Raises ShopError('order_not_found' | 'not_verified')."""
    order = session.scalar(select(Order).where(Order.order_no == order_no.upper())
                           .options(selectinload(Order.customer), selectinload(Order.events),
                                    selectinload(Order.items)))
    if order is None:
        raise ShopError("order_not_found", order_no)
    if customer_id and order.customer_id == int(customer_id):
        return order
    if phone_last4 and len(phone_last4) == 4 and secrets.compare_digest(order.customer.phone[-4:], phone_last4):
        return order
    raise ShopError("not_verified", order_no)


def issue_coupon(session: Session, holder: str, customer_id: int | None = None) -> tuple[Coupon, bool]:
    """The chat coupon of ``holder``: a new one, or the one they already have (one per holder).
    Returns (coupon, created)."""
    existing = session.scalar(select(Coupon).where(Coupon.campaign == CHAT_CAMPAIGN, Coupon.holder_key == holder))
    if existing:
        return existing, False
    now = utcnow()
    coupon = Coupon(code="CP" + secrets.token_hex(4).upper(), campaign=CHAT_CAMPAIGN, holder_key=holder,
                    customer_id=int(customer_id) if customer_id else None, threshold=CHAT_COUPON_THRESHOLD,
                    discount=CHAT_COUPON_DISCOUNT, created_at=now,
                    expires_at=now + dt.timedelta(days=CHAT_COUPON_DAYS))
    session.add(coupon)
    try:
        session.commit()
    except IntegrityError:  # the same holder asked twice at once: keep the first
        session.rollback()
        return session.scalar(select(Coupon).where(Coupon.campaign == CHAT_CAMPAIGN,
                                                   Coupon.holder_key == holder)), False
    return coupon, True


def coupon_discount(coupon: Coupon | None, subtotal: int, now: dt.datetime | None = None) -> tuple[int, str | None]:
    """(discount in fen, reason it does not apply or None)."""
    if coupon is None:
        return 0, None
    now = now or utcnow()
    if coupon.used_at is not None:
        return 0, "used"
    if coupon.expires_at < now:
        return 0, "expired"
    if subtotal < coupon.threshold:
        return 0, "below_threshold"
    return min(coupon.discount, subtotal), None


def cancel_order(session: Session, order: Order) -> Order:
    if order.status == "cancelled":
        raise ShopError("already_cancelled", order.order_no)
    if order.status != "paid":
        raise ShopError("already_shipped", order.status)
    order.status = "cancelled"
    session.commit()
    return order


def create_return(session: Session, order: Order, reason: str, conversation_id: str, kind: str = "return",
                  photo: Photo | None = None) -> ReturnRequest:
    """A return request (RMA) for a delivered or shipped order inside the return window. ``kind``
    is what the shopper gets: ``return`` (money back once the item arrives), ``replacement`` or
    ``refund`` (quality problems, with the photo and what the classifier saw on it)."""
    existing = session.scalar(select(ReturnRequest).where(ReturnRequest.order_id == order.id))
    if existing:
        raise ShopError("return_exists", existing.rma_no)
    if order.status in ("paid",):
        raise ShopError("not_shipped", order.order_no)
    if order.status == "cancelled":
        raise ShopError("cancelled", order.order_no)
    delivered = delivered_at(order)
    if delivered and (utcnow() - delivered).days > RETURN_WINDOW_DAYS:
        raise ShopError("window_closed", delivered.date().isoformat())
    rma = ReturnRequest(rma_no=f"RMA{order.order_no[2:]}{secrets.randbelow(100):02d}", order_id=order.id,
                        reason=reason[:500], status="requested", conversation_id=conversation_id, kind=kind,
                        photo_id=photo.id if photo else None, defect_type=photo.outcome if photo else None,
                        defect_confidence=photo.confidence if photo else None)
    session.add(rma)
    session.commit()
    return rma


def delivered_at(order: Order) -> dt.datetime | None:
    return next((e.occurred_at for e in order.events if e.status == "delivered"), None)


def check_quality_claim(session: Session, order: Order) -> dt.datetime:
    """A quality claim (damaged or defective item) needs a delivered order inside the return
    window with no return yet; returns the delivery time or raises ``ShopError``."""
    existing = session.scalar(select(ReturnRequest).where(ReturnRequest.order_id == order.id))
    if existing:
        raise ShopError("return_exists", existing.rma_no)
    if order.status == "cancelled":
        raise ShopError("cancelled", order.order_no)
    delivered = delivered_at(order)
    if delivered is None:
        raise ShopError("not_delivered", order.status)
    if (utcnow() - delivered).days > RETURN_WINDOW_DAYS:
        raise ShopError("window_closed", delivered.date().isoformat())
    return delivered


# ------------------------------------------------------------------------------------------------- prices


def round_price(fen: float) -> int:
    """The nearest price on the shop's 10-fen (1 jiao) grid."""
    return int(round(fen / 10) * 10)


class Prices:
    """What the shop charges at ``now``: each variant's current price, less the promotion running
    on its product (the product's own before its category's before a shop-wide one). The same for
    every shopper: nothing about who asks goes in."""

    def __init__(self, session: Session, now: dt.datetime | None = None):
        self.now = now or utcnow()
        self.promotions = list(session.scalars(select(Promotion).where(Promotion.starts_at <= self.now,
                                                                       Promotion.ends_at > self.now)))

    def promotion(self, product: Product) -> Promotion | None:
        own = [p for p in self.promotions if p.product_id == product.id]
        category = [p for p in self.promotions if p.product_id is None and p.category_id == product.category_id]
        shop = [p for p in self.promotions if p.product_id is None and p.category_id is None]
        for group in (own, category, shop):
            if group:
                return max(group, key=lambda p: p.percent_off)
        return None

    def of(self, variant: Variant) -> int:
        promotion = self.promotion(variant.product)
        if promotion is None:
            return variant.price
        return round_price(variant.price * (100 - promotion.percent_off) / 100)


def price_range(session: Session, variants: list[Variant], since: dt.datetime) -> tuple[int, int]:
    """Lowest and highest price (before promotions) the variants had since ``since``."""
    ids = [v.id for v in variants]
    prices = [v.price for v in variants]
    for price, previous in session.execute(select(PriceChange.price, PriceChange.previous)
                                           .where(PriceChange.variant_id.in_(ids), PriceChange.changed_at >= since)):
        prices += [price] + ([previous] if previous else [])
    return min(prices), max(prices)


# --------------------------------------------------------------------------------------- price protection


@dataclass(frozen=True)
class ProtectionResult:
    claims: list[PriceProtectionClaim]  # paid back now
    earlier: list[PriceProtectionClaim]  # paid back before (a repeated request pays nothing twice)
    deadline: dt.datetime | None  # end of the protection window (None: not delivered yet)
    coupon: Coupon | None = None

    @property
    def amount(self) -> int:
        return sum(c.amount for c in self.claims)


def price_protection(session: Session, order: Order, *, payout: str = "refund", conversation_id: str | None = None,
                     now: dt.datetime | None = None) -> ProtectionResult:
    """Pay back the difference between what the shopper paid per unit and what the shop charges now,
    for every line of ``order`` that got cheaper, inside the window (``PRICE_PROTECTION_DAYS`` after
    delivery; an order on its way is inside it). ``payout``: "refund" (a refund record to the
    original payment) or "coupon" (one coupon of the whole difference, no minimum spend).

    Raises ShopError('not_eligible' | 'window_closed' | 'no_drop')."""
    if payout not in ("refund", "coupon"):
        raise ValueError(f"payout must be refund or coupon, not {payout!r}")
    now = now or utcnow()
    if order.status in ("cancelled", "returned"):
        raise ShopError("not_eligible", order.status)
    delivered = next((e.occurred_at for e in order.events if e.status == "delivered"), None)
    deadline = delivered + dt.timedelta(days=PRICE_PROTECTION_DAYS) if delivered else None
    if deadline and now > deadline:
        raise ShopError("window_closed", deadline.date().isoformat())
    prices = Prices(session, now)
    existing = {c.order_item_id: c for c in session.scalars(
        select(PriceProtectionClaim).where(PriceProtectionClaim.order_id == order.id))}
    claims = []
    for item in order.items:
        current = prices.of(item.variant)
        if current >= item.unit_price or item.id in existing:
            continue
        claims.append(PriceProtectionClaim(
            order_item_id=item.id, order_id=order.id, paid_unit_price=item.unit_price, current_unit_price=current,
            quantity=item.quantity, amount=(item.unit_price - current) * item.quantity, payout=payout,
            conversation_id=conversation_id, created_at=now))
    if not claims:
        if existing:
            return ProtectionResult([], list(existing.values()), deadline)
        raise ShopError("no_drop", order.order_no)
    coupon = None
    if payout == "coupon":
        coupon = Coupon(code="PP" + secrets.token_hex(4).upper(), campaign=f"price_protection:{order.order_no}",
                        holder_key=f"customer:{order.customer_id}", customer_id=order.customer_id, threshold=0,
                        discount=sum(c.amount for c in claims), created_at=now,
                        expires_at=now + dt.timedelta(days=PRICE_PROTECTION_COUPON_DAYS))
        session.add(coupon)
        session.flush()
        for claim in claims:
            claim.coupon_id = coupon.id
    session.add_all(claims)
    try:
        session.commit()
    except IntegrityError:  # the same order claimed twice at once: the first one pays
        session.rollback()
        earlier = list(session.scalars(select(PriceProtectionClaim).where(PriceProtectionClaim.order_id == order.id)))
        return ProtectionResult([], earlier, deadline)
    return ProtectionResult(claims, list(existing.values()), deadline, coupon)

"""Shop operations the dialog-to-action hooks call: search, verify, coupons, cancel, return.

Functions take a SQLAlchemy session and return value objects or raise ``ShopError`` with a
machine-readable ``code`` that the caller turns into a reply in the shopper's language.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from assistant.commerce.models import Category, Coupon, Order, Product, ReturnRequest, Variant, utcnow

CHAT_CAMPAIGN = "chat_welcome"
CHAT_COUPON_THRESHOLD = 199_00  # fen: the coupon applies to carts of ¥199 or more
CHAT_COUPON_DISCOUNT = 20_00  # fen off
CHAT_COUPON_DAYS = 7
RETURN_WINDOW_DAYS = 30  # days after delivery (7 without reason, 30 for quality problems)


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
    having a variant in ``color``, priced at most ``max_price`` fen; in-stock first."""
    query = select(Product).join(Category).where(Product.active).options(selectinload(Product.variants))
    words = [w.strip() for w in words if w and w.strip()]
    if words:
        query = query.where(or_(*[c.ilike(f"%{w}%") for w in words for c in (Product.name_zh, Product.name_en)]))
    if category:
        query = query.where(or_(Category.key == category, Category.name_zh == category,
                                Category.name_en.ilike(category)))
    if max_price:
        query = query.where(Product.price <= max_price)
    products = list(session.scalars(query.order_by(Product.id)).unique())
    if color:
        wanted = color.lower()
        products = [p for p in products if any(wanted in (v.color_zh, v.color_en.lower()) for v in p.variants)]
    products.sort(key=lambda p: (sum(v.stock for v in p.variants) == 0, p.price))
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


def create_return(session: Session, order: Order, reason: str, conversation_id: str) -> ReturnRequest:
    existing = session.scalar(select(ReturnRequest).where(ReturnRequest.order_id == order.id))
    if existing:
        raise ShopError("return_exists", existing.rma_no)
    if order.status in ("paid",):
        raise ShopError("not_shipped", order.order_no)
    if order.status == "cancelled":
        raise ShopError("cancelled", order.order_no)
    delivered = next((e.occurred_at for e in order.events if e.status == "delivered"), None)
    if delivered and (utcnow() - delivered).days > RETURN_WINDOW_DAYS:
        raise ShopError("window_closed", delivered.date().isoformat())
    rma = ReturnRequest(rma_no=f"RMA{order.order_no[2:]}{secrets.randbelow(100):02d}", order_id=order.id,
                        reason=reason[:500], status="requested", conversation_id=conversation_id)
    session.add(rma)
    session.commit()
    return rma

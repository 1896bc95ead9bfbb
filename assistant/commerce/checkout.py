"""Signed, expiring checkout links and the cart they describe."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from assistant.commerce.models import CheckoutOpen, Coupon, Variant, utcnow
from assistant.commerce.service import Prices, coupon_discount

_SALT = "kefu.checkout.v1"


@dataclass(frozen=True)
class CartLine:
    sku: str
    name_zh: str
    name_en: str
    color_zh: str
    color_en: str
    size: str
    quantity: int
    unit_price: int  # fen
    product_sku: str

    @property
    def total(self) -> int:
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class Cart:
    lines: list[CartLine]
    coupon_code: str | None
    discount: int  # fen
    coupon_problem: str | None  # why the coupon does not apply, if it does not

    @property
    def subtotal(self) -> int:
        return sum(line.total for line in self.lines)

    @property
    def total(self) -> int:
        return self.subtotal - self.discount


class CheckoutError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code  # expired / invalid / unavailable


def sign(secret: str, items: list[tuple[int, int]], coupon_code: str | None) -> str:
    return URLSafeTimedSerializer(secret, salt=_SALT).dumps({"items": items, "coupon": coupon_code})


def load_cart(session: Session, secret: str, token: str, max_age_s: int) -> Cart:
    """The cart of a checkout token, priced now from the database, coupon applied when valid."""
    try:
        data = URLSafeTimedSerializer(secret, salt=_SALT).loads(token, max_age=max_age_s)
    except SignatureExpired as error:
        raise CheckoutError("expired") from error
    except BadSignature as error:
        raise CheckoutError("invalid") from error
    lines = []
    prices = Prices(session)
    for variant_id, quantity in data["items"]:
        variant = session.get(Variant, int(variant_id))
        if variant is None:
            raise CheckoutError("unavailable")
        product = variant.product
        lines.append(CartLine(sku=variant.sku, name_zh=product.name_zh, name_en=product.name_en,
                              color_zh=variant.color_zh, color_en=variant.color_en, size=variant.size,
                              quantity=int(quantity), unit_price=prices.of(variant), product_sku=product.sku))
    coupon = session.scalar(select(Coupon).where(Coupon.code == data["coupon"])) if data.get("coupon") else None
    subtotal = sum(line.total for line in lines)
    discount, problem = coupon_discount(coupon, subtotal)
    return Cart(lines=lines, coupon_code=coupon.code if coupon else None, discount=discount,
                coupon_problem=problem)


def record_open(session: Session, token: str) -> None:
    """Count a shopper opening a checkout link (the caller commits)."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    row = session.get(CheckoutOpen, digest)
    if row is None:
        session.add(CheckoutOpen(token_sha256=digest))
    else:
        row.opens += 1
        row.last_opened_at = utcnow()

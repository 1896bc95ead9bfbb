"""Shop operations behind the actions: verification, coupons, cancellation, returns, checkout."""

from __future__ import annotations

import datetime as dt
import subprocess
import time

import pytest
from sqlalchemy import select

from assistant.commerce import checkout, db, demo
from assistant.commerce.models import Order, ReturnRequest
from assistant.commerce.service import (ShopError, cancel_order, create_return, holder_key, issue_coupon,
                                        verify_order)
from assistant.settings import PROJECT_ROOT, Settings


@pytest.fixture()
def session(tmp_path):
    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    db.upgrade(url)
    with db.session_factory(url)() as s:
        demo.generate(s, seed=3)
        yield s


def first(session, status: str) -> Order:
    return session.scalars(select(Order).where(Order.status == status).order_by(Order.id)).first()


def test_an_order_opens_only_for_its_owner(session):
    order = first(session, "shipped")
    assert verify_order(session, order.order_no, phone_last4=order.customer.phone[-4:]).id == order.id
    assert verify_order(session, order.order_no.lower(), customer_id=order.customer_id).id == order.id
    wrong = "0000" if order.customer.phone[-4:] != "0000" else "1111"
    for kwargs in ({"phone_last4": wrong}, {"customer_id": order.customer_id + 1}, {}):
        with pytest.raises(ShopError) as error:
            verify_order(session, order.order_no, **kwargs)
        assert error.value.code == "not_verified"
    with pytest.raises(ShopError) as error:
        verify_order(session, "KF00000000", phone_last4="1234")
    assert error.value.code == "order_not_found"


def test_one_chat_coupon_per_holder(session):
    holder = holder_key(None, "conversation-1")
    coupon, created = issue_coupon(session, holder)
    again, created_again = issue_coupon(session, holder)
    other, _ = issue_coupon(session, holder_key(None, "conversation-2"))
    assert created and not created_again and again.code == coupon.code and other.code != coupon.code
    assert coupon.expires_at > coupon.created_at and coupon.threshold > coupon.discount
    assert holder_key(42, "x") == "customer:42"


def test_cancel_only_before_shipping(session):
    paid, shipped = first(session, "paid"), first(session, "shipped")
    assert cancel_order(session, paid).status == "cancelled"
    with pytest.raises(ShopError, match="already_cancelled"):
        cancel_order(session, paid)
    with pytest.raises(ShopError, match="already_shipped"):
        cancel_order(session, shipped)


def test_return_creates_one_rma(session):
    delivered = session.scalars(select(Order).where(Order.status == "delivered")
                                .order_by(Order.created_at.desc())).first()
    rma = create_return(session, delivered, "尺码不合适", "conv-1")
    assert session.scalar(select(ReturnRequest).where(ReturnRequest.rma_no == rma.rma_no)).order_id == delivered.id
    with pytest.raises(ShopError, match="return_exists"):
        create_return(session, delivered, "again", "conv-1")
    with pytest.raises(ShopError, match="not_shipped"):
        create_return(session, first(session, "paid"), "x", "conv-1")


def test_checkout_token_prices_the_cart_and_expires(session):
    coupon, _ = issue_coupon(session, holder_key(None, "conv-checkout"))
    order = first(session, "delivered")
    variant = max(order.items, key=lambda i: i.unit_price).variant
    quantity = max(1, -(-coupon.threshold // variant.price))  # enough to reach the threshold
    token = checkout.sign("secret", [(variant.id, quantity)], coupon.code)
    cart = checkout.load_cart(session, "secret", token, max_age_s=60)
    assert cart.subtotal == variant.price * quantity and cart.discount == coupon.discount
    assert cart.total == cart.subtotal - coupon.discount
    with pytest.raises(checkout.CheckoutError, match="invalid"):
        checkout.load_cart(session, "another secret", token, max_age_s=60)
    time.sleep(1.1)
    with pytest.raises(checkout.CheckoutError, match="expired"):
        checkout.load_cart(session, "secret", token, max_age_s=0)


def test_rasa_project_validates():
    settings = Settings()
    result = subprocess.run(
        [str(settings.rasa_venv / "bin" / "rasa"), "data", "validate", "--domain", "domain.yml", "--data", "data",
         "--config", "config.yml", "--fail-on-warnings"],
        cwd=PROJECT_ROOT / "assistant", capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

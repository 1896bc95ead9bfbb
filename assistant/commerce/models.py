"""SQLAlchemy 2 models of the shop. Money is stored in fen (1/100 yuan) as integers."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Category(Base):
    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(32), unique=True)
    name_zh: Mapped[str] = mapped_column(String(64))
    name_en: Mapped[str] = mapped_column(String(64))

    products: Mapped[list[Product]] = relationship(back_populates="category")


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(32), unique=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"), index=True)
    brand: Mapped[str] = mapped_column(String(64))
    name_zh: Mapped[str] = mapped_column(String(128))
    name_en: Mapped[str] = mapped_column(String(128))
    description_zh: Mapped[str] = mapped_column(Text)
    description_en: Mapped[str] = mapped_column(Text)
    price: Mapped[int] = mapped_column(Integer)  # list price in fen
    cost: Mapped[int] = mapped_column(Integer)  # unit cost in fen
    image_hue: Mapped[int] = mapped_column(Integer)  # 0-359, colour of the demo picture
    lead_time_days: Mapped[int] = mapped_column(Integer, default=14)  # supplier order to stock on the shelf
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    category: Mapped[Category] = relationship(back_populates="products")
    variants: Mapped[list[Variant]] = relationship(back_populates="product", order_by="Variant.id")


class Variant(Base):
    __tablename__ = "variants"

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    sku: Mapped[str] = mapped_column(String(48), unique=True)
    color_zh: Mapped[str] = mapped_column(String(32))
    color_en: Mapped[str] = mapped_column(String(32))
    size: Mapped[str] = mapped_column(String(32))
    price: Mapped[int] = mapped_column(Integer)  # fen
    cost: Mapped[int] = mapped_column(Integer)  # fen
    stock: Mapped[int] = mapped_column(Integer)
    # the merchant's list price in fen; ``price`` is what the shop charges now (the pricing engine
    # moves it within guardrails around this one)
    list_price: Mapped[int | None] = mapped_column(Integer)

    product: Mapped[Product] = relationship(back_populates="variants")
    purchase_orders: Mapped[list[PurchaseOrder]] = relationship(back_populates="variant",
                                                                order_by="PurchaseOrder.expected_on")


class PurchaseOrder(Base):
    """Stock the shop has ordered from its supplier: what is on its way, and when it should arrive."""

    __tablename__ = "purchase_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    ordered_on: Mapped[dt.date] = mapped_column(Date)
    expected_on: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open / received / cancelled
    received_on: Mapped[dt.date | None] = mapped_column(Date)

    variant: Mapped[Variant] = relationship(back_populates="purchase_orders")


class PriceChange(Base):
    """Every change of a variant's price: the price history behind price ranges and price protection."""

    __tablename__ = "price_changes"
    __table_args__ = (Index("ix_price_changes_variant_time", "variant_id", "changed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"))
    price: Mapped[int] = mapped_column(Integer)  # fen, from changed_at on
    previous: Mapped[int | None] = mapped_column(Integer)  # fen, before changed_at
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime)
    source: Mapped[str] = mapped_column(String(16))  # engine / merchant / demo


class Promotion(Base):
    """A time-limited percentage off one product, a category, or (neither set) the whole shop."""

    __tablename__ = "promotions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name_zh: Mapped[str] = mapped_column(String(64))
    name_en: Mapped[str] = mapped_column(String(64))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id"))
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    percent_off: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[dt.datetime] = mapped_column(DateTime)
    ends_at: Mapped[dt.datetime] = mapped_column(DateTime)


class PriceProtectionClaim(Base):
    """The price difference paid back on one order line (once), as a refund or as a coupon."""

    __tablename__ = "price_protection_claims"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_item_id: Mapped[int] = mapped_column(ForeignKey("order_items.id"), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    paid_unit_price: Mapped[int] = mapped_column(Integer)  # fen
    current_unit_price: Mapped[int] = mapped_column(Integer)  # fen
    quantity: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(Integer)  # fen
    payout: Mapped[str] = mapped_column(String(16))  # refund / coupon
    coupon_id: Mapped[int | None] = mapped_column(ForeignKey("coupons.id"))
    conversation_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(32), index=True)
    email: Mapped[str] = mapped_column(String(128))
    address: Mapped[str] = mapped_column(String(256))
    language: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_no: Mapped[str] = mapped_column(String(16), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    # paid -> shipped -> delivered; or cancelled / returned
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    total: Mapped[int] = mapped_column(Integer)  # fen, after discount
    discount: Mapped[int] = mapped_column(Integer, default=0)
    carrier: Mapped[str | None] = mapped_column(String(32))
    tracking_no: Mapped[str | None] = mapped_column(String(32))
    shipping_address: Mapped[str] = mapped_column(String(256))

    customer: Mapped[Customer] = relationship()
    items: Mapped[list[OrderItem]] = relationship(back_populates="order")
    events: Mapped[list[ShipmentEvent]] = relationship(
        back_populates="order", order_by="ShipmentEvent.occurred_at"
    )


class OrderItem(Base):
    __tablename__ = "order_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(Integer)  # fen

    order: Mapped[Order] = relationship(back_populates="items")
    variant: Mapped[Variant] = relationship()


class ShipmentEvent(Base):
    __tablename__ = "shipment_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime)
    # packed / picked_up / in_transit / out_for_delivery / delivered
    status: Mapped[str] = mapped_column(String(24))
    location_zh: Mapped[str] = mapped_column(String(64))
    location_en: Mapped[str] = mapped_column(String(64))

    order: Mapped[Order] = relationship(back_populates="events")


class Coupon(Base):
    __tablename__ = "coupons"
    __table_args__ = (UniqueConstraint("campaign", "holder_key", name="uq_coupon_campaign_holder"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(24), unique=True)
    campaign: Mapped[str] = mapped_column(String(32))
    # who holds it: "customer:<id>" or "visitor:<hash of conversation>"
    holder_key: Mapped[str] = mapped_column(String(80))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    threshold: Mapped[int] = mapped_column(Integer)  # minimum cart total in fen
    discount: Mapped[int] = mapped_column(Integer)  # fen off
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class DailySales(Base):
    __tablename__ = "daily_sales"
    __table_args__ = (Index("ix_daily_sales_product_day", "product_id", "day", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    day: Mapped[dt.date] = mapped_column(Date)
    units: Mapped[int] = mapped_column(Integer)
    price: Mapped[int] = mapped_column(Integer)  # average selling price that day, fen
    promo: Mapped[bool] = mapped_column(Boolean)
    stockout: Mapped[bool] = mapped_column(Boolean)


class ReturnRequest(Base):
    __tablename__ = "return_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    rma_no: Mapped[str] = mapped_column(String(24), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="requested")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    conversation_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default="return", server_default="return")  # return/replacement/refund
    photo_id: Mapped[str | None] = mapped_column(String(32))
    defect_type: Mapped[str | None] = mapped_column(String(32))
    defect_confidence: Mapped[float | None] = mapped_column(Float)

    order: Mapped[Order] = relationship()


class VoiceClip(Base):
    """A shopper's voice message (the bytes as sent live at ``path`` under the audio directory)
    and what Whisper heard; the transcript itself is the shopper's message in the conversation."""

    __tablename__ = "voice_clips"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    conversation_id: Mapped[str | None] = mapped_column(String(64))
    media_type: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(255))
    bytes: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)
    sha256: Mapped[str] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(8))
    model: Mapped[str | None] = mapped_column(String(64))
    transcribe_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (Index("ix_voice_clips_conversation", "conversation_id"),)


class Photo(Base):
    """A shopper's photo (the metadata-free bytes live at ``path`` under the photos directory)
    and what the defect classifier saw on it."""

    __tablename__ = "photos"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    conversation_id: Mapped[str | None] = mapped_column(String(64), index=False)
    media_type: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(255))
    bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    label: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str | None] = mapped_column(String(32))
    confidence: Mapped[float | None] = mapped_column(Float)
    probabilities: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    model: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (Index("ix_photos_conversation", "conversation_id"),)


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    language: Mapped[str] = mapped_column(String(8), default="zh")
    channel: Mapped[str] = mapped_column(String(16), default="widget")
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    handoff: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    caller_phone: Mapped[str | None] = mapped_column(String(32))  # phone calls: the caller's number, for agents
    # who answers: "bot", "waiting" (for an agent; the bot still answers), "agent" (Rasa is paused),
    # "callback" (after hours: the next message may hold the phone or email to call back on)
    handoff_status: Mapped[str] = mapped_column(String(16), default="bot", index=True)
    handoff_reason: Mapped[str | None] = mapped_column(String(32))
    handoff_requested_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    agent_user_id: Mapped[int | None] = mapped_column(Integer)
    agent_name: Mapped[str | None] = mapped_column(String(64))
    fallback_streak: Mapped[int] = mapped_column(Integer, default=0)  # the bot could not answer, in a row
    callback_contact: Mapped[str | None] = mapped_column(String(128))  # after hours: call back on this phone/email


class TranscriptMessage(Base):
    __tablename__ = "transcript_messages"
    __table_args__ = (UniqueConstraint("conversation_id", "seq", name="uq_transcript_seq"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    # shopper / bot / system
    sender: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(24))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    # the client's id for a shopper message, so a resent message is stored once
    client_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class CheckoutOpen(Base):
    """A checkout link a shopper opened (the dialog-to-action conversion the analytics report)."""

    __tablename__ = "checkout_opens"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_opened_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    last_opened_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    opens: Mapped[int] = mapped_column(Integer, default=1)

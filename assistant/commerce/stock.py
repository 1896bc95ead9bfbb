"""Stock answers and reorder suggestions: what is on the shelf, what is on its way, what demand says.

Shoppers hear three kinds of facts, each only when it holds:

- the quantity in stock, per variant;
- for a sold-out variant, the expected date of its open purchase order, or, without one, an
  estimate (today + the supplier's lead time) that is said to be an estimate, and only when the
  forecast expects demand for it at all;
- "likely to sell out within N days" only when even the low end of the forecast's 80% interval
  (the 10% quantile) adds up to the stock within N days, N at most ``SELL_OUT_HORIZON``: urgency
  the forecast supports, never invented.

The merchant gets reorder suggestions: demand over lead time plus a review period, plus a safety
stock from the forecast's upper quantile, minus what is on hand and on order.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from assistant.commerce.forecast import Forecast, Forecaster, load_series
from assistant.commerce.models import OrderItem, Product, PurchaseOrder, Variant

log = logging.getLogger(__name__)

SELL_OUT_HORIZON = 14  # the furthest "likely to sell out within N days" may look
REVIEW_DAYS = 7  # how often the merchant is assumed to reorder
STALE_AFTER_DAYS = 7  # a forecast whose history ends longer ago than this is not used


@dataclass
class VariantStock:
    sku: str
    stock: int
    restock_on: dt.date | None = None
    restock_estimated: bool = False  # True: from lead time and forecast, not from a purchase order
    sell_out_days: int | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["restock_on"] = self.restock_on.isoformat() if self.restock_on else None
        return out


class Outlook:
    """Product forecasts split over variants by each variant's share of the product's sales."""

    def __init__(self, forecasts: dict[str, Forecast], shares: dict[int, float], today: dt.date):
        self.forecasts = forecasts
        self.shares = shares
        self.today = today

    def variant(self, variant: Variant) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(low, median, high) units per day from today on."""
        forecast = self.forecasts.get(variant.product.sku)
        if forecast is None:
            return None
        share = self.shares.get(variant.id, 1.0 / max(len(variant.product.variants), 1))
        skip = max(0, (self.today - forecast.days[0]).days)  # days of the forecast already past
        return forecast.low[skip:] * share, forecast.median[skip:] * share, forecast.high[skip:] * share


def variant_shares(session: Session) -> dict[int, float]:
    """Each variant's share of its product's ordered units (add-one smoothed, so a variant nobody
    has ordered yet still gets a little)."""
    units = dict(session.execute(select(OrderItem.variant_id, func.sum(OrderItem.quantity))
                                 .group_by(OrderItem.variant_id)).all())
    shares: dict[int, float] = {}
    for product_id, variant_ids in _variants_by_product(session).items():
        counts = [units.get(v, 0) + 1 for v in variant_ids]
        total = sum(counts)
        shares.update({v: c / total for v, c in zip(variant_ids, counts)})
    return shares


def _variants_by_product(session: Session) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for variant_id, product_id in session.execute(select(Variant.id, Variant.product_id).order_by(Variant.id)):
        out.setdefault(product_id, []).append(variant_id)
    return out


def next_delivery(variant: Variant, today: dt.date) -> PurchaseOrder | None:
    """The earliest open purchase order still due (today or later)."""
    due = [po for po in variant.purchase_orders if po.status == "open" and po.expected_on >= today]
    return min(due, key=lambda po: po.expected_on) if due else None


def variant_stock(variant: Variant, outlook: Outlook | None, today: dt.date) -> VariantStock:
    answer = VariantStock(variant.sku, variant.stock)
    demand = outlook.variant(variant) if outlook else None
    if variant.stock > 0:
        if demand is not None:
            low = np.cumsum(demand[0][:SELL_OUT_HORIZON])
            reached = np.flatnonzero(low >= variant.stock)
            if len(reached):
                answer.sell_out_days = int(reached[0]) + 1
        return answer
    if (order := next_delivery(variant, today)) is not None:
        answer.restock_on = order.expected_on
    elif demand is not None and demand[1][:variant.product.lead_time_days].sum() >= 1.0:
        # nothing on order, but the forecast expects shoppers to want it: a reorder now would land
        # after the supplier's lead time
        answer.restock_on = today + dt.timedelta(days=variant.product.lead_time_days)
        answer.restock_estimated = True
    return answer


def reorder_suggestions(session: Session, outlook: Outlook, today: dt.date,
                        review_days: int = REVIEW_DAYS) -> list[dict]:
    """Per variant: what to order now so that stock covers lead time plus one review period."""
    rows = []
    variants = session.scalars(select(Variant).join(Product).where(Product.active).order_by(Variant.id))
    for variant in variants:
        demand = outlook.variant(variant)
        if demand is None:
            continue
        low, median, high = demand
        days = min(variant.product.lead_time_days + review_days, len(median))
        expected = float(median[:days].sum())
        safety = max(float(high[:days].sum()) - expected, 0.0)
        inbound = sum(po.quantity for po in variant.purchase_orders
                      if po.status == "open" and po.expected_on <= today + dt.timedelta(days=days))
        suggested = max(0, math.ceil(expected + safety - variant.stock - inbound))
        daily = float(median[:days].mean()) if days else 0.0
        rows.append({"sku": variant.sku, "product_sku": variant.product.sku, "stock": variant.stock,
                     "inbound": inbound, "lead_time_days": variant.product.lead_time_days,
                     "cover_days": round(variant.stock / daily, 1) if daily > 0 else None,
                     "demand_over_lead_time": round(expected, 1), "safety_stock": round(safety, 1),
                     "suggested_quantity": suggested})
    rows.sort(key=lambda r: (-(r["suggested_quantity"] > 0), r["cover_days"] if r["cover_days"] is not None
                             else math.inf))
    return rows


class OutlookCache:
    """The forecast of every product from the saved model, recomputed when the model or the sales
    history changes (checked at most every ``refresh_s`` seconds). None when there is no model or
    the history is stale."""

    def __init__(self, model_dir: Path, refresh_s: float = 600.0):
        self.model_dir = model_dir
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._checked = -math.inf
        self._key: tuple | None = None
        self._outlook: Outlook | None = None

    def get(self, session: Session, today: dt.date | None = None) -> Outlook | None:
        today = today or dt.date.today()
        with self._lock:
            if time.monotonic() - self._checked < self.refresh_s and self._key is not None:
                return self._outlook
            self._checked = time.monotonic()
            path = self.model_dir / "tcn.pt"
            if not path.exists():
                self._outlook = None
                return None
            try:
                series = load_series(session)
                key = (path.stat().st_mtime, series.digest(), today)
                if key != self._key:
                    origin = series.days[-1]
                    if (today - origin).days > STALE_AFTER_DAYS:
                        log.info("sales history ends %s: too old for stock forecasts", origin)
                        self._outlook = None
                    else:
                        forecasts = Forecaster.load(self.model_dir).predict(series, origin)
                        self._outlook = Outlook(forecasts, variant_shares(session), today)
                    self._key = key
            except (ValueError, OSError, RuntimeError, KeyError) as error:
                log.warning("no demand forecast: %s", error)
                self._outlook = None
            return self._outlook

"""Daily demand forecasting per product: a temporal convolutional network with prediction intervals.

One global network learns from every product's history. For a forecast origin it reads the last
``window`` days of a product (units scaled by the product's recent level, price relative to its list
price, promotion and stock-out flags, calendar) through causal, dilated 1-D convolutions, and then,
together with what is known about the next ``horizon`` days (weekday, season, the 6.18 / 11.11 /
12.12 festivals) and the product's category, predicts three quantiles of each day's units. The
10%-90% quantiles are the 80% prediction interval; the median is the point forecast.

Stock-out days are censored demand (the shop sold nothing because it had nothing), so they never
count as targets: the loss and the backtest metrics skip them.

    series = load_series(session)
    model = train(series, TrainConfig(), until=series.days[-1])
    forecast = model.predict(series, origin=series.days[-1])   # {sku: Forecast}
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import select
from sqlalchemy.orm import Session
from torch import nn

from assistant.commerce.models import Category, DailySales, Product

ARTIFACT_VERSION = "kefu.forecast.tcn.v1"
QUANTILES = (0.1, 0.5, 0.9)
FESTIVALS = {(6, 18), (11, 11), (12, 12)}
HISTORY_CHANNELS = ["units_scaled", "stockout", "promo", "price_ratio", *[f"dow{i}" for i in range(7)],
                    "doy_sin", "doy_cos", "festival"]
FUTURE_CHANNELS = [*[f"dow{i}" for i in range(7)], "doy_sin", "doy_cos", "festival"]

Progress = Callable[[str, int, int, float], None]  # (stage, step, steps, loss)


@dataclass
class Series:
    """Daily history of every product, as aligned arrays (products x days)."""

    skus: list[str]
    categories: list[str]  # category code per product
    days: list[dt.date]
    units: np.ndarray  # float32 (P, T)
    price_ratio: np.ndarray  # selling price / list price
    promo: np.ndarray  # bool
    stockout: np.ndarray  # bool

    def until(self, last_day: dt.date) -> Series:
        """The history up to and including ``last_day`` (nothing after it)."""
        end = self.days.index(last_day) + 1
        return replace(self, days=self.days[:end], units=self.units[:, :end], price_ratio=self.price_ratio[:, :end],
                       promo=self.promo[:, :end], stockout=self.stockout[:, :end])

    def digest(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps([self.skus, self.categories, self.days[0].isoformat(), self.days[-1].isoformat()]).encode())
        for array in (self.units, self.price_ratio, self.promo, self.stockout):
            h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()


def load_series(session: Session) -> Series:
    """Every active product's daily sales from SQL."""
    products = list(session.execute(
        select(Product.id, Product.sku, Product.price, Category.key)
        .join(Category, Category.id == Product.category_id).where(Product.active).order_by(Product.id)))
    rows = session.execute(select(DailySales.product_id, DailySales.day, DailySales.units, DailySales.price,
                                  DailySales.promo, DailySales.stockout))
    days = sorted({day for day, in session.execute(select(DailySales.day).distinct())})
    if not products or not days:
        raise ValueError("no sales history: generate the demo shop or load the shop's daily sales first")
    position = {p.id: i for i, p in enumerate(products)}
    day_index = {d: i for i, d in enumerate(days)}
    shape = (len(products), len(days))
    units = np.zeros(shape, np.float32)
    price_ratio = np.ones(shape, np.float32)
    promo = np.zeros(shape, bool)
    stockout = np.zeros(shape, bool)
    list_price = np.array([max(p.price, 1) for p in products], np.float32)
    for product_id, day, n, price, is_promo, is_stockout in rows:
        if (i := position.get(product_id)) is None:
            continue
        j = day_index[day]
        units[i, j], price_ratio[i, j] = n, price / list_price[i]
        promo[i, j], stockout[i, j] = is_promo, is_stockout
    return Series([p.sku for p in products], [p.key for p in products], days, units, price_ratio, promo, stockout)


def calendar(days: list[dt.date]) -> np.ndarray:
    """(T, 10): weekday one-hot, day of year as sine/cosine, festival flag."""
    out = np.zeros((len(days), len(FUTURE_CHANNELS)), np.float32)
    for i, day in enumerate(days):
        out[i, day.weekday()] = 1.0
        angle = 2 * math.pi * day.timetuple().tm_yday / 365.25
        out[i, 7], out[i, 8] = math.sin(angle), math.cos(angle)
        out[i, 9] = float((day.month, day.day) in FESTIVALS)
    return out


def future_days(origin: dt.date, horizon: int) -> list[dt.date]:
    return [origin + dt.timedelta(days=h) for h in range(1, horizon + 1)]


# ---------------------------------------------------------------------------------------------- network


class CausalConv(nn.Module):
    """A 1-D convolution whose output at step t sees inputs at t, t-d, t-2d... and never after t."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, dilation: int):
        super().__init__()
        self.left = (kernel - 1) * dilation
        self.conv = nn.Conv1d(channels_in, channels_out, kernel, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, C', T)
        return self.conv(nn.functional.pad(x, (self.left, 0)))


class TemporalBlock(nn.Module):
    def __init__(self, channels_in: int, channels: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(CausalConv(channels_in, channels, kernel, dilation), nn.GELU(), nn.Dropout(dropout),
                                 CausalConv(channels, channels, kernel, dilation), nn.GELU(), nn.Dropout(dropout))
        self.skip = nn.Conv1d(channels_in, channels, 1) if channels_in != channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + self.skip(x)


class TCN(nn.Module):
    """Causal dilated convolutions over the history, then a head that also reads the known future."""

    def __init__(self, n_history: int, n_future: int, horizon: int, n_categories: int, channels: int = 32,
                 kernel: int = 3, dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32), dropout: float = 0.1):
        super().__init__()
        blocks, width = [], n_history
        for d in dilations:
            blocks.append(TemporalBlock(width, channels, kernel, d, dropout))
            width = channels
        self.tcn = nn.Sequential(*blocks)
        self.category = nn.Embedding(max(n_categories, 1), 4)
        self.horizon = horizon
        self.head = nn.Sequential(nn.Linear(channels * 2 + 4 + n_future * horizon, 128), nn.GELU(),
                                  nn.Dropout(dropout), nn.Linear(128, horizon * len(QUANTILES)))
        self.receptive_field = 1 + 2 * (kernel - 1) * sum(dilations)

    def encode(self, history: torch.Tensor) -> torch.Tensor:
        """(B, T, C) history -> (B, channels, T) causal features."""
        return self.tcn(history.transpose(1, 2))

    def forward(self, history: torch.Tensor, future: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """-> (B, horizon, 3) quantiles of scaled units, ordered low <= median <= high."""
        h = self.encode(history)
        summary = torch.cat([h[:, :, -1], h[:, :, -7:].mean(-1)], dim=1)
        out = self.head(torch.cat([summary, self.category(category), future.flatten(1)], dim=1))
        out = out.view(-1, self.horizon, len(QUANTILES))
        # the median is the recent in-stock level times a learned factor per day: the network learns
        # how demand moves from where it is (weekday, season, festivals), not the level itself
        units, in_stock = history[:, -28:, 0], 1.0 - history[:, -28:, 1]
        level = (units * in_stock).sum(-1) / in_stock.sum(-1).clamp(min=1.0)
        median = level.unsqueeze(-1) * torch.exp(out[..., 1].clamp(-4.0, 3.0))
        low = median - nn.functional.softplus(out[..., 0])
        high = median + nn.functional.softplus(out[..., 2])
        return torch.stack([low, median, high], dim=-1)


def pinball(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean quantile loss over the unmasked (not stocked-out) target days."""
    q = torch.tensor(QUANTILES, dtype=predicted.dtype)
    error = target.unsqueeze(-1) - predicted
    loss = torch.maximum(q * error, (q - 1) * error).sum(-1)
    return (loss * mask).sum() / mask.sum().clamp(min=1)


# ---------------------------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class TrainConfig:
    window: int = 112  # days of history the network reads
    horizon: int = 28
    channels: int = 32
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    dropout: float = 0.1
    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 2e-3
    stride: int = 7  # days between training windows
    seed: int = 7


def _scale(units: np.ndarray, stockout: np.ndarray) -> np.ndarray:
    """Each row's level: mean units over its in-stock days of the last 56 days, plus one."""
    recent_units, recent_in = units[..., -56:], ~stockout[..., -56:]
    return (recent_units * recent_in).sum(-1) / np.maximum(recent_in.sum(-1), 1) + 1.0


def _history(series: Series, products: np.ndarray, ends: np.ndarray, window: int,
             cal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """History tensors for windows ending at day index ``ends`` (inclusive): (N, window, C), scales (N,)."""
    offsets = np.arange(-window + 1, 1)
    idx = ends[:, None] + offsets[None, :]  # (N, window)
    valid = idx >= 0
    idx = np.clip(idx, 0, None)
    units = series.units[products[:, None], idx] * valid
    stockout = series.stockout[products[:, None], idx] & valid
    scale = _scale(units, stockout)
    x = np.concatenate([
        (units / scale[:, None])[..., None],
        stockout[..., None].astype(np.float32),
        (series.promo[products[:, None], idx] & valid)[..., None].astype(np.float32),
        np.where(valid, series.price_ratio[products[:, None], idx], 1.0)[..., None],
        cal[idx] * valid[..., None],
    ], axis=-1).astype(np.float32)
    return x, scale.astype(np.float32)


@dataclass
class Forecast:
    """One product's forecast: the days after the origin, with the median and the 80% interval."""

    sku: str
    origin: dt.date
    days: list[dt.date]
    median: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def total(self, days: int) -> tuple[float, float, float]:
        """(low, median, high) units over the first ``days`` days (the interval bounds summed, which
        is wider than the true interval of the sum: a cautious figure)."""
        return float(self.low[:days].sum()), float(self.median[:days].sum()), float(self.high[:days].sum())

    def to_dict(self) -> dict:
        return {"sku": self.sku, "origin": self.origin.isoformat(), "days": [d.isoformat() for d in self.days],
                "median": self.median.round(2).tolist(), "low": self.low.round(2).tolist(),
                "high": self.high.round(2).tolist()}


@dataclass
class Forecaster:
    network: TCN
    config: TrainConfig
    categories: list[str]
    meta: dict = field(default_factory=dict)

    def predict(self, series: Series, origin: dt.date, skus: list[str] | None = None) -> dict[str, Forecast]:
        """Forecasts for the ``horizon`` days after ``origin``, reading only days up to ``origin``."""
        history = series.until(origin)
        wanted = [i for i, sku in enumerate(history.skus) if skus is None or sku in skus]
        if not wanted:
            return {}
        products = np.array(wanted)
        ends = np.full(len(products), len(history.days) - 1)
        x, scale = _history(history, products, ends, self.config.window, calendar(history.days))
        days = future_days(origin, self.config.horizon)
        future = np.broadcast_to(calendar(days), (len(products), len(days), len(FUTURE_CHANNELS)))
        category_index = {c: i for i, c in enumerate(self.categories)}
        cats = np.array([category_index.get(history.categories[i], 0) for i in products])
        self.network.eval()
        with torch.no_grad():
            q = self.network(torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(future)),
                             torch.from_numpy(cats)).numpy()
        q = np.clip(q * scale[:, None, None], 0, None)
        return {history.skus[i]: Forecast(history.skus[i], origin, days, q[n, :, 1], q[n, :, 0], q[n, :, 2])
                for n, i in enumerate(products)}

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.network.state_dict(), directory / "tcn.pt")
        meta = {**self.meta, "version": ARTIFACT_VERSION, "config": asdict(self.config),
                "categories": self.categories, "quantiles": list(QUANTILES), "history_channels": HISTORY_CHANNELS,
                "future_channels": FUTURE_CHANNELS, "receptive_field_days": self.network.receptive_field}
        (directory / "forecast.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False, default=str))

    @classmethod
    def load(cls, directory: Path) -> Forecaster:
        meta = json.loads((directory / "forecast.json").read_text())
        if meta.get("version") != ARTIFACT_VERSION:
            raise ValueError(f"{directory} holds a {meta.get('version')} model; kefu reads {ARTIFACT_VERSION}")
        config = TrainConfig(**{**meta["config"], "dilations": tuple(meta["config"]["dilations"])})
        network = _network(config, len(meta["categories"]))
        network.load_state_dict(torch.load(directory / "tcn.pt", weights_only=True))
        network.eval()
        return cls(network, config, meta["categories"], meta)


def _network(config: TrainConfig, n_categories: int) -> TCN:
    return TCN(len(HISTORY_CHANNELS), len(FUTURE_CHANNELS), config.horizon, n_categories, config.channels,
               dilations=config.dilations, dropout=config.dropout)


def training_windows(series: Series, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(product, last history day index) of every training window whose whole horizon is in ``series``."""
    last_end = len(series.days) - 1 - config.horizon
    ends = np.arange(min(config.window // 2, last_end), last_end + 1, config.stride)
    products = np.repeat(np.arange(len(series.skus)), len(ends))
    return products, np.tile(ends, len(series.skus))


def train(series: Series, config: TrainConfig = TrainConfig(), until: dt.date | None = None,
          progress: Progress | None = None) -> Forecaster:
    """Fit the network on the history up to ``until`` (default: all of it); nothing after it is read."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    history = series.until(until) if until else series
    if len(history.days) < config.horizon + 28:
        raise ValueError(f"need at least {config.horizon + 28} days of sales history, got {len(history.days)}")
    categories = sorted(set(history.categories))
    category_index = {c: i for i, c in enumerate(categories)}
    cal = calendar(history.days + future_days(history.days[-1], config.horizon))
    products, ends = training_windows(history, config)
    x, scale = _history(history, products, ends, config.window, cal)
    targets_idx = ends[:, None] + np.arange(1, config.horizon + 1)[None, :]
    y = history.units[products[:, None], targets_idx] / scale[:, None]
    mask = (~history.stockout[products[:, None], targets_idx]).astype(np.float32)
    future = cal[targets_idx]
    cats = np.array([category_index[history.categories[p]] for p in products])
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in (x, future, cats, y.astype(np.float32), mask)]
    network = _network(config, len(categories))
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    steps = math.ceil(len(products) / config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.learning_rate, total_steps=config.epochs * steps)
    started = time.perf_counter()
    losses = []
    for epoch in range(config.epochs):
        network.train()
        order = torch.from_numpy(rng.permutation(len(products)))
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            batch = order[start:start + config.batch_size]
            xb, fb, cb, yb, mb = (t[batch] for t in tensors)
            loss = pinball(network(xb, fb, cb), yb, mb)
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(network.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            total += loss.item() * len(batch)
        losses.append(total / len(order))
        if progress:
            progress("TCN", epoch + 1, config.epochs, losses[-1])
    network.eval()
    meta = {"trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "train_seconds": round(time.perf_counter() - started, 1), "windows": int(len(products)),
            "products": len(history.skus), "history": [history.days[0].isoformat(), history.days[-1].isoformat()],
            "data_sha256": history.digest(), "losses": [round(v, 4) for v in losses]}
    return Forecaster(network, config, categories, meta)

"""Demand forecasting: the TCN never reads the future, persists exactly, and the backtest scores honestly."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import numpy as np
import pytest
import torch

from assistant.commerce import backtest
from assistant.commerce.forecast import (
    FUTURE_CHANNELS,
    HISTORY_CHANNELS,
    TCN,
    Forecast,
    Forecaster,
    Series,
    TrainConfig,
    train,
)

TINY = TrainConfig(window=56, horizon=14, channels=8, dilations=(1, 2, 4, 8), epochs=2, stride=7)


def synthetic(products: int = 5, days: int = 240, seed: int = 3) -> Series:
    rng = np.random.default_rng(seed)
    start = dt.date(2025, 1, 1)
    day_list = [start + dt.timedelta(days=i) for i in range(days)]
    weekend = np.array([d.weekday() >= 5 for d in day_list])
    promo = rng.random((products, days)) < 0.05
    level = rng.uniform(2, 10, size=(products, 1))
    units = rng.poisson(level * (1 + 0.5 * weekend) * np.where(promo, 2.0, 1.0)).astype(np.float32)
    stockout = np.zeros((products, days), bool)
    stockout[0, 100:106] = True
    units[stockout] = 0
    return Series([f"SKU{i}" for i in range(products)], ["home" if i % 2 else "apparel" for i in range(products)],
                  day_list, units, np.where(promo, 0.8, 1.0).astype(np.float32), promo, stockout)


def test_convolutions_are_causal():
    torch.manual_seed(0)
    network = TCN(len(HISTORY_CHANNELS), len(FUTURE_CHANNELS), 7, 2, channels=8, dilations=(1, 2, 4, 8))
    network.eval()
    x = torch.randn(3, 50, len(HISTORY_CHANNELS))
    changed = x.clone()
    changed[:, 30:, :] += torch.randn(3, 20, len(HISTORY_CHANNELS)) * 10
    with torch.no_grad():
        before, after = network.encode(x), network.encode(changed)
    assert torch.equal(before[:, :, :30], after[:, :, :30])  # nothing before step 30 saw steps 30+
    assert not torch.allclose(before[:, :, 30:], after[:, :, 30:])
    assert network.receptive_field == 1 + 2 * 2 * (1 + 2 + 4 + 8)


@pytest.fixture(scope="module")
def trained() -> tuple[Series, Forecaster]:
    series = synthetic()
    return series, train(series, TINY, until=series.days[200])


def test_training_and_forecasts_read_nothing_after_the_origin(trained):
    series, model = trained
    origin = series.days[200]
    assert model.meta["history"][1] == origin.isoformat()
    leaked = replace(series, units=series.units.copy())
    leaked.units[:, 201:] *= 50  # a wildly different future
    again = train(leaked, TINY, until=origin)
    for name, param in model.network.state_dict().items():
        assert torch.equal(param, again.network.state_dict()[name]), name
    first, second = model.predict(series, origin), model.predict(leaked, origin)
    assert set(first) == set(series.skus)
    for sku, f in first.items():
        assert f.days[0] == origin + dt.timedelta(days=1) and len(f.days) == TINY.horizon
        assert np.array_equal(f.median, second[sku].median)
        assert (f.low <= f.median).all() and (f.median <= f.high).all() and (f.low >= 0).all()


def test_saved_model_describes_itself_and_predicts_identically(trained, tmp_path):
    series, model = trained
    model.save(tmp_path)
    loaded = Forecaster.load(tmp_path)
    assert loaded.meta["version"] == "kefu.forecast.tcn.v1" and loaded.meta["data_sha256"] == model.meta["data_sha256"]
    assert loaded.meta["quantiles"] == [0.1, 0.5, 0.9] and loaded.config == model.config
    origin = series.days[-1]
    a, b = model.predict(series, origin), loaded.predict(series, origin)
    assert all(np.array_equal(a[s].high, b[s].high) for s in a)
    (tmp_path / "forecast.json").write_text('{"version": "other"}')
    with pytest.raises(ValueError, match="kefu reads"):
        Forecaster.load(tmp_path)


def test_too_short_a_history_is_a_clear_error():
    series = synthetic(days=30)
    with pytest.raises(ValueError, match="days of sales history"):
        train(series, TINY)


def test_seasonal_naive_repeats_last_week_and_fills_stockouts():
    series = synthetic()
    origin = series.days[105]  # product 0 is out of stock on days 100-105
    f = backtest.seasonal_naive(series, origin, 14)
    last_week = series.units[1, 99:106]
    assert np.array_equal(f["SKU1"].median[:7], last_week) and np.array_equal(f["SKU1"].median[7:], last_week)
    assert (f["SKU0"].median[:7] > 0).all()  # not the censored zeros


def test_metrics_skip_stockout_days_and_match_hand_computation():
    series = synthetic(products=1, days=60)
    series.units[0, 40:44] = [4, 0, 2, 10]
    series.stockout[0, :] = False
    series.stockout[0, 41] = True  # its zero is missing demand
    days = series.days[40:44]
    forecast = Forecast("SKU0", series.days[39], days, np.array([2.0, 5.0, 2.0, 5.0]), np.array([1.0, 0, 1, 6]),
                        np.array([3.0, 9, 3, 9]))
    m = backtest.metrics([backtest.score(series, {"SKU0": forecast})])
    assert m["points"] == 3
    assert m["wape"] == pytest.approx((2 + 0 + 5) / 16)
    assert m["smape"] == pytest.approx((2 * 2 / 6 + 0 + 2 * 5 / 15) / 3)
    assert m["coverage_80"] == pytest.approx(1 / 3)  # 4 in [1, 3]? no; 2 in [1, 3] yes; 10 in [6, 9] no


def test_backtest_scores_every_model_at_every_origin(tmp_path):
    series = synthetic(days=220)
    models = backtest.models(TINY)
    report = backtest.backtest(series, models, n_origins=2, horizon=14, log=lambda _: None)
    assert report["origins"] == [series.days[-29].isoformat(), series.days[-15].isoformat()]
    for name in models:
        m = report["models"][name]
        assert len(m["per_origin"]) == 2 and 0 < m["wape"] < 2 and 0 <= m["coverage_80"] <= 1 and m["mase"] > 0
    plot = backtest.write_report(series, report, tmp_path, sample_skus=2)
    assert plot.stat().st_size > 10_000 and (tmp_path / "forecast_report.json").exists()

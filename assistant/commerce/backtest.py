"""Rolling-origin backtests of the demand forecasters: the TCN against seasonal-naive and ETS.

For each origin (the last day of history the forecasters may read), every model forecasts the next
``horizon`` days of every product, and the forecasts are scored against what was sold. The TCN is
retrained at every origin on the history up to it, so no model ever sees the days it is scored on.
Stock-out days are left out of the scores: their zero is missing demand, not demand.

Metrics, pooled over products, days and origins: WAPE (sum of absolute errors over sum of units),
sMAPE, MASE (mean absolute error over the in-sample mean absolute error of a weekly-seasonal naive
forecast, per product and origin, then averaged) and the coverage of the 80% interval.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from assistant.commerce.forecast import Forecast, Series, TrainConfig, future_days, train

SEASON = 7
Model = Callable[[Series, dt.date, int], dict[str, Forecast]]


def _fill_stockouts(units: np.ndarray, stockout: np.ndarray) -> np.ndarray:
    """Stock-out days replaced by the mean of the in-stock days of the same weekday (censored demand)."""
    filled = units.astype(np.float64).copy()
    for weekday in range(SEASON):
        days = np.arange(len(units))[(np.arange(len(units)) - len(units) + 1) % SEASON == weekday]
        in_stock = days[~stockout[days]]
        value = units[in_stock].mean() if len(in_stock) else units[~stockout].mean() if (~stockout).any() else 0.0
        filled[days[stockout[days]]] = value
    return filled


def seasonal_naive(series: Series, origin: dt.date, horizon: int) -> dict[str, Forecast]:
    """Each weekday repeats its value from the last week; the interval comes from the in-sample
    errors of the same rule over the last 16 weeks."""
    history = series.until(origin)
    days = future_days(origin, horizon)
    out = {}
    for i, sku in enumerate(history.skus):
        filled = _fill_stockouts(history.units[i], history.stockout[i])
        last_week = filled[-SEASON:]
        median = np.array([last_week[h % SEASON] for h in range(horizon)])
        recent = filled[-16 * SEASON:]
        errors = recent[SEASON:] - recent[:-SEASON]
        low_e, high_e = np.quantile(errors, [0.1, 0.9]) if len(errors) else (0.0, 0.0)
        out[sku] = Forecast(sku, origin, days, median, np.clip(median + low_e, 0, None), median + high_e)
    return out


def ets(series: Series, origin: dt.date, horizon: int, fit_days: int = 365) -> dict[str, Forecast]:
    """statsmodels ETS (additive error, damped additive trend, additive weekly season) per product,
    fitted on the last ``fit_days`` days, with its 80% prediction interval."""
    import pandas as pd
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    history = series.until(origin)
    days = future_days(origin, horizon)
    out = {}
    for i, sku in enumerate(history.skus):
        y = _fill_stockouts(history.units[i], history.stockout[i])[-fit_days:]
        # a dated series: statsmodels 0.15's prediction summary needs an index
        dated = pd.Series(y, index=pd.date_range(end=pd.Timestamp(origin), periods=len(y), freq="D"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fitted = ETSModel(dated, error="add", trend="add", damped_trend=True, seasonal="add",
                                  seasonal_periods=SEASON).fit(disp=False, maxiter=200)
                frame = fitted.get_prediction(start=len(y), end=len(y) + horizon - 1).summary_frame(alpha=0.2)
                median = np.asarray(frame["mean"], dtype=np.float64)
                low, high = np.asarray(frame["pi_lower"]), np.asarray(frame["pi_upper"])
            except (ValueError, np.linalg.LinAlgError):  # a flat or degenerate series: fall back to its mean
                median = np.full(horizon, y.mean())
                low, high = median * 0.5, median * 1.5
        out[sku] = Forecast(sku, origin, days, np.clip(median, 0, None), np.clip(low, 0, None), np.clip(high, 0, None))
    return out


def tcn_model(config: TrainConfig) -> Model:
    def forecast(series: Series, origin: dt.date, horizon: int) -> dict[str, Forecast]:
        model = train(series, replace(config, horizon=horizon), until=origin)
        return model.predict(series, origin)

    return forecast


def models(config: TrainConfig) -> dict[str, Model]:
    """Every forecaster the backtest knows, by name (the TCN with ``config``)."""
    return {"tcn": tcn_model(config), "seasonal_naive": seasonal_naive, "ets": ets}


def origins(series: Series, count: int, horizon: int) -> list[dt.date]:
    """The last ``count`` non-overlapping origins whose horizon is fully observed, oldest first."""
    last = len(series.days) - 1
    return [series.days[last - horizon * k] for k in range(count, 0, -1)]


def score(series: Series, forecasts: dict[str, Forecast]) -> dict[str, np.ndarray]:
    """Per-point errors of one origin's forecasts, stock-out days left out."""
    index = {d: i for i, d in enumerate(series.days)}
    actual, median, low, high, mase_rows = [], [], [], [], []
    for i, sku in enumerate(series.skus):
        f = forecasts.get(sku)
        if f is None:
            continue
        cols = np.array([index[d] for d in f.days])
        keep = ~series.stockout[i, cols]
        y = series.units[i, cols][keep]
        actual.append(y)
        median.append(f.median[keep])
        low.append(f.low[keep])
        high.append(f.high[keep])
        start = index[f.origin]
        past = series.units[i, :start + 1]
        in_stock = ~series.stockout[i, :start + 1]
        pairs = in_stock[SEASON:] & in_stock[:-SEASON]
        naive_mae = np.abs(past[SEASON:] - past[:-SEASON])[pairs].mean() if pairs.any() else np.nan
        if len(y) and naive_mae and np.isfinite(naive_mae):
            mase_rows.append(np.abs(y - f.median[keep]).mean() / naive_mae)
    return {"actual": np.concatenate(actual), "median": np.concatenate(median), "low": np.concatenate(low),
            "high": np.concatenate(high), "mase": np.array(mase_rows)}


def metrics(points: list[dict[str, np.ndarray]]) -> dict[str, float]:
    y = np.concatenate([p["actual"] for p in points])
    f = np.concatenate([p["median"] for p in points])
    low = np.concatenate([p["low"] for p in points])
    high = np.concatenate([p["high"] for p in points])
    denominator = np.abs(y) + np.abs(f)
    smape = np.where(denominator > 0, 2 * np.abs(y - f) / np.where(denominator > 0, denominator, 1), 0.0)
    return {"wape": float(np.abs(y - f).sum() / max(y.sum(), 1e-9)), "smape": float(smape.mean()),
            "mase": float(np.concatenate([p["mase"] for p in points]).mean()),
            "coverage_80": float(((y >= low) & (y <= high)).mean()), "points": int(len(y))}


def backtest(series: Series, models: dict[str, Model], n_origins: int = 4, horizon: int = 28,
             log: Callable[[str], None] = print) -> dict:
    """Every model at every origin: pooled metrics, per-origin metrics, seconds, and the last origin's
    forecasts (for the plot)."""
    dates = origins(series, n_origins, horizon)
    report: dict = {"origins": [o.isoformat() for o in dates], "horizon": horizon,
                    "products": len(series.skus), "models": {}, "last_forecasts": {}}
    for name, model in models.items():
        points, per_origin, seconds = [], [], 0.0
        for origin in dates:
            started = time.perf_counter()
            forecasts = model(series, origin, horizon)
            seconds += time.perf_counter() - started
            scored = score(series, forecasts)
            points.append(scored)
            per_origin.append({"origin": origin.isoformat(), **metrics([scored])})
            log(f"{name:15s} origin {origin}: WAPE {per_origin[-1]['wape']:.3f}")
            report["last_forecasts"][name] = forecasts
        report["models"][name] = {**metrics(points), "seconds": round(seconds, 1), "per_origin": per_origin}
    return report


def write_report(series: Series, report: dict, directory: Path, sample_skus: int = 4) -> Path:
    """``forecast_report.json`` and ``forecast_samples.png`` (actual vs forecast, last origin)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    forecasts = report["last_forecasts"]
    payload = {k: v for k, v in report.items() if k != "last_forecasts"}
    (directory / "forecast_report.json").write_text(json.dumps(payload, indent=2))
    index = {d: i for i, d in enumerate(series.days)}
    totals = series.units.sum(1)
    picks = [series.skus[i] for i in np.argsort(-totals)[np.linspace(0, len(totals) - 1, sample_skus).astype(int)]]
    fig, axes = plt.subplots(sample_skus, 1, figsize=(11, 2.8 * sample_skus), squeeze=False)
    colours = {"tcn": "tab:red", "seasonal_naive": "tab:green", "ets": "tab:purple"}
    for ax, sku in zip(axes[:, 0], picks):
        i = series.skus.index(sku)
        any_forecast = next(iter(forecasts.values()))[sku]
        start = index[any_forecast.origin] - 55
        end = index[any_forecast.days[-1]]
        days = series.days[start:end + 1]
        ax.plot(days, series.units[i, start:end + 1], color="black", lw=1.2, label="actual units")
        out = [d for d, s in zip(days, series.stockout[i, start:end + 1]) if s]
        if out:
            ax.scatter(out, [0] * len(out), marker="x", color="grey", label="stock-out")
        for name, by_sku in forecasts.items():
            f = by_sku[sku]
            ax.plot(f.days, f.median, color=colours.get(name, None), lw=1.5, label=f"{name} median")
            if name == "tcn":
                ax.fill_between(f.days, f.low, f.high, color=colours["tcn"], alpha=0.15, label="tcn 80% interval")
        ax.axvline(any_forecast.origin, color="grey", ls="--", lw=0.8)
        ax.set_title(f"{sku}: actual vs forecast from {any_forecast.origin}", fontsize=10)
        ax.set_ylabel("units / day")
    axes[0, 0].legend(loc="upper left", fontsize=8, ncol=3)
    fig.tight_layout()
    path = directory / "forecast_samples.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""Demand-forecast benchmark: the TCN against seasonal-naive and ETS in rolling-origin backtests.

    .venv/bin/python benchmarks/forecast.py                 # 4 origins, 28 days ahead, all models
    .venv/bin/python benchmarks/forecast.py --origins 2 --epochs 4

Data: the demo shop's two years of daily sales (164 products, seed 7), generated into a temporary
SQLite database so the run does not depend on what ``var/`` holds. The TCN is retrained at every
origin on the history up to it. Stock-out days are left out of every score.

Prints a table, writes ``benchmarks/results/forecast.json``, the report and plot under
``reports/forecast-benchmark/`` and the forecasting section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.commerce import backtest, db, demo  # noqa: E402
from assistant.commerce.forecast import TrainConfig, load_series  # noqa: E402
from benchmarks.doc import write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "forecast.json"
DEMO_TODAY = dt.date(2026, 11, 1)  # a fixed day, so every run backtests the same shop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--origins", type=int, default=4)
    parser.add_argument("--horizon", type=int, default=28)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--models", default="tcn,seasonal_naive,ets")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args()
    config = TrainConfig() if args.epochs is None else replace(TrainConfig(), epochs=args.epochs)
    with tempfile.TemporaryDirectory(prefix="kefu-forecast-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'shop.db'}"
        db.upgrade(url)
        with db.session_factory(url)() as session:
            demo.generate(session, seed=7, today=DEMO_TODAY)
            session.commit()
            series = load_series(session)
    available = backtest.models(config)
    models = {m: available[m] for m in args.models.split(",") if m in available}
    report = backtest.backtest(series, models, n_origins=args.origins, horizon=args.horizon,
                               log=lambda line: print(line, flush=True))
    backtest.write_report(series, report, ROOT / "reports" / "forecast-benchmark")
    summary = {"date": dt.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
               "demo_today": DEMO_TODAY.isoformat(), "tcn_config": {k: v for k, v in config.__dict__.items()},
               **{k: v for k, v in report.items() if k != "last_forecasts"}}
    lines = table(summary)
    print("\n".join(lines))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2, default=str))
    if not args.no_doc:
        write_doc(summary, lines)


def table(summary: dict) -> list[str]:
    models = summary["models"]
    lines = ["| model | WAPE | sMAPE | MASE | 80% interval coverage | seconds (all origins) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, m in models.items():
        lines.append(f"| {name} | {m['wape']:.3f} | {m['smape']:.3f} | {m['mase']:.3f} | {m['coverage_80']:.3f} | "
                     f"{m['seconds']:.0f} |")
    if "tcn" in models:
        for other in (m for m in models if m != "tcn"):
            margin = 1 - models["tcn"]["wape"] / models[other]["wape"]
            lines.append(f"\nTCN WAPE against {other}: {margin:+.1%} "
                         f"({models['tcn']['wape']:.3f} vs {models[other]['wape']:.3f}; negative means the TCN is worse)")
    return lines


def write_doc(summary: dict, lines: list[str]) -> None:
    write_section("forecast", "## Demand forecasting (`benchmarks/forecast.py`)\n\n"
                  f"{summary['date']}, {summary['machine']}; demo shop (seed 7, today {summary['demo_today']}), "
                  f"{summary['products']} products, {len(summary['origins'])} rolling origins "
                  f"({', '.join(summary['origins'])}), {summary['horizon']} days ahead; the TCN retrained at every "
                  "origin; stock-out days not scored.\n\n" + "\n".join(lines))


if __name__ == "__main__":
    main()

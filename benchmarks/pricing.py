"""Dynamic-pricing benchmark: the DQN agent against fixed prices and a rule-based baseline in the
demand simulator, over simulated quarters.

    .venv/bin/python benchmarks/pricing.py                  # 91 days, 5 seeds
    .venv/bin/python benchmarks/pricing.py --days 28 --seeds 2

Data: the demo shop (164 products, seed 7) generated into a temporary SQLite database; every
product's price elasticity is estimated from its two years of sales, the simulator is calibrated
with those estimates, the agent is trained there, and then every policy plays the same quarters (the
same random shoppers per seed) from list prices, through the same guardrails (floor cost x 1.10,
ceiling list x 1.30, at most 5% per 15-minute step). Violations are counted on every price move by
an independent check. ``model_optimal`` reads the simulator's own demand model: a reference for how
much margin there is to find, not a contender.

Prints a table, writes ``benchmarks/results/pricing.json``, the report and plot under
``reports/pricing-benchmark/`` and the pricing section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.commerce import db, demo, pricing  # noqa: E402
from benchmarks.doc import write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "pricing.json"
DEMO_TODAY = dt.date(2026, 11, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=91)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=None)
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kefu-pricing-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'shop.db'}"
        db.upgrade(url)
        with db.session_factory(url)() as session:
            demo.generate(session, seed=7, today=DEMO_TODAY)
            started = time.perf_counter()
            elasticities = pricing.estimate_elasticities(session)
            estimate_s = time.perf_counter() - started
            products = pricing.products_for_simulation(session, elasticities)
    config = pricing.AgentConfig(**({"episodes": args.episodes} if args.episodes else {}))
    agent = pricing.train_agent(pricing.Simulator(products), config, elasticities=elasticities)
    started = time.perf_counter()
    result = pricing.evaluate(agent, products, days=args.days, seeds=tuple(range(101, 101 + args.seeds)))
    simulate_s = time.perf_counter() - started
    pricing.write_report(result, ROOT / "reports" / "pricing-benchmark")
    values = np.array([e.elasticity for e in elasticities.values()])
    summary = {"date": dt.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
               "demo_today": DEMO_TODAY.isoformat(), "products": len(products),
               "elasticity": {"median": round(float(np.median(values)), 3),
                              "p10": round(float(np.percentile(values, 10)), 3),
                              "p90": round(float(np.percentile(values, 90)), 3),
                              "median_std_error": round(float(np.median([e.std_error for e in elasticities.values()])), 3),
                              "estimate_seconds": round(estimate_s, 1)},
               "agent": {"train_seconds": agent.meta["train_seconds"], "config": agent.meta["config"]},
               "simulate_seconds": round(simulate_s, 1),
               **{k: v for k, v in result.items() if k != "daily_margin_yuan"}}
    lines = table(summary)
    print("\n".join(lines))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2))
    if not args.no_doc:
        write_doc(summary, lines)


def table(summary: dict) -> list[str]:
    policies = summary["policies"]
    lines = ["| policy | gross margin ¥ | revenue ¥ | units | margin % | guardrail violations | price moves |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, p in policies.items():
        lines.append(f"| {name} | {p['gross_margin_yuan']:,.0f} | {p['revenue_yuan']:,.0f} | {p['units']:,.0f} | "
                     f"{p['margin_rate'] * 100:.1f} | {p['violations_total']} | {p['price_moves']:,} |")
    dqn, rule = policies["dqn"]["gross_margin_yuan"], policies["rule"]["gross_margin_yuan"]
    lines.append(f"\nDQN gross margin {dqn / rule:.3f}x the rule-based baseline's, "
                 f"{dqn / policies['fixed']['gross_margin_yuan']:.3f}x fixed prices', "
                 f"{dqn / policies['model_optimal']['gross_margin_yuan']:.3f}x the model-optimal reference's "
                 f"(mean of {len(summary['seeds'])} simulated {summary['days']}-day quarters).")
    e = summary["elasticity"]
    lines.append(f"Estimated elasticities: median {e['median']}, 10-90% {e['p10']} to {e['p90']} (demo truth: uniform "
                 f"-2.8 to -1.1), median standard error {e['median_std_error']}. Agent training "
                 f"{summary['agent']['train_seconds']:.0f} s.")
    return lines


def write_doc(summary: dict, lines: list[str]) -> None:
    write_section("pricing", "## Dynamic pricing (`benchmarks/pricing.py`)\n\n"
                  f"{summary['date']}, {summary['machine']}; demo shop (seed 7, today {summary['demo_today']}), "
                  f"{summary['products']} products re-priced every 15 minutes in the simulator calibrated from their "
                  f"sales; guardrails {summary['guardrails']}.\n\n" + "\n".join(lines))


if __name__ == "__main__":
    main()

"""Load: N shoppers at once on loopback, through the widget's WebSocket and, in the same run, through
Rasa's bare REST channel, so the gateway's cost is a ratio on the same machine at the same moment.

Each session runs a scripted multi-turn shopping conversation (greeting, a product search, a
coupon question, shipping fees, where is my order, thanks) with ``--think-s`` between turns. A
turn's latency runs from sending the message to the first reply that names it (the widget) or to
the HTTP reply (REST: it carries every reply of the turn). The stack is started from the Procfile
with honcho (tests/stack.py), as `make run` does; for each N the bare-REST round runs first, then
the widget round, on fresh conversations.

    .venv/bin/python benchmarks/load.py [--sessions 10 100 500] [--think-s 0.5] [--no-doc]

Prints a table, writes benchmarks/results/load.json and the load section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.doc import write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "load.json"
SCRIPT = {
    "en": ["hi", "I'm looking for running shoes", "do you have any coupons?", "how much is shipping?",
           "where is my order", "thanks"],
    "zh": ["在吗", "想买一件羽绒服", "有优惠券吗", "运费多少", "我的快递到哪了", "谢谢"],
}
TURN_TIMEOUT_S = 300.0


@dataclass
class Round:
    channel: str  # "widget" or "rest"
    sessions: int
    turns: int = 0
    errors: int = 0
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        ordered = sorted(self.latencies_ms) or [float("nan")]

        def pct(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 1)

        return {"channel": self.channel, "sessions": self.sessions, "turns": self.turns, "errors": self.errors,
                "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
                "mean_ms": round(statistics.fmean(ordered), 1) if self.latencies_ms else None,
                "throughput_turns_s": round(self.turns / self.wall_s, 2) if self.wall_s else 0.0,
                "wall_s": round(self.wall_s, 1)}


async def widget_session(url: str, language: str, name: str, think_s: float, result: Round) -> None:
    try:
        async with connect(url, max_size=None, open_timeout=60, ping_interval=None) as ws:
            await ws.send(json.dumps({"type": "hello", "language": language}))
            while json.loads(await ws.recv())["type"] != "welcome":
                pass
            for index, text in enumerate(SCRIPT[language]):
                client_id = f"{name}-{index}"
                started = time.perf_counter()
                await ws.send(json.dumps({"type": "text", "text": text, "client_id": client_id}))
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), TURN_TIMEOUT_S))
                    if message.get("reply_to") == client_id and message.get("sender") != "shopper":
                        break
                if message["type"] == "error":
                    result.errors += 1
                else:
                    result.latencies_ms.append((time.perf_counter() - started) * 1000)
                    result.turns += 1
                await asyncio.sleep(think_s)
    except (OSError, asyncio.TimeoutError, ValueError) as error:
        result.errors += 1
        print(f"  {name}: {type(error).__name__}: {error}", file=sys.stderr)


async def rest_session(client: httpx.AsyncClient, url: str, language: str, name: str, think_s: float,
                       result: Round) -> None:
    for text in SCRIPT[language]:
        started = time.perf_counter()
        try:
            response = await client.post(url, json={"sender": name, "message": text,
                                                    "metadata": {"language": language, "channel": "widget"}})
            response.raise_for_status()
            if not response.json():
                raise ValueError("no reply")
        except (httpx.HTTPError, ValueError) as error:
            result.errors += 1
            print(f"  {name}: {type(error).__name__}", file=sys.stderr)
            continue
        result.latencies_ms.append((time.perf_counter() - started) * 1000)
        result.turns += 1
        await asyncio.sleep(think_s)


async def run_round(channel: str, sessions: int, stack, think_s: float, tag: str) -> Round:
    result = Round(channel, sessions)
    languages = ["en", "zh"]
    started = time.perf_counter()
    if channel == "widget":
        await asyncio.gather(*(widget_session(stack.ws_url, languages[i % 2], f"{tag}w{i}", think_s, result)
                               for i in range(sessions)))
    else:
        limits = httpx.Limits(max_connections=sessions, max_keepalive_connections=sessions)
        async with httpx.AsyncClient(timeout=TURN_TIMEOUT_S, limits=limits) as client:
            url = f"{stack.settings.rasa_url}/webhooks/rest/webhook"
            await asyncio.gather(*(rest_session(client, url, languages[i % 2], f"{tag}r{i}", think_s, result)
                                   for i in range(sessions)))
    result.wall_s = time.perf_counter() - started
    return result


def table(rows: list[dict], ratios: list[dict]) -> str:
    lines = ["| sessions | channel | turns | errors | p50 ms | p95 ms | p99 ms | turns/s |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['sessions']} | {row['channel']} | {row['turns']} | {row['errors']} | {row['p50_ms']} | "
                     f"{row['p95_ms']} | {row['p99_ms']} | {row['throughput_turns_s']} |")
    lines += ["", "| sessions | widget/REST p50 | widget/REST p95 | widget/REST p99 | throughput widget/REST |",
              "|---:|---:|---:|---:|---:|"]
    for ratio in ratios:
        lines.append(f"| {ratio['sessions']} | {ratio['p50']} | {ratio['p95']} | {ratio['p99']} | {ratio['throughput']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--think-s", type=float, default=0.5, help="pause between a reply and the next message")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args()

    from tests.stack import running_stack

    rows, ratios = [], []
    with tempfile.TemporaryDirectory() as work, running_stack(Path(work), Path(work) / "stack.log") as stack:
        asyncio.run(run_round("rest", 2, stack, 0.0, "warm"))  # load models and caches before measuring
        asyncio.run(run_round("widget", 2, stack, 0.0, "warm"))
        for sessions in args.sessions:
            pair = {}
            for channel in ("rest", "widget"):
                result = asyncio.run(run_round(channel, sessions, stack, args.think_s, f"n{sessions}"))
                pair[channel] = result.summary()
                rows.append(pair[channel])
                print(json.dumps(pair[channel]), flush=True)
            widget, rest = pair["widget"], pair["rest"]
            ratios.append({"sessions": sessions, **{p: round(widget[f"{p}_ms"] / rest[f"{p}_ms"], 2)
                                                    for p in ("p50", "p95", "p99")},
                           "throughput": round(widget["throughput_turns_s"] / rest["throughput_turns_s"], 2)
                           if rest["throughput_turns_s"] else None})
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "think_s": args.think_s, "turns_per_session": len(SCRIPT["en"]), "rounds": rows,
              "widget_over_rest": ratios, "measured_at": time.strftime("%Y-%m-%d %H:%M")}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    text = table(rows, ratios)
    print(text)
    if not args.no_doc:
        write_section("load", f"""## Load: concurrent widget sessions against Rasa's bare REST channel

`.venv/bin/python benchmarks/load.py --sessions {' '.join(map(str, args.sessions))} --think-s {args.think_s}`
({report['measured_at']}, {report['machine']['cpus']} CPUs). Each session: {len(SCRIPT['en'])} turns of a
scripted shopping conversation (en and zh alternate), {args.think_s} s between a reply and the next
message; the whole stack on loopback (NLU server, action server, Rasa, knowledge base, gateway). A
turn's latency: message sent -> first reply naming it (widget) or the HTTP reply (REST). The widget
path adds the transcript (SQLite), the handoff desk and the WebSocket to what Rasa does.

{text}
""")


if __name__ == "__main__":
    main()

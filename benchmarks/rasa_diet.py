"""Train and run Rasa's DIETClassifier with Rasa's default pipeline (run by benchmarks/nlu.py).

Runs inside the Rasa 3.6 environment (`.venv-rasa/bin/python benchmarks/rasa_diet.py ...`):
trains on a Rasa NLU YAML file, then parses every message of a JSON list one at a time through
Rasa's Agent, in order, writing predictions, training seconds, per-message latencies and the model size as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import tempfile
import time
from pathlib import Path

# Rasa's default NLU pipeline (rasa/engine/recipes/config_files/default_config.yml) without the
# ResponseSelector, which needs retrieval intents these data sets do not have.
DEFAULT_PIPELINE = """
recipe: default.v1
language: {language}
pipeline:
  - name: WhitespaceTokenizer
  - name: RegexFeaturizer
  - name: LexicalSyntacticFeaturizer
  - name: CountVectorsFeaturizer
  - name: CountVectorsFeaturizer
    analyzer: char_wb
    min_ngram: 1
    max_ngram: 4
  - name: DIETClassifier
    epochs: {epochs}
  - name: EntitySynonymMapper
  - name: FallbackClassifier
    threshold: 0.3
policies: []
assistant_id: kefu-benchmark
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--texts", type=Path, required=True, help="JSON list of messages to parse, in order")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--language", default="en")
    args = parser.parse_args()
    logging.getLogger("rasa").setLevel(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from rasa.core.agent import Agent
    from rasa.model_training import train_nlu

    with tempfile.TemporaryDirectory() as work:
        config = Path(work) / "config.yml"
        config.write_text(DEFAULT_PIPELINE.format(language=args.language, epochs=args.epochs))
        started = time.perf_counter()
        model_path = train_nlu(str(config), str(args.train), output=work, fixed_model_name="diet")
        train_seconds = time.perf_counter() - started
        model_size = Path(model_path).stat().st_size
        agent = Agent.load(model_path)
        texts = json.loads(args.texts.read_text(encoding="utf-8"))

        async def run() -> tuple[list[dict], list[float]]:
            predictions, latencies = [], []
            for text in texts[:5]:
                await agent.parse_message(text)  # warm-up
            for text in texts:
                t0 = time.perf_counter()
                parsed = await agent.parse_message(text)
                latencies.append(1000 * (time.perf_counter() - t0))
                ranking = parsed.get("intent_ranking") or [parsed.get("intent") or {}]
                # FallbackClassifier puts nlu_fallback first; keep DIET's own best intent too
                own = next((r for r in ranking if r.get("name") != "nlu_fallback"), {})
                predictions.append({"intent": (parsed.get("intent") or {}).get("name"),
                                    "diet_intent": own.get("name"), "confidence": own.get("confidence", 0.0)})
            return predictions, latencies

        predictions, latencies = asyncio.run(run())
    args.out.write_text(json.dumps({"train_seconds": train_seconds, "model_bytes": model_size,
                                    "predictions": predictions, "latencies_ms": latencies}))


if __name__ == "__main__":
    main()

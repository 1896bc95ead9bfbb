"""Voice benchmark.

1. Speech recognition: real-time factor and word error rate of every Whisper model with weights on
   this machine (faster-whisper tiny.en and base, int8, beam 5; openai-whisper when given a
   ``.pt`` with --openai-model) on English shopper utterances that espeak-ng speaks here (several
   voices and speeds), in the same run, with the demo catalog's product names in the prompt as the
   gateway does, and with the shop's language model choosing among Whisper's 10 best transcripts
   (built as the gateway builds it, less any sentence of this set: it never reads the test
   sentences) against the same model without it. WER uses Whisper's English text normaliser on
   both sides. ``--tune`` instead sweeps the language model's weight on a separate tuning set (90
   English sentences of the NLU test split, spoken the same way), which is how
   ``channels.voice.shop_lm.WEIGHT`` was chosen.
2. The phone path: the whole stack is started (as the end-to-end tests do) and calls are made the
   way Twilio makes them (20 ms μ-law frames in real time); latency is measured from the last
   frame of the caller's speech to the first byte of the reply's audio (it includes the 700 ms of
   quiet that tells the end of a turn, transcription with the gateway's model, Rasa and espeak-ng).

    .venv/bin/python benchmarks/voice.py [--skip-phone] [--openai-model path.pt] [--no-doc] [--tune]

Prints tables, writes benchmarks/results/voice.json and the voice section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.doc import write_section  # noqa: E402
from channels.voice.audio import decode  # noqa: E402
from channels.voice.transcriber import load_transcriber  # noqa: E402
from tests.voice_audio import speak  # noqa: E402

TUNING = ROOT / "benchmarks" / "results" / "voice_lm_tuning.json"
RESULTS = ROOT / "benchmarks" / "results" / "voice.json"

# what shoppers say to a shop's customer service, written for this benchmark
UTTERANCES = [
    "Where is my order?", "I want to check the status of my order.", "When will my package arrive?",
    "My parcel has not arrived yet.", "Can I change my delivery address?", "I would like to cancel my order.",
    "How do I return these shoes?", "The cup I received is broken.", "The shirt has a stain on the sleeve.",
    "I want a refund for the damaged phone case.", "Can I exchange this jacket for a larger size?",
    "Do you have this dress in red?", "Is the black backpack still in stock?", "How much is the wool sweater?",
    "Are there any coupons today?", "Do you have a discount for new customers?", "I want to buy a down jacket.",
    "Show me some running shoes.", "I am looking for a gift for my mother.", "What is your return policy?",
    "How long does shipping take?", "Do you ship to Hong Kong?", "Can I pay with a credit card?",
    "The price dropped after I bought it. Can I get the difference back?", "I need two of these mugs.",
    "Please add the blue one in medium to my cart.", "I would like to talk to a human agent.",
    "Your delivery was very late and I am not happy.", "Thank you very much, that is all.", "Good morning.",
    "Does this moisturizer suit dry skin?", "Is this charger compatible with my phone?",
    "What sizes do the sneakers come in?", "Can you recommend a warm coat for winter?",
    "How do I use my coupon at checkout?", "The zipper on my bag is broken.", "I received the wrong color.",
    "There is a scratch on the screen of my new phone.", "The box was crushed when it arrived.",
    "I ordered three items but only two arrived.", "Can I still change the size of my order?",
    "When will the grey hoodie be back in stock?", "Do you sell tea sets?", "What are your opening hours?",
    "Is there free shipping on orders over one hundred yuan?", "How can I track my parcel?",
    "I forgot my password.", "Can I get an invoice for my order?", "Please send me the checkout link.",
    "I want to buy the linen shirt in white, size large.", "Do you have anything cheaper?",
    "Which of these two jackets is warmer?", "My refund has not arrived yet.", "Hello, is anyone there?",
]
VOICES = [("en-us", 150), ("en", 165), ("en-us+f3", 140), ("en-gb-x-rp", 175), ("en-us+m3", 160)]
PHONE_QUESTIONS = ["Where is my order?", "Are there any coupons today?", "I want to buy a down jacket.",
                   "What is your return policy?", "How long does shipping take?", "Hello, is anyone there?"]


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    """Levenshtein distance over words (substitutions + deletions + insertions)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp in enumerate(hypothesis, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp))
        previous = current
    return previous[-1]


def spoken_set(texts: list[str] | None = None, voice_offset: int = 0) -> list[dict]:
    items = []
    for i, text in enumerate(UTTERANCES if texts is None else texts):
        voice, speed = VOICES[(i + voice_offset) % len(VOICES)]
        items.append({"id": i, "text": text, "voice": voice, "speed": speed,
                      "samples": decode(speak(text, voice=voice, speed=speed)).samples})
    return items


def tuning_sentences(n: int = 90) -> list[str]:
    """English sentences of the NLU test split (held out from the NLU training data, which the
    shop's language model reads)."""
    import random

    from nlu import data as nlu_data

    texts = [e.text for e in nlu_data.load([ROOT / "assistant" / "tests" / "nlu" / "en.yml"]).examples]
    random.Random(0).shuffle(texts)
    return texts[:n]


def shop_language_model(settings, leave_out: list[str]):  # type: ignore[no-untyped-def]
    """The gateway's shop language model without any sentence of ``leave_out``."""
    from whisper.normalizers import EnglishTextNormalizer

    from assistant.commerce.db import session_factory
    from channels.voice.service import NLU_DATA
    from channels.voice.shop_lm import ShopLanguageModel, shop_texts

    normalise = EnglishTextNormalizer()
    held_out = {normalise(text) for text in leave_out}
    texts = shop_texts(session_factory(settings.db_url), [NLU_DATA])
    kept = {lang: [t for t in lines if normalise(t) not in held_out] for lang, lines in texts.items()}
    return ShopLanguageModel.build(kept), sum(map(len, texts.values())) - sum(map(len, kept.values()))


def shop_words(settings) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """The demo catalog's product names, which the gateway puts in Whisper's prompt."""
    from assistant.commerce.db import session_factory
    from channels.voice.service import VoiceService

    service = VoiceService(settings, session_factory(settings.db_url), transcriber=object())  # type: ignore[arg-type]
    return {language: service.hotwords(language) for language in ("zh", "en")}


def asr(models: list[tuple[str, str, bool, bool]], items: list[dict]) -> list[dict]:
    from whisper.normalizers import EnglishTextNormalizer

    from assistant.settings import get_settings

    normalise = EnglishTextNormalizer()
    settings = get_settings()
    hotwords = shop_words(settings)
    shop_lm, left_out = shop_language_model(settings, [item["text"] for item in items])
    audio_seconds = sum(len(item["samples"]) for item in items) / 16_000
    rows = []
    for backend, model_name, detect, with_lm in models:
        transcriber = load_transcriber(backend, model_name, models_dir=settings.models_dir, beam_size=5,
                                       candidates=settings.whisper_candidates)
        started = time.perf_counter()
        transcriber.warm_up()
        load_s = time.perf_counter() - started
        transcriber.transcribe(items[0]["samples"])  # warm
        errors = words = 0
        seconds, languages, mistakes = [], [], []
        for item in items:
            # the product detects the language (one more encoder pass); given, it is skipped
            result = transcriber.transcribe(item["samples"], language=None if detect else "en", hotwords=hotwords,
                                            language_model=shop_lm if with_lm else None)
            reference, hypothesis = normalise(item["text"]).split(), normalise(result.text).split()
            wrong = word_errors(reference, hypothesis)
            errors += wrong
            words += len(reference)
            seconds.append(result.seconds)
            languages.append(result.language)
            if wrong:
                mistakes.append({"said": item["text"], "heard": result.text, "voice": item["voice"]})
        rows.append({"backend": backend, "model": model_name, "language": "detected" if detect else "given",
                     "shop_lm": with_lm, "candidates": settings.whisper_candidates if with_lm else 1,
                     "lm_left_out": left_out, "utterances": len(items),
                     "audio_seconds": round(audio_seconds, 1), "wer": round(errors / words, 4),
                     "rtf": round(sum(seconds) / audio_seconds, 3),
                     "p50_ms": round(statistics.median(seconds) * 1000), "load_s": round(load_s, 2),
                     "language_en_rate": round(languages.count("en") / len(languages), 3),
                     "mistakes": mistakes[:12]})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "mistakes"}))
    return rows


AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a"}


def packaged_speech() -> dict:
    """Sound files shipped inside the installed packages of both environments, and which of them
    hold speech (Silero VAD, as the gateway uses): candidates for public speech samples. A file
    with speech but no transcript beside it can be listened to, not scored."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    from channels.voice.audio import AudioError, AudioLimits

    roots = {Path(p).resolve() for p in sys.path if p.endswith("site-packages")}
    roots |= {p.resolve() for p in (ROOT / ".venv-rasa" / "lib").glob("python*/site-packages")}
    files = {}
    for root in roots:
        for path in root.rglob("*"):
            if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
                files.setdefault(str(path.relative_to(root)), path)
    speech, unreadable = [], 0
    for name, path in sorted(files.items()):
        try:
            samples = decode(path.read_bytes(), AudioLimits(50_000_000, 600)).samples
        except (AudioError, OSError, ValueError):
            unreadable += 1
            continue
        seconds = sum(t["end"] - t["start"] for t in get_speech_timestamps(samples, VadOptions())) / 16_000
        if seconds >= 0.5:
            speech.append({"file": name, "speech_seconds": round(seconds, 1)})
    return {"files": len(files), "unreadable": unreadable, "with_speech": speech}


def tune(weights: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0)) -> None:
    """WER of Whisper base with the shop language model at several weights, on the tuning set."""
    from whisper.normalizers import EnglishTextNormalizer

    from assistant.settings import get_settings

    normalise = EnglishTextNormalizer()
    settings = get_settings()
    hotwords = shop_words(settings)
    items = spoken_set(tuning_sentences(), voice_offset=2)
    model, _ = shop_language_model(settings, [])
    transcriber = load_transcriber("faster-whisper", "base", models_dir=settings.models_dir, beam_size=5,
                                   candidates=settings.whisper_candidates)
    words = sum(len(normalise(item["text"]).split()) for item in items)
    results = {}
    for weight in weights:
        model.weights["en"] = weight
        errors = 0
        for item in items:
            result = transcriber.transcribe(item["samples"], language="en", hotwords=hotwords, language_model=model)
            errors += word_errors(normalise(item["text"]).split(), normalise(result.text).split())
        results[weight] = round(errors / words, 4)
        print(f"weight {weight}: WER {results[weight]:.1%} on {len(items)} tuning sentences")
    TUNING.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "sentences": len(items),
                                  "candidates": settings.whisper_candidates, "wer_by_weight": results}, indent=2))


def phone(turns_per_question: int = 2) -> dict:
    from tests.phone_client import Caller
    from tests.stack import running_stack

    latencies = []
    with tempfile.TemporaryDirectory() as work, running_stack(Path(work), Path(work) / "stack.log") as stack:
        for round_ in range(turns_per_question):
            caller = Caller(stack.phone_url, language="en")
            try:
                caller.listen()  # the greeting
                for question in PHONE_QUESTIONS:
                    caller.say(speak(question, voice="en-us", speed=150))
                    caller.wait_done_speaking()
                    reply = caller.listen(timeout=90)
                    latencies.append((reply.first_byte_at - caller.sent_speech_until) * 1000)
                    print(f"round {round_ + 1}: {question!r} -> first reply audio after {latencies[-1]:.0f} ms")
            finally:
                caller.hang_up()
        settings = stack.settings
    return {"turns": len(latencies), "model": f"{settings.whisper_backend}:{settings.whisper_model}",
            "p50_ms": round(statistics.median(latencies)), "p90_ms": round(float(np.percentile(latencies, 90))),
            "max_ms": round(max(latencies)), "end_of_turn_silence_ms": 700}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-phone", action="store_true")
    parser.add_argument("--openai-model", help="a .pt checkpoint for the openai-whisper backend")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--limit", type=int, default=0, help="only the first N utterances (a quick check)")
    parser.add_argument("--tune", action="store_true", help="sweep the shop language model's weight on the "
                        "tuning set (NLU test split) and stop")
    args = parser.parse_args()
    if args.tune:
        tune()
        return
    import torch

    summary: dict = {"date": time.strftime("%Y-%m-%d"),
                     "machine": f"{platform.machine()}, {os.cpu_count()} cores, int8 CTranslate2, "
                                f"torch {torch.__version__}"}
    models = [("faster-whisper", "tiny.en", True, True), ("faster-whisper", "tiny.en", True, False),
              ("faster-whisper", "base", True, True), ("faster-whisper", "base", True, False),
              ("faster-whisper", "base", False, True)]
    if args.openai_model:
        models.append(("openai-whisper", args.openai_model, True, False))
    items = spoken_set()[: args.limit or None]
    summary["asr"] = asr(models, items)
    summary["packaged_speech"] = packaged_speech()
    summary["openai_whisper"] = "measured" if args.openai_model else \
        "not measured: no openai-whisper .pt weights are installable offline (pass --openai-model)"
    if not args.skip_phone:
        summary["phone"] = phone()
    elif RESULTS.exists():
        summary["phone"] = json.loads(RESULTS.read_text()).get("phone")
    lines = table(summary)
    print("\n".join(lines))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    if not args.no_doc:
        write_section("voice", "## Voice (`benchmarks/voice.py`)\n\n"
                      f"{summary['date']}, {summary['machine']}.\n\n" + "\n".join(lines))


def table(summary: dict) -> list[str]:
    rows = summary["asr"]
    lines = [f"Speech recognition on {rows[0]['utterances']} English shopper utterances spoken by espeak-ng "
             f"({rows[0]['audio_seconds']} s of audio, 5 voices and speeds); the product detects the language:", "",
             "| backend | model | language | shop LM | WER | RTF | p50 ms/utterance | detected en | load s |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lm = f"{r['candidates']} best" if r.get("shop_lm") else "no"
        lines.append(f"| {r['backend']} | {r['model']} | {r['language']} | {lm} | {r['wer']:.1%} | {r['rtf']:.3f} | "
                     f"{r['p50_ms']} | "
                     f"{r['language_en_rate']:.0%} | {r['load_s']} |")
    pairs = {(r["model"], r["language"]): r for r in rows if not r.get("shop_lm")}
    for r in rows:
        if r.get("shop_lm") and (r["model"], r["language"]) in pairs:
            base = pairs[(r["model"], r["language"])]
            lines.append("")
            lines.append(f"- {r['model']} ({r['language']} language): the shop language model takes WER from "
                         f"{base['wer']:.1%} to {r['wer']:.1%} (x{r['wer'] / base['wer']:.2f}) at RTF x"
                         f"{r['rtf'] / base['rtf']:.2f} in the same run; it left out {r['lm_left_out']} "
                         "sentences of its corpus that are in this set")
    lines += ["", f"openai-whisper: {summary['openai_whisper']}."]
    if isinstance(summary.get("packaged_speech"), dict):
        found = summary["packaged_speech"]
        speech = found["with_speech"]
        lines += ["", f"Speech samples inside installed packages: {found['files']} sound files in both environments' "
                  f"site-packages ({found['unreadable']} unreadable), "
                  + (f"{len(speech)} with speech: " + ", ".join(f"{s['file']} ({s['speech_seconds']} s)" for s in speech)
                     + "; none ships a transcript, so they are not scored" if speech else
                     "none with speech (Silero VAD): test tones only") + "."]
    if summary.get("phone"):
        p = summary["phone"]
        lines += ["", f"Phone path ({p['model']} in the gateway, {p['turns']} turns over Twilio-style calls in real "
                  f"time): caller's last speech frame to the first byte of reply audio p50 {p['p50_ms']} ms, "
                  f"p90 {p['p90_ms']} ms, max {p['max_ms']} ms (includes the {p['end_of_turn_silence_ms']} ms "
                  "of quiet that ends a turn)."]
    return lines


if __name__ == "__main__":
    main()

"""Intent classification benchmark: kefu's FastText + BiLSTM against Rasa's DIET and plain fastText.

    .venv/bin/python benchmarks/nlu.py                      # every data set, every system
    .venv/bin/python benchmarks/nlu.py --datasets kefu --systems kefu,fasttext

Data sets: CLINC150 ``data_full`` (150 intents + out-of-scope; in-scope accuracy and OOS
recall), Banking77 (accuracy, macro-F1), HWU64 and SNIPS when asked for, and kefu's own
zh/en data (trained on ``assistant/data/nlu``, tested on the held-out ``assistant/tests/nlu``).
Every system trains on the same Rasa YAML on the same machine in the same run: DIET through
Rasa 3.6's own training API with its default pipeline (``benchmarks/rasa_diet.py`` in
``.venv-rasa``), fastText with ``train_supervised``. kefu's own data is also trained with
Chinese as characters and as jieba words, which decides the tokenizer kefu ships with.

Prints a table, writes ``benchmarks/results/nlu.json`` and the NLU section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nlu import classifier, convert, data  # noqa: E402
from nlu.evaluate import classification_report, evaluate  # noqa: E402
from nlu.types import FALLBACK_INTENT  # noqa: E402
from benchmarks.doc import write_section  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "benchmarks" / "results" / "nlu.json"
RASA_PYTHON = ROOT / ".venv-rasa" / "bin" / "python"
OOS = classifier.OUT_OF_SCOPE
PUBLISHED = {
    "clinc150": "FastText 0.890 / OOS recall 0.097, BERT 0.969 / 0.403 (Larson et al. 2019, oos-train)",
    "banking77": "BERT-large 0.937, USE+ConveRT 0.934 accuracy",
    "snips": "BERT about 0.99",
}


def prepare(name: str, work: Path) -> dict:
    """Rasa YAML files for one data set: {'train': path, 'val': path | None, 'test': {label: path}}."""
    out = work / name
    out.mkdir(parents=True, exist_ok=True)

    def write(rows, file: str) -> Path:
        path = out / file
        path.write_text(convert.to_rasa_yaml(rows), encoding="utf-8")
        return path

    if name == "clinc150":
        source = DATASETS / "clinc150" / "data_full.json"
        return {"train": write(convert.read("clinc150", source, "train"), "train.yml"),
                "val": write(convert.read("clinc150", source, "val"), "val.yml"),
                "test": {"test": write(convert.read("clinc150", source, "test"), "test.yml")}}
    if name == "banking77":
        return {"train": write(convert.read("banking77", DATASETS / "banking77" / "train.csv"), "train.yml"),
                "val": None,
                "test": {"test": write(convert.read("banking77", DATASETS / "banking77" / "test.csv"), "test.yml")}}
    if name in ("hwu64", "snips"):
        return {"train": write(convert.read("seq", DATASETS / name / "train"), "train.yml"),
                "val": write(convert.read("seq", DATASETS / name / "valid"), "val.yml"),
                "test": {"test": write(convert.read("seq", DATASETS / name / "test"), "test.yml")}}
    if name == "kefu":
        lookups = ROOT / "var" / "data" / "catalog_lookups.yml"  # feeds augmentation, as in `kefu setup`
        tests = ROOT / "assistant" / "tests" / "nlu"
        return {"train": ROOT / "assistant" / "data" / "nlu", "val": None,
                "lookups": lookups if lookups.exists() else None,
                "test": {"zh": tests / "zh.yml", "en": tests / "en.yml"}}
    raise ValueError(f"unknown data set {name}")


def metrics(gold: list[str], predicted: list[str]) -> dict:
    report = classification_report(gold, predicted)
    in_scope = [i for i, g in enumerate(gold) if g != OOS]
    oos = [i for i, g in enumerate(gold) if g == OOS]
    return {
        "examples": len(gold),
        "accuracy": report["accuracy"],
        "macro_f1": report["macro avg"]["f1-score"],
        "in_scope_accuracy": float(np.mean([predicted[i] == gold[i] for i in in_scope])) if oos else None,
        "oos_recall": float(np.mean([predicted[i] in (OOS, FALLBACK_INTENT) for i in oos])) if oos else None,
    }


def latency(times_ms: list[float]) -> dict:
    return {"p50": float(np.percentile(times_ms, 50)), "p99": float(np.percentile(times_ms, 99))}


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_kefu(files: dict, work: Path, chinese: str = "chars", augment_n: int = 0) -> dict:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    paths = [files["train"]] + ([files["lookups"]] if files.get("lookups") else [])
    training = data.load(paths)
    validation = data.load([files["val"]]).examples if files.get("val") else None
    config = classifier.with_overrides(classifier.TrainConfig(), chinese=chinese, augment=augment_n)
    started = time.perf_counter()
    model = classifier.train(training.examples, data_sha256=training.sha256, lookups=training.lookups,
                             config=config, validation=validation)
    train_seconds = time.perf_counter() - started
    model_dir = work / f"kefu-{chinese}"
    model.save(model_dir)
    torch.set_num_threads(1)  # what `kefu nlu serve` does: one thread answers one message fastest
    results = {}
    for label, test_file in files["test"].items():
        examples = data.load([test_file]).examples
        summary = evaluate(model, examples, work / f"report-kefu-{chinese}-{label}")
        has_oos = summary["oos_recall"] is not None  # the same figures metrics() gives the other systems
        results[label] = {"examples": summary["examples"], "accuracy": summary["accuracy"],
                          "macro_f1": summary["macro_f1"],
                          "in_scope_accuracy": summary["in_scope_accuracy"] if has_oos else None,
                          "oos_recall": summary["oos_recall"], "latency_ms": summary["single_utterance_ms"]}
    return {"train_seconds": train_seconds, "model_bytes": dir_bytes(model_dir), "threshold": model.threshold,
            "temperature": model.temperature, "results": results}


def run_fasttext(files: dict, work: Path) -> dict:
    import fasttext

    from nlu.text import tokenize

    examples = data.load([files["train"]]).examples
    train_file = work / "fasttext-train.txt"
    train_file.write_text("\n".join(f"__label__{e.intent} {' '.join(tokenize(e.text))}" for e in examples) + "\n")
    started = time.perf_counter()
    model = fasttext.train_supervised(str(train_file), epoch=25, lr=0.5, wordNgrams=2, dim=100, minCount=1,
                                      thread=os.cpu_count() or 1, verbose=0)
    train_seconds = time.perf_counter() - started
    model.save_model(str(work / "fasttext.bin"))
    results = {}
    for label, test_file in files["test"].items():
        test = data.load([test_file]).examples
        predicted, times = [], []
        for e in test:
            t0 = time.perf_counter()
            labels, _ = model.predict(" ".join(tokenize(e.text)))
            times.append(1000 * (time.perf_counter() - t0))
            predicted.append(labels[0].removeprefix("__label__"))
        results[label] = {**metrics([e.intent for e in test], predicted), "latency_ms": latency(times)}
    return {"train_seconds": train_seconds, "model_bytes": (work / "fasttext.bin").stat().st_size, "results": results}


def run_diet(files: dict, work: Path, epochs: int) -> dict:
    if not RASA_PYTHON.exists():
        raise RuntimeError(f"{RASA_PYTHON} is missing: run `make setup` first")
    results = {}
    # one training run; every test file is parsed by the same model, message by message, in order
    tests = {label: data.load([path]).examples for label, path in files["test"].items()}
    texts = [e.text for examples in tests.values() for e in examples]
    (work / "diet-texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    out = work / "diet.json"
    with (work / "diet.log").open("w") as log:  # Rasa logs every parsed message at debug level
        done = subprocess.run([str(RASA_PYTHON), str(ROOT / "benchmarks" / "rasa_diet.py"), "--train",
                               str(files["train"]), "--texts", str(work / "diet-texts.json"), "--out", str(out),
                               "--epochs", str(epochs)],
                              cwd=work, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, stdout=log,
                              stderr=subprocess.STDOUT)
    if done.returncode:
        tail = (work / "diet.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"rasa_diet.py exited with {done.returncode}: {tail}")
    raw = json.loads(out.read_text())
    offset = 0
    for label, examples in tests.items():
        rows = raw["predictions"][offset:offset + len(examples)]
        times = raw["latencies_ms"][offset:offset + len(examples)]
        offset += len(examples)
        predicted = [r["intent"] or FALLBACK_INTENT for r in rows]
        results[label] = {**metrics([e.intent for e in examples], predicted), "latency_ms": latency(times)}
    return {"train_seconds": raw["train_seconds"], "model_bytes": raw["model_bytes"], "epochs": epochs,
            "results": results}


def table(report: dict) -> str:
    lines = ["| data set | split | system | accuracy | macro-F1 | in-scope acc | OOS recall | train s | "
             "p50 ms | p99 ms | model MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def f(value, digits=3):
        return "–" if value is None else f"{value:.{digits}f}"

    for name, systems in report["datasets"].items():
        for system, run in systems.items():
            if "error" in run:
                lines.append(f"| {name} | | {system} | failed: {run['error'][:60]} | | | | | | | |")
                continue
            for split, r in run["results"].items():
                lines.append(f"| {name} | {split} | {system} | {f(r['accuracy'])} | {f(r['macro_f1'])} | "
                             f"{f(r['in_scope_accuracy'])} | {f(r['oos_recall'])} | {run['train_seconds']:.0f} | "
                             f"{r['latency_ms']['p50']:.2f} | {r['latency_ms']['p99']:.2f} | "
                             f"{run['model_bytes'] / 1e6:.1f} |")
    return "\n".join(lines)


def ratios(report: dict) -> str:
    lines = []
    for name, systems in report["datasets"].items():
        kefu, diet = systems.get("kefu"), systems.get("diet")
        if not kefu or not diet or "error" in kefu or "error" in diet:
            continue
        split = next(iter(kefu["results"]))
        speed = diet["train_seconds"] / kefu["train_seconds"]
        infer = diet["results"][split]["latency_ms"]["p50"] / kefu["results"][split]["latency_ms"]["p50"]
        acc = kefu["results"][split]["accuracy"] - diet["results"][split]["accuracy"]
        lines.append(f"- {name}: kefu trains {speed:.1f}x faster than DIET, predicts {infer:.1f}x faster (p50), "
                     f"accuracy {acc:+.3f} against DIET")
    return "\n".join(lines)


def _provenance(report: dict) -> str:
    """Whether the rows share one run: a run of some systems keeps the other systems' rows."""
    stamps = {runs.get("run_at") for system_runs in report["datasets"].values() for runs in system_runs.values()
              if isinstance(runs, dict)}
    if stamps == {report.get("started_at")}:
        return "every system trained and tested in the same run."
    return ("the rows come from more than one run (each row's `run_at` in benchmarks/results/nlu.json; "
            "none for rows older than that field); the notes below say which.")


def write_doc(report: dict) -> None:
    write_section("nlu", f"## Intent classification (`benchmarks/nlu.py`)\n\n"
                  f"Run {report['finished_at']} on {report['machine']}; {_provenance(report)} "
                  f"Accuracy counts `nlu_fallback` as wrong for in-scope messages; OOS recall counts "
                  f"`out_of_scope` or `nlu_fallback` on CLINC150's out-of-scope test messages. Latency is one message "
                  f"at a time. Published: " + "; ".join(f"{k}: {v}" for k, v in PUBLISHED.items()) + ".\n\n"
                  + table(report) + "\n\n" + ratios(report) + "\n"
                  + (f"\nChinese tokens: {report['chinese_tokenizer']}\n" if report.get("chinese_tokenizer") else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="kefu,clinc150,banking77")
    parser.add_argument("--systems", default="kefu,fasttext,diet")
    parser.add_argument("--diet-epochs", type=int, default=100, help="Rasa's default is 100")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--no-jieba", action="store_true", help="skip training kefu's own data a second time "
                        "with jieba words")
    args = parser.parse_args()
    report = {"started_at": dt.datetime.now().isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "datasets": {}}
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    with tempfile.TemporaryDirectory(prefix="kefu-nlu-bench-") as tmp:
        work = Path(tmp)
        for name in args.datasets.split(","):
            files = prepare(name, work)
            runs: dict = {}
            for system in args.systems.split(","):
                print(f"== {name}: {system}", flush=True)
                system_work = work / name / system
                system_work.mkdir(parents=True, exist_ok=True)
                try:
                    if system == "kefu":
                        augment_n = 2 if name == "kefu" else 0
                        runs["kefu"] = run_kefu(files, system_work, "chars", augment_n)
                        if name == "kefu" and not args.no_jieba:
                            runs["kefu-jieba"] = run_kefu(files, system_work, "jieba", augment_n)
                    elif system == "fasttext":
                        runs["fasttext"] = run_fasttext(files, system_work)
                    elif system == "diet":
                        runs["diet"] = run_diet(files, system_work, args.diet_epochs)
                except Exception as error:  # keep the other systems' figures
                    runs[system] = {"error": f"{type(error).__name__}: {error}"}
                    print(f"   failed: {error}", flush=True)
            for run in runs.values():
                run["run_at"] = report["started_at"]
            report["datasets"][name] = runs
            print(table({"datasets": {name: runs}}), flush=True)
            save(dict(report), previous)  # each data set's figures are kept even if a later one fails
    merged = save(report, previous)
    print("\n" + table(merged) + "\n" + ratios(merged))
    if merged.get("chinese_tokenizer"):
        print(merged["chinese_tokenizer"])
    if not args.no_doc:
        write_doc(merged)


def save(report: dict, previous: dict) -> dict:
    """Merge this run into benchmarks/results/nlu.json (a run of some systems keeps the others')."""
    kefu_runs = report["datasets"].get("kefu", {})
    if "kefu" in kefu_runs and "kefu-jieba" in kefu_runs and "error" not in kefu_runs["kefu"]:
        chars, jieba = kefu_runs["kefu"]["results"]["zh"]["accuracy"], kefu_runs["kefu-jieba"]["results"]["zh"]["accuracy"]
        report["chinese_tokenizer"] = (f"characters {chars:.3f} vs jieba words {jieba:.3f} accuracy on the zh test "
                                       f"split; kefu ships with {'characters' if chars >= jieba else 'jieba'}.")
    report["finished_at"] = dt.datetime.now().isoformat(timespec="seconds")
    datasets = {name: dict(runs) for name, runs in previous.get("datasets", {}).items()}
    for name, runs in report["datasets"].items():
        datasets.setdefault(name, {}).update(runs)
    merged = {**previous, **report, "datasets": datasets}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(merged, indent=2, ensure_ascii=False))
    return merged


if __name__ == "__main__":
    main()

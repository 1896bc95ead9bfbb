"""Defect-photo triage benchmark.

1. Real data: the NEU steel-surface defects (6 classes x 300 grey 200x200 photos) from scratch,
   ResNet-50 against ResNet-18, same pipeline as ``kefu vision train`` (a stratified 20% test
   split the training never sees): accuracy, macro-F1, training time, single-photo latency.
2. The demo model on generated photos it never saw: accuracy, "unsure" rate and the accuracy of
   what it does not call unsure.
3. Speed of the whole photo path in the gateway (bytes -> checks -> decode -> preprocess ->
   classify) against the raw ResNet-50 forward pass at the same input size, in the same run;
   batch throughput.

    .venv/bin/python benchmarks/vision.py [--epochs 30] [--skip-neu] [--no-doc]

Prints a table, writes benchmarks/results/vision.json and the vision section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.doc import write_section  # noqa: E402
from vision.evaluate import evaluate  # noqa: E402
from vision.images import open_photo  # noqa: E402
from vision.model import VisionModel, build  # noqa: E402
from vision.train import TrainConfig, split, train  # noqa: E402

NEU = ROOT.parent / "shared" / "datasets" / "neu_det"
RESULTS = ROOT / "benchmarks" / "results" / "vision.json"


def neu_folders(work: Path, seed: int = 0) -> tuple[Path, Path]:
    """NEU as two ImageFolders of symlinks: 80% train, 20% test, stratified."""
    rows = list(csv.DictReader((NEU / "labels.csv").open()))
    labels = sorted({r["label"] for r in rows})
    train_index, test_index = split([labels.index(r["label"]) for r in rows], 0.2, seed)
    for name, index in (("train", train_index), ("test", test_index)):
        for i in index:
            row = rows[int(i)]
            target = work / name / row["label"] / Path(row["path"]).name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.symlink(NEU / row["path"], target)
    return work / "train", work / "test"


def latency_ms(model: VisionModel, image, n: int = 40) -> dict:  # type: ignore[no-untyped-def]
    model.predict([image])
    times = []
    for _ in range(n):
        started = time.perf_counter()
        model.predict([image])
        times.append((time.perf_counter() - started) * 1000)
    return {"p50": round(statistics.median(times), 2), "p90": round(float(np.percentile(times, 90)), 2)}


def neu(args: argparse.Namespace, work: Path) -> dict:
    from PIL import Image

    train_dir, test_dir = neu_folders(work / "neu")
    results = {}
    for arch in ("resnet18", "resnet50"):
        config = replace(TrainConfig(), arch=arch, epochs=args.epochs, input_size=args.neu_size, patience=args.epochs)
        started = time.perf_counter()
        model = train(train_dir, work / f"neu-{arch}", config, log=print)
        seconds = time.perf_counter() - started
        report = evaluate(model, test_dir, work / f"neu-{arch}-report")
        sample = Image.open(next((test_dir / model.labels[0]).iterdir())).convert("RGB")
        results[arch] = {
            "accuracy": round(report["accuracy"], 4), "macro_f1": round(report["classes"]["macro avg"]["f1-score"], 4),
            "accepted_accuracy": round(report["accepted_accuracy"], 4), "unsure_rate": round(report["unsure_rate"], 4),
            "train_seconds": round(seconds), "epochs_run": model.meta["metrics"]["epochs_run"],
            "latency_ms": latency_ms(model, sample), "parameters_m": round(
                sum(p.numel() for p in model.network.parameters()) / 1e6, 1),
            "train_images": model.meta["training_data"]["images"], "test_images": report["images"]}
        print(arch, json.dumps(results[arch]))
    return results


def demo(model_dir: Path, test_dir: Path, work: Path) -> dict | None:
    if not (model_dir / "vision.json").exists() or not test_dir.exists():
        print(f"no demo model in {model_dir} or no test photos in {test_dir}: run `kefu setup` first")
        return None
    model = VisionModel.load(model_dir)
    report = evaluate(model, test_dir, work / "demo-report")
    return {"accuracy": round(report["accuracy"], 4), "accepted_accuracy": round(report["accepted_accuracy"], 4),
            "unsure_rate": round(report["unsure_rate"], 4), "ece": round(report["ece"], 4),
            "macro_f1": round(report["classes"]["macro avg"]["f1-score"], 4), "images": report["images"],
            "arch": model.meta["arch"], "input_size": model.input_size,
            "train_seconds": round(model.meta["train_seconds"]), "threshold": model.threshold}


def photo_path(size: int, repeats: int = 30) -> dict:
    """Raw forward of an (untrained) ResNet-50 at ``size`` against the gateway's photo path with
    the same network: a 1600x1200 phone-style JPEG in, a prediction out."""
    from vision import synth

    labels = list(synth.LABELS)
    network = build("resnet50", labels).eval()
    model = VisionModel(network, {"labels": labels, "input_size": size, "temperature": 1.0,
                                  "unsure_threshold": 0.5})
    big = synth.render("scratch", seed=1, size=1200)[0].resize((1600, 1200))
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    batch = torch.from_numpy(np.stack([model.preprocess(big)]))

    def raw() -> None:
        with torch.inference_mode():
            network(pixel_values=batch)

    def path() -> None:
        photo = open_photo(data, decode_size=size)
        model.predict([photo.image])

    for fn in (raw, path):  # warm up
        fn()
        fn()
    raw_times, path_times = [], []
    for _ in range(repeats):  # interleaved, so both see the same machine
        for fn, times in ((raw, raw_times), (path, path_times)):
            started = time.perf_counter()
            fn()
            times.append((time.perf_counter() - started) * 1000)
    throughput = {}
    for batch_size in (1, 16):
        images = torch.from_numpy(np.stack([model.preprocess(big)] * batch_size))
        with torch.inference_mode():
            network(pixel_values=images)
            started = time.perf_counter()
            for _ in range(3):
                network(pixel_values=images)
        throughput[str(batch_size)] = round(3 * batch_size / (time.perf_counter() - started), 1)
    raw_p50, path_p50 = statistics.median(raw_times), statistics.median(path_times)
    return {"input_size": size, "jpeg_bytes": len(data), "jpeg_pixels": "1600x1200",
            "raw_forward_p50_ms": round(raw_p50, 1), "photo_path_p50_ms": round(path_p50, 1),
            "ratio": round(path_p50 / raw_p50, 3), "images_per_second_by_batch": throughput}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=30,
                        help="NEU training epochs (ResNet-50 from scratch reached 0.969 in 20, 0.978 in 30)")
    parser.add_argument("--neu-size", type=int, default=128)
    parser.add_argument("--skip-neu", action="store_true")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench-vision")
    args = parser.parse_args()
    torch.manual_seed(0)
    from assistant.settings import get_settings
    from vision.synth import VERSION

    settings = get_settings()
    summary: dict = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                     f"torch {torch.__version__}, {torch.get_num_threads()} threads"}
    demo_model = VisionModel.load(settings.vision_model_path) if (settings.vision_model_path / "vision.json").exists() \
        else None
    sizes = sorted({224, demo_model.input_size if demo_model else 224})
    summary["photo_path"] = [photo_path(size) for size in sizes]
    summary["demo"] = demo(settings.vision_model_path, settings.var_dir / "vision" / f"synth-v{VERSION}" / "test",
                           args.work)
    if not args.skip_neu:
        summary["neu"] = neu(args, args.work)
    elif RESULTS.exists():
        summary["neu"] = json.loads(RESULTS.read_text()).get("neu")
    lines = table(summary)
    print("\n".join(lines))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2))
    if not args.no_doc:
        write_section("vision", "## Defect-photo triage (`benchmarks/vision.py`)\n\n"
                      f"{summary['date']}, {summary['machine']}.\n\n" + "\n".join(lines))


def table(summary: dict) -> list[str]:
    lines = []
    if summary.get("neu"):
        lines += ["NEU surface defects from scratch (80/20 stratified split, 1,440 training photos):", "",
                  "| model | accuracy | macro-F1 | unsure | accuracy when sure | train s | epochs | p50 ms/photo | M params |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for arch, r in summary["neu"].items():
            lines.append(f"| {arch} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['unsure_rate']:.3f} | "
                         f"{r['accepted_accuracy']:.4f} | {r['train_seconds']} | {r['epochs_run']} | "
                         f"{r['latency_ms']['p50']} | {r['parameters_m']} |")
        lines.append("")
    if summary.get("demo"):
        d = summary["demo"]
        lines += [f"Demo model ({d['arch']}, {d['input_size']} px, trained in {d['train_seconds']} s) on "
                  f"{d['images']} generated photos it never saw: accuracy {d['accuracy']:.4f}, macro-F1 "
                  f"{d['macro_f1']:.4f}; unsure below {d['threshold']:.2f} for {d['unsure_rate']:.1%} of photos, "
                  f"accuracy of the rest {d['accepted_accuracy']:.4f}; ECE {d['ece']:.3f}.", ""]
    lines += ["| input px | raw ResNet-50 forward p50 ms | whole photo path p50 ms | ratio | images/s batch 1 | "
              "images/s batch 16 |", "|---:|---:|---:|---:|---:|---:|"]
    for p in summary["photo_path"]:
        lines.append(f"| {p['input_size']} | {p['raw_forward_p50_ms']} | {p['photo_path_p50_ms']} | {p['ratio']:.3f} | "
                     f"{p['images_per_second_by_batch']['1']} | {p['images_per_second_by_batch']['16']} |")
    lines.append("\nThe photo path reads a 1600x1200 JPEG: sniff, header checks, JPEG DCT-scaled decoding, "
                 "EXIF orientation, metadata stripping, resize, normalise, forward, calibrated softmax.")
    return lines


if __name__ == "__main__":
    main()

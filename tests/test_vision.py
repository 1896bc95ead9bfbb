"""vision/: generated photos, photo checks and metadata stripping, train -> save -> load."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vision import synth
from vision.images import Limits, PhotoError, open_photo, sniff


def jpeg(image: Image.Image, **kwargs) -> bytes:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return synth.render("stain", seed=3)[0]


# ------------------------------------------------------------------------------- generated photos


def test_every_label_draws_on_every_product_it_happens_to(tmp_path: Path) -> None:
    for product, defects in synth.DEFECTS_ON.items():
        for label in (*defects, "no_visible_defect"):
            image, info = synth.render(label, seed=11, product=product)
            assert image.size == (256, 256) and info["product"] == product and info["label"] == label
            assert np.asarray(image).std() > 10  # a real picture, not a blank
    with pytest.raises(ValueError, match="unknown label"):
        synth.render("bent", seed=1)


def test_the_same_seed_draws_the_same_photo_and_defects_change_it() -> None:
    a, _ = synth.render("crack_or_broken", seed=5, product="cup")
    b, _ = synth.render("crack_or_broken", seed=5, product="cup")
    clean, _ = synth.render("no_visible_defect", seed=5, product="cup")
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(clean))


def test_a_defect_that_does_not_show_is_redrawn(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    case = synth.phone_case(rng)
    assert synth.visible_pixels(case, synth._copy(case)) == 0
    grey = synth._copy(case)
    grey.rgb[:] = 0.5
    stained = synth._copy(grey)
    synth.stain(rng, stained)
    assert synth.visible_pixels(grey, stained) >= synth.MIN_VISIBLE["stain"]
    black = synth._copy(case)
    black.rgb[:] = 0.02  # a dark stain on a black case: nothing a person could see
    hidden = synth._copy(black)
    synth.stain(rng, hidden)
    assert synth.visible_pixels(black, hidden) < synth.MIN_VISIBLE["stain"]

    calls = []
    real = synth.DRAW_DEFECT["dent"]

    def faint_at_first(rng: np.random.Generator, scene: synth.Scene) -> None:
        calls.append(1)
        if len(calls) > synth.DRAWS_PER_SCENE + 2:  # the first product's draws all fail, then two more
            real(rng, scene)

    monkeypatch.setitem(synth.DRAW_DEFECT, "dent", faint_at_first)
    image, info = synth.render("dent", seed=8, product="box")
    assert info["label"] == "dent" and len(calls) == synth.DRAWS_PER_SCENE + 3
    with pytest.raises(ValueError, match="not drawn on a cup"):
        synth.render("tear_or_hole", seed=1, product="cup")


def test_a_photo_of_a_defect_has_the_defect_in_the_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    for label in synth.LABELS[:-1]:
        for seed in range(4):
            _, info = synth.render(label, seed=seed)
            assert info["defect_pixels_in_frame"] >= synth.MIN_VISIBLE[label], (label, seed, info)
    assert synth.render("no_visible_defect", seed=1)[1]["defect_pixels_in_frame"] == 0

    cameras = []
    real = synth._camera

    def away_at_first(rng: np.random.Generator, size: int, focus: tuple[float, float]) -> synth.Camera:
        camera = real(rng, size, focus)
        cameras.append(camera)
        if len(cameras) == 1:  # pointed 1,000 pixels off the canvas: only the empty background corner
            return synth.Camera(0.0, [1, 0, 1000, 0, 1, 1000, 0, 0], camera.side, camera.zoom)
        return camera

    monkeypatch.setattr(synth, "_camera", away_at_first)
    monkeypatch.setitem(synth.MIN_SHARE, "scratch", 0.0)  # in the frame is enough here
    _, info = synth.render("scratch", seed=2)
    assert len(cameras) == 2 and info["defect_pixels_in_frame"] >= synth.MIN_VISIBLE["scratch"]


def test_a_defect_that_is_a_speck_of_the_photo_is_photographed_closer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(synth.MIN_SHARE, "scratch", 0.0)  # any camera that catches the scratch will do
    _, first = synth.render("scratch", seed=2)
    cameras = []
    real = synth._camera

    def counted(rng: np.random.Generator, size: int, focus: tuple[float, float]) -> synth.Camera:
        cameras.append(1)
        return real(rng, size, focus)

    monkeypatch.setattr(synth, "_camera", counted)
    monkeypatch.setitem(synth.MIN_SHARE, "scratch", 1.0)  # no camera frames it this big: the closest of all
    _, closest = synth.render("scratch", seed=2)
    assert len(cameras) == synth.CAMERA_TRIES
    assert closest["defect_share"] >= first["defect_share"] > 0
    assert closest["defect_pixels_in_frame"] >= synth.MIN_VISIBLE["scratch"]


def test_a_clean_photo_is_framed_like_a_photo_of_damage(monkeypatch: pytest.MonkeyPatch) -> None:
    aimed = []
    real = synth._aim

    def recorded(rng, focus, shows, minimum, share):  # type: ignore[no-untyped-def]
        aimed.append((int(shows.sum()), minimum, share))
        return real(rng, focus, shows, minimum, share)

    monkeypatch.setattr(synth, "_aim", recorded)
    image, info, where = synth.render_with_mask("no_visible_defect", seed=3)
    # the camera was aimed at a defect of a kind the product can have, which the photo does not show
    (pixels, minimum, share), = aimed
    assert pixels >= minimum > 0 and share > 0
    assert info["defect_pixels_in_frame"] == 0 and info["defect_share"] == 0
    assert not np.asarray(where).any()


def test_generate_writes_an_image_folder_that_describes_itself(tmp_path: Path) -> None:
    description = synth.generate(tmp_path / "set", per_class=2, seed=4, size=64, workers=1)
    assert sorted(p.name for p in (tmp_path / "set").iterdir() if p.is_dir()) == sorted(synth.LABELS)
    assert all(len(list((tmp_path / "set" / label).glob("*.jpg"))) == 2 for label in synth.LABELS)
    assert json.loads((tmp_path / "set" / "dataset.json").read_text()) == description
    again = synth.generate(tmp_path / "again", per_class=2, seed=4, size=64, workers=2)
    assert again["sha256"] == description["sha256"]  # parallel drawing gives the same bytes
    masks = synth.read_masks(tmp_path / "set")
    assert masks is not None and sorted(masks) == sorted(
        f"{p.parent.name}/{p.name}" for p in (tmp_path / "set").glob("*/*.jpg"))
    for name, mask in masks.items():
        assert mask.shape == (synth.MASK_SIZE, synth.MASK_SIZE)
        assert (mask.max() == 0) == name.startswith("no_visible_defect/"), name
    assert synth.read_masks(tmp_path) is None


def test_augmented_views_move_the_defect_mask_with_the_photo() -> None:
    import random

    from vision.train import augment

    image = np.full((96, 96, 3), 40, np.uint8)
    image[10:40, 50:80] = 230  # the "defect": a bright patch in the top right
    mask = np.zeros((64, 64), np.uint8)
    mask[7:27, 33:53] = 255  # the same patch at the mask's scale
    rng = random.Random(5)
    for _ in range(20):
        view, where = augment(image, 64, rng, mask)
        assert view.shape == (64, 64, 3) and where is not None and where.shape == (16, 16)
        bright = np.asarray(Image.fromarray(np.ascontiguousarray(view)).convert("L").resize((16, 16))) > 120
        assert ((where > 127) == bright).mean() > 0.9
    assert augment(image, 64, rng)[1] is None


# -------------------------------------------------------------------------------------- bad photos


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG header declaring 900 megapixels, with a few bytes of (compressed) zeros."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize(("data", "code"), [
    (b"", "empty"),
    (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF", "unsupported_type"),  # a PDF renamed .jpg
    (b"GIF89a" + b"\0" * 100, "unsupported_type"),
    (b"hello, this is not an image", "unsupported_type"),
    (png_bomb(), "too_many_pixels"),
])
def test_bad_photos_are_refused_with_a_reason(data: bytes, code: str) -> None:
    with pytest.raises(PhotoError) as error:
        open_photo(data)
    assert error.value.code == code


def test_truncated_and_oversized_photos_are_refused(photo: Image.Image) -> None:
    data = jpeg(photo)
    with pytest.raises(PhotoError) as error:
        open_photo(data[: len(data) // 2])
    assert error.value.code == "corrupt"
    with pytest.raises(PhotoError) as error:
        open_photo(data, Limits(max_bytes=len(data) - 1))
    assert error.value.code == "too_large"
    with pytest.raises(PhotoError) as error:
        open_photo(jpeg(photo.resize((20, 20))))
    assert error.value.code == "too_small"
    assert open_photo(data).image.size == (256, 256)


def test_exif_with_location_is_removed_but_the_photo_stays_upright(photo: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned, the pixels are sideways
    exif[0x010F] = "PhoneMaker"
    exif[0x0131] = "Camera 1.0"
    exif[0x8825] = {1: "N", 2: (31.0, 14.0, 2.0), 3: "E", 4: (121.0, 28.0, 5.0)}  # GPS: Shanghai
    sideways = photo.crop((0, 0, 256, 160))
    data = jpeg(sideways, exif=exif.tobytes())
    data = data[:2] + b"\xff\xfe\x00\x0eshopper-123\x00" + data[2:]  # a comment segment
    assert b"PhoneMaker" in data and sniff(data) == "image/jpeg"
    accepted = open_photo(data)
    assert accepted.image.size == (160, 256)  # turned upright for the classifier
    stored = accepted.stored
    assert b"PhoneMaker" not in stored and b"shopper-123" not in stored and b"Camera 1.0" not in stored
    kept = Image.open(io.BytesIO(stored)).getexif()
    assert dict(kept) == {0x0112: 6}  # nothing but the orientation: still shown upright, no GPS
    assert kept.get_ifd(0x8825) == {}
    assert np.asarray(Image.open(io.BytesIO(stored))).shape == (160, 256, 3)  # pixels untouched, not re-encoded

    plain = open_photo(jpeg(sideways))
    assert Image.open(io.BytesIO(plain.stored)).getexif() == {}


def test_png_text_chunks_are_removed(photo: Image.Image) -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Zhang San 13800138000")
    buffer = io.BytesIO()
    photo.save(buffer, "PNG", pnginfo=info)
    accepted = open_photo(buffer.getvalue())
    assert b"13800138000" not in accepted.stored
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(accepted.stored))), np.asarray(photo))


# ---------------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from vision.train import TrainConfig, train

    root = tmp_path_factory.mktemp("vision")
    synth.generate(root / "data", per_class=6, seed=9, size=64, workers=1)
    config = TrainConfig(arch="resnet18", input_size=32, epochs=2, batch_size=12, patience=5)
    model = train(root / "data", root / "model", config, log=lambda _: None)
    return root, model, config


def test_train_save_load_gives_the_same_predictions(tiny_model) -> None:  # type: ignore[no-untyped-def]
    from vision.model import VisionModel

    root, model, _ = tiny_model
    meta = json.loads((root / "model" / "vision.json").read_text())
    assert meta["labels"] == sorted(synth.LABELS) and meta["input_size"] == 32 and meta["arch"] == "resnet18"
    assert len(meta["training_data"]["sha256"]) == 64 and meta["training_data"]["images"] == 36
    assert meta["temperature"] > 0 and 0.5 <= meta["unsure_threshold"] <= 0.99
    assert {"validation_accuracy", "ece_before", "ece_after", "coverage"} <= set(meta["metrics"])
    assert meta["training_data"]["masks"] and meta["config"]["mask_weight"] > 0
    assert not (root / "model" / "checkpoint.pt").exists()
    from safetensors.torch import load_file

    assert not any("head" in key for key in load_file(root / "model" / "model.safetensors"))  # training only
    loaded = VisionModel.load(root / "model")
    images = [Image.open(p).convert("RGB") for p in sorted((root / "data" / "dent").glob("*.jpg"))]
    before = model.predict(images)
    after = loaded.predict(images)
    for a, b in zip(before, after):
        assert a.label == b.label and a.unsure == b.unsure
        assert abs(a.confidence - b.confidence) < 1e-5
        assert abs(sum(b.probabilities.values()) - 1) < 1e-4


def test_an_interrupted_training_resumes_from_its_checkpoint(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from vision.train import CHECKPOINT, train

    root, _, config = tiny_model
    out = tmp_path / "model"

    def interrupt(line: str) -> None:
        if line.startswith("epoch 1:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(root / "data", out, config, log=interrupt)
    assert (out / CHECKPOINT).exists() and not (out / "vision.json").exists()
    lines: list[str] = []
    model = train(root / "data", out, config, resume=True, log=lines.append)
    assert lines[0] == "resuming after epoch 1 of 2" and not any(line.startswith("epoch 1:") for line in lines)
    assert [h["epoch"] for h in model.meta["history"]] == [1, 2]


def test_evaluate_writes_a_report_and_plots(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from vision.evaluate import evaluate

    root, model, _ = tiny_model
    report = evaluate(model, root / "data", tmp_path / "report")
    assert report["images"] == 36 and 0 <= report["accuracy"] <= 1
    assert set(synth.LABELS) <= set(report["classes"]) and "macro avg" in report["classes"]
    saved = json.loads((tmp_path / "report" / "vision_report.json").read_text())
    assert saved["accuracy"] == report["accuracy"]
    for name in ("vision_confusion_matrix.png", "vision_reliability.png"):
        assert Image.open(tmp_path / "report" / name).size[0] > 300
    errors = json.loads((tmp_path / "report" / "vision_errors.json").read_text())
    assert len(errors) == round((1 - report["accuracy"]) * 36)


def test_unknown_classes_in_an_evaluation_folder_are_refused(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from vision.evaluate import evaluate

    _, model, _ = tiny_model
    (tmp_path / "bent").mkdir()
    synth.render("dent", 1)[0].save(tmp_path / "bent" / "a.jpg")
    with pytest.raises(ValueError, match="does not know: bent"):
        evaluate(model, tmp_path)


def test_the_unsure_threshold_reaches_the_target_precision() -> None:
    from vision.train import unsure_threshold

    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 2000)
    correct = rng.random(2000) < confidence  # calibrated: right as often as it is sure
    probs = np.stack([confidence, 1 - confidence], 1)
    gold = np.where(correct, 0, 1)
    threshold, info = unsure_threshold(probs, gold, target=0.95, floor=0.5)
    assert 0.86 <= threshold <= 0.94
    assert info["accepted_accuracy"] >= 0.95 and 0 < info["coverage"] < 0.3


@pytest.mark.parametrize("epochs", [10, 30, 60])
def test_early_stopping_waits_until_the_learning_rate_has_come_down(epochs: int) -> None:
    import torch

    from vision.train import WARM_UP, settled_epoch

    steps = 7
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([weight], lr=1e-3)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, pct_start=WARM_UP,
                                                    total_steps=epochs * steps)
    rate_after = {}
    for epoch in range(1, epochs + 1):
        for _ in range(steps):
            optimizer.step()
            scheduler.step()
        rate_after[epoch] = scheduler.get_last_lr()[0] if epoch < epochs else 0.0
    settled = settled_epoch(epochs)
    assert rate_after[settled] <= 0.5e-3 < max(rate_after[e] for e in range(1, settled))
    assert rate_after[settled - 1] > 0.4e-3  # not much later than needed


def test_patience_grows_with_the_run():
    from vision.train import patience_for

    assert patience_for(30) == 4  # the demo recipe: unchanged
    assert patience_for(16) == 4
    assert patience_for(60) == 8  # a fixed 4 ended a 60-epoch run at epoch 48
    assert patience_for(100) == 13
    assert patience_for(60, 2) == 2  # given explicitly, it is kept


def test_the_training_data_digest_covers_the_defect_masks(tmp_path: Path) -> None:
    from vision.train import read_folder

    synth.generate(tmp_path / "set", per_class=1, seed=4, size=64, workers=1)
    before = read_folder(tmp_path / "set").digest()
    synth.generate(tmp_path / "again", per_class=1, seed=4, size=64, workers=1)
    assert read_folder(tmp_path / "again").digest() == before  # the same photos and masks drawn again
    masks = synth.read_masks(tmp_path / "set")
    assert masks is not None
    moved = {name: np.roll(mask, 5, axis=1) for name, mask in masks.items()}
    np.savez_compressed(tmp_path / "set" / synth.MASKS, names=np.array(sorted(moved)),
                        masks=np.stack([moved[name] for name in sorted(moved)]))
    assert read_folder(tmp_path / "set").digest() != before  # other masks: another training set


def test_the_demo_trains_about_an_hour_of_epochs_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    """90 epochs where the CPU trains in bfloat16 (the recipe that reaches 0.95), 30 in float32;
    KEFU_VISION_DEMO_EPOCHS wins either way."""
    from assistant import cli
    from assistant.settings import Settings
    from vision import train

    monkeypatch.delenv("KEFU_VISION_DEMO_EPOCHS", raising=False)
    settings = Settings(_env_file=None)
    for fast, expected in ((True, 90), (False, 30)):
        monkeypatch.setattr(train, "bf16_supported", lambda fast=fast: fast)
        assert cli.demo_epochs(settings) == expected
        assert cli.demo_epochs(Settings(_env_file=None, vision_demo_epochs=12)) == 12

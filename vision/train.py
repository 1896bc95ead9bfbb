"""Training the defect classifier on an ImageFolder (``<dir>/<label>/*.jpg``) on the CPU.

Every image is decoded once and kept in memory at a little more than the input size; each epoch
draws augmented views of it (random resized crops, flips, quarter turns, small rotations, colour
jitter). Classes are weighted by inverse frequency, so a rare defect counts as much as a common
one. A stratified validation split decides early stopping, then the temperature (calibrated
confidences) and the "unsure" threshold. A checkpoint after every epoch lets ``--resume`` go on
after an interruption.

Photos that ``vision.synth`` generated come with a mask of where their defect is. A small head on
the network's third stage then learns, besides the photo's class, which of its cells show which
defect (``mask_weight``): one label per photo says *that* a photo shows a crack, the mask says
*where*, and the network learns from every cell instead of from one answer per photo. The head is
for training only; the saved model is the plain classifier.
"""

from __future__ import annotations

import hashlib
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance

from nlu.classifier import fit_temperature
from vision.images import IMAGENET_MEAN, IMAGENET_STD
from vision.model import FORMAT_VERSION, VisionModel, build

WARM_UP = 0.2  # share of the one-cycle schedule spent raising the learning rate
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainConfig:
    arch: str = "resnet50"
    input_size: int = 128
    epochs: int = 16
    batch_size: int = 32
    optimizer: str = "adamw"  # adamw or sgd (momentum, Nesterov)
    lr: float = 1e-3  # the peak of the one-cycle schedule
    weight_decay: float = 0.05
    label_smoothing: float = 0.05
    val_fraction: float = 0.15
    # epochs without a better validation loss before stopping (once the learning rate is down);
    # None: by the length of the run (patience_for)
    patience: int | None = None
    target_precision: float = 0.98  # accepted (not "unsure") validation predictions are at least this precise
    min_threshold: float = 0.5  # never trust a top class with less than this calibrated probability
    seed: int = 0
    init: str | None = None
    pooling: str = "max"  # global max pooling finds small defects (see vision.model.use_pooling)
    bf16: bool = True  # mixed precision where the CPU has bfloat16 instructions (about 2x faster)
    mask_weight: float = 0.5  # the defect-map loss's weight, for training data with masks (0: ignore them)


@dataclass
class Folder:
    """An ImageFolder: one sub-directory per class."""

    root: Path
    labels: list[str]
    files: list[Path]
    targets: list[int]
    counts: dict[str, int] = field(default_factory=dict)

    def digest(self) -> str:
        """Of every image, its class and, when the folder has them, the defect masks training reads
        (new masks for the same photos make a different training set)."""
        from vision.synth import read_masks

        h = hashlib.sha256()
        for path, target in zip(self.files, self.targets):
            h.update(f"{self.labels[target]}/{path.name}\0".encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
        masks = read_masks(self.root)  # their contents: the archive's bytes carry the time it was written
        for name in sorted(masks or {}):
            h.update(f"mask:{name}\0".encode())
            h.update(np.ascontiguousarray(masks[name]).tobytes())
        return h.hexdigest()


def read_folder(root: Path, labels: list[str] | None = None) -> Folder:
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory of class folders")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and any(
        f.suffix.lower() in IMAGE_SUFFIXES for f in p.iterdir()))
    if not found:
        raise ValueError(f"{root} has no class folders with images (expected {root}/<label>/<image>.jpg)")
    if labels is not None:
        unknown = sorted(set(found) - set(labels))
        if unknown:
            raise ValueError(f"{root} has classes the model does not know: {', '.join(unknown)}")
    labels = labels or found
    files, targets = [], []
    for label in found:
        for path in sorted((root / label).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                files.append(path)
                targets.append(labels.index(label))
    counts = {label: targets.count(i) for i, label in enumerate(labels)}
    return Folder(root, list(labels), files, targets, counts)


def load_images(folder: Folder, size: int, progress: bool = True) -> np.ndarray:
    """Every image decoded once, RGB, resized to ``size`` x ``size``: (N, size, size, 3) uint8."""
    from tqdm import tqdm

    out = np.empty((len(folder.files), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(tqdm(folder.files, desc="reading images", unit="img", file=sys.stderr,
                                  disable=not progress)):
        with Image.open(path) as image:
            image.draft("RGB", (size, size))
            out[i] = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))
    return out


def settled_epoch(epochs: int) -> int:
    """The first epoch at which early stopping may end training: the one-cycle learning rate has
    fallen below half its peak (cosine annealing after the warm-up). Before that the validation
    loss jumps from epoch to epoch, and a 60-epoch run stopped at epoch 23 (validation accuracy
    0.71) where the 30-epoch run it was meant to beat reached 0.81."""
    return math.ceil(epochs * (WARM_UP + (1 - WARM_UP) / 2))


def patience_for(epochs: int, patience: int | None = None) -> int:
    """Epochs without a better validation loss before training stops: ``patience`` when given,
    else an eighth of the run and at least 4. The validation loss of a few hundred photos moves
    by 0.02-0.07 from epoch to epoch, and a fixed 4 ended a 60-epoch run at epoch 48."""
    return patience if patience is not None else max(4, math.ceil(epochs / 8))


def split(targets: list[int], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified: the same fraction of every class goes to validation."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    targets_array = np.asarray(targets)
    for label in np.unique(targets_array):
        index = rng.permutation(np.nonzero(targets_array == label)[0])
        n_val = int(round(len(index) * fraction)) if len(index) >= 4 else 0
        val += index[:n_val].tolist()
        train += index[n_val:].tolist()
    return np.array(sorted(train)), np.array(sorted(val))


def augment(image: np.ndarray, size: int, rng: random.Random,
            mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """One random view of an image (uint8 HWC) at ``size`` x ``size``, and of its defect mask
    (uint8, any square size) moved the same way, at a quarter of ``size``."""
    pil = Image.fromarray(image)
    where = Image.fromarray(mask) if mask is not None else None
    base = pil.width
    if rng.random() < 0.5:
        fill = tuple(int(v) for v in image.reshape(-1, 3).mean(0))
        angle = rng.uniform(-20, 20)
        pil = pil.rotate(angle, resample=Image.BILINEAR, fillcolor=fill)
        where = where.rotate(angle, resample=Image.BILINEAR) if where is not None else None
    area = rng.uniform(0.75, 1.0) * base * base  # mild: a tighter crop could cut the defect out
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    w = min(base, int(round(math.sqrt(area * ratio))))
    h = min(base, int(round(math.sqrt(area / ratio))))
    x, y = rng.randint(0, base - w), rng.randint(0, base - h)
    pil = pil.resize((size, size), Image.BILINEAR, box=(x, y, x + w, y + h))
    if where is not None:
        k = where.width / base
        where = where.resize((size // 4, size // 4), Image.BILINEAR, box=(x * k, y * k, (x + w) * k, (y + h) * k))
    pil = ImageEnhance.Brightness(pil).enhance(rng.uniform(0.75, 1.25))
    pil = ImageEnhance.Contrast(pil).enhance(rng.uniform(0.75, 1.25))
    pil = ImageEnhance.Color(pil).enhance(rng.uniform(0.7, 1.3))
    views = [np.asarray(pil)] + ([np.asarray(where)] if where is not None else [])
    if rng.random() < 0.5:
        views = [v[:, ::-1] for v in views]
    if rng.random() < 0.5:
        views = [v[::-1] for v in views]
    turns = rng.randint(0, 3)
    views = [np.rot90(v, turns) for v in views]
    return views[0], (views[1] if where is not None else None)


class DefectMap(torch.nn.Module):
    """For training on photos with masks: which defect (or none, the last class) each cell of the
    network's third stage shows."""

    STAGE = 2  # the third stage: hidden_sizes[STAGE] channels, hidden_states[STAGE + 1] (after the stem's)
    COVERED = 0.1  # a cell shows the defect when the defect covers this share of it

    def __init__(self, channels: int, n_labels: int) -> None:
        super().__init__()
        self.head = torch.nn.Sequential(torch.nn.Conv2d(channels, 128, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.Conv2d(128, n_labels + 1, 1))
        weights = torch.ones(n_labels + 1)
        weights[-1] = 0.3  # most cells show no defect
        self.loss = torch.nn.CrossEntropyLoss(weight=weights)
        self.background = n_labels

    def forward(self, hidden_states: tuple[torch.Tensor, ...], masks: torch.Tensor,
                targets: torch.Tensor) -> torch.Tensor:
        """``hidden_states``: the ResNet's; ``masks``: (B, h, w) coverage in [0, 1] at any
        resolution; ``targets``: the photos' classes."""
        features = hidden_states[self.STAGE + 1]
        cover = torch.nn.functional.adaptive_avg_pool2d(masks[:, None], features.shape[-2:])[:, 0]
        cells = torch.where(cover >= self.COVERED, targets[:, None, None], self.background)
        return self.loss(self.head(features).float(), cells)


def load_masks(folder: Folder) -> np.ndarray | None:
    """The defect masks of a generated folder (``vision.synth.read_masks``), one per image in
    ``folder.files`` order: (N, MASK_SIZE, MASK_SIZE) uint8; None when the folder has none."""
    from vision.synth import MASKS, read_masks

    saved = read_masks(folder.root)
    if saved is None:
        return None
    missing = [path for path in folder.files if f"{path.parent.name}/{path.name}" not in saved]
    if missing:
        raise ValueError(f"{folder.root / MASKS} has no mask for {missing[0]}; generate the folder again")
    return np.stack([saved[f"{path.parent.name}/{path.name}"] for path in folder.files])


def center(image: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def to_batch(images: list[np.ndarray]) -> torch.Tensor:
    array = np.stack(images).astype(np.float32) * (1 / 255.0)
    array = (array - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))


def expected_calibration_error(probs: np.ndarray, gold: np.ndarray, bins: int = 10) -> float:
    confidence, correct = probs.max(1), probs.argmax(1) == gold
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def unsure_threshold(probs: np.ndarray, gold: np.ndarray, target: float, floor: float) -> tuple[float, dict]:
    """The lowest confidence threshold at which the accepted validation predictions are at least
    ``target`` precise (never below ``floor``); what it accepts is reported."""
    confidence, correct = probs.max(1), probs.argmax(1) == gold
    threshold = 0.99
    for candidate in np.arange(floor, 0.995, 0.01):
        accepted = confidence >= candidate
        if accepted.any() and correct[accepted].mean() >= target:
            threshold = float(round(candidate, 2))
            break
    accepted = confidence >= threshold
    return threshold, {"coverage": float(accepted.mean()),
                       "accepted_accuracy": float(correct[accepted].mean()) if accepted.any() else 0.0,
                       "target_precision": target}


def bf16_supported() -> bool:
    """Whether this CPU trains in bfloat16 (AVX-512 BF16 or AMX): about twice as fast as float32."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def _class_weights(targets: np.ndarray, n: int) -> torch.Tensor:
    counts = np.bincount(targets, minlength=n).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n, 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def _evaluate(network: torch.nn.Module, images: np.ndarray, size: int, batch_size: int) -> np.ndarray:
    network.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = to_batch([center(image, size) for image in images[start:start + batch_size]])
            out.append(network(pixel_values=batch).logits.float())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def train(data: Path, out: Path, config: TrainConfig, resume: bool = False,
          log: Callable[[str], None] = print) -> VisionModel:
    from tqdm import tqdm

    started = time.perf_counter()
    torch.manual_seed(config.seed)
    folder = read_folder(data)
    digest = folder.digest()
    n_labels = len(folder.labels)
    base = int(round(config.input_size * 1.15))
    images = load_images(folder, base)
    targets = np.asarray(folder.targets)
    train_index, val_index = split(folder.targets, config.val_fraction, config.seed)
    if len(val_index) == 0:
        raise ValueError("too few images for a validation split (at least 4 per class)")
    network = build(config.arch, folder.labels, config.init, config.pooling)
    network = network.to(memory_format=torch.channels_last)
    masks = load_masks(folder) if config.mask_weight > 0 else None
    defect_map = DefectMap(network.config.hidden_sizes[DefectMap.STAGE], n_labels) if masks is not None else None
    parameters = list(network.parameters()) + (list(defect_map.parameters()) if defect_map is not None else [])
    steps_per_epoch = math.ceil(len(train_index) / config.batch_size)
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(parameters, lr=config.lr, momentum=0.9,
                                                           nesterov=True, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, pct_start=WARM_UP,
                                                    total_steps=config.epochs * steps_per_epoch)
    loss_fn = torch.nn.CrossEntropyLoss(weight=_class_weights(targets[train_index], n_labels),
                                        label_smoothing=config.label_smoothing)
    state: dict[str, Any] = {"epoch": 0, "best_loss": float("inf"), "best_epoch": 0, "history": [],
                             "best_state": None, "seconds": 0.0}
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out / CHECKPOINT
    if resume and checkpoint_path.exists():
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        if saved["data_sha256"] != digest or saved["config"] != asdict(config):
            raise ValueError(f"{checkpoint_path} was made for other data or settings; train without --resume")
        network.load_state_dict(saved["model"])
        if defect_map is not None:
            defect_map.load_state_dict(saved["defect_map"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
        log(f"resuming after epoch {state['epoch']} of {config.epochs}")
    rng = random.Random(config.seed * 1000 + state["epoch"])
    bf16 = config.bf16 and bf16_supported()

    patience = patience_for(config.epochs, config.patience)
    val_images = images[val_index]
    val_gold = torch.from_numpy(targets[val_index])
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        epoch_started = time.perf_counter()
        network.train()
        order = np.random.default_rng(config.seed * 7919 + epoch).permutation(train_index)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{config.epochs}", unit="batch", file=sys.stderr)
        total = 0.0
        for step in bar:
            index = order[step * config.batch_size:(step + 1) * config.batch_size]
            views = [augment(images[i], config.input_size, rng, masks[i] if masks is not None else None)
                     for i in index]
            batch = to_batch([image for image, _ in views]).contiguous(memory_format=torch.channels_last)
            gold = torch.from_numpy(targets[index])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                output = network(pixel_values=batch, output_hidden_states=defect_map is not None)
                class_loss = loss_fn(output.logits.float(), gold)
                loss = class_loss
                if defect_map is not None:
                    where = torch.from_numpy(np.stack([mask for _, mask in views]).astype(np.float32) / 255)
                    loss = loss + config.mask_weight * defect_map(output.hidden_states, where, gold)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(class_loss.detach())  # the photos' classes only, comparable with or without masks
            bar.set_postfix(loss=f"{total / (step + 1):.3f}", refresh=False)
        bar.close()
        logits = torch.from_numpy(_evaluate(network, val_images, config.input_size, config.batch_size))
        val_loss = float(torch.nn.functional.cross_entropy(logits, val_gold))
        val_accuracy = float((logits.argmax(1) == val_gold).float().mean())
        state["history"].append({"epoch": epoch, "train_loss": total / steps_per_epoch, "val_loss": val_loss,
                                 "val_accuracy": val_accuracy, "seconds": time.perf_counter() - epoch_started})
        if val_loss < state["best_loss"]:
            state.update(best_loss=val_loss, best_epoch=epoch,
                         best_state={k: v.detach().clone() for k, v in network.state_dict().items()})
        state["epoch"] = epoch
        state["seconds"] += time.perf_counter() - epoch_started
        torch.save({"model": network.state_dict(),
                    "defect_map": defect_map.state_dict() if defect_map is not None else None,
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "state": state,
                    "data_sha256": digest, "config": asdict(config)}, checkpoint_path)
        log(f"epoch {epoch}: train loss {total / steps_per_epoch:.3f}, validation loss {val_loss:.3f}, "
            f"accuracy {val_accuracy:.3f}")
        if epoch >= settled_epoch(config.epochs) and epoch - state["best_epoch"] >= patience:
            log(f"validation loss has not improved for {patience} epochs: stopping early")
            break
    network.load_state_dict(state["best_state"])
    network = network.to(memory_format=torch.contiguous_format)
    logits = torch.from_numpy(_evaluate(network, val_images, config.input_size, config.batch_size))
    temperature = fit_temperature(logits, val_gold)
    raw = torch.softmax(logits, 1).numpy()
    calibrated = torch.softmax(logits / temperature, 1).numpy()
    gold = val_gold.numpy()
    threshold, selective = unsure_threshold(calibrated, gold, config.target_precision, config.min_threshold)
    meta = {
        "format_version": FORMAT_VERSION, "kind": "kefu.vision.defect_classifier", "arch": config.arch,
        "labels": folder.labels, "input_size": config.input_size, "pooling": config.pooling, "mean": IMAGENET_MEAN.tolist(),
        "std": IMAGENET_STD.tolist(), "temperature": temperature, "unsure_threshold": threshold,
        "training_data": {"path": str(data), "sha256": digest, "images": len(folder.files), "counts": folder.counts,
                          "train": int(len(train_index)), "validation": int(len(val_index)),
                          "masks": masks is not None},
        "config": asdict(config),
        "metrics": {"validation_accuracy": float((calibrated.argmax(1) == gold).mean()),
                    "validation_loss": state["best_loss"], "best_epoch": state["best_epoch"],
                    "epochs_run": state["epoch"], "ece_before": expected_calibration_error(raw, gold),
                    "ece_after": expected_calibration_error(calibrated, gold), **selective},
        "history": state["history"],
        "train_seconds": state["seconds"], "wall_seconds": time.perf_counter() - started,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
    }
    model = VisionModel(network, meta)
    model.save(out)
    checkpoint_path.unlink(missing_ok=True)
    return model

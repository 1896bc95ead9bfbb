"""Procedural product-defect photos for training and testing the triage model.

A shopper's photo of a damaged item is a product (a cup, a phone case, a shoe upper, a box, a
piece of fabric) lying on some surface, lit from one side, taken at an angle with a phone camera.
Each image is drawn from scratch: a background, the product with its material and shading, maybe
harmless look-alikes (seams, printed patterns, reflections, shadows), at most one kind of defect
drawn where the product is, then the camera: perspective, rotation, light colour, blur, sensor
noise and JPEG compression. Everything is decided by one seed, so a dataset is reproducible.

Defects are drawn only on products where they happen in real after-sales photos (fabric tears
and stains but does not crack; a ceramic cup cracks but does not tear), and a photo is labelled
with a defect only when the defect shows: a dark stain on a black shoe or a pale scratch on a white
case changes almost no pixel, and a person labelling the photo would call it "no visible defect".
Such a draw is redrawn (``MIN_VISIBLE``), and so is a camera that leaves the defect out of the
frame (``CAMERA_TRIES``): one of a hundred version-4 scratch photos showed none of its scratch. A
shopper photographing damage for a claim frames it so that it can be seen: a camera that leaves
the defect a speck of the photo is moved closer too (``MIN_SHARE``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

LABELS = ("scratch", "crack_or_broken", "stain", "tear_or_hole", "dent", "no_visible_defect")
PRODUCTS = ("cup", "phone_case", "shoe_upper", "box", "fabric")
DEFECTS_ON: dict[str, tuple[str, ...]] = {
    "cup": ("scratch", "crack_or_broken", "stain", "dent"),
    "phone_case": ("scratch", "crack_or_broken", "stain", "tear_or_hole", "dent"),
    "shoe_upper": ("scratch", "crack_or_broken", "stain", "tear_or_hole", "dent"),
    "box": ("scratch", "crack_or_broken", "stain", "tear_or_hole", "dent"),
    "fabric": ("scratch", "stain", "tear_or_hole"),
}
CANVAS = 320  # drawn at this size, then the camera crops the centre
VERSION = 10
# a defect shows when it changes at least this many canvas pixels by VISIBLE_CHANGE (of 1.0) in some
# colour channel: thin lines need fewer pixels than a stain or a dent (judged on contact sheets); a
# piece broken off needs more than a scratch (50-pixel chips far from the camera went unseen)
VISIBLE_CHANGE = 0.12
MIN_VISIBLE = {"scratch": 50, "crack_or_broken": 80, "stain": 120, "tear_or_hole": 100, "dent": 120}
MASKS = "masks.npz"  # where each generated photo's defect is, for training (vision.train: mask_weight)
MASK_SIZE = 64
CAMERA_TRIES = 10  # camera positions tried until the defect is in the frame, big enough to see
# the least share of the photo's area a defect covers (of the cameras tried, the closest otherwise).
# In version 8 the quarter of scratch test photos whose scratch covered the least of the photo (under
# 0.8%: a line one or two pixels wide at the model's 128 pixels) got 60% of the 10-epoch model's
# scratch errors; a person would ask for a closer photo of those too
MIN_SHARE = {"scratch": 0.008, "crack_or_broken": 0.01, "stain": 0.03, "tear_or_hole": 0.015, "dent": 0.02}
DRAWS_PER_SCENE = 6  # defect draws tried on one product before another product is drawn
SCENES_PER_PHOTO = 50

Array = np.ndarray


@dataclass
class Scene:
    """A product drawn on a canvas: colour (H, W, 3) in [0, 1], alpha mask (H, W), and where a
    defect may go (a boolean mask of the product's visible face)."""

    product: str
    rgb: Array
    mask: Array
    face: Array
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 of the product
    material: str
    spots: list[tuple[float, float]] = field(default_factory=list)  # where things were drawn, in order


# ----------------------------------------------------------------------------------------- textures


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> Array:
    """Noise in [0, 1] varying over about ``size / cells`` pixels (a bicubic-upsampled grid)."""
    grid = (rng.random((cells + 1, cells + 1)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(grid).resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0


def _mask(size: int, draw: Callable[[ImageDraw.ImageDraw], None], blur: float = 0.0) -> Array:
    image = Image.new("L", (size, size), 0)
    draw(ImageDraw.Draw(image))
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(image, dtype=np.float32) / 255.0


def _color(rng: np.random.Generator, palette: list[tuple[float, float, float]], jitter: float = 0.06) -> Array:
    base = np.array(palette[rng.integers(len(palette))], dtype=np.float32)
    return np.clip(base + rng.normal(0, jitter, 3), 0.02, 0.98).astype(np.float32)


def background(rng: np.random.Generator, size: int = CANVAS) -> Array:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    kind = rng.choice(["wood", "wall", "tiles", "cloth", "stone"])
    if kind == "wood":
        base = _color(rng, [(0.55, 0.38, 0.22), (0.72, 0.56, 0.38), (0.35, 0.23, 0.14), (0.8, 0.7, 0.55)])
        angle = rng.uniform(0, math.pi)
        u = xx * math.cos(angle) + yy * math.sin(angle)
        grain = np.sin(u * rng.uniform(40, 90) + smooth_noise(rng, size, 6) * 8) * 0.5 + 0.5
        shade = 0.8 + 0.2 * grain + 0.08 * (smooth_noise(rng, size, 40) - 0.5)
    elif kind == "wall":
        base = _color(rng, [(0.9, 0.9, 0.88), (0.8, 0.82, 0.86), (0.93, 0.88, 0.8), (0.6, 0.65, 0.7)])
        shade = 0.9 + 0.1 * smooth_noise(rng, size, 3) + 0.03 * (rng.random((size, size)) - 0.5)
    elif kind == "tiles":
        base = _color(rng, [(0.85, 0.85, 0.85), (0.7, 0.72, 0.75), (0.4, 0.42, 0.45), (0.88, 0.84, 0.78)])
        period = rng.uniform(0.2, 0.45)
        offset = rng.random(2)
        gx = np.abs(((xx + offset[0]) / period) % 1 - 0.5)
        gy = np.abs(((yy + offset[1]) / period) % 1 - 0.5)
        grout = ((gx > 0.485) | (gy > 0.485)).astype(np.float32)
        shade = 0.95 - 0.35 * grout + 0.05 * (smooth_noise(rng, size, 8) - 0.5)
    elif kind == "cloth":
        base = _color(rng, [(0.3, 0.35, 0.55), (0.75, 0.3, 0.3), (0.5, 0.6, 0.45), (0.85, 0.82, 0.75)])
        f = rng.uniform(120, 200)
        shade = 0.85 + 0.08 * np.sin(xx * f) * np.sin(yy * f) + 0.12 * smooth_noise(rng, size, 4)
    else:
        base = _color(rng, [(0.75, 0.75, 0.73), (0.55, 0.55, 0.55), (0.9, 0.9, 0.92)])
        veins = np.abs(np.sin((xx + smooth_noise(rng, size, 5)) * rng.uniform(8, 16)))
        shade = 0.85 + 0.12 * veins ** 8 * -1 + 0.1 * smooth_noise(rng, size, 12)
    return np.clip(shade[..., None] * base, 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------------------- products

GLAZES = [(0.92, 0.92, 0.9), (0.2, 0.35, 0.6), (0.75, 0.2, 0.2), (0.3, 0.55, 0.4), (0.95, 0.85, 0.6),
          (0.15, 0.15, 0.17), (0.7, 0.72, 0.75)]
CASE_COLORS = [(0.1, 0.1, 0.12), (0.85, 0.3, 0.4), (0.3, 0.45, 0.75), (0.95, 0.95, 0.95), (0.55, 0.75, 0.6),
               (0.9, 0.75, 0.3), (0.5, 0.35, 0.6)]
# stickers are printed labels, bright and light: version 6's dark ones were holes and stains to a
# person as much as to the model (a black rounded sticker on a cup was its surest wrong "tear or hole")
STICKERS = [(0.97, 0.97, 0.95), (0.95, 0.85, 0.3), (0.6, 0.8, 0.95), (0.95, 0.7, 0.8), (0.7, 0.9, 0.7)]
LEATHER = [(0.95, 0.95, 0.93), (0.12, 0.12, 0.12), (0.55, 0.35, 0.2), (0.75, 0.6, 0.45), (0.35, 0.45, 0.6),
           (0.8, 0.2, 0.2)]
FABRIC = [(0.2, 0.3, 0.55), (0.85, 0.85, 0.82), (0.6, 0.15, 0.2), (0.35, 0.5, 0.35), (0.9, 0.75, 0.55),
          (0.45, 0.45, 0.48), (0.95, 0.6, 0.7)]


def _shaded(mask: Array, color: Array, shade: Array) -> Array:
    return np.clip(shade[..., None] * color, 0, 1).astype(np.float32)


def cup(rng: np.random.Generator, size: int = CANVAS) -> Scene:
    w, h = rng.uniform(0.26, 0.34) * size, rng.uniform(0.3, 0.4) * size
    cx, top = size / 2 + rng.uniform(-0.05, 0.05) * size - 0.04 * size, size / 2 - h / 2
    x0, x1, y1 = cx - w / 2, cx + w / 2, top + h
    rim = w * 0.18
    metal = rng.random() < 0.35
    handle_w = max(6, int(w * 0.1))
    body = _mask(size, lambda d: (d.rectangle([x0, top, x1, y1], fill=255), d.ellipse([x0, y1 - rim, x1, y1 + rim], fill=255),
                                  d.ellipse([x0, top - rim, x1, top + rim], fill=255)), 0.6)
    handle = _mask(size, lambda d: d.arc([x1 - w * 0.2, top + h * 0.15, x1 + w * 0.35, top + h * 0.75], -90, 90,
                                         fill=255, width=handle_w), 0.6)
    mouth = _mask(size, lambda d: d.ellipse([x0 + 4, top - rim + 3, x1 - 4, top + rim - 3], fill=255), 0.8)
    mask = np.clip(body + handle, 0, 1)
    xx = np.arange(size, dtype=np.float32)[None, :].repeat(size, 0)
    u = np.clip((xx - cx) / (w / 2), -1, 1)
    light = rng.uniform(-0.5, 0.5)
    shade = 0.55 + 0.45 * np.cos((u - light) * math.pi / 2) ** (3 if metal else 1)
    if metal:
        color = _color(rng, [(0.78, 0.78, 0.8), (0.6, 0.62, 0.66), (0.75, 0.65, 0.5)], 0.03)
        shade = shade + 0.5 * np.exp(-((u - light * 0.6) / 0.08) ** 2) - 0.25 * np.exp(-((u + 0.6) / 0.15) ** 2)
    else:
        color = _color(rng, GLAZES)
        shade = shade + 0.35 * np.exp(-((u - light * 0.5 - 0.25) / 0.06) ** 2)
    rgb = _shaded(mask, color, shade)
    rgb = rgb * (1 - mouth[..., None] * 0.55)  # the inside of the cup is in shadow
    face = (body > 0.9) & (mouth < 0.1)
    return Scene("cup", rgb, mask, face, (int(x0), int(top - rim), int(x1 + w * 0.35), int(y1 + rim)),
                 "metal" if metal else "ceramic")


def phone_case(rng: np.random.Generator, size: int = CANVAS) -> Scene:
    w, h = rng.uniform(0.24, 0.3) * size, rng.uniform(0.46, 0.56) * size
    x0, y0 = size / 2 - w / 2 + rng.uniform(-0.04, 0.04) * size, size / 2 - h / 2
    x1, y1 = x0 + w, y0 + h
    r = w * rng.uniform(0.12, 0.2)
    mask = _mask(size, lambda d: d.rounded_rectangle([x0, y0, x1, y1], radius=r, fill=255), 0.6)
    cam = w * rng.uniform(0.3, 0.42)
    cx0, cy0 = x0 + w * 0.1, y0 + w * 0.1
    camera = _mask(size, lambda d: d.rounded_rectangle([cx0, cy0, cx0 + cam, cy0 + cam], radius=cam * 0.25,
                                                        fill=255), 0.6)
    color = _color(rng, CASE_COLORS)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    shade = 0.82 + 0.18 * ((xx - x0) / w * 0.5 + (yy - y0) / h * 0.5) * rng.choice([-1, 1]) + 0.1
    edge = mask - _mask(size, lambda d: d.rounded_rectangle([x0 + 4, y0 + 4, x1 - 4, y1 - 4], radius=r,
                                                             fill=255), 1.5)
    shade = shade - 0.25 * np.clip(edge, 0, 1)
    rgb = _shaded(mask, color, shade)
    if rng.random() < 0.4:  # a printed pattern: dots or stripes
        pattern = _color(rng, CASE_COLORS)
        if rng.random() < 0.5:
            period = rng.uniform(10, 22)
            dots = ((np.hypot((xx % period) - period / 2, (yy % period) - period / 2)) < period * 0.22)
            rgb = np.where(dots[..., None], pattern * shade[..., None], rgb)
        else:
            stripes = ((xx + yy) % rng.uniform(18, 34)) < 6
            rgb = np.where(stripes[..., None], pattern * shade[..., None], rgb)
    lens = np.array([0.08, 0.08, 0.1], dtype=np.float32)
    rgb = rgb * (1 - camera[..., None]) + camera[..., None] * lens
    face = (mask > 0.95) & (camera < 0.05) & (edge < 0.05)
    return Scene("phone_case", np.clip(rgb, 0, 1), mask, face, (int(x0), int(y0), int(x1), int(y1)),
                 "plastic")


def shoe_upper(rng: np.random.Generator, size: int = CANVAS) -> Scene:
    w, h = rng.uniform(0.5, 0.6) * size, rng.uniform(0.24, 0.3) * size
    x0, y0 = size / 2 - w / 2, size / 2 - h / 2 + rng.uniform(-0.04, 0.04) * size
    x1, y1 = x0 + w, y0 + h
    sole_h = h * 0.18

    def outline(d: ImageDraw.ImageDraw) -> None:
        d.ellipse([x0 + w * 0.45, y0 + h * 0.25, x1, y1], fill=255)  # toe
        d.rounded_rectangle([x0, y0 + h * 0.05, x0 + w * 0.65, y1], radius=h * 0.25, fill=255)  # heel and quarter
        d.polygon([(x0 + w * 0.25, y0), (x0 + w * 0.5, y0 + h * 0.05), (x0 + w * 0.72, y0 + h * 0.35),
                   (x0 + w * 0.3, y0 + h * 0.4)], fill=255)  # collar and tongue

    mask = _mask(size, outline, 0.6)
    sole = _mask(size, lambda d: d.rectangle([x0, y1 - sole_h, x1, y1 + 2], fill=255)) * mask
    color = _color(rng, LEATHER)
    sole_color = _color(rng, [(0.95, 0.95, 0.93), (0.1, 0.1, 0.1), (0.7, 0.55, 0.4)], 0.03)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    shade = 0.7 + 0.3 * np.clip(1 - (yy - y0) / h, 0, 1) + 0.08 * (smooth_noise(rng, size, 60) - 0.5)
    material = "leather"
    if rng.random() < 0.45:  # knitted mesh upper
        material = "mesh"
        period = rng.uniform(5, 8)
        shade = shade - 0.18 * ((np.sin(xx * 2 * math.pi / period) * np.sin(yy * 2 * math.pi / period)) > 0.6)
    rgb = _shaded(mask, color, shade)
    rgb = rgb * (1 - sole[..., None]) + sole[..., None] * sole_color * (0.9 + 0.1 * shade[..., None])
    laces = _mask(size, lambda d: [d.line([(x0 + w * (0.42 + 0.06 * i), y0 + h * (0.1 + 0.06 * i)),
                                           (x0 + w * (0.48 + 0.06 * i), y0 + h * (0.3 + 0.06 * i))],
                                          fill=255, width=3) for i in range(4)], 0.5)
    lace_color = _color(rng, [(0.95, 0.95, 0.95), (0.1, 0.1, 0.1), (0.8, 0.2, 0.2)], 0.02)
    rgb = rgb * (1 - laces[..., None]) + laces[..., None] * lace_color
    face = (mask > 0.95) & (sole < 0.05) & (laces < 0.05)
    return Scene("shoe_upper", np.clip(rgb, 0, 1), mask, face, (int(x0), int(y0), int(x1), int(y1)), material)


def box(rng: np.random.Generator, size: int = CANVAS) -> Scene:
    w, h, depth = rng.uniform(0.3, 0.38) * size, rng.uniform(0.22, 0.3) * size, rng.uniform(0.1, 0.15) * size
    x0, y0 = size / 2 - (w + depth) / 2, size / 2 - (h - depth) / 2
    front = [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)]
    top = [(x0, y0), (x0 + depth, y0 - depth), (x0 + w + depth, y0 - depth), (x0 + w, y0)]
    side = [(x0 + w, y0), (x0 + w + depth, y0 - depth), (x0 + w + depth, y0 + h - depth), (x0 + w, y0 + h)]
    masks = [_mask(size, lambda d, p=p: d.polygon(p, fill=255), 0.5) for p in (front, top, side)]
    color = _color(rng, [(0.72, 0.55, 0.36), (0.78, 0.62, 0.42), (0.92, 0.92, 0.9), (0.62, 0.46, 0.3)], 0.04)
    fibres = 0.06 * (smooth_noise(rng, size, 90) - 0.5) + 0.04 * (smooth_noise(rng, size, 20) - 0.5)
    rgb = np.zeros((size, size, 3), np.float32)
    for m, light in zip(masks, rng.permutation([1.0, 0.85, 0.65])):
        rgb += m[..., None] * color * (light + fibres)[..., None]
    mask = np.clip(sum(masks), 0, 1)
    tape = _mask(size, lambda d: d.polygon([(x0 + w * 0.45 + depth * t, y0 - depth * t) for t in (0, 1)] +
                                           [(x0 + w * 0.55 + depth * t, y0 - depth * t) for t in (1, 0)],
                                           fill=255), 0.5)
    rgb = rgb * (1 - 0.35 * tape[..., None]) + 0.35 * tape[..., None] * np.array([0.9, 0.85, 0.7], np.float32)
    if rng.random() < 0.6:  # a printed shipping label
        lx, ly = x0 + w * rng.uniform(0.08, 0.45), y0 + h * rng.uniform(0.15, 0.5)
        label = _mask(size, lambda d: d.rectangle([lx, ly, lx + w * 0.35, ly + h * 0.3], fill=255))
        rgb = rgb * (1 - label[..., None]) + label[..., None] * 0.95
        lines = _mask(size, lambda d: [d.line([(lx + 4, ly + 6 + 7 * i), (lx + w * rng.uniform(0.15, 0.32), ly + 6 + 7 * i)],
                                              fill=255, width=2) for i in range(int(h * 0.3 // 8))])
        rgb = rgb * (1 - 0.8 * lines[..., None])
    face = (masks[0] > 0.95) | (masks[2] > 0.95) | (masks[1] > 0.95)
    face &= tape < 0.05
    return Scene("box", np.clip(rgb, 0, 1), mask, face, (int(x0), int(y0 - depth), int(x0 + w + depth), int(y0 + h)),
                 "cardboard")


def fabric(rng: np.random.Generator, size: int = CANVAS) -> Scene:
    margin = rng.uniform(0.02, 0.15) * size
    mask = _mask(size, lambda d: d.rectangle([margin, margin, size - margin, size - margin], fill=255), 2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    color = _color(rng, FABRIC)
    f = rng.uniform(1.2, 2.2)
    weave = 0.06 * np.sin(xx * f) * np.sin(yy * f)
    angle = rng.uniform(0, math.pi)
    folds = 0.22 * np.sin((xx * math.cos(angle) + yy * math.sin(angle)) / size * rng.uniform(6, 14)
                          + smooth_noise(rng, size, 3) * 4)
    shade = 0.85 + weave + folds
    rgb = _shaded(mask, color, shade)
    if rng.random() < 0.5:  # stripes or plaid
        second = _color(rng, FABRIC)
        period = rng.uniform(18, 40)
        stripes = ((xx % period) < period * 0.3)
        if rng.random() < 0.5:
            stripes |= ((yy % period) < period * 0.3)
        rgb = np.where(stripes[..., None], second * shade[..., None], rgb)
    face = mask > 0.95
    return Scene("fabric", np.clip(rgb, 0, 1), mask, face, (int(margin), int(margin), int(size - margin),
                                                            int(size - margin)), "fabric")


DRAW_PRODUCT: dict[str, Callable[[np.random.Generator, int], Scene]] = {
    "cup": cup, "phone_case": phone_case, "shoe_upper": shoe_upper, "box": box, "fabric": fabric}


# ------------------------------------------------------------------------------------------ defects


def _spot(rng: np.random.Generator, scene: Scene) -> tuple[float, float]:
    """A random point well inside the product's face and inside the part of the canvas the camera keeps."""
    face = scene.face.copy()
    margin = int(face.shape[0] * 0.26)
    face[:margin] = face[-margin:] = False
    face[:, :margin] = face[:, -margin:] = False
    inner = np.asarray(Image.fromarray((face * 255).astype(np.uint8)).filter(ImageFilter.MinFilter(9))) > 0
    ys, xs = np.nonzero(inner if inner.any() else face)
    i = rng.integers(len(xs))
    scene.spots.append((float(xs[i]), float(ys[i])))
    return scene.spots[-1]


def _scale(scene: Scene) -> float:
    x0, y0, x1, y1 = scene.bbox
    return float(min(x1 - x0, y1 - y0))


def _blend(rgb: Array, alpha: Array, color: Array | float) -> Array:
    return rgb * (1 - alpha[..., None]) + alpha[..., None] * color


def scratch(rng: np.random.Generator, scene: Scene) -> None:
    size, s = scene.rgb.shape[0], _scale(scene)
    strokes = _mask(size, lambda d: None)
    for _ in range(rng.integers(1, 4)):
        x, y = _spot(rng, scene)
        length = s * rng.uniform(0.25, 0.5)
        angle = rng.uniform(0, math.pi)
        bend = rng.uniform(-0.15, 0.15) * length
        t = np.linspace(-0.5, 0.5, 24)
        px = x + t * length * math.cos(angle) - (t ** 2 - 0.25) * bend * math.sin(angle)
        py = y + t * length * math.sin(angle) + (t ** 2 - 0.25) * bend * math.cos(angle)
        width = int(rng.integers(2, 4))
        points = list(zip(px.tolist(), py.tolist()))
        strokes = np.maximum(strokes, _mask(size, lambda d: d.line(points, fill=255, width=width), 0.4))
        for _ in range(rng.integers(0, 4)):  # fine hairline scratches alongside
            off = rng.uniform(-6, 6)
            part = points[rng.integers(0, 8):rng.integers(14, 24)]
            shifted = [(a + off * math.sin(angle), b - off * math.cos(angle)) for a, b in part]
            strokes = np.maximum(strokes, 0.6 * _mask(size, lambda d: d.line(shifted, fill=255, width=1), 0.3))
    strokes *= scene.face
    # a scratch scrapes off the finish and shows paler material (a pulled thread is paler than the
    # cloth); a dark line is how a crack looks, and version 4's dark scratches (a quarter of them)
    # were among the scratch photos its models called cracks
    target = np.clip(scene.rgb + rng.uniform(0.3, 0.45), 0, 1) if scene.material != "fabric" else \
        np.clip(scene.rgb * 0.55 + 0.35, 0, 1)
    scene.rgb = scene.rgb * (1 - strokes[..., None]) + strokes[..., None] * target


def crack_or_broken(rng: np.random.Generator, scene: Scene) -> None:
    size, s = scene.rgb.shape[0], _scale(scene)
    if rng.random() < 0.55:  # a crack: a jagged dark line that branches
        x, y = _spot(rng, scene)
        angle = rng.uniform(0, 2 * math.pi)
        paths = []
        for branch in range(int(rng.integers(1, 4))):
            px, py, a = x, y, angle + (0 if branch == 0 else rng.uniform(-1.2, 1.2))
            points = [(px, py)]
            for _ in range(int(rng.integers(6, 12))):
                a += rng.uniform(-0.6, 0.6)
                step = s * rng.uniform(0.03, 0.07)
                px, py = px + step * math.cos(a), py + step * math.sin(a)
                points.append((px, py))
            paths.append(points)
            if branch == 0:
                x, y = points[len(points) // 2]
        width = int(rng.integers(2, 5))
        line = _mask(size, lambda d: [d.line(p, fill=255, width=width) for p in paths], 0.5) * scene.face
        edge = _mask(size, lambda d: [d.line([(a + 1.5, b + 1.5) for a, b in p], fill=255, width=1) for p in paths],
                     0.4) * scene.face
        scene.rgb = _blend(scene.rgb, edge * 0.6, np.clip(scene.rgb + 0.3, 0, 1))
        scene.rgb = _blend(scene.rgb, line, np.float32(rng.uniform(0.02, 0.12)))
        return
    # broken: a piece is missing at the product's edge, the fracture face pale and rough
    ys, xs = np.nonzero(scene.face)
    edge_points = np.nonzero((scene.mask > 0.5) & ~np.asarray(Image.fromarray((scene.mask > 0.5).astype(np.uint8) * 255)
                                                               .filter(ImageFilter.MinFilter(5)), bool))
    i = rng.integers(len(edge_points[0]))
    cy, cx = float(edge_points[0][i]), float(edge_points[1][i])
    scene.spots.append((cx, cy))
    radius = s * rng.uniform(0.08, 0.16)
    angles = np.sort(rng.uniform(0, 2 * math.pi, int(rng.integers(7, 12))))
    radii = radius * rng.uniform(0.5, 1.0, len(angles))
    polygon = [(cx + r * math.cos(a), cy + r * math.sin(a)) for a, r in zip(angles, radii)]
    chip = _mask(size, lambda d: d.polygon(polygon, fill=255), 0.4)
    rim = np.clip(_mask(size, lambda d: d.polygon(polygon, outline=255, width=3), 0.5) - chip * 0.5, 0, 1)
    rim *= (scene.mask > 0.5)
    scene.rgb = _blend(scene.rgb, rim, np.array([0.9, 0.88, 0.84], np.float32) * rng.uniform(0.7, 1.0))
    scene.mask = scene.mask * (1 - chip)
    scene.face = scene.face & (chip < 0.5)


STAINS = [(0.45, 0.28, 0.12), (0.5, 0.08, 0.18), (0.12, 0.18, 0.5), (0.25, 0.25, 0.2), (0.35, 0.5, 0.15),
          (0.75, 0.45, 0.35)]


def stain(rng: np.random.Generator, scene: Scene) -> None:
    size, s = scene.rgb.shape[0], _scale(scene)
    x, y = _spot(rng, scene)
    radius = s * rng.uniform(0.08, 0.18)
    blobs = [(x + rng.normal(0, radius * 0.5), y + rng.normal(0, radius * 0.5), radius * rng.uniform(0.3, 0.8))
             for _ in range(int(rng.integers(3, 8)))]
    blob = _mask(size, lambda d: [d.ellipse([bx - r, by - r * rng.uniform(0.6, 1.0), bx + r, by + r], fill=255)
                                  for bx, by, r in blobs], radius * 0.15)
    blob = np.clip((blob - 0.35) * 3, 0, 1)
    blob = np.asarray(Image.fromarray((blob * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2)),
                      np.float32) / 255
    ring = np.clip(blob - np.asarray(Image.fromarray((blob * 255).astype(np.uint8)).filter(ImageFilter.MinFilter(5)),
                                     np.float32) / 255, 0, 1)
    blob, ring = blob * scene.face, ring * scene.face
    tint = np.array(STAINS[rng.integers(len(STAINS))], np.float32)
    strength = rng.uniform(0.45, 0.8)
    darker = scene.rgb * (0.35 + 0.65 * tint)
    scene.rgb = _blend(scene.rgb, blob * strength, darker)
    scene.rgb = _blend(scene.rgb, ring * 0.5, darker * 0.7)


def tear_or_hole(rng: np.random.Generator, scene: Scene) -> None:
    size, s = scene.rgb.shape[0], _scale(scene)
    x, y = _spot(rng, scene)
    inside = np.float32(rng.uniform(0.03, 0.18))
    if scene.material == "cardboard":  # the box's shadowed inside, brown rather than black
        inside = np.array([0.85, 0.72, 0.5], np.float32) * rng.uniform(0.12, 0.3)
    if rng.random() < 0.5:  # a hole: ragged outline
        radius = s * rng.uniform(0.08, 0.15)
        angles = np.sort(rng.uniform(0, 2 * math.pi, int(rng.integers(9, 16))))
        polygon = [(x + radius * rng.uniform(0.6, 1.1) * math.cos(a), y + radius * rng.uniform(0.6, 1.1) * math.sin(a))
                   for a in angles]
        opening = _mask(size, lambda d: d.polygon(polygon, fill=255), 0.5)
        lips = _mask(size, lambda d: d.polygon(polygon, outline=255, width=3), 0.6)
    else:  # a tear: a long slit, open in the middle, with ragged lips
        length = s * rng.uniform(0.25, 0.45)
        angle = rng.uniform(0, math.pi)
        t = np.linspace(-0.5, 0.5, 18)
        gape = np.clip(1 - (2 * t) ** 2, 0, 1) * s * rng.uniform(0.025, 0.06) + 1
        jag = rng.uniform(-2, 2, len(t))
        cx, cy = x + t * length * math.cos(angle), y + t * length * math.sin(angle)
        nx, ny = -math.sin(angle), math.cos(angle)
        upper = [(a + (g + j) * nx, b + (g + j) * ny) for a, b, g, j in zip(cx, cy, gape, jag)]
        lower = [(a - (g - j) * nx, b - (g - j) * ny) for a, b, g, j in zip(cx, cy, gape, jag)]
        polygon = upper + lower[::-1]
        opening = _mask(size, lambda d: d.polygon(polygon, fill=255), 0.5)
        lips = _mask(size, lambda d: d.line(polygon + polygon[:1], fill=255, width=3), 0.6)
    lips = np.clip(lips - opening, 0, 1) * (scene.mask > 0.5)
    fibres = 0.25 * (smooth_noise(rng, size, 100) > 0.55)
    scene.rgb = _blend(scene.rgb, lips * (0.6 + fibres), np.clip(scene.rgb * 0.6 + 0.4, 0, 1))
    opening *= (scene.mask > 0.5)
    scene.rgb = _blend(scene.rgb, opening, inside)
    scene.face = scene.face & (opening < 0.5)


def dent(rng: np.random.Generator, scene: Scene) -> None:
    size, s = scene.rgb.shape[0], _scale(scene)
    x, y = _spot(rng, scene)
    rx, ry = s * rng.uniform(0.08, 0.16), s * rng.uniform(0.06, 0.14)
    rot = rng.uniform(0, math.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    u = ((xx - x) * math.cos(rot) + (yy - y) * math.sin(rot)) / rx
    v = (-(xx - x) * math.sin(rot) + (yy - y) * math.cos(rot)) / ry
    depth = np.exp(-(u ** 2 + v ** 2) * 1.5)  # a smooth pit
    gy, gx = np.gradient(depth)
    light = rng.uniform(0, 2 * math.pi)
    shading = (gx * math.cos(light) + gy * math.sin(light)) * min(rx, ry) * rng.uniform(0.6, 1.1)
    # pull the surface toward the pit's centre, so textures bend into it
    pull = depth * rng.uniform(2, 5)
    sx = np.clip(xx + pull * np.sign(xx - x), 0, size - 1).astype(int)
    sy = np.clip(yy + pull * np.sign(yy - y), 0, size - 1).astype(int)
    face = scene.face.astype(np.float32)
    warped = scene.rgb[sy, sx]
    scene.rgb = _blend(scene.rgb, (depth > 0.05) * face, warped)
    scene.rgb = np.clip(scene.rgb * (1 + shading * face)[..., None], 0, 1)
    if scene.material in ("cardboard", "leather") and rng.random() < 0.7:  # creases radiating from the dent
        creases = [(x + rx * rng.uniform(0.4, 1.1) * math.cos(a), y + ry * rng.uniform(0.4, 1.1) * math.sin(a))
                   for a in rng.uniform(0, 2 * math.pi, int(rng.integers(2, 5)))]
        lines = _mask(size, lambda d: [d.line([(x, y), c], fill=255, width=2) for c in creases], 0.7) * face
        scene.rgb = _blend(scene.rgb, lines * 0.5, scene.rgb * 0.55)


DRAW_DEFECT: dict[str, Callable[[np.random.Generator, Scene], None]] = {
    "scratch": scratch, "crack_or_broken": crack_or_broken, "stain": stain, "tear_or_hole": tear_or_hole,
    "dent": dent}


def look_alikes(rng: np.random.Generator, scene: Scene) -> None:
    """Harmless things that resemble defects: soft reflections, a stitched seam, a shadow, a sticker."""
    size = scene.rgb.shape[0]
    for _ in range(int(rng.integers(0, 3))):
        kind = rng.choice(["reflection", "seam", "shadow", "sticker"])
        x, y = _spot(rng, scene)
        s = _scale(scene)
        if kind == "reflection":
            r = s * rng.uniform(0.05, 0.15)
            glare = _mask(size, lambda d: d.ellipse([x - r, y - r * 0.3, x + r, y + r * 0.3], fill=255), r * 0.4)
            scene.rgb = _blend(scene.rgb, glare * 0.5 * scene.face, np.float32(1.0))
        elif kind == "seam" and scene.material in ("leather", "mesh", "fabric", "plastic"):
            angle = rng.uniform(0, math.pi)
            length = s * 0.6
            dashes = [((x + (t - 0.5) * length * math.cos(angle), y + (t - 0.5) * length * math.sin(angle)),
                       (x + (t - 0.48) * length * math.cos(angle), y + (t - 0.48) * length * math.sin(angle)))
                      for t in np.arange(0, 1, 0.04)]
            seam = _mask(size, lambda d: [d.line(list(p), fill=255, width=2) for p in dashes], 0.4) * scene.face
            scene.rgb = _blend(scene.rgb, seam * 0.7, scene.rgb * 0.7)
        elif kind == "shadow":
            r = s * rng.uniform(0.15, 0.3)
            shade = _mask(size, lambda d: d.ellipse([x - r, y - r, x + r, y + r], fill=255), r * 0.6)
            scene.rgb = scene.rgb * (1 - 0.25 * shade * scene.face)[..., None]
        else:
            r = s * rng.uniform(0.05, 0.09)
            sticker = _mask(size, lambda d: d.rounded_rectangle([x - r, y - r * 0.6, x + r, y + r * 0.6], radius=3,
                                                                  fill=255), 0.5) * scene.face
            scene.rgb = _blend(scene.rgb, sticker, _color(rng, STICKERS))


# ------------------------------------------------------------------------------------------- camera


@dataclass
class Camera:
    """How the shopper held the phone: a rotation of the scene, then a perspective crop."""

    angle: float
    coeffs: list[float]
    side: int
    zoom: float  # photo pixels per canvas pixel (along a side)

    def shoot(self, image: Image.Image, resample: int = Image.BICUBIC) -> Image.Image:
        rotated = image.rotate(self.angle, resample=Image.BILINEAR)
        return rotated.transform((self.side, self.side), Image.PERSPECTIVE, self.coeffs, resample)


def _camera(rng: np.random.Generator, size: int, focus: tuple[float, float]) -> Camera:
    """A phone held at an angle, usually close to what the shopper wants to show (``focus``):
    rotate, zoom toward the focus, tilt, and crop."""
    angle = rng.uniform(-25, 25)  # the crop stays inside the rotated canvas: no empty corners
    window = size * 0.66
    # after-sales photos are taken close to the damage (and of a clean item, close to some spot)
    out = window / (rng.uniform(1.6, 2.8) if rng.random() < 0.85 else rng.uniform(1.0, 1.6))
    theta = math.radians(angle)
    fx, fy = focus[0] - size / 2, focus[1] - size / 2  # the focus after the rotation (counter-clockwise)
    rx, ry = fx * math.cos(theta) + fy * math.sin(theta), -fx * math.sin(theta) + fy * math.cos(theta)
    room = (window - out) / 2
    cx = size / 2 + float(np.clip(rx, -room, room))
    cy = size / 2 + float(np.clip(ry, -room, room))
    jitter = out * 0.06
    c = cx - out / 2
    d = cy - out / 2
    corners = [(c + rng.uniform(-jitter, jitter), d + rng.uniform(-jitter, jitter)),
               (c + out + rng.uniform(-jitter, jitter), d + rng.uniform(-jitter, jitter)),
               (c + out + rng.uniform(-jitter, jitter), d + out + rng.uniform(-jitter, jitter)),
               (c + rng.uniform(-jitter, jitter), d + out + rng.uniform(-jitter, jitter))]
    side = int(round(window))
    target = [(0, 0), (side, 0), (side, side), (0, side)]
    return Camera(angle, _perspective_coeffs(target, corners), side, side / out)


def _aim(rng: np.random.Generator, focus: tuple[float, float], shows: Array, minimum: int,
         share: float) -> tuple[Camera, Array, float]:
    """A camera aimed at ``focus``, where in its frame the defect drawn at ``shows`` is, and how
    many canvas pixels of it (as ``MIN_VISIBLE`` counts them) the frame holds. A photo of a defect
    shows the defect: the camera tries again, up to ``CAMERA_TRIES`` times, when it caught fewer
    than ``minimum`` or the defect covers less than ``share`` of the photo; when no camera does
    both, the one that caught enough and showed it largest."""
    best: tuple[tuple[bool, float], Camera, Array, float] | None = None
    for _ in range(CAMERA_TRIES):
        camera = _camera(rng, CANVAS, focus)
        seen = np.asarray(camera.shoot(Image.fromarray(shows.astype(np.uint8) * 255), Image.BILINEAR)) >= 128
        in_frame = float(seen.sum()) / camera.zoom ** 2
        score = (in_frame >= minimum, float(seen.mean()))
        if best is None or score > best[0]:
            best = (score, camera, seen, in_frame)
        if score[0] and score[1] >= share:
            break
    assert best is not None
    return best[1], best[2], best[3]


def _perspective_coeffs(target: list[tuple[float, float]], source: list[tuple[float, float]]) -> list[float]:
    rows = []
    for (x, y), (u, v) in zip(target, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    b = np.array([c for point in source for c in point], dtype=np.float64)
    return np.linalg.solve(np.array(rows, dtype=np.float64), b).tolist()


def changed(before: Scene, after: Scene) -> Array:
    """Where a defect visibly changed the canvas: colour on the product, or the product's outline
    (a broken-off piece shows the surface behind it). A boolean (H, W) mask."""
    colour = np.abs(after.rgb - before.rgb).max(axis=-1) * after.mask
    outline = np.abs(after.mask - before.mask)
    return (colour + outline) >= VISIBLE_CHANGE


def visible_pixels(before: Scene, after: Scene) -> int:
    """Canvas pixels a defect visibly changed."""
    return int(changed(before, after).sum())


def _copy(scene: Scene) -> Scene:
    return replace(scene, rgb=scene.rgb.copy(), mask=scene.mask.copy(), face=scene.face.copy(),
                   spots=list(scene.spots))


def _scene_with(label: str, product: str | None, rng: np.random.Generator) -> tuple[Scene, tuple[float, float],
                                                                                   Array, str]:
    """The product with its look-alikes and ``label``'s defect drawn where it shows, where the camera
    should look, where the defect shows, and the defect's kind. A clean photo is framed the way a
    photo of damage is (else a close-up would tell the model "defect"): a defect of a kind the
    product can have is drawn on a copy only to aim the camera at it, and the scene stays clean."""
    for _ in range(SCENES_PER_PHOTO):
        if product is None:
            candidates = [p for p in PRODUCTS if label == "no_visible_defect" or label in DEFECTS_ON[p]]
            chosen = str(candidates[rng.integers(len(candidates))])
        else:
            chosen = product
        scene = DRAW_PRODUCT[chosen](rng, CANVAS)
        look_alikes(rng, scene)
        before = len(scene.spots)
        kind = label if label != "no_visible_defect" else str(rng.choice(DEFECTS_ON[chosen]))
        for _ in range(DRAWS_PER_SCENE):
            drawn = _copy(scene)
            DRAW_DEFECT[kind](rng, drawn)
            shows = changed(scene, drawn)
            if shows.sum() >= MIN_VISIBLE[kind]:
                focus = drawn.spots[before] if len(drawn.spots) > before else _spot(rng, drawn)
                return (scene if label == "no_visible_defect" else drawn), focus, shows, kind
        # this product hides the defect whatever is drawn (a dark stain on a black case): another product
    raise RuntimeError(f"no visible {label} in {SCENES_PER_PHOTO} drawn scenes")  # a bug in the drawing code


def render(label: str, seed: int, size: int = 256, product: str | None = None) -> tuple[Image.Image, dict]:
    """One photo of a product with ``label``'s defect (or none), and what was drawn."""
    image, info, _ = render_with_mask(label, seed, size, product)
    return image, info


def render_with_mask(label: str, seed: int, size: int = 256,
                     product: str | None = None) -> tuple[Image.Image, dict, Image.Image]:
    """``render``'s photo and description, and where in the photo the defect shows: a greyscale
    image of the photo's size, 255 on the defect (all 0 for ``no_visible_defect``)."""
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; expected one of {', '.join(LABELS)}")
    if product is not None and product not in PRODUCTS:
        raise ValueError(f"unknown product {product!r}; expected one of {', '.join(PRODUCTS)}")
    if product is not None and label != "no_visible_defect" and label not in DEFECTS_ON[product]:
        raise ValueError(f"{label} is not drawn on a {product}")
    rng = np.random.default_rng(seed)
    scene, focus, shows, kind = _scene_with(label, product, rng)
    product = scene.product
    canvas = background(rng, CANVAS)
    # the product's shadow on the surface
    shadow = np.asarray(Image.fromarray((scene.mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(8)),
                        np.float32) / 255
    dx, dy = rng.integers(-10, 11, 2)
    shadow = np.roll(shadow, (int(dy), int(dx)), (0, 1))
    canvas = canvas * (1 - rng.uniform(0.25, 0.5) * shadow)[..., None]
    rgb = _blend(canvas, scene.mask, scene.rgb)
    # light: a gradient across the frame and a colour cast
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32) / CANVAS
    a = rng.uniform(0, 2 * math.pi)
    light = rng.uniform(0.7, 1.0) + rng.uniform(0.0, 0.35) * ((xx - 0.5) * math.cos(a) + (yy - 0.5) * math.sin(a) + 0.5)
    cast = 1 + rng.normal(0, 0.05, 3).astype(np.float32)
    rgb = np.clip(rgb * light[..., None] * cast, 0, 1)
    image = Image.fromarray((rgb * 255).astype(np.uint8))
    camera, seen, in_frame = _aim(rng, focus, shows, MIN_VISIBLE[kind], MIN_SHARE[kind])
    if label == "no_visible_defect":  # framed as if it were there; nothing is
        seen, in_frame = np.zeros_like(seen), 0.0
    image = camera.shoot(image)
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 1.0)))
    image = image.resize((size, size), Image.BILINEAR)
    pixels = np.asarray(image, np.float32)
    pixels = pixels + rng.normal(0, rng.uniform(1, 6), pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    where = Image.fromarray(seen.astype(np.uint8) * 255).resize((size, size), Image.BILINEAR)
    return image, {"label": label, "product": product, "material": scene.material, "seed": seed,
                   "defect_pixels_in_frame": round(in_frame), "defect_share": round(float(seen.mean()), 4)}, where


def _render_to(job: tuple[str, int, int, int, str]) -> np.ndarray:
    label, seed, size, quality, path = job
    image, _, where = render_with_mask(label, seed, size)
    image.save(path, "JPEG", quality=quality)
    return np.asarray(where.resize((MASK_SIZE, MASK_SIZE), Image.BILINEAR))


def generate(out: Path, per_class: int, seed: int = 0, size: int = 256, progress: bool = False,
             workers: int | None = None) -> dict:
    """Write an ImageFolder (``out/<label>/<n>.jpg``) with ``per_class`` photos of each label,
    where each photo's defect is (``masks.npz``, see ``read_masks``) and ``dataset.json``
    describing it all; the same seed gives the same bytes. Returns that description."""
    import os
    import sys
    from multiprocessing import get_context

    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    jobs = []
    for label in LABELS:
        (out / label).mkdir(exist_ok=True)
        for stale in (out / label).glob("*.jpg"):  # from an earlier, bigger run: not part of this set
            if not stale.stem.isdigit() or int(stale.stem) >= per_class:
                stale.unlink()
        for n in range(per_class):
            jobs.append((label, int(rng.integers(2 ** 31)), size, int(rng.integers(60, 95)),
                         str(out / label / f"{n:05d}.jpg")))
    workers = workers or min(len(os.sched_getaffinity(0)), 4)
    with get_context("spawn").Pool(workers) as pool:
        masks = list(tqdm(pool.imap(_render_to, jobs, chunksize=8), total=len(jobs), desc="drawing photos",
                          unit="photo", file=sys.stderr, disable=not progress))
    names = [f"{job[0]}/{Path(job[4]).name}" for job in jobs]
    stacked = np.stack(masks) if masks else np.zeros((0, MASK_SIZE, MASK_SIZE), np.uint8)
    np.savez_compressed(out / MASKS, names=np.array(names), masks=stacked)
    digest = hashlib.sha256()
    for *_, path in jobs:
        digest.update(Path(path).read_bytes())
    digest.update(stacked.tobytes())
    description = {"generator": "kefu.vision.synth", "version": VERSION, "seed": seed, "size": size,
                   "per_class": per_class, "counts": {label: per_class for label in LABELS},
                   "masks": {"file": MASKS, "size": MASK_SIZE}, "sha256": digest.hexdigest()}
    (out / "dataset.json").write_text(json.dumps(description, indent=2))
    return description


def read_masks(root: Path) -> dict[str, np.ndarray] | None:
    """The defect masks ``generate`` wrote for the photos under ``root``, by ``<label>/<file name>``
    (uint8, ``MASK_SIZE`` square, 255 on the defect); None for a folder of other photos."""
    path = root / MASKS
    if not path.exists():
        return None
    with np.load(path) as saved:
        return dict(zip(saved["names"].tolist(), saved["masks"]))

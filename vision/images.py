"""Shoppers' photos at the edge: check the bytes, decode safely, strip what identifies the shopper.

A photo is refused, with a reason a shopper can act on, when it is empty, larger than the byte
limit, not a JPEG/PNG/WebP by its leading bytes (a PDF renamed ``.jpg`` is a PDF), declares more
pixels than the limit in its header (a decompression bomb is refused before a single pixel is
decoded), or fails to decode (truncated or corrupt).

What is stored is the shopper's own JPEG or PNG bytes with the metadata segments removed (EXIF
with its GPS position and camera serial, XMP, IPTC, comments, PNG text chunks), done on the
byte stream, so nothing is re-compressed. A JPEG keeps one thing from its EXIF: the orientation
tag, in a fresh EXIF block that holds nothing else, so the photo still shows upright. WebP is
re-encoded without metadata.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
ORIENTATION = 0x0112


class PhotoError(ValueError):
    """A photo kefu will not take; ``code`` names the reason (the widget shows it translated)."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 8 * 1024 * 1024
    max_pixels: int = 40_000_000  # a 48-megapixel phone camera is refused; 40 MP and below pass
    min_side: int = 32


@dataclass
class Photo:
    """A validated photo: the decoded image (upright, RGB, possibly reduced by JPEG draft
    decoding) and the metadata-free bytes to store."""

    image: Image.Image
    stored: bytes
    media_type: str
    width: int  # of the original
    height: int


def sniff(data: bytes) -> str | None:
    """The media type by the leading bytes, whatever the file name or declared type says."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"%PDF"):
        return "application/pdf"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc"):
        return "image/heic"
    return None


ACCEPTED = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}


def open_photo(data: bytes, limits: Limits = Limits(), decode_size: int | None = None) -> Photo:
    """Validate and decode ``data``. ``decode_size`` lets JPEG decoding skip detail a classifier
    reading ``decode_size`` pixels would never see (libjpeg's DCT scaling: 1/2, 1/4, 1/8)."""
    if not data:
        raise PhotoError("empty")
    if len(data) > limits.max_bytes:
        raise PhotoError("too_large", f"{len(data)} bytes; at most {limits.max_bytes}")
    media_type = sniff(data)
    if media_type not in ACCEPTED:
        raise PhotoError("unsupported_type", media_type or "unknown")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=[ACCEPTED[media_type]])
            width, height = image.size
            if width * height > limits.max_pixels:
                raise PhotoError("too_many_pixels", f"{width}x{height}")
            if min(width, height) < limits.min_side:
                raise PhotoError("too_small", f"{width}x{height}")
            orientation = image.getexif().get(ORIENTATION, 1)
            if decode_size and media_type == "image/jpeg":
                image.draft("RGB", (decode_size, decode_size))
            image.load()
        except PhotoError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise PhotoError("too_many_pixels", str(error)) from None
        except (OSError, SyntaxError, ValueError, struct.error, EOFError) as error:
            raise PhotoError("corrupt", type(error).__name__) from None
    image = _rgb(ImageOps.exif_transpose(image) if orientation != 1 else image)
    if media_type == "image/jpeg":
        stored = strip_jpeg(data, orientation)
    elif media_type == "image/png":
        stored = strip_png(data)
    else:
        buffer = io.BytesIO()
        _rgb(image).save(buffer, "JPEG", quality=90)
        stored, media_type = buffer.getvalue(), "image/jpeg"
    return Photo(image, stored, media_type, width, height)


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float32)
        return Image.fromarray((array / max(array.max(), 1) * 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


# JPEG markers kept byte for byte: everything but APP1..APP15 (EXIF, XMP, IPTC, Photoshop, vendor
# blocks) and COM. APP0 (JFIF) and APP2 (ICC colour profile) hold no personal data.
_DROP = {0xFE} | set(range(0xE1, 0xF0)) - {0xE2}


def strip_jpeg(data: bytes, orientation: int = 1) -> bytes:
    out = bytearray(b"\xff\xd8")
    i = 2
    inserted = False
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise PhotoError("corrupt", "bad JPEG marker")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA or marker == 0xD9:  # start of scan: the rest is image data
            if not inserted and orientation != 1:
                out += _orientation_segment(orientation)
            out += data[i:]
            return bytes(out)
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        segment = data[i:i + 2 + length]
        if marker not in _DROP:
            out += segment
        if marker == 0xE0 and not inserted and orientation != 1:  # right after JFIF, as readers expect
            out += _orientation_segment(orientation)
            inserted = True
        i += 2 + length
    raise PhotoError("corrupt", "JPEG ended before its image data")


def _orientation_segment(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    body = exif.tobytes()  # b"Exif\0\0" and a TIFF block holding the one tag
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


_PNG_KEEP = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"pHYs",
             b"bKGD", b"acTL", b"fcTL", b"fdAT"}


def strip_png(data: bytes) -> bytes:
    """The PNG without text, EXIF, time and unknown ancillary chunks."""
    out = bytearray(data[:8])
    i = 8
    while i + 8 <= len(data):
        length = struct.unpack(">I", data[i:i + 4])[0]
        kind = data[i + 4:i + 8]
        chunk = data[i:i + 12 + length]
        if kind in _PNG_KEEP:
            out += chunk
        i += 12 + length
        if kind == b"IEND":
            break
    return bytes(out)


def to_array(image: Image.Image, size: int, mean: np.ndarray = IMAGENET_MEAN,
             std: np.ndarray = IMAGENET_STD) -> np.ndarray:
    """The network's input: the whole photo resized to ``size`` x ``size`` (aspect not kept, so
    a defect near the edge is never cropped away), normalised, channels first."""
    resized = image.resize((size, size), Image.BILINEAR, reducing_gap=2.0)
    array = np.asarray(resized, dtype=np.float32) * (1 / 255.0)
    return ((array - mean) / std).transpose(2, 0, 1)

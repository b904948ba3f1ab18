"""Deterministic image "models" of the emulator: OCR, background removal and upscaling.

OCR does not guess. Text is expected in Pillow's built-in bitmap font
(``ImageFont.load_default_imagefont()``: every printable ASCII character is a 6 x 11 cell), drawn
dark on a light background (or light on dark), at any position, possibly enlarged by an integer
factor with nearest-neighbour scaling, on any number of lines that are separated by at least one
blank pixel row. :func:`read_text` finds the scale, the lines and the character grid and matches
every cell against the font's own glyphs, so text drawn that way comes back exactly, also after
lossless conversion (PNG, BMP, GIF, WebP lossless) or mild JPEG compression.
:func:`render_text_image` draws such an image (a "scan"). Images without such text read as ``""``.

>>> png = render_text_image("Invoice 42\\nTotal: 17.50 EUR", scale=2)
>>> read_text(png)["text"]
'Invoice 42\\nTotal: 17.50 EUR'

Only the standard library, numpy and Pillow are used (no ``deapi_ds`` imports outside the
emulator).
"""

from __future__ import annotations

import functools
import io
import string
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["read_text", "remove_background", "render_text_image", "upscale_image"]

_CELL_W, _CELL_H = 6, 11
_CHARSET = string.printable[:95]  # digits, letters, punctuation, space
_MAX_SCALE = 8


@functools.lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default_imagefont()


@functools.lru_cache(maxsize=1)
def _templates() -> tuple[np.ndarray, str]:
    """(glyphs as an (n, 11, 6) bool array, their characters); duplicates keep the first."""
    glyphs: list[np.ndarray] = []
    chars: list[str] = []
    seen: set[bytes] = set()
    for ch in _CHARSET:
        img = Image.new("L", (_CELL_W, _CELL_H), 255)
        ImageDraw.Draw(img).text((0, 0), ch, font=_font(), fill=0)
        ink = np.asarray(img) < 128
        if ink.tobytes() in seen:
            continue
        seen.add(ink.tobytes())
        glyphs.append(ink)
        chars.append(ch)
    return np.stack(glyphs), "".join(chars)


def render_text_image(
    text: str,
    *,
    scale: int = 2,
    margin: int = 8,
    spacing: int = 4,
    foreground: Any = (20, 20, 20),
    background: Any = (250, 248, 240),
    fmt: str = "PNG",
    min_size: int = 64,
) -> bytes:
    """An image of ``text`` (printable ASCII, ``\\n`` between lines) that :func:`read_text` reads.

    ``scale`` enlarges the 6 x 11 px font by an integer factor; ``fmt`` is any format Pillow
    writes (PNG, JPEG, WEBP, BMP, GIF). The canvas is at least ``min_size`` px per side.
    """
    lines = text.split("\n")
    bad = sorted({ch for ch in text if ch != "\n" and ch not in _CHARSET})
    if bad:
        raise ValueError(
            f"render_text_image() draws printable ASCII only (Pillow's bitmap font); got {bad}."
        )
    if not isinstance(scale, int) or not 1 <= scale <= _MAX_SCALE:
        raise ValueError(f"scale must be an int in [1, {_MAX_SCALE}]. Got {scale!r}.")
    width = max(len(line) for line in lines) * _CELL_W + 2 * margin
    height = len(lines) * (_CELL_H + spacing) - spacing + 2 * margin
    width = max(width, -(-min_size // scale))
    height = max(height, -(-min_size // scale))
    img = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((margin, margin + i * (_CELL_H + spacing)), line, font=_font(), fill=foreground)
    if scale > 1:
        img = img.resize((width * scale, height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def _ink(img: Image.Image) -> np.ndarray:
    gray = np.asarray(img.convert("L"), dtype=np.float32)
    ink = gray < 128
    if ink.mean() > 0.5:  # light text on a dark background
        ink = ~ink
    return ink


def _runs_min(ink: np.ndarray) -> int:
    """The shortest run of ink along rows and columns: the font's 1-px stroke times the scale."""
    best = _MAX_SCALE + 1
    for arr in (ink, ink.T):
        padded = np.pad(arr, ((0, 0), (1, 1))).astype(np.int8)
        edges = np.diff(padded, axis=1)
        rows, starts = np.nonzero(edges == 1)
        _, ends = np.nonzero(edges == -1)
        if len(starts):
            best = min(best, int((ends - starts).min()))
    return best


def _downscale(ink: np.ndarray, scale: int) -> np.ndarray:
    ys, xs = np.nonzero(ink)
    oy, ox = ys.min() % scale, xs.min() % scale
    block = ink[oy:, ox:]
    h, w = block.shape[0] // scale, block.shape[1] // scale
    block = block[: h * scale, : w * scale].reshape(h, scale, w, scale)
    return block.mean(axis=(1, 3)) >= 0.5


def _bands(ink: np.ndarray) -> list[tuple[int, int]]:
    """Row ranges [start, end) that hold ink, separated by blank rows."""
    rows = ink.any(axis=1)
    padded = np.concatenate([[False], rows, [False]]).astype(np.int8)
    edges = np.diff(padded)
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _read_line(ink: np.ndarray, top: int, bottom: int) -> tuple[str, float, int, int]:
    """Best (text, mismatch per cell, x0, y0) for one band of a 1x ink image."""
    glyphs, chars = _templates()
    flat = glyphs.reshape(len(glyphs), -1).astype(np.float32)
    cols = np.flatnonzero(ink[top:bottom].any(axis=0))
    left, right = int(cols.min()), int(cols.max()) + 1
    padded = np.pad(ink, ((_CELL_H, _CELL_H), (_CELL_W, _CELL_W)))
    best: tuple[str, float, int, int] = ("", float("inf"), 0, 0)
    for y0 in range(bottom - _CELL_H, top + 1):
        for x0 in range(left - _CELL_W + 1, left + 1):
            n = -(-(right - x0) // _CELL_W)
            strip = padded[
                y0 + _CELL_H : y0 + 2 * _CELL_H, x0 + _CELL_W : x0 + _CELL_W + n * _CELL_W
            ]
            if strip.shape != (_CELL_H, n * _CELL_W):
                continue
            cells = strip.reshape(_CELL_H, n, _CELL_W).transpose(1, 0, 2).reshape(n, -1)
            cells = cells.astype(np.float32)
            # Hamming distance of every cell to every glyph
            dist = cells.sum(1)[:, None] + flat.sum(1)[None, :] - 2 * cells @ flat.T
            pick = dist.argmin(axis=1)
            cost = float(dist[np.arange(n), pick].sum()) / n
            # ink of the band outside the chosen rows counts against this origin
            outside = int(ink[top:bottom].sum()) - int(strip.sum())
            cost += outside
            if cost < best[1]:
                best = ("".join(chars[i] for i in pick), cost, x0, y0)
    return best


def read_text(data: bytes) -> dict[str, Any]:
    """Read bitmap-font text from image bytes: ``{"text", "lines": [{"text", "bbox"}]}``.

    ``bbox`` is ``[x0, y0, x1, y1]`` in the image's pixels. Lines whose cells do not look like
    the font (photos, other fonts) are left out, so an image without such text gives ``""``.
    """
    img = Image.open(io.BytesIO(data))
    img.load()
    ink = _ink(img)
    if not ink.any():
        return {"text": "", "lines": []}
    scale = _runs_min(ink)
    if scale > _MAX_SCALE:
        return {"text": "", "lines": []}
    ys, xs = np.nonzero(ink)
    oy, ox = int(ys.min() % scale), int(xs.min() % scale)
    small = _downscale(ink, scale)
    found = []
    for top, bottom in _bands(small):
        if bottom - top > _CELL_H:
            continue  # not one line of the bitmap font
        text, cost, x0, y0 = _read_line(small, int(top), int(bottom))
        if cost <= 3.0:  # more than ~3 wrong pixels per 66-pixel cell: not our font
            found.append((text.rstrip(), x0, y0))
    # lines share a left margin: a line starting further right on the same grid is indented
    margin = min((x0 for _, x0, _ in found), default=0)
    lines = []
    for text, x0, y0 in found:
        indent, rest = divmod(x0 - margin, _CELL_W)
        if rest == 0 and indent:
            text, x0 = " " * indent + text, margin
        bbox = [
            ox + x0 * scale,
            oy + y0 * scale,
            ox + (x0 + len(text) * _CELL_W) * scale,
            oy + (y0 + _CELL_H) * scale,
        ]
        lines.append({"text": text, "bbox": bbox})
    return {"text": "\n".join(line["text"] for line in lines), "lines": lines}


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=False)
    return buf.getvalue()


def remove_background(data: bytes) -> bytes:
    """An RGBA PNG of the image whose background is transparent.

    The background colour is the median colour of the image's border; pixels within a small
    distance of it become transparent (alpha 0), the rest opaque (alpha 255).
    """
    img = Image.open(io.BytesIO(data)).convert("RGB")
    arr = np.asarray(img, dtype=np.int16)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    bg = np.median(border, axis=0)
    distance = np.abs(arr - bg).sum(axis=2)
    alpha = np.where(distance > 48, 255, 0).astype(np.uint8)
    rgba = np.dstack([np.asarray(img, dtype=np.uint8), alpha])
    return _png(Image.fromarray(rgba, "RGBA"))


def upscale_image(data: bytes, factor: int = 4) -> bytes:
    """The image enlarged ``factor`` times (Lanczos), as PNG (alpha kept when present)."""
    img = Image.open(io.BytesIO(data))
    mode = "RGBA" if img.mode in ("RGBA", "LA", "P") and "transparency" in img.info else "RGB"
    if img.mode == "RGBA":
        mode = "RGBA"
    img = img.convert(mode)
    out = img.resize((img.width * factor, img.height * factor), Image.Resampling.LANCZOS)
    return _png(out)

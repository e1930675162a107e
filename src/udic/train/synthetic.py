"""Procedural synthetic training images: flat vector art, line art, screen text, pixel art, comics.

Why: the training set is natural photographs only, yet udic is judged on images of every
kind. The base never saw a hard edge between two flat colours, a one-pixel stroke or a
glyph, and its rates flatten on such content (docs/training.md). Drawing such images
procedurally (never copying the dev sets, which are what the bench measures) lets a
fraction of every batch teach the transforms what synthetic content looks like.

Every image is a pure function of the generator passed in, so batches, and with them
resumed runs, stay reproducible.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

KINDS = ("vector", "line", "screen", "pixel", "comic")
# Style 2 adds "soft" vector art: what the dev vector set is made of and the flat kinds lack
# (session 35): linear and radial gradient fills, translucent overlapping shapes, glows, wavy bands.
# Drawn twice as often as each other kind: vector art is the set furthest behind AVIF.
KINDS_BY_STYLE = {1: KINDS, 2: KINDS + ("soft", "soft")}
_GLYPHS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.,:;!?()[]{}<>/+-=*#&%$@ "


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # a Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _colour(g: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in g.integers(0, 256, 3))  # type: ignore[return-value]


def _palette(g: np.random.Generator, count: int) -> list[tuple[int, int, int]]:
    """Saturated and pastel colours, as designers pick them, not uniform noise."""
    out = []
    for _ in range(count):
        base = g.integers(0, 256, 3).astype(np.float64)
        mode = g.random()
        if mode < 0.35:  # pastel
            base = 255 - (255 - base) * 0.35
        elif mode < 0.6:  # saturated: push the channels apart
            base = np.where(base > base.mean(), np.minimum(255, base * 1.4), base * 0.4)
        out.append(tuple(int(v) for v in np.clip(base, 0, 255)))
    return out


def _point(g: np.random.Generator, size: int, margin: float = 0.2) -> tuple[float, float]:
    lo, hi = -margin * size, (1 + margin) * size
    return float(g.uniform(lo, hi)), float(g.uniform(lo, hi))


def _box(g: np.random.Generator, size: int) -> tuple[float, float, float, float]:
    (x0, y0), (x1, y1) = _point(g, size), _point(g, size)
    return min(x0, x1), min(y0, y1), max(x0, x1) + 2, max(y0, y1) + 2


def _rounded_box(g: np.random.Generator, size: int, scale: int,
                 max_radius: float) -> tuple[tuple[int, int, int, int], float]:
    """A rounded rectangle's box and corner radius (2 … max_radius pixels, times ``scale``).
    Pillow fails (x1 < x0 inside) when the corners do not fit the box: they are kept inside."""
    x0, y0, x1, y1 = (int(round(v)) for v in _box(g, size))
    radius = min(float(g.uniform(2, max_radius)) * scale, max(0.0, (min(x1 - x0, y1 - y0) - 1) / 2 - 1))
    return (x0, y0, x1, y1), radius


def _background(g: np.random.Generator, size: int, colours: list[tuple[int, int, int]]) -> Image.Image:
    if g.random() < 0.3:  # a linear gradient between two colours
        a, b = np.array(colours[0], np.float64), np.array(colours[-1], np.float64)
        angle = g.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size] / max(1, size - 1)
        t = np.clip((np.cos(angle) * xx + np.sin(angle) * yy + 1) / 2, 0, 1)[..., None]
        return Image.fromarray(np.round(a * (1 - t) + b * t).astype(np.uint8), "RGB")
    return Image.new("RGB", (size, size), colours[0])


def _vector(g: np.random.Generator, size: int, scale: int) -> Image.Image:
    s = size * scale
    colours = _palette(g, int(g.integers(3, 9)))
    im = _background(g, s, colours)
    d = ImageDraw.Draw(im)
    for _ in range(int(g.integers(3, 16))):
        fill = colours[int(g.integers(len(colours)))]
        outline = colours[int(g.integers(len(colours)))] if g.random() < 0.4 else None
        width = int(g.integers(1, 5)) * scale
        kind = g.random()
        if kind < 0.3:
            d.rectangle(_box(g, s), fill=fill, outline=outline, width=width)
        elif kind < 0.55:
            d.ellipse(_box(g, s), fill=fill, outline=outline, width=width)
        elif kind < 0.75:
            box, radius = _rounded_box(g, s, scale, 20)
            d.rounded_rectangle(box, radius=radius, fill=fill, outline=outline, width=width)
        else:
            pts = [_point(g, s) for _ in range(int(g.integers(3, 7)))]
            d.polygon(pts, fill=fill, outline=outline)
    return im


def _ramp(g: np.random.Generator, s: int, colours: list[tuple[int, int, int]]) -> np.ndarray:
    """A (s, s, 3) float gradient between two or three colours: linear, or radial around a point
    that may lie off the canvas (vignettes, glows, sky)."""
    stops = np.array([colours[int(i)] for i in g.integers(len(colours), size=int(g.integers(2, 4)))], np.float32)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / max(1, s - 1)
    if g.random() < 0.5:
        angle = g.uniform(0, 2 * np.pi)
        t = np.cos(angle) * xx + np.sin(angle) * yy
        t = (t - t.min()) / max(1e-9, float(t.max() - t.min()))
    else:
        cx, cy = g.uniform(-0.3, 1.3, 2)
        t = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / float(g.uniform(0.4, 1.5))
    t = np.clip(t, 0, 1) ** float(g.uniform(0.6, 1.8)) * (len(stops) - 1)
    k = np.minimum(t.astype(np.int64), len(stops) - 2)
    f = (t - k)[..., None]
    return (stops[k] * (1 - f) + stops[k + 1] * f).astype(np.float32)


def _soft_mask(g: np.random.Generator, s: int, scale: int) -> Image.Image:
    """One shape's coverage (mode "L"): ellipse, polygon, rounded box or a wavy band."""
    mask = Image.new("L", (s, s), 0)
    d = ImageDraw.Draw(mask)
    kind = g.random()
    if kind < 0.3:
        d.ellipse(_box(g, s), fill=255)
    elif kind < 0.55:
        d.polygon([_point(g, s) for _ in range(int(g.integers(3, 8)))], fill=255)
    elif kind < 0.7:
        box, radius = _rounded_box(g, s, scale, 30)
        d.rounded_rectangle(box, radius=radius, fill=255)
    else:  # a band under a sine: dunes, waves, stripes
        xs = np.linspace(0, s, 64)
        base, amp = float(g.uniform(0, s)), float(g.uniform(0.02, 0.2)) * s
        freq, phase = float(g.uniform(0.5, 4)) * 2 * np.pi / s, float(g.uniform(0, 2 * np.pi))
        top = base + amp * np.sin(freq * xs + phase)
        pts = list(zip(xs.tolist(), top.tolist())) + [(s, s + 1), (0, s + 1)]
        d.polygon(pts, fill=255)
        if g.random() < 0.5:
            mask = mask.transpose(Image.Transpose.TRANSPOSE)
    return mask


def _soft(g: np.random.Generator, size: int, scale: int) -> Image.Image:
    """Vector art as designers draw it now: gradient backgrounds and fills, shapes seen through
    each other, blurred glows; drawn at 1-4× and reduced, like the flat kinds."""
    scale = min(scale, 2)  # (smooth content needs little supersampling; 4x costs 4x the time)
    s = size * scale
    colours = _palette(g, int(g.integers(3, 9)))
    canvas = _ramp(g, s, colours) if g.random() < 0.8 else np.full((s, s, 3), colours[0], np.float32)
    for _ in range(int(g.integers(2, 12))):
        cover = _soft_mask(g, s, scale)
        if g.random() < 0.25:  # a glow or soft shadow
            cover = cover.filter(ImageFilter.GaussianBlur(float(g.uniform(2, 12)) * scale))
        alpha = 1.0 if g.random() < 0.4 else float(g.uniform(0.25, 0.9))
        paint = _ramp(g, s, colours) if g.random() < 0.5 else \
            np.array(colours[int(g.integers(len(colours)))], np.float32)
        a = np.asarray(cover, np.float32)[..., None] * np.float32(alpha / 255.0)
        canvas += (paint - canvas) * a
    return Image.fromarray(np.clip(np.round(canvas), 0, 255).astype(np.uint8), "RGB")


def _line(g: np.random.Generator, size: int, scale: int) -> Image.Image:
    s = size * scale
    paper = tuple(int(v) for v in 255 - g.integers(0, 30, 3)) if g.random() < 0.5 else (255, 255, 255)
    im = Image.new("RGB", (s, s), paper)  # type: ignore[arg-type]
    d = ImageDraw.Draw(im)
    ink = tuple(int(v) for v in g.integers(0, 80, 3)) if g.random() < 0.8 else _palette(g, 1)[0]
    for _ in range(int(g.integers(4, 30))):
        width = max(1, int(round(g.choice([1, 1, 1, 2, 2, 3, 4]) * scale)))
        kind = g.random()
        if kind < 0.35:  # a free-hand stroke: a smooth random walk
            n = int(g.integers(4, 24))
            x, y = _point(g, s, 0.0)
            heading = g.uniform(0, 2 * np.pi)
            pts = [(x, y)]
            for _ in range(n):
                heading += g.normal(0, 0.5)
                step = g.uniform(0.02, 0.08) * s
                x, y = x + step * np.cos(heading), y + step * np.sin(heading)
                pts.append((x, y))
            d.line(pts, fill=ink, width=width, joint="curve")
        elif kind < 0.6:
            d.line([_point(g, s), _point(g, s)], fill=ink, width=width)
        elif kind < 0.8:
            box = _box(g, s)
            d.arc(box, float(g.uniform(0, 360)), float(g.uniform(0, 360)), fill=ink, width=width)
        else:  # hatching
            x0, y0, x1, y1 = _box(g, s)
            gap = float(g.uniform(3, 10)) * scale
            for k in range(int(min(40, (x1 - x0) / gap))):
                x = x0 + k * gap
                d.line([(x, y0), (x + (y1 - y0) * 0.3, y1)], fill=ink, width=max(1, scale))
    return im


def _text(d: ImageDraw.ImageDraw, g: np.random.Generator, box: tuple[float, float, float, float],
          ink: tuple[int, int, int], font_px: int) -> None:
    font = _font(font_px)
    x0, y0, x1, y1 = box
    y = y0 + 2
    while y + font_px < y1:
        n = int(g.integers(3, 60))
        text = "".join(_GLYPHS[int(i)] for i in g.integers(0, len(_GLYPHS), n))
        d.text((x0 + 2, y), text, fill=ink, font=font)
        y += font_px * float(g.uniform(1.15, 1.6))


def _screen(g: np.random.Generator, size: int) -> Image.Image:
    """Screenshots are drawn at their own pixel size: aliased rectangles, hinted text."""
    dark = g.random() < 0.3
    bg = tuple(int(v) for v in (g.integers(0, 50, 3) if dark else 255 - g.integers(0, 25, 3)))
    ink = tuple(int(v) for v in (255 - g.integers(0, 60, 3) if dark else g.integers(0, 70, 3)))
    im = Image.new("RGB", (size, size), bg)  # type: ignore[arg-type]
    d = ImageDraw.Draw(im)
    if g.random() < 0.5:
        d.fontmode = "1"  # no anti-aliasing, as in many UIs
    accents = _palette(g, 3)
    for _ in range(int(g.integers(1, 6))):  # panels, buttons, bars
        xs, ys = np.sort(g.integers(0, size, 2)), np.sort(g.integers(0, size, 2))
        x0, x1, y0, y1 = int(xs[0]), int(xs[1]) + 4, int(ys[0]), int(ys[1]) + 4
        fill = accents[int(g.integers(3))] if g.random() < 0.5 else None
        d.rectangle((x0, y0, x1, y1), fill=fill, outline=ink if g.random() < 0.5 else None)
    for _ in range(int(g.integers(1, 4))):
        box = (float(g.integers(0, size // 2)), float(g.integers(0, size // 2)), float(size), float(size))
        colour = ink if g.random() < 0.7 else accents[int(g.integers(3))]
        _text(d, g, box, colour, int(g.integers(8, 20)))  # type: ignore[arg-type]
    return im


def _pixel(g: np.random.Generator, size: int) -> Image.Image:
    """A sprite sheet: small symmetric sprites from a few colours, scaled by an integer."""
    cells = int(g.integers(8, 33))
    colours = np.array(_palette(g, int(g.integers(3, 13))), np.uint8)
    grid = np.zeros((cells, cells), np.int64)
    for _ in range(int(g.integers(2, 10))):  # blobs of colour
        cy, cx = g.integers(0, cells, 2)
        r = float(g.uniform(1, cells / 3))
        yy, xx = np.mgrid[0:cells, 0:cells]
        grid[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = int(g.integers(len(colours)))
    if g.random() < 0.6:  # mirror symmetry, as sprites have
        grid[:, cells - cells // 2:] = grid[:, : cells // 2][:, ::-1]
    if g.random() < 0.5:  # dither / noise pixels
        mask = g.random((cells, cells)) < 0.08
        grid[mask] = g.integers(0, len(colours), int(mask.sum()))
    factor = int(g.integers(1, max(2, size // cells) + 1))
    tile = np.repeat(np.repeat(colours[grid], factor, 0), factor, 1)
    reps = -(-size // tile.shape[0])
    sheet = np.tile(tile, (reps, reps, 1))[:size, :size]
    return Image.fromarray(np.ascontiguousarray(sheet), "RGB")


def _comic(g: np.random.Generator, size: int, scale: int) -> Image.Image:
    s = size * scale
    colours = _palette(g, int(g.integers(3, 8)))
    im = Image.new("RGB", (s, s), colours[0])
    d = ImageDraw.Draw(im)
    black = tuple(int(v) for v in g.integers(0, 40, 3))
    for _ in range(int(g.integers(3, 10))):
        fill = colours[int(g.integers(len(colours)))]
        width = int(g.integers(2, 6)) * scale
        if g.random() < 0.5:
            d.ellipse(_box(g, s), fill=fill, outline=black, width=width)  # type: ignore[arg-type]
        else:
            pts = [_point(g, s) for _ in range(int(g.integers(3, 7)))]
            d.polygon(pts, fill=fill, outline=black, width=width)  # type: ignore[arg-type]
    if g.random() < 0.5:  # halftone dots in a region
        x0, y0, x1, y1 = _box(g, s)
        pitch = float(g.uniform(4, 10)) * scale
        dot = colours[int(g.integers(len(colours)))]
        for y in np.arange(max(0, y0), min(s, y1), pitch):
            for x in np.arange(max(0, x0), min(s, x1), pitch):
                r = pitch * 0.3
                d.ellipse((x - r, y - r, x + r, y + r), fill=dot)
    if g.random() < 0.6:  # a speech balloon with text
        x0, y0 = float(g.uniform(0, s * 0.5)), float(g.uniform(0, s * 0.5))
        w, h = float(g.uniform(0.3, 0.5)) * s, float(g.uniform(0.15, 0.3)) * s
        d.ellipse((x0, y0, x0 + w, y0 + h), fill=(255, 255, 255), outline=black, width=2 * scale)  # type: ignore[arg-type]
        _text(d, g, (x0 + w * 0.2, y0 + h * 0.2, x0 + w * 0.85, y0 + h * 0.85), black,  # type: ignore[arg-type]
              int(g.integers(8, 14)) * scale)
    return im


def synthetic_image(g: np.random.Generator, size: int, style: int = 1) -> np.ndarray:
    """One (size, size, 3) uint8 image of a random synthetic kind of ``style`` (KINDS_BY_STYLE;
    style 1 is what every run before session 35 drew, so their batches stay the same)."""
    kinds = KINDS_BY_STYLE[style]
    kind = kinds[int(g.integers(len(kinds)))]
    # Anti-aliased art is drawn at 1–4× and reduced; scale 1 keeps aliased, hard edges.
    scale = int(g.choice([1, 2, 4]))
    if kind == "vector":
        im = _vector(g, size, scale)
    elif kind == "line":
        im = _line(g, size, scale)
    elif kind == "screen":
        im = _screen(g, size)
    elif kind == "pixel":
        im = _pixel(g, size)
    elif kind == "soft":
        im = _soft(g, size, scale)
    else:
        im = _comic(g, size, scale)
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BOX)
    return np.asarray(im, dtype=np.uint8)

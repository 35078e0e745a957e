"""Image panels: what an attack does to one image, and what recompression does over generations.

The attack panel shows, left to right: the source, the adversarial image, the perturbation
amplified to the full display range, the clean reconstruction and the attacked reconstruction,
each titled with its PSNR; the second row zooms (nearest-neighbour) into the window where the two
reconstructions differ most, outlined in yellow in the first row.

A perturbation that is (nearly) the same everywhere - the ``shift`` baseline's brightness offset,
or none at all - has nothing to amplify: it is shown as a uniform tile labelled with its offset in
8-bit levels (and the zoom tile with the offset inside the window) instead of an amplified image
whose two rounding levels would read as half grey, half white.

Panels are composed with Pillow (text in matplotlib's bundled DejaVu Sans), which is fast enough
to draw dozens per report.
"""

from __future__ import annotations

import functools
import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from robustnic.data.images import load_image, to_uint8
from robustnic.metrics import psnr

ImageLike = torch.Tensor | bytes

TILE = 240  # displayed side of every image tile, pixels
_PAD, _GAP = 10, 8
_BG, _INK, _MARK = (255, 255, 255), (30, 35, 42), (255, 214, 0)


@functools.lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except Exception:  # no FreeType: Pillow's own bitmap font
        return ImageFont.load_default()


def as_tensor(img: ImageLike) -> torch.Tensor:
    """A ``(1, 3, H, W)`` tensor from a tensor or encoded image bytes."""
    return img if isinstance(img, torch.Tensor) else load_image(img)


def amplified_perturbation(x: torch.Tensor, x_adv: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``0.5 + k·(x_adv − x)`` with ``k`` mapping the largest |δ| to half the range; returns it and ``k``."""
    delta = x_adv - x
    peak = float(delta.abs().max())
    k = 0.5 / peak if peak > 0 else 1.0
    return (0.5 + k * delta).clamp(0, 1), k


#: A perturbation counts as uniform when this share of its values lies within one level of its median.
UNIFORM_SHARE = 0.9


def uniform_offset(delta: torch.Tensor) -> float | None:
    """The offset in 8-bit levels (1/255) of a perturbation that is (nearly) the same everywhere, else None.

    Uniform: at least :data:`UNIFORM_SHARE` of the values lie within one level of the median (a
    brightness shift of ``k`` and ``k + 1`` levels, with a few values clipped at 0 or 1), or every
    value is zero. The offset is the mean of those values; 0.0 for no perturbation at all.
    """
    levels = delta.detach().flatten().double() * 255
    if levels.numel() == 0:
        return None
    median = float(levels.median())
    near = (levels - median).abs() <= 1.0 + 1e-6
    if float(near.double().mean()) < UNIFORM_SHARE:
        return None
    if float(levels.abs().max()) == 0.0:
        return 0.0
    return float(levels[near].mean())


def zoom_window(a: torch.Tensor, b: torch.Tensor, size: int) -> tuple[int, int, int]:
    """``(top, left, side)`` of the square window where ``a`` and ``b`` differ most (mean |a − b|)."""
    h, w = a.shape[-2:]
    side = max(1, min(size, h, w))
    stride = max(1, side // 4)
    energy = F.avg_pool2d((a - b).abs().mean(1, keepdim=True), side, stride=stride)
    idx = int(torch.argmax(energy))
    cols = energy.shape[-1]
    top, left = (idx // cols) * stride, (idx % cols) * stride
    return min(top, h - side), min(left, w - side), side


def _tile(x: torch.Tensor, width: int = TILE) -> Image.Image:
    img = Image.fromarray(to_uint8(x))
    scale = width / img.width
    return img.resize((width, max(1, round(img.height * scale))), Image.NEAREST)


def _offset_text(levels: float) -> str:
    """``+2.49/255`` for an offset in levels, ``0`` for none."""
    return "0" if levels == 0 else f"{levels:+.2f}/255"


def _uniform_tile(levels: float, text: str, height: int = TILE, width: int = TILE) -> Image.Image:
    """A tile of one grey (lighter for a positive offset, darker for a negative one, mid grey for none)
    with ``text`` written across it, framed so a light tile stays visible on the white page."""
    grey = round(255 * (0.5 + 0.3 * float(np.sign(levels))))
    tile = Image.new("RGB", (width, height), (grey, grey, grey))
    draw = ImageDraw.Draw(tile)
    draw.rectangle([0, 0, width - 1, height - 1], outline=(150, 155, 160), width=1)
    ink = (255, 255, 255) if grey < 128 else _INK
    font = _font(14)
    lines = _wrap(draw, text, font, width - 16)
    y = (height - len(lines) * 17) / 2
    for line in lines:
        draw.text(((width - draw.textlength(line, font=font)) / 2, y), line, fill=ink, font=font)
        y += 17
    return tile


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """Break each line of ``text`` so it fits ``width`` pixels (at spaces, '/', ':' or anywhere)."""
    out = []
    for line in text.split("\n"):
        while line and draw.textlength(line, font=font) > width:
            cut = len(line)
            while cut > 1 and draw.textlength(line[:cut], font=font) > width:
                cut -= 1
            soft = max(line.rfind(c, 0, cut) for c in " /:@")
            cut = soft + 1 if soft > 0 else cut
            out.append(line[:cut].rstrip())
            line = line[cut:].lstrip()
        out.append(line)
    return out


def _text_block(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int, width: int) -> None:
    font = _font(size)
    y = xy[1]
    for line in _wrap(draw, text, font, width):
        w = draw.textlength(line, font=font)
        draw.text((xy[0] + (width - w) / 2, y), line, fill=_INK, font=font)
        y += size + 3


_CAPTION_H = 2 * (13 + 3) + 4  # two caption lines above every tile
_TITLE_H = 26
_LABEL_W = 200  # the row labels' column of a strip


def tile_boxes(heights: list[int], ncols: int, titled: bool, row_labels: bool = False,
               ) -> list[list[tuple[int, int, int, int]]]:
    """Where :func:`_grid` puts its tiles: ``(left, top, right, bottom)`` per row and column, for rows
    of tiles ``heights`` pixels tall (all :data:`TILE` wide); for tests and further composition."""
    label_w = _LABEL_W if row_labels else 0
    y = _PAD + (_TITLE_H if titled else 0)
    boxes = []
    for h in heights:
        top = y + _CAPTION_H
        boxes.append([(x, top, x + TILE, top + h) for x in (_PAD + label_w + j * (TILE + _GAP) for j in range(ncols))])
        y += _CAPTION_H + h + _GAP
    return boxes


def _grid(title: str | None, rows: list[list[tuple[str, Image.Image]]], row_labels: list[str] | None = None) -> bytes:
    """Lay out captioned tiles in rows (each caption up to two lines) and return PNG bytes."""
    label_w = _LABEL_W if row_labels else 0
    ncols = max(len(r) for r in rows)
    heights = [max(t.height for _, t in r) for r in rows]
    boxes = tile_boxes(heights, ncols, bool(title), bool(row_labels))
    W = 2 * _PAD + label_w + ncols * TILE + (ncols - 1) * _GAP
    H = boxes[-1][0][3] + _GAP + _PAD
    canvas = Image.new("RGB", (W, H), _BG)
    draw = ImageDraw.Draw(canvas)
    if title:
        _text_block(draw, (0, _PAD), title, 15, W)
    for i, (row, h) in enumerate(zip(rows, heights)):
        top = boxes[i][0][1]
        if row_labels:
            _text_block(draw, (_PAD, top + h // 2 - 30), row_labels[i], 12, label_w - 12)
        for (caption, tile), (x, y, _, _) in zip(row, boxes[i]):
            _text_block(draw, (x, y - _CAPTION_H), caption, 13, TILE)
            canvas.paste(tile, (x, y))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def attack_panel(
    source: ImageLike,
    adversarial: ImageLike,
    reconstruction_clean: ImageLike,
    reconstruction_adversarial: ImageLike,
    title: str | None = None,
    zoom: int | None = None,
) -> bytes:
    """The five-column attack panel with a zoomed row (see the module docstring), as PNG bytes."""
    x, xa, rc, ra = (as_tensor(i) for i in (source, adversarial, reconstruction_clean, reconstruction_adversarial))
    h, w = x.shape[-2:]
    top, left, side = zoom_window(rc, ra, zoom or max(16, min(h, w) // 4))
    window = (..., slice(top, top + side), slice(left, left + side))
    delta = xa - x
    offset = uniform_offset(delta)
    if offset is None:
        pert, k = amplified_perturbation(x, xa)
        pert_caption: str = f"perturbation ×{k:.0f}"
        pert_tiles = (_tile(pert), _tile(pert[window]))
    else:  # nothing to amplify: say what the offset is, over the image and inside the window
        pert_caption = "perturbation\n" + ("none" if offset == 0 else "uniform shift")
        height = max(1, round(h * TILE / w))
        inside = uniform_offset(delta[window])
        inside = float(delta[window].mean()) * 255 if inside is None else inside
        pert_tiles = (_uniform_tile(offset, f"mean {_offset_text(offset)}\n(uniform within 1 level)"
                                    if offset else "no change", height),
                      _uniform_tile(inside, f"mean {_offset_text(inside)}\nin this window" if inside else "no change"))
    columns = [
        ("source", x, None),
        (f"adversarial\nPSNR-in {psnr(x, xa):.1f} dB", xa, None),
        (pert_caption, None, pert_tiles),
        (f"clean reconstruction\n{psnr(x, rc):.2f} dB", rc, None),
        (f"attacked reconstruction\n{psnr(x, ra):.2f} dB", ra, None),
    ]
    top_row, zoom_row = [], []
    for caption, img, tiles in columns:
        tile, zoomed = tiles if tiles is not None else (_tile(img), _tile(img[window]))
        s = tile.width / w
        ImageDraw.Draw(tile).rectangle(
            [left * s, top * s, (left + side) * s - 1, (top + side) * s - 1], outline=_MARK, width=2
        )
        top_row.append((caption, tile))
        zoom_row.append((f"zoom {side}×{side}", zoomed))
    return _grid(title, [top_row, zoom_row])


def generation_strip(rows: dict[str, dict[int, ImageLike]], original: ImageLike, crop: int | None = None) -> bytes:
    """Decoded images at selected generations, one row per codec, captioned with PSNR vs the original.

    With ``crop`` only the centre ``crop x crop`` pixels are shown (artefacts stay visible).
    """
    x0 = as_tensor(original)

    def cut(t: torch.Tensor) -> torch.Tensor:
        if crop is None:
            return t
        h, w = t.shape[-2:]
        c = min(crop, h, w)
        return t[..., (h - c) // 2 : (h - c) // 2 + c, (w - c) // 2 : (w - c) // 2 + c]

    gens = sorted({g for r in rows.values() for g in r})
    grid = []
    for images in rows.values():
        line = [("original", _tile(cut(x0)))]
        for g in gens:
            if g in images:
                t = as_tensor(images[g])
                line.append((f"generation {g}\n{psnr(x0, t):.2f} dB", _tile(cut(t))))
            else:
                line.append((f"generation {g}", _uniform_tile(0.0, "not kept", line[0][1].height)))
        grid.append(line)
    return _grid(None, grid, row_labels=list(rows))


def panel_array(png: bytes) -> np.ndarray:
    """Decode a panel PNG into an ``(H, W, 3)`` array (for tests and further composition)."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

"""A corpus of hostile and odd inputs, to check that robustnic keeps working on untrusted files.

Every entry is small (at most a few hundred kB, 64x64 pixels or less once decoded) except the
declared sizes of the bombs, which the readers must refuse from the header. Three kinds:

* ``valid`` - an odd but legitimate image (16-bit, palette, CMYK, alpha, gray, EXIF rotation,
  1x1, 1xN ...) that every command must process; ``size`` is the ``(H, W)`` robustnic must read
  (after EXIF rotation);
* ``too-large`` - a well-formed image over the default size limit (``DEFAULT_MAX_PIXELS``), or a
  decompression bomb: refused up front with a clear message, before the pixels are decoded;
* ``invalid`` - empty, truncated, corrupt or non-image files: refused with one clear message.

File stems are unique, so a folder of them maps one-to-one onto result names.

:func:`bad_tensors` lists the matching hostile API inputs (NaN, Inf, wrong dtypes and shapes), and
:func:`mutate_bitstream` turns a valid robustnic bitstream into a hostile one (bit flips,
truncation, header fields, string lengths, garbage payloads - most with the checksum recomputed so
that they reach the payload decoder).

Usage::

    python -m robustnic.testing.badinputs OUTDIR     # writes the files and OUTDIR/MANIFEST.json
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import random
import struct
import sys
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

VALID, TOO_LARGE, INVALID = "valid", "too-large", "invalid"
MANIFEST = "MANIFEST.json"


@dataclass
class BadInput:
    """One corpus file: its name, kind, what it tests and (for ``valid``) the size to read."""

    name: str
    kind: str
    note: str
    size: tuple[int, int] | None = None


# ----- helpers that build the bytes --------------------------------------------------------
def _gradient(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth uint8 test pattern with some noise, ``(h, w, channels)``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = [(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) * 127 // max(h + w - 2, 1))]
    arr = np.stack([base[c % 3] for c in range(channels)], axis=-1).astype(np.int32)
    arr += rng.integers(-8, 9, size=arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + payload) if crc is None else crc
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc & 0xFFFFFFFF)


def _png(width: int, height: int, bit_depth: int, color_type: int, idat: bytes) -> bytes:
    """A PNG file from raw parts (no validation: used to build hostile files)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _png_rows(width: int, height: int, bit_depth: int, color_type: int, row: bytes) -> bytes:
    """A PNG whose ``height`` rows all equal ``row`` (filter byte 0), streamed through zlib."""
    comp = zlib.compressobj(9)
    line = b"\0" + row
    parts, chunk = [], line * max(1, (1 << 20) // len(line))
    rows_per_chunk = len(chunk) // len(line)
    for start in range(0, height, rows_per_chunk):
        n = min(rows_per_chunk, height - start)
        parts.append(comp.compress(chunk if n == rows_per_chunk else line * n))
    parts.append(comp.flush())
    return _png(width, height, bit_depth, color_type, b"".join(parts))


def _rgb48_png(h: int, w: int) -> bytes:
    arr = (_gradient(h, w).astype(">u2") * 257).astype(">u2")
    raw = b"".join(b"\0" + arr[y].tobytes() for y in range(h))
    return _png(w, h, 16, 2, zlib.compress(raw))


def _jpeg_with_size(data: bytes, height: int, width: int) -> bytes:
    """Rewrite the frame size in a JPEG's SOF0/SOF2 marker."""
    out = bytearray(data)
    i = 2
    while i < len(out) - 9:
        if out[i] != 0xFF:
            break
        marker, length = out[i + 1], struct.unpack(">H", out[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            out[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(out)
        i += 2 + length
    raise ValueError("no SOF marker found")


def _exif_rotated_jpeg() -> bytes:
    img = Image.fromarray(_gradient(12, 20))  # stored 20 wide, 12 high
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return _encode(img, "JPEG", quality=90, exif=exif.tobytes())


def _palette_transparent_png() -> bytes:
    img = Image.fromarray(_gradient(16, 16)).quantize(8)
    img.info["transparency"] = 0
    return _encode(img, "PNG", transparency=0)


def _animated_gif() -> bytes:
    frames = [Image.fromarray(_gradient(16, 24, seed=s)).convert("P") for s in range(3)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def _nan_tiff() -> bytes:
    arr = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    arr[3, 3], arr[4, 4] = np.nan, np.inf
    return _encode(Image.fromarray(arr, mode="F"), "TIFF")


def _bmp_with_size(width: int, height: int) -> bytes:
    data = bytearray(_encode(Image.fromarray(_gradient(4, 4)), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def _corrupt_idat_png() -> bytes:
    rng = np.random.default_rng(7)
    return _png(16, 16, 8, 2, bytes(rng.integers(0, 256, 300, dtype=np.uint8)))


def _bad_crc_png() -> bytes:
    data = bytearray(_encode(Image.fromarray(_gradient(16, 16)), "PNG"))
    data[8 + 8 + 13] ^= 0xFF  # first byte of the IHDR checksum
    return bytes(data)


def _text_bomb_png() -> bytes:
    """A 16x16 PNG with a zTXt chunk that inflates to 16 MB (Pillow caps text chunks at 1 MB)."""
    good = _encode(Image.fromarray(_gradient(16, 16)), "PNG")
    ztxt = _png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(bytes(16 << 20), 9))
    return good[:33] + ztxt + good[33:]


def _truncated_gif() -> bytes:
    """A one-frame GIF cut in the middle of its LZW pixel data."""
    data = _encode(Image.fromarray(_gradient(32, 32)).convert("P"), "GIF")
    return data[: len(data) // 2]


def _builders() -> list[tuple[BadInput, Callable[[], bytes]]]:
    png = _encode(Image.fromarray(_gradient(24, 32)), "PNG")
    jpg = _encode(Image.fromarray(_gradient(24, 32)), "JPEG", quality=85)
    tiny_jpg = _encode(Image.fromarray(_gradient(16, 16)), "JPEG")
    webp = _encode(Image.fromarray(_gradient(24, 32)), "WEBP", quality=80)
    gif = _animated_gif()
    rng = np.random.default_rng(0)
    v, big, bad = VALID, TOO_LARGE, INVALID
    return [
        # --- valid odd images: must be processed -------------------------------------------
        (BadInput("rgb.png", v, "plain 8-bit RGB (control)", (24, 32)), lambda: png),
        (BadInput("gray.png", v, "8-bit grayscale (L)", (20, 28)),
         lambda: _encode(Image.fromarray(_gradient(20, 28, 1)[..., 0]), "PNG")),
        (BadInput("gray16.png", v, "16-bit grayscale (I;16)", (20, 28)),
         lambda: _encode(Image.fromarray(_gradient(20, 28, 1)[..., 0].astype(np.uint16) * 257), "PNG")),
        (BadInput("rgb48.png", v, "16-bit per channel RGB PNG", (18, 22)), lambda: _rgb48_png(18, 22)),
        (BadInput("bilevel.png", v, "1-bit black and white (mode 1)", (17, 19)),
         lambda: _encode(Image.fromarray(_gradient(17, 19, 1)[..., 0]).convert("1"), "PNG")),
        (BadInput("palette.png", v, "palette image (P)", (16, 16)),
         lambda: _encode(Image.fromarray(_gradient(16, 16)).quantize(16), "PNG")),
        (BadInput("palette_transparent.png", v, "palette with a transparent index", (16, 16)),
         _palette_transparent_png),
        (BadInput("rgba.png", v, "RGB with alpha (composited over white)", (16, 20)),
         lambda: _encode(Image.fromarray(_gradient(16, 20, 4)), "PNG")),
        (BadInput("gray_alpha.png", v, "grayscale with alpha (LA)", (16, 20)),
         lambda: _encode(Image.fromarray(_gradient(16, 20, 2)), "PNG")),
        (BadInput("cmyk_jpeg.jpg", v, "CMYK JPEG", (16, 24)),
         lambda: _encode(Image.fromarray(_gradient(16, 24, 4), mode="CMYK"), "JPEG", quality=90)),
        (BadInput("cmyk_tiff.tif", v, "CMYK TIFF", (16, 24)),
         lambda: _encode(Image.fromarray(_gradient(16, 24, 4), mode="CMYK"), "TIFF")),
        (BadInput("gray_jpeg.jpg", v, "grayscale JPEG", (16, 24)),
         lambda: _encode(Image.fromarray(_gradient(16, 24, 1)[..., 0]), "JPEG")),
        (BadInput("progressive.jpg", v, "progressive JPEG", (24, 32)),
         lambda: _encode(Image.fromarray(_gradient(24, 32)), "JPEG", progressive=True)),
        (BadInput("exif_rotated.jpg", v, "EXIF orientation 6: 20x12 stored, shown 12 wide x 20 high", (20, 12)),
         _exif_rotated_jpeg),
        (BadInput("one_by_one.png", v, "1x1 image", (1, 1)),
         lambda: _encode(Image.new("RGB", (1, 1), (9, 99, 199)), "PNG")),
        (BadInput("one_by_n.png", v, "1 pixel high, 37 wide", (1, 37)),
         lambda: _encode(Image.fromarray(_gradient(1, 37)), "PNG")),
        (BadInput("n_by_one.png", v, "29 pixels high, 1 wide", (29, 1)),
         lambda: _encode(Image.fromarray(_gradient(29, 1)), "PNG")),
        (BadInput("float.tif", v, "32-bit float grayscale TIFF (F), values in [0, 1]", (8, 8)),
         lambda: _encode(Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), mode="F"), "TIFF")),
        (BadInput("int32.tif", v, "32-bit integer grayscale TIFF (I)", (8, 8)),
         lambda: _encode(Image.fromarray(np.arange(64, dtype=np.int32).reshape(8, 8) * 1000, mode="I"), "TIFF")),
        (BadInput("animated.gif", v, "animated GIF (first frame is used)", (16, 24)), lambda: gif),
        (BadInput("rgba_webp.webp", v, "WebP with alpha", (16, 20)),
         lambda: _encode(Image.fromarray(_gradient(16, 20, 4)), "WEBP", quality=80)),
        (BadInput("bmp.bmp", v, "BMP", (12, 12)), lambda: _encode(Image.fromarray(_gradient(12, 12)), "BMP")),
        (BadInput("png_named.jpg", v, "a PNG file with a .jpg suffix", (24, 32)), lambda: png),
        (BadInput("trailing_garbage.png", v, "valid PNG followed by 1 kB of junk", (24, 32)),
         lambda: png + bytes(rng.integers(0, 256, 1024, dtype=np.uint8))),
        # --- too large: refused from the header, before decoding ---------------------------
        (BadInput("large_48mp.png", big, "8000x6000 gray PNG (48 MP > 36 MP default limit), 50 kB"),
         lambda: _png_rows(8000, 6000, 8, 0, bytes(8000))),
        (BadInput("bomb_400mp.png", big, "20000x20000 1-bit PNG: decompression bomb, 50 kB"),
         lambda: _png_rows(20000, 20000, 1, 0, bytes(2500))),
        (BadInput("huge_declared_png.png", big, "PNG header declares 1000000x1000000, no pixel data"),
         lambda: _png(1_000_000, 1_000_000, 8, 2, zlib.compress(b"\0" * 64))),
        (BadInput("huge_declared_jpeg.jpg", big, "JPEG frame header declares 65000x65000"),
         lambda: _jpeg_with_size(tiny_jpg, 65000, 65000)),
        (BadInput("huge_declared_bmp.bmp", big, "BMP header declares 100000x100000"),
         lambda: _bmp_with_size(100_000, 100_000)),
        # --- invalid: one clear message ------------------------------------------------------
        (BadInput("empty.png", bad, "empty file"), lambda: b""),
        (BadInput("text.png", bad, "a text file with an image suffix"), lambda: b"hello, I am not an image\n" * 10),
        (BadInput("html.jpg", bad, "HTML saved as .jpg"), lambda: b"<!DOCTYPE html><html><body>404</body></html>"),
        (BadInput("random.jpg", bad, "4 kB of random bytes"),
         lambda: bytes(rng.integers(0, 256, 4096, dtype=np.uint8))),
        (BadInput("zeros.bmp", bad, "1 kB of zero bytes"), lambda: bytes(1024)),
        (BadInput("png_signature_only.png", bad, "PNG signature and nothing else"), lambda: b"\x89PNG\r\n\x1a\n"),
        (BadInput("jpeg_soi_only.jpg", bad, "JPEG start-of-image marker only"), lambda: b"\xff\xd8\xff"),
        (BadInput("truncated_png.png", bad, "PNG cut at 60%"), lambda: png[: len(png) * 6 // 10]),
        (BadInput("truncated_jpeg.jpg", bad, "JPEG cut at 60%"), lambda: jpg[: len(jpg) * 6 // 10]),
        (BadInput("truncated_gif.gif", bad, "GIF cut in the middle of its pixel data"), _truncated_gif),
        (BadInput("truncated_webp.webp", bad, "WebP cut at 50%"), lambda: webp[: len(webp) // 2]),
        (BadInput("bad_crc.png", bad, "PNG whose IHDR checksum is wrong"), _bad_crc_png),
        (BadInput("text_bomb.png", bad, "PNG with a zTXt chunk inflating to 16 MB"), _text_bomb_png),
        (BadInput("corrupt_idat.png", bad, "PNG with valid checksums around garbage zlib data"), _corrupt_idat_png),
        (BadInput("zero_width.png", bad, "PNG header declares width 0"), lambda: _png(0, 16, 8, 2, zlib.compress(b""))),
        (BadInput("nan.tif", bad, "float TIFF holding NaN and Inf"), _nan_tiff),
        (BadInput("corrupt.tif", bad, "TIFF header pointing outside the file"),
         lambda: b"II*\x00\xff\xff\xff\x7f" + bytes(64)),
    ]


def write_corpus(outdir: str | Path) -> list[BadInput]:
    """Write every corpus file and ``MANIFEST.json`` into ``outdir``; return the entries."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    entries = []
    for entry, build in _builders():
        (outdir / entry.name).write_bytes(build())
        entries.append(entry)
    (outdir / MANIFEST).write_text(json.dumps([asdict(e) for e in entries], indent=1))
    return entries


def corpus_entries() -> list[BadInput]:
    """The corpus entries without writing anything."""
    return [entry for entry, _ in _builders()]


def bad_tensors(h: int = 16, w: int = 24) -> list[tuple[str, object, bool]]:
    """Hostile or odd API inputs: ``(name, value, valid)``.

    Valid ones (float64, float16, a ``(3, H, W)`` image, non-contiguous) must be accepted and
    coded; every other must raise :class:`~robustnic.errors.ImageError`.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, h, w, generator=g)

    def with_value(v: float) -> torch.Tensor:
        y = x.clone()
        y[0, 1, 2, 3] = v
        return y

    return [
        ("float32", x, True),
        ("float64", x.double(), True),
        ("float16", x.half(), True),
        ("bfloat16", x.bfloat16(), True),
        ("chw", x[0], True),
        ("non_contiguous", x.transpose(-1, -2).contiguous().transpose(-1, -2), True),
        ("nan", with_value(float("nan")), False),
        ("inf", with_value(float("inf")), False),
        ("minus_inf", with_value(float("-inf")), False),
        ("above_one", with_value(1.5), False),
        ("negative", with_value(-0.25), False),
        ("uint8", (x * 255).to(torch.uint8), False),
        ("int64", (x * 255).long(), False),
        ("bool", x > 0.5, False),
        ("complex", x.to(torch.complex64), False),
        ("one_channel", x[:, :1], False),
        ("four_channels", torch.cat([x, x[:, :1]], 1), False),
        ("two_dims", x[0, 0], False),
        ("five_dims", x[None], False),
        ("empty_height", x[:, :, :0], False),
        ("empty_batch", x[:0], False),
        ("numpy_array", x[0].permute(1, 2, 0).numpy(), False),
        ("list", x.tolist(), False),
        ("none", None, False),
    ]


# ----- hostile bitstreams ---------------------------------------------------------------
#: Mutation kinds of :func:`mutate_bitstream`; "-crc" ones recompute the checksum.
BITSTREAM_MUTATIONS = (
    "bitflip", "truncate", "extend", "body-bitflip-crc", "body-bytes-crc", "extend-crc",
    "header-field", "string-garbage", "string-length", "large-size",
)
#: Kinds that keep a valid checksum, so they reach the header checks and the payload decoder.
CRC_VALID_MUTATIONS = tuple(k for k in BITSTREAM_MUTATIONS if k.endswith("-crc") or k not in
                            ("bitflip", "truncate", "extend"))


def fix_crc(data: bytes) -> bytes:
    """``data`` with its last 4 bytes replaced by the CRC-32 of the bytes before them."""
    body = bytes(data[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


def _flip_bits(data: bytearray, rng: random.Random, end: int, header_bias: bool) -> None:
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(min(end, 24)) if header_bias and rng.random() < 0.5 else rng.randrange(end)
        data[pos] ^= 1 << rng.randrange(8)


def _garbage(rng: random.Random, n: int) -> bytes:
    style = rng.randrange(4)
    if style == 0:
        return bytes(n)
    if style == 1:
        return b"\xff" * n
    if style == 2:
        return bytes(rng.choice((0x00, 0xFF, 0x0F, 0xF0, 0x80)) for _ in range(n))
    return rng.randbytes(n)


def mutate_bitstream(data: bytes, kind: str, rng: random.Random, max_side: int = 1024) -> bytes:
    """One hostile variant of the valid container ``data`` (see :data:`BITSTREAM_MUTATIONS`).

    ``large-size`` declares an image up to ``max_side`` pixels a side, with the latent shape made
    consistent with it (so it passes the shape check) and small garbage strings: it reaches the
    entropy decoder with far more symbols to decode than the strings hold.
    """
    from robustnic.codecs import container

    data = bytes(data)
    if kind == "bitflip":
        out = bytearray(data)
        _flip_bits(out, rng, len(out), header_bias=True)
        return bytes(out)
    if kind == "truncate":
        return data[: rng.randrange(len(data))]
    if kind == "extend":
        return data + rng.randbytes(rng.randint(1, 64))
    if kind == "extend-crc":
        return fix_crc(data[:-4] + rng.randbytes(rng.randint(1, 64)) + b"\0" * 4)
    if kind == "body-bitflip-crc":
        out = bytearray(data)
        _flip_bits(out, rng, len(out) - 4, header_bias=True)
        return fix_crc(bytes(out))
    if kind == "body-bytes-crc":
        out = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out) - 4)] = rng.randrange(256)
        return fix_crc(bytes(out))
    header, strings = container.unpack(data)
    if kind == "header-field":
        field = rng.choice(("codec", "quality", "metric", "height", "width", "transform", "model", "shape", "strings"))
        if field in ("codec", "quality"):
            header = dataclasses.replace(header, **{field: rng.randrange(256)})
        elif field == "metric":
            header = dataclasses.replace(header, metric=rng.choice(("mse", "ms-ssim", None)))
        elif field in ("height", "width"):
            value = rng.choice((1, 2, rng.randint(1, 300), getattr(header, field) + rng.choice((-64, -1, 1, 64))))
            header = dataclasses.replace(header, **{field: max(1, value)})
        elif field == "transform":
            header = dataclasses.replace(header, transform=rng.randrange(8))
        elif field == "model":
            header = dataclasses.replace(header, model=rng.randbytes(4))
        elif field == "shape":
            shape = tuple(rng.randint(0, 12) for _ in range(rng.randint(0, 5)))
            header = dataclasses.replace(header, shape=shape)
        else:
            strings = strings[: rng.randint(0, len(strings))] + [rng.randbytes(rng.randint(0, 32))
                                                                  for _ in range(rng.randint(0, 2))]
        return container.pack(header, strings)
    if kind == "string-garbage":
        return container.pack(header, [_garbage(rng, rng.choice((0, 1, 4, 7, 8, 16, rng.randint(0, 600))))
                                       for _ in strings])
    if kind == "string-length":
        out = []
        for s in strings:
            n = len(s) + rng.choice((-len(s), -8, -4, -1, 1, 4, 8, 256))
            out.append(s[: max(n, 0)] + rng.randbytes(max(n - len(s), 0)))
        return container.pack(header, out)
    if kind == "large-size":
        h, w = rng.randint(1, max_side), rng.randint(1, max_side)
        shape = header.shape
        if len(shape) == 2 and shape[0] > 0 and shape[1] > 0:  # learned: keep the latent stride
            stride = -(-header.height // 64) * 64 // shape[0]
            th, tw = (w, h) if header.transform & 4 else (h, w)
            shape = (-(-th // 64) * 64 // stride, -(-tw // 64) * 64 // stride)
        header = dataclasses.replace(header, height=h, width=w, shape=shape)
        strings = [_garbage(rng, rng.choice((8, 12, 16, 64, 256))) for _ in strings]
        return container.pack(header, strings)
    raise ValueError(f"unknown mutation {kind!r}; choose from {BITSTREAM_MUTATIONS}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m robustnic.testing.badinputs", description="Write the bad-input corpus into a folder."
    )
    parser.add_argument("outdir", help="folder to write the files and MANIFEST.json into")
    args = parser.parse_args(argv)
    entries = write_corpus(args.outdir)
    counts = {k: sum(e.kind == k for e in entries) for k in (VALID, TOO_LARGE, INVALID)}
    print(f"wrote {len(entries)} files to {args.outdir} ({', '.join(f'{v} {k}' for k, v in counts.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The robustnic bitstream container: a small header around a codec's entropy-coded strings.

Layout (all integers little-endian; ``varint`` = unsigned LEB128)::

    magic      4 bytes  b"RNIC"
    version    u8       1
    flags      u8       bits 0-2: geometric transform index (self-ensemble), bits 3-7: zero
    codec      u8       architecture code (1-6), 100 = JPEG, 101 = WebP, 255 = custom model
    quality    u8       quality level (0 = unspecified)
    metric     u8       0 = mse, 1 = ms-ssim, 255 = n/a
    height     varint   image height before the transform
    width      varint   image width before the transform
    model      4 bytes  first bytes of the model's weight fingerprint (0 for classical codecs)
    n_shape    u8, then n_shape varints: the latent shape CompressAI's decompress needs
    n_strings  u8, then per string: varint length, bytes
    crc32      u32      over every byte before it

A truncated, corrupted or foreign file raises :class:`~robustnic.errors.BitstreamError`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from robustnic.errors import BitstreamError

MAGIC = b"RNIC"
VERSION = 1
METRIC_CODES = {"mse": 0, "ms-ssim": 1, None: 255}
METRIC_NAMES = {v: k for k, v in METRIC_CODES.items()}
CODEC_JPEG, CODEC_WEBP, CODEC_CUSTOM = 100, 101, 255
MAX_SIDE = 1 << 20
MAX_STRINGS = 16


@dataclass
class Header:
    """Everything the container says besides the strings."""

    codec: int
    height: int
    width: int
    quality: int = 0
    metric: str | None = "mse"
    transform: int = 0
    model: bytes = b"\0\0\0\0"
    shape: tuple[int, ...] = field(default_factory=tuple)


def _varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _Reader:
    def __init__(self, data: bytes, end: int):
        self.data, self.pos, self.end = data, 0, end

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise BitstreamError(f"bitstream truncated while reading {what}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def varint(self, what: str, limit: int) -> int:
        value = shift = 0
        for _ in range(10):
            byte = self.u8(what)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if value > limit:
                    raise BitstreamError(f"bitstream field {what} = {value} is out of range (max {limit})")
                return value
            shift += 7
        raise BitstreamError(f"bitstream field {what} is not a valid varint")


def pack(header: Header, strings: list[bytes]) -> bytes:
    """Serialise a header and the entropy-coded strings into container bytes."""
    if not 0 <= header.transform < 8:
        raise ValueError("transform index must be in 0..7")
    if len(strings) > MAX_STRINGS or len(header.shape) > 255:
        raise ValueError("too many strings or shape entries")
    out = bytearray(MAGIC)
    out += bytes([VERSION, header.transform, header.codec, header.quality, METRIC_CODES[header.metric]])
    out += _varint(header.height) + _varint(header.width)
    out += header.model[:4].ljust(4, b"\0")
    out.append(len(header.shape))
    for s in header.shape:
        out += _varint(int(s))
    out.append(len(strings))
    for s in strings:
        out += _varint(len(s)) + bytes(s)
    out += struct.pack("<I", zlib.crc32(out))
    return bytes(out)


def unpack(data: bytes) -> tuple[Header, list[bytes]]:
    """Parse container bytes; raise :class:`BitstreamError` on any inconsistency."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"bitstream must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < len(MAGIC) + 4 or data[:4] != MAGIC:
        raise BitstreamError("not a robustnic bitstream (bad magic bytes)")
    body_end = len(data) - 4
    if struct.unpack("<I", data[body_end:])[0] != zlib.crc32(data[:body_end]):
        raise BitstreamError("bitstream is corrupted or truncated (checksum mismatch)")
    r = _Reader(data, body_end)
    r.take(4, "magic")
    version = r.u8("version")
    if version != VERSION:
        raise BitstreamError(f"unsupported bitstream version {version} (this robustnic reads {VERSION})")
    flags = r.u8("flags")
    if flags & ~0x07:
        raise BitstreamError(f"bitstream flags {flags:#x} use reserved bits")
    codec, quality, metric_code = r.u8("codec"), r.u8("quality"), r.u8("metric")
    if metric_code not in METRIC_NAMES:
        raise BitstreamError(f"unknown metric code {metric_code} in bitstream")
    height = r.varint("height", MAX_SIDE)
    width = r.varint("width", MAX_SIDE)
    if height < 1 or width < 1:
        raise BitstreamError(f"bitstream declares an empty image ({height}x{width})")
    model = r.take(4, "model fingerprint")
    shape = tuple(r.varint("latent shape", MAX_SIDE) for _ in range(r.u8("shape length")))
    strings = [r.take(r.varint("string length", body_end), "string") for _ in range(r.u8("string count"))]
    if r.pos != body_end:
        raise BitstreamError(f"bitstream has {body_end - r.pos} unexpected trailing bytes")
    header = Header(codec, height, width, quality, METRIC_NAMES[metric_code], flags & 0x07, model, shape)
    return header, strings

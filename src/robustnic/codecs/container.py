"""The robustnic bitstream container: a small header around a codec's entropy-coded strings.

Layout (all integers little-endian; ``varint`` = unsigned LEB128)::

    magic      4 bytes  b"RNIC"
    version    u8       1
    flags      u8       bits 0-2: geometric transform index (self-ensemble); bit 3: the weights are
                        CompressAI's pretrained zoo model that codec, quality and metric name (a
                        decoder fetches them from torch's hub cache); bits 4-7: zero
    codec      u8       architecture code (1-6), 100 = JPEG, 101 = WebP, 255 = custom model
    quality    u8       quality level (0 = unspecified)
    metric     u8       0 = mse, 1 = ms-ssim, 255 = n/a
    height     varint   image height before the transform
    width      varint   image width before the transform
    model      4 bytes  first bytes of the model's weight fingerprint (0 for classical codecs)
    n_shape    u8, then n_shape varints: the latent shape CompressAI's decompress needs
    n_strings  u8, then per string: varint length, bytes
    crc32      u32      over every byte before it

Streams written before bit 3 existed have it clear and read as before; a reader that predates it
refuses a zoo-model stream ("reserved bits") rather than misreading it.

A truncated, corrupted or foreign file raises :class:`~robustnic.errors.BitstreamError`. Before any
payload is decoded, the declared image must be at most :data:`MAX_PIXELS` pixels (a 100-byte file
must not make the decoder allocate gigabytes), and :func:`guard_rans_strings` prepares entropy-coded
strings so that CompressAI's rANS decoder, which does no bounds checking, cannot read past them.
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
#: Flag bits: the geometric transform index, and "CompressAI pretrained zoo weights".
FLAG_TRANSFORM, FLAG_COMPRESSAI_ZOO = 0x07, 0x08
MAX_SIDE = 1 << 20
MAX_STRINGS = 16
MAX_SHAPE = 8
#: Largest image (height x width) a container may declare: robustnic's default image limit
#: (``robustnic.data.images.DEFAULT_MAX_PIXELS``, 36 MP). Pass ``max_pixels`` to raise it.
MAX_PIXELS = 36_000_000


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
    #: The model is CompressAI's pretrained zoo model named by ``codec``, ``quality`` and ``metric``.
    compressai_zoo: bool = False


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


def check_declared_size(height: int, width: int, max_pixels: int | None = None) -> None:
    """Raise :class:`BitstreamError` if a bitstream's image is empty or over ``max_pixels``."""
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if height < 1 or width < 1:
        raise BitstreamError(f"bitstream declares an empty image ({height}x{width})")
    if height * width > limit:
        raise BitstreamError(
            f"bitstream declares a {width}x{height} image ({height * width / 1e6:.1f} MP), over the "
            f"decoding limit of {limit / 1e6:.1f} MP (raise it with max_pixels)"
        )


def pack(header: Header, strings: list[bytes]) -> bytes:
    """Serialise a header and the entropy-coded strings into container bytes."""
    if not 0 <= header.transform < 8:
        raise ValueError("transform index must be in 0..7")
    if len(strings) > MAX_STRINGS or len(header.shape) > MAX_SHAPE:
        raise ValueError("too many strings or shape entries")
    out = bytearray(MAGIC)
    flags = header.transform | (FLAG_COMPRESSAI_ZOO if header.compressai_zoo else 0)
    out += bytes([VERSION, flags, header.codec, header.quality, METRIC_CODES[header.metric]])
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


def unpack(data: bytes, max_pixels: int | None = None) -> tuple[Header, list[bytes]]:
    """Parse container bytes; raise :class:`BitstreamError` on any inconsistency.

    ``max_pixels`` bounds the declared image size (default :data:`MAX_PIXELS`).
    """
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
    if flags & ~(FLAG_TRANSFORM | FLAG_COMPRESSAI_ZOO):
        raise BitstreamError(f"bitstream flags {flags:#x} use reserved bits")
    codec, quality, metric_code = r.u8("codec"), r.u8("quality"), r.u8("metric")
    if metric_code not in METRIC_NAMES:
        raise BitstreamError(f"unknown metric code {metric_code} in bitstream")
    height = r.varint("height", MAX_SIDE)
    width = r.varint("width", MAX_SIDE)
    check_declared_size(height, width, max_pixels)
    model = r.take(4, "model fingerprint")
    n_shape = r.u8("shape length")
    if n_shape > MAX_SHAPE:
        raise BitstreamError(f"bitstream declares {n_shape} latent dimensions (max {MAX_SHAPE})")
    shape = tuple(r.varint("latent shape", MAX_SIDE) for _ in range(n_shape))
    n_strings = r.u8("string count")
    if n_strings > MAX_STRINGS:
        raise BitstreamError(f"bitstream declares {n_strings} strings (max {MAX_STRINGS})")
    strings = [r.take(r.varint("string length", body_end), "string") for _ in range(n_strings)]
    if r.pos != body_end:
        raise BitstreamError(f"bitstream has {body_end - r.pos} unexpected trailing bytes")
    header = Header(codec, height, width, quality, METRIC_NAMES[metric_code], flags & FLAG_TRANSFORM, model, shape,
                    compressai_zoo=bool(flags & FLAG_COMPRESSAI_ZOO))
    return header, strings


#: CompressAI's rANS coder (``compressai.ans``, Rans64) reads 32-bit words; a flushed stream holds
#: at least the two words of the final state.
RANS_WORD, RANS_MIN_BYTES = 4, 8
#: Zero bytes appended per decoded symbol by :func:`guard_rans_strings`. The C++ decoder never
#: checks the end of its buffer: a garbage string makes it read on, about one word per symbol in
#: ordinary decoding plus bursts in its "bypass" escape mode, until it leaves mapped memory and the
#: process dies (SIGSEGV). Measured worst case over the fuzz corpus: see benchmarks/RESULTS-hardening.md.
RANS_GUARD_PER_SYMBOL = 16


def guard_rans_strings(strings: list[bytes], max_symbols: int) -> list[bytes]:
    """Check CompressAI rANS strings and return copies the decoder cannot read past.

    Each string must be a whole number of 32-bit words and at least 8 bytes (what the encoder's
    flush always writes); else :class:`BitstreamError`. The copies end in zero bytes: 16 per
    possible symbol (``max_symbols``: an upper bound of the latent elements one string codes; the
    decoder reads at most 4 per symbol outside escapes) plus 16 per string byte (a string of 0xFF
    bytes feeds an escape burst of up to 15 bytes read per byte). On garbage, the decoder used at
    most half of this guard in the fuzz benchmark. Valid strings decode exactly as before: the
    decoder stops reading where the encoder stopped writing.
    """
    out = []
    for i, s in enumerate(strings):
        if len(s) < RANS_MIN_BYTES or len(s) % RANS_WORD:
            raise BitstreamError(
                f"entropy-coded string {i} has {len(s)} bytes; rANS strings are whole 32-bit words, "
                f"at least {RANS_MIN_BYTES} bytes"
            )
        guard = RANS_GUARD_PER_SYMBOL * max(int(max_symbols), 0) + 16 * len(s) + 256
        out.append(bytes(s) + bytes(guard))
    return out

"""Bitstream fuzzing (property-based): a mutated container decodes to an image of its declared
size or raises BitstreamError - never another exception, a crash or a hang.

Mutations come from :func:`robustnic.testing.badinputs.mutate_bitstream` (most recompute the CRC so
they reach the header checks and the payload decoder) plus hypothesis' own bit flips and cuts.
In this process the declared images stay small; large declared sizes with garbage strings, which
used to crash CompressAI's rANS decoder (it reads past its buffer), run in a subprocess.
``benchmarks/fuzz_bitstreams.py`` runs the same mutations by the ten thousand.
"""

from __future__ import annotations

import inspect
import random
import struct
import subprocess
import sys
import time
import zlib

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustnic.codecs import container, load_codec
from robustnic.codecs.learned import LearnedCodec
from robustnic.testing.badinputs import BITSTREAM_MUTATIONS, CRC_VALID_MUTATIONS, fix_crc, mutate_bitstream
from robustnic.errors import BitstreamError
from tests.conftest import TINY

#: The autoregressive mbt2018 and cheng2020 decoders are slow here; the benchmark fuzzes them.
SPECS = [f"bmshj2018-hyperprior:{TINY}", f"bmshj2018-factorized:{TINY}", f"mbt2018-mean:{TINY}", "jpeg:q75", "webp:q75"]
FUZZ = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module", params=SPECS)
def coded(request, photo, odd_photo):
    """(codec, [valid containers]) for one codec: a 64x96 image and an odd 45x71 one, transformed."""
    torch.manual_seed(0)
    codec = load_codec(request.param)
    return codec, [codec.compress(photo), codec.compress(odd_photo, transform=5)]


def decode_or_reject(codec, data: bytes) -> torch.Tensor | None:
    """Decode; None when rejected with BitstreamError. Any other exception fails the test."""
    t0 = time.perf_counter()
    try:
        x = codec.decompress(data)
    except BitstreamError as exc:
        assert "\n" not in str(exc)
        return None
    finally:
        assert time.perf_counter() - t0 < 20, "decoding one small bitstream took over 20 s"
    header, _ = container.unpack(data)
    assert x.shape == (1, 3, header.height, header.width)
    return x


def test_valid_containers_decode(coded):
    codec, bases = coded
    for data in bases:
        assert decode_or_reject(codec, data) is not None


@FUZZ
@given(data=st.data())
def test_bit_flips_and_cuts_are_rejected(coded, data):
    """Without the CRC recomputed, every flip of 1-3 bits and every cut is caught by the checks."""
    codec, bases = coded
    base = bases[data.draw(st.integers(0, 1))]
    bits = data.draw(st.lists(st.integers(0, 8 * len(base) - 1), min_size=1, max_size=3, unique=True))
    flipped = bytearray(base)
    for b in bits:
        flipped[b // 8] ^= 1 << (b % 8)
    with pytest.raises(BitstreamError):
        codec.decompress(bytes(flipped))
    with pytest.raises(BitstreamError):
        codec.decompress(base[: data.draw(st.integers(0, len(base) - 1))])


@FUZZ
@given(data=st.data())
def test_crc_valid_payload_mutations_decode_or_raise(coded, data):
    """Bit flips and byte overwrites anywhere in the body, CRC recomputed: image or BitstreamError."""
    codec, bases = coded
    base = bytearray(bases[data.draw(st.integers(0, 1))])
    body = len(base) - 4
    edits = st.lists(st.tuples(st.integers(0, body - 1), st.integers(0, 255)), min_size=1, max_size=6)
    for pos, value in data.draw(edits):
        base[pos] = value
    decode_or_reject(codec, fix_crc(bytes(base)))


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(CRC_VALID_MUTATIONS))
def test_corpus_mutations_decode_or_raise(coded, seed, kind):
    """Header fields, string counts and lengths, garbage strings (CRC valid), small declared sizes."""
    codec, bases = coded
    rng = random.Random(seed)
    data = mutate_bitstream(bases[rng.randrange(2)], kind, rng, max_side=128)
    decode_or_reject(codec, data)


ARBITRARY_CODECS = [load_codec("jpeg:q75"), load_codec(f"bmshj2018-hyperprior:{TINY}")]


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(blob=st.binary(max_size=200), prefix=st.sampled_from([b"", b"RNIC", b"RNIC\x01\x00"]), crc=st.booleans())
def test_arbitrary_bytes_decode_or_raise(blob, prefix, crc):
    data = prefix + blob
    if crc and len(data) >= 4:
        data = fix_crc(data)
    for codec in ARBITRARY_CODECS:
        decode_or_reject(codec, data)


def test_unpack_bounds_every_declared_count():
    base = container.Header(codec=100, height=8, width=8)
    ok = container.pack(base, [b"x"])
    assert container.unpack(ok)[0].height == 8
    body = bytearray(ok[:-4])
    # n_strings is the byte before the single string's length and content
    body[-3] = 200
    with pytest.raises(BitstreamError, match="strings"):
        container.unpack(fix_crc(bytes(body) + b"\0" * 4))
    huge = container.pack(container.Header(codec=100, height=1 << 20, width=1 << 20), [b"x"])
    with pytest.raises(BitstreamError, match="over the decoding limit"):
        container.unpack(huge)
    assert container.unpack(huge, max_pixels=1 << 40)[0].width == 1 << 20
    with pytest.raises(BitstreamError, match="declares 9 latent dimensions"):
        container.unpack(fix_crc(ok[:15] + bytes([9]) + bytes(9) + ok[16:]))


def test_guarded_strings_decode_exactly_like_the_originals(photo):
    torch.manual_seed(0)
    codec = load_codec(f"bmshj2018-hyperprior:{TINY}")
    data = codec.compress(photo)
    header, strings = container.unpack(data)
    guarded = container.guard_rans_strings(strings, 10_000)
    assert [g[: len(s)] for g, s in zip(guarded, strings)] == strings
    with torch.no_grad():
        a = codec.net.decompress([[s] for s in strings], list(header.shape))["x_hat"]
        b = codec.net.decompress([[s] for s in guarded], list(header.shape))["x_hat"]
    assert torch.equal(a, b)
    for bad in (b"", b"\x01\x02\x03", b"0123456789"):
        with pytest.raises(BitstreamError, match="32-bit words"):
            container.guard_rans_strings([bad], 10)


LARGE_GARBAGE_SCRIPT = r"""
import random, sys, torch
from robustnic.codecs import load_codec
from robustnic.data import bundled_photos
from robustnic.testing.badinputs import mutate_bitstream
from robustnic.errors import BitstreamError
x = bundled_photos(["astronaut"], crop=(64, 96))["astronaut"]
for spec in sys.argv[1:]:
    torch.manual_seed(0)
    codec = load_codec(spec)
    base = codec.compress(x)
    for seed in range(12):
        data = mutate_bitstream(base, "large-size", random.Random(seed), max_side=1024)
        try:
            codec.decompress(data)
        except BitstreamError:
            pass
print("survived")
"""


def _learned_decode_is_guarded() -> bool:
    return "guard_rans_strings" in inspect.getsource(LearnedCodec._decode)


def test_learned_decoder_guards_its_strings():
    """CompressAI's rANS decoder reads past short strings: LearnedCodec._decode must guard them."""
    assert _learned_decode_is_guarded()


def test_large_declared_size_with_garbage_strings_does_not_crash():
    """Up to 1024x1024 declared, consistent latent shape, 8-256 garbage bytes: in a subprocess,
    because without the guard the native decoder dies with SIGSEGV."""
    proc = subprocess.run(
        [sys.executable, "-c", LARGE_GARBAGE_SCRIPT, f"bmshj2018-hyperprior:{TINY}", f"bmshj2018-factorized:{TINY}"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0 and "survived" in proc.stdout, f"exit {proc.returncode}: {proc.stderr[-1500:]}"


def test_garbage_that_decodes_gives_a_finite_image(photo):
    torch.manual_seed(0)
    codec = load_codec(f"bmshj2018-factorized:{TINY}")
    header, strings = container.unpack(codec.compress(photo))
    data = container.pack(header, [b"\xff" * 64 for _ in strings])
    x = decode_or_reject(codec, data)
    assert x is None or torch.isfinite(x).all()


def test_every_mutation_kind_is_exercised():
    assert set(CRC_VALID_MUTATIONS) < set(BITSTREAM_MUTATIONS)
    data = container.pack(container.Header(codec=100, height=4, width=4), [b"abc"])
    for kind in BITSTREAM_MUTATIONS:
        out = mutate_bitstream(data, kind, random.Random(0))
        assert isinstance(out, bytes)
        if kind in CRC_VALID_MUTATIONS:
            assert struct.unpack("<I", out[-4:])[0] == zlib.crc32(out[:-4])

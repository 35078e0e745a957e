"""Streams written by CompressAI's pretrained models decode with no ``--model``: the header names the
zoo model, the decoder takes the same weights from torch's hub cache and checks their fingerprint.

No network: random weights with CompressAI's widths are saved under the real file name of its zoo in a
temporary ``TORCH_HOME``, and any download attempt fails the test (or plays "offline").
"""

from __future__ import annotations

import os
import time
import urllib.error
from pathlib import Path

import pytest
import torch
from compressai.zoo.image import model_urls

from robustnic.cli.main import main
from robustnic.codecs import container, load_codec
from robustnic.codecs.architectures import get_architecture
from robustnic.codecs.zoo import codec_for_bitstream, load_pretrained, pretrained_cache_path
from robustnic.data.images import load_image, save_image
from robustnic.errors import BitstreamError, CodecLoadError

ARCH, QUALITY = "bmshj2018-hyperprior", 3  # CompressAI's N=128, M=192 (as small as its zoo gets)
SPEC = f"{ARCH}:q{QUALITY}:pretrained"


def hub_file(torch_home: Path, arch: str = ARCH, quality: int = QUALITY, metric: str = "mse") -> Path:
    """Where torch.hub keeps what CompressAI's zoo downloads: TORCH_HOME/hub/checkpoints/<URL's file name>."""
    return torch_home / "hub" / "checkpoints" / os.path.basename(model_urls[arch][metric][quality])


def save_fake_weights(path: Path, seed: int) -> None:
    """Random weights with CompressAI's widths for the quality, as a plain state dict (no coder tables)."""
    torch.manual_seed(seed)
    arch = get_architecture(ARCH)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(arch.build(*arch.widths(QUALITY)).state_dict(), path)


@pytest.fixture
def no_network(monkeypatch):
    """Any download attempt is a test failure."""

    def refuse(url, dst, *args, **kwargs):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture
def offline(monkeypatch):
    """Downloads fail the way they do without network."""

    def fail(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)


@pytest.fixture
def hub(tmp_path, monkeypatch, no_network) -> Path:
    """A TORCH_HOME whose hub cache holds fake weights for SPEC."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    save_fake_weights(hub_file(home), seed=0)
    return home


@pytest.fixture(scope="module")
def crop():
    from robustnic.data import bundled_photos

    return bundled_photos(["coffee"], crop=(64, 80))["coffee"]


def test_cache_path_is_where_compressai_looks(hub):
    assert pretrained_cache_path(ARCH, QUALITY) == hub_file(hub)
    assert pretrained_cache_path(ARCH, QUALITY, "ms-ssim").name == os.path.basename(
        model_urls[ARCH]["ms-ssim"][QUALITY])


def test_pretrained_stream_decodes_without_naming_the_model(hub, crop):
    codec = load_codec(SPEC)
    assert codec.compressai_pretrained
    data = codec.compress(crop)
    header, _ = container.unpack(data)
    assert header.compressai_zoo and (header.codec, header.quality, header.metric) == (2, QUALITY, "mse")
    found = codec_for_bitstream(data)
    assert found is not codec and found.fingerprint == codec.fingerprint
    assert torch.equal(found.decompress(data), codec.decompress(data))


def test_cli_decompress_needs_no_model(hub, crop, tmp_path, capsys):
    save_image(crop, tmp_path / "in.png")
    assert main(["compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "x.rnic"), "-m", SPEC]) == 0
    assert main(["decompress", str(tmp_path / "x.rnic"), "-o", str(tmp_path / "out.png")]) == 0
    expected = load_codec(SPEC).decompress((tmp_path / "x.rnic").read_bytes())
    assert torch.equal(load_image(tmp_path / "out.png"), expected.mul(255).round().div(255))
    assert f"{ARCH}:q{QUALITY}:mse" in capsys.readouterr().out


def test_other_weights_in_the_cache_are_refused(hub, crop):
    data = load_codec(SPEC).compress(crop)
    save_fake_weights(hub_file(hub), seed=1)  # the cache now holds other weights under the same name
    with pytest.raises(BitstreamError, match="fingerprint"):
        codec_for_bitstream(data)


def test_stream_from_before_the_flag_still_decodes_from_the_cache(hub, crop):
    data = load_codec(SPEC).compress(crop)
    header, strings = container.unpack(data)
    header.compressai_zoo = False  # as robustnic wrote it before the header had the flag
    old = container.pack(header, strings)
    assert torch.equal(codec_for_bitstream(old).decompress(old), codec_for_bitstream(data).decompress(data))


def test_changed_weights_are_not_flagged(hub, crop):
    codec = load_codec(SPEC)
    with torch.no_grad():
        codec.net.g_s[0].bias.add_(0.01)
    codec.refresh()
    assert not codec.compressai_pretrained
    assert not container.unpack(codec.compress(crop))[0].compressai_zoo


def test_offline_with_an_empty_cache_says_so_in_one_line(tmp_path, monkeypatch, offline, capsys):
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    save_fake_weights(hub_file(home), seed=0)
    save_image(torch.rand(1, 3, 64, 64), tmp_path / "in.png")
    assert main(["compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "x.rnic"), "-m", SPEC]) == 0
    capsys.readouterr()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-home"))
    data = (tmp_path / "x.rnic").read_bytes()
    t0 = time.perf_counter()
    with pytest.raises(CodecLoadError) as info:
        codec_for_bitstream(data)
    assert time.perf_counter() - t0 < 10
    message = str(info.value)
    assert "\n" not in message and "not in the torch hub cache" in message and "could not be downloaded" in message
    assert main(["decompress", str(tmp_path / "x.rnic"), "-o", str(tmp_path / "out.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torch hub cache" in err[0], err
    assert not (tmp_path / "out.png").exists()
    with pytest.raises(CodecLoadError, match="not in the torch hub cache"):
        load_pretrained(ARCH, QUALITY, download=False)


def test_header_flag_round_trips_and_reserved_bits_stay_refused():
    header = container.Header(codec=2, height=5, width=7, quality=3, transform=5, compressai_zoo=True)
    data = container.pack(header, [b"\0" * 8])
    got, _ = container.unpack(data)
    assert got.compressai_zoo and got.transform == 5
    body = bytearray(data[:-4])
    body[5] |= 0x10  # bit 4 of the flags byte
    forged = bytes(body) + container.struct.pack("<I", container.zlib.crc32(body))
    with pytest.raises(BitstreamError, match="reserved bits"):
        container.unpack(forged)

"""Hardening, library level: every file of the bad-input corpus and every hostile API tensor.

Contract (see :mod:`robustnic.testing.badinputs`): ``valid`` files load at their documented size
with finite values in [0, 1]; ``too-large`` and ``invalid`` ones raise :class:`ImageError`
(never a Pillow, NumPy or torch exception) quickly and without decoding the pixels.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

from robustnic.codecs import load_codec
from robustnic.testing.badinputs import INVALID, TOO_LARGE, VALID, bad_tensors, corpus_entries, write_corpus
from robustnic.data.images import check_image_tensor, load_image
from robustnic.errors import ImageError
from tests.conftest import TINY

ENTRIES = corpus_entries()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("badinputs")
    write_corpus(folder)
    return folder


def test_corpus_has_every_kind_of_hostile_input():
    kinds = {k: [e.name for e in ENTRIES if e.kind == k] for k in (VALID, TOO_LARGE, INVALID)}
    assert len(ENTRIES) >= 30 and all(len(v) >= 5 for v in kinds.values())
    assert all(e.size for e in ENTRIES if e.kind == VALID)
    assert len({e.name.rsplit(".", 1)[0] for e in ENTRIES}) == len(ENTRIES)  # unique stems


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_load_image_handles_every_corpus_file(corpus, entry):
    path = corpus / entry.name
    t0 = time.perf_counter()
    if entry.kind == VALID:
        x = load_image(path)
        assert x.shape == (1, 3, *entry.size) and x.dtype == torch.float32
        assert torch.isfinite(x).all() and 0 <= x.min() and x.max() <= 1
        assert load_image(path.read_bytes()).equal(x)  # the same from bytes
    else:
        with pytest.raises(ImageError) as info:
            load_image(path)
        message = str(info.value)
        assert "\n" not in message and entry.name in message
        if entry.kind == TOO_LARGE:
            assert "limit" in message or "bomb" in message
    assert time.perf_counter() - t0 < 5  # refused from the header, not after decoding


def test_max_pixels_refuses_before_decoding(corpus):
    with pytest.raises(ImageError, match="over the limit"):
        load_image(corpus / "rgb.png", max_pixels=100)
    assert load_image(corpus / "rgb.png", max_pixels=24 * 32).shape[-2:] == (24, 32)
    with pytest.raises(ImageError, match="smaller than the minimum side"):
        load_image(corpus / "one_by_n.png", min_side=2)


def test_exif_rotation_gives_the_pixels_a_viewer_shows(corpus):
    x = load_image(corpus / "exif_rotated.jpg")
    assert x.shape[-2:] == (20, 12)  # stored 12 high x 20 wide, orientation 6
    # orientation 6: rotate the stored pixels 90 degrees clockwise to display them
    with Image.open(corpus / "exif_rotated.jpg") as img:
        stored = np.asarray(img.convert("RGB"))
    shown = torch.from_numpy(np.rot90(stored, k=-1).copy()).permute(2, 0, 1).float().div(255)
    assert torch.equal(x[0], shown)


@pytest.mark.parametrize("name,value,valid", bad_tensors(), ids=[t[0] for t in bad_tensors()])
def test_check_image_tensor(name, value, valid):
    if valid:
        x = check_image_tensor(value)
        assert x.dim() == 4 and x.dtype == torch.float32
    else:
        with pytest.raises(ImageError):
            check_image_tensor(value)


@pytest.mark.parametrize("spec", [f"bmshj2018-hyperprior:{TINY}", f"mbt2018-mean:{TINY}", "jpeg:q75", "webp:q75"])
def test_codec_api_accepts_odd_tensors_and_refuses_hostile_ones(spec):
    torch.manual_seed(0)
    codec = load_codec(spec)
    for name, value, valid in bad_tensors(h=9, w=13):
        if valid:
            coded = codec.roundtrip(value)
            assert coded.x_hat.shape == (1, 3, 9, 13) and torch.isfinite(coded.x_hat).all(), name
            assert codec.decompress(codec.compress(value)).shape == (1, 3, 9, 13), name
        else:
            for verb in (codec.compress, codec.roundtrip):
                with pytest.raises(ImageError):
                    verb(value)


@pytest.mark.parametrize("spec", [f"bmshj2018-hyperprior:{TINY}", "jpeg:q75"])
def test_codec_forward_validates_its_input(spec):
    codec = load_codec(spec)
    for name, value, valid in bad_tensors(h=9, w=13):
        if valid:
            assert codec(value).x_hat.shape == (1, 3, 9, 13), name
        else:
            with pytest.raises(ImageError):
                codec(value)


def test_read_images_skips_each_unreadable_file_with_one_warning(corpus):
    """Every ``invalid`` / ``too-large`` corpus file is skipped with one message naming it and counted;
    every ``valid`` one is read (what ``robustnic eval`` does with a folder)."""
    from robustnic.data.images import image_keys, image_paths, read_images

    messages: list[str] = []
    loaded = read_images(image_keys(image_paths(corpus)), warn=messages.append)
    bad = [e.name for e in ENTRIES if e.kind != VALID]
    assert sorted(loaded.images) == sorted(e.name.rsplit(".", 1)[0] for e in ENTRIES if e.kind == VALID)
    assert sorted(p.rsplit("/", 1)[-1] for p in loaded.unreadable) == sorted(bad)
    assert len(messages) == len(bad) and all(sum(name in m for m in messages) == 1 for name in bad)
    assert loaded.total == len(ENTRIES)
    assert loaded.failure_summary() == f"{len(bad)} of {len(ENTRIES)} images could not be read"


def test_read_images_warns_through_python_warnings_by_default(corpus):
    from robustnic.data.images import read_images

    with pytest.warns(UserWarning, match="text.png"):
        loaded = read_images({"text": corpus / "text.png", "rgb": corpus / "rgb.png"})
    assert list(loaded.images) == ["rgb"] and loaded.failure_summary() == "1 of 2 images could not be read"
    assert read_images({"rgb": corpus / "rgb.png"}).failure_summary() is None


def test_crop_warning_names_the_image_and_both_sizes():
    from robustnic.data.images import crop_warning

    assert crop_warning("a", 300, 451, 256) is None and crop_warning("a", 256, 256, 256) is None
    message = crop_warning("chelsea", 300, 451, 512)
    assert "chelsea" in message and "451x300" in message and "512x512" in message and "using 451x300" in message
    assert "using 256x100" in crop_warning("strip", 100, 400, (128, 256))


def test_image_keys_keep_colliding_stems_apart(tmp_path):
    from pathlib import Path

    from robustnic.data.images import image_keys

    keys = image_keys([Path("x/a.png"), Path("x/a.jpg"), Path("x/b.png")])
    assert keys == {"a.png": Path("x/a.png"), "a.jpg": Path("x/a.jpg"), "b": Path("x/b.png")}

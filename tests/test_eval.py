"""`robustnic eval` agrees with CompressAI's own eval_model, and checkpoints load in both."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from robustnic.cli.main import main
from robustnic.codecs import load_codec
from robustnic.codecs.checkpoint import save_checkpoint
from robustnic.codecs.evaluate import evaluate_codec
from robustnic.data.images import save_image
from robustnic.data.photos import bundled_photos
from robustnic.errors import CheckpointError
from tests.conftest import tiny_codec


@pytest.fixture(scope="module")
def checkpoint_and_images(tmp_path_factory):
    """A tiny updated hyperprior checkpoint in CompressAI's training layout, and 64-divisible photos."""
    root = tmp_path_factory.mktemp("evalmodel")
    codec = tiny_codec("bmshj2018-hyperprior", seed=3)
    save_checkpoint({"state_dict": codec.net.state_dict(), "epoch": 1}, root / "ckpt.pth.tar")
    images = root / "images"
    for name, x in bundled_photos(["astronaut", "coffee"], crop=(192, 256)).items():
        save_image(x, images / f"{name}.png")
    return root / "ckpt.pth.tar", images


def test_same_numbers_as_compressai_eval_model(checkpoint_and_images, tmp_path):
    ckpt, images = checkpoint_and_images
    proc = subprocess.run(
        [sys.executable, "-m", "compressai.utils.eval_model", "checkpoint", str(images),
         "-a", "bmshj2018-hyperprior", "-p", str(ckpt)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = json.loads(proc.stdout[proc.stdout.index("{"):])["results"]
    assert main(["eval", "--model", str(ckpt), "--images", str(images), "--out", str(tmp_path / "ours"),
                 "--no-progress"]) == 0
    ours = json.loads((tmp_path / "ours.json").read_text())["results"]
    assert ours["psnr-rgb"][0] == pytest.approx(theirs["psnr-rgb"][0], abs=0.01)
    assert ours["bpp"][0] == pytest.approx(theirs["bpp"][0], rel=1e-3)
    assert ours["ms-ssim-rgb"][0] == pytest.approx(theirs["ms-ssim-rgb"][0], abs=1e-4)
    csv_text = (tmp_path / "ours.csv").read_text()
    assert csv_text.splitlines()[0].startswith("model,image,psnr-rgb,ms-ssim-rgb,bpp")
    assert "astronaut" in csv_text and "mean" in csv_text


def test_checkpoint_layouts_all_load_the_same_model(checkpoint_and_images, tmp_path, photo):
    ckpt, _ = checkpoint_and_images
    reference = load_codec(str(ckpt))
    state = reference.net.state_dict()
    variants = {
        "plain.pth": state,
        "dataparallel.pth": {f"module.{k}": v for k, v in state.items()},
        "network.pth": {"network": state},
    }
    for name, obj in variants.items():
        torch.save(obj, tmp_path / name)
        codec = load_codec(str(tmp_path / name))
        assert codec.fingerprint == reference.fingerprint
        assert torch.equal(codec.decompress(reference.compress(photo)), reference.roundtrip(photo).x_hat)


def test_explicit_architecture_and_mismatch_message(checkpoint_and_images):
    ckpt, _ = checkpoint_and_images
    assert load_codec(f"bmshj2018-hyperprior@{ckpt}").arch.name == "bmshj2018-hyperprior"
    with pytest.raises(CheckpointError, match="does not fit MeanScaleHyperprior: .*different shape"):
        load_codec(f"mbt2018-mean@{ckpt}")


def test_estimated_bpp_is_reported_and_real_bpp_is_within_2_5_percent_of_it_for_trained_models(tiny):
    """Real payload bpp (bytes from compress) vs the likelihood estimate, on trained shipped models: a
    plain hyperprior and a context model (whose estimate follows the real decoding path). The tiny
    random models are not used for the gap: their latents leave the coder's tables (escape codes)."""
    images = bundled_photos(["coffee", "astronaut"], crop=192)
    for spec in ("hyperprior-small:q3", "joint-small:q3"):
        row = evaluate_codec(load_codec(spec), images, progress=False)["results"]
        assert row["bpp"] == pytest.approx(row["bpp-estimated"], rel=0.025), spec
        assert row["bpp-file"] > row["bpp"]
    jpeg = evaluate_codec(load_codec("jpeg:q50"), images, progress=False)["results"]
    assert jpeg["bpp-estimated"] is None and jpeg["psnr-rgb"] > 20


def test_times_are_the_models_compress_and_decompress_with_one_thread(monkeypatch, photo):
    """encoding_time / decoding_time time net.compress / net.decompress alone (as eval_model), with one
    torch thread; container work around them is not counted, and the thread setting is restored."""
    import time

    from robustnic.codecs import base

    codec = tiny_codec("bmshj2018-hyperprior", seed=4)
    seen = []
    net_compress, net_decompress = codec.net.compress, codec.net.decompress

    def compress(x):
        seen.append(torch.get_num_threads())
        time.sleep(0.05)
        return net_compress(x)

    def decompress(strings, shape):
        time.sleep(0.08)
        return net_decompress(strings, shape)

    def slow_pack(header, strings, pack=base.container.pack):
        time.sleep(0.5)  # outside the timed region
        return pack(header, strings)

    monkeypatch.setattr(codec.net, "compress", compress)
    monkeypatch.setattr(codec.net, "decompress", decompress)
    monkeypatch.setattr(base.container, "pack", slow_pack)
    threads = torch.get_num_threads()
    row = evaluate_codec(codec, {"photo": photo}, progress=False)["results"]
    assert seen == [1] and torch.get_num_threads() == threads
    assert 0.05 <= row["encoding_time"] < 0.4 and 0.08 <= row["decoding_time"] < 0.4


# ----- means over one image set for every column (#19) --------------------------------------------
def test_common_mean_row_averages_every_column_over_the_same_images():
    from robustnic.codecs.evaluate import common_mean_row

    per_image = {
        "big": {"psnr-rgb": 30.0, "ms-ssim-rgb": 0.9, "ms-ssim-scales": 5, "bpp": 0.5, "bpp-estimated": None},
        "tiny": {"psnr-rgb": 40.0, "ms-ssim-rgb": None, "ms-ssim-scales": 0, "bpp": 8.0, "bpp-estimated": None},
        "other": {"psnr-rgb": 32.0, "ms-ssim-rgb": 0.8, "ms-ssim-scales": 5, "bpp": 0.7, "bpp-estimated": None},
        "same": {"psnr-rgb": float("inf"), "ms-ssim-rgb": 1.0, "ms-ssim-scales": 5, "bpp": 0.1,
                 "bpp-estimated": None},
    }
    mean, left_out = common_mean_row(per_image)
    # bpp over big and other only, as PSNR and MS-SSIM: tiny (no MS-SSIM) and same (inf PSNR) are out
    assert mean["bpp"] == pytest.approx(0.6) and mean["psnr-rgb"] == pytest.approx(31.0)
    assert mean["ms-ssim-rgb"] == pytest.approx(0.85) and mean["ms-ssim-scales"] == 5
    assert mean["bpp-estimated"] is None  # applies to no image (a classical codec): not a reason to leave out
    assert set(left_out) == {"tiny", "same"}
    assert "ms-ssim-rgb" in left_out["tiny"] and "11 px" in left_out["tiny"]
    assert "psnr-rgb is inf" in left_out["same"]
    # no image has every column: every mean is None, every image named
    mean, left_out = common_mean_row({k: per_image[k] for k in ("tiny", "same")})
    assert all(v is None for v in mean.values()) and set(left_out) == {"tiny", "same"}
    # a column no image has (every image under 11 px) does not empty the mean
    mean, left_out = common_mean_row({"tiny": per_image["tiny"]})
    assert mean["bpp"] == 8.0 and mean["ms-ssim-rgb"] is None and left_out == {}


def test_eval_mean_of_a_10x10_and_a_normal_image_is_over_the_normal_one(photo, tmp_path):
    """A 10x10 image has no MS-SSIM: it leaves the mean (bpp included), and the outputs say so."""
    import csv

    from robustnic.codecs.evaluate import write_results

    images = {"normal": photo, "tiny": photo[..., :10, :10]}
    ev = evaluate_codec(load_codec("jpeg:q50"), images, progress=False)
    normal, tiny = ev["per_image"]["normal"], ev["per_image"]["tiny"]
    assert tiny["ms-ssim-rgb"] is None and tiny["bpp"] is not None
    for key in ("bpp", "bpp-file", "psnr-rgb", "ms-ssim-rgb", "encoding_time"):
        assert ev["results"][key] == normal[key], key
    assert list(ev["left_out"]) == ["tiny"]
    json_path, csv_path = write_results([ev], tmp_path / "rd")
    assert json.loads(json_path.read_text())["mean_over"]["jpeg:q50"] == {
        "images": 1, "of": 2, "left_out": {"tiny": ev["left_out"]["tiny"]}}
    with open(csv_path) as f:
        table = {r["image"]: r for r in csv.DictReader(f)}
    assert table["mean"]["n"] == "1" and table["mean"]["note"] == "over 1 of 2 images"
    assert table["tiny"]["note"].startswith("left out of the mean") and table["normal"]["note"] == ""

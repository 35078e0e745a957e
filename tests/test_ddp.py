"""Data-parallel training under torchrun: 2 CPU processes (gloo) train like one process with the doubled batch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from robustnic.codecs import load_codec
from robustnic.codecs.checkpoint import read_checkpoint_file
from robustnic.data.images import save_image
from robustnic.data.photos import bundled_photos
from robustnic.training import TrainConfig, Trainer
from robustnic.training.data import PatchSampler

SETTINGS = dict(architecture="bmshj2018-hyperprior", N=8, M=16, patch_size=64, lr=1e-3, val_every=1000,
                val_crop=64, threads=1, seed=3)


@pytest.fixture(scope="module")
def train_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp-images")
    for name, x in bundled_photos(["chelsea", "flower"], crop=160).items():
        save_image(x, folder / f"{name}.png")
    return folder


def _weights(state: dict) -> dict[str, torch.Tensor]:
    """The trained tensors (not the coder's tables or the auxiliary quantiles)."""
    skip = ("quantiles", "cdf", "offset", "length")
    return {k: v.float() for k, v in state.items() if v.dtype.is_floating_point and not any(s in k for s in skip)}


def _distance(a: dict, b: dict) -> float:
    a, b = _weights(a), _weights(b)
    return float(sum(((a[k] - b[k]) ** 2).sum() for k in a) ** 0.5)


def test_rank_slices_of_the_sampler_are_the_single_process_batch(train_folder):
    one = PatchSampler([train_folder], 64, scales=(160,), seed=5)
    whole = one.sample(6)
    parts = [PatchSampler([train_folder], 64, scales=(160,), seed=5).sample(2, rank, 3) for rank in range(3)]
    assert torch.equal(torch.cat(parts), whole)
    two = PatchSampler([train_folder], 64, scales=(160,), seed=5)
    two.sample(2, 1, 3)  # every rank advances the generator alike: next batches agree too
    assert torch.equal(two.sample(3), one.sample(3))


def test_torchrun_two_processes_match_one_process_with_the_doubled_batch(train_folder, tmp_path):
    """2 ranks × batch 2 vs 1 process × batch 4, 4 steps: the patches are the same and the gradients
    averaged, so the only difference is the quantisation noise (drawn per rank). Tolerance: the
    distance between the two runs' weights is at most 1.5× the distance between two single-process
    runs that differ only in their noise, and well under how far training moved the weights."""
    steps, images = 4, [str(train_folder)]
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "robustnic.cli.main", "train", "--arch", "bmshj2018-hyperprior", "--N", "8", "--M", "16",
           "--steps", str(steps), "--batch-size", "2", "--patch-size", "64", "--images", *images,
           "--val-every", "1000", "--val-crop", "64", "--threads", "1", "--lr", "1e-3", "--seed", "3",
           "--out", str(out), "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count('"finished": true') == 1  # rank 0 alone reports
    assert sorted(p.name for p in out.iterdir()) == ["last.pth.tar"]  # rank 0 alone writes
    ddp = read_checkpoint_file(out / "last.pth.tar")
    assert ddp["step"] == steps

    val = bundled_photos(["coffee"], crop=64)
    cfg = TrainConfig(steps=steps, batch_size=4, images=images, **SETTINGS)
    single = Trainer(cfg, tmp_path / "single", progress=False, val_images=val)
    start = {k: v.clone() for k, v in single.net.state_dict().items()}
    single.fit()
    other_noise = Trainer(cfg, tmp_path / "other-noise", progress=False, val_images=val)
    torch.manual_seed(12345)  # same initialisation and patches, other quantisation noise
    other_noise.fit()

    moved = _distance(single.net.state_dict(), start)
    noise_only = _distance(single.net.state_dict(), other_noise.net.state_dict())
    between = _distance(ddp["state_dict"], single.net.state_dict())
    assert between <= 1.5 * noise_only, (between, noise_only)
    assert between < 0.75 * moved, (between, moved)
    assert _distance(ddp["state_dict"], start) > 0.5 * moved  # the ranks did train

    # The checkpoint loads as a codec, and a 2-process checkpoint resumes in one process.
    assert load_codec(str(out / "last.pth.tar")).name
    resumed = Trainer(TrainConfig(steps=steps + 2, batch_size=4, images=images, **SETTINGS), out,
                      progress=False, val_images=val)
    assert resumed.resumed and resumed.step == steps
    assert resumed.fit()["step"] == steps + 2

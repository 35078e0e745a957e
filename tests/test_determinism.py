"""Determinism on CPU: the same seed gives bit-identical attacks, training and fine-tuning,
whatever the global random state was before (every method seeds its own generator)."""

from __future__ import annotations

import json

import pytest
import torch

from robustnic.attacks import ATTACKS, PSNR, make_attack
from robustnic.codecs.checkpoint import read_state_dict, save_checkpoint
from robustnic.data.images import save_image
from robustnic.training import PatchSampler, TrainConfig, Trainer
from tests.conftest import tiny_codec


def _scramble_global_rng(k: int) -> None:
    torch.manual_seed(1000 + k)
    torch.rand(7 + k)


@pytest.fixture(scope="module")
def codec():
    return tiny_codec("mbt2018-mean", seed=1)


@pytest.mark.parametrize("method", sorted(ATTACKS))
def test_attacks_are_bit_identical_per_seed(codec, odd_photo, method):
    x = odd_photo[..., :32, :40]
    outs = []
    for k in range(2):
        _scramble_global_rng(k)
        outs.append(make_attack(method, codec, budget=PSNR(40), steps=3, seed=5)(x))
    assert torch.equal(outs[0], outs[1]), f"{method}: same seed, different result"
    assert outs[0].shape == x.shape


def test_random_attacks_depend_on_the_seed(codec, odd_photo):
    x = odd_photo[..., :32, :40]
    a = make_attack("noise", codec, budget=PSNR(40), steps=1, seed=0)(x)
    b = make_attack("noise", codec, budget=PSNR(40), steps=1, seed=1)(x)
    assert not torch.equal(a, b)


@pytest.fixture(scope="module")
def patch_images(tmp_path_factory, photo):
    folder = tmp_path_factory.mktemp("patches")
    save_image(torch.cat([photo, photo.flip(-1)], -2), folder / "a.png")  # 128 x 96
    return folder


def _train_once(out, images):
    _scramble_global_rng(len(str(out)))
    cfg = TrainConfig(N=8, M=16, steps=3, batch_size=2, patch_size=64, val_every=100, checkpoint_every=100,
                      seed=7, threads=1)
    sampler = PatchSampler([images], 64, scales=(96,), seed=7)
    val = {"v": torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))}
    trainer = Trainer(cfg, out, sampler=sampler, val_images=val, progress=False)
    trainer.fit()
    return read_state_dict(trainer.checkpoint_path)


def test_training_is_bit_identical_per_seed(tmp_path, patch_images):
    a, b = _train_once(tmp_path / "a", patch_images), _train_once(tmp_path / "bb", patch_images)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _finetune_once(out, model_path, images):
    from robustnic.training.finetune import FinetuneConfig, FinetuneTrainer

    _scramble_global_rng(len(str(out)))
    cfg = FinetuneConfig(model=str(model_path), steps=2, batch_size=2, patch_size=64, attack="pgd", attack_steps=2,
                         budget="psnr:35", ramp_steps=0, seed=3, val_every=100, val_attack="pgd", val_attack_steps=1,
                         val_crop=64, checkpoint_every=100, threads=1, images=[str(images)])
    sampler = PatchSampler([images], 64, scales=(96,), seed=3)
    val = {"v": torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))}
    trainer = FinetuneTrainer(cfg, out, sampler=sampler, val_images=val, progress=False)
    result = trainer.fit()
    history = [{k: v for k, v in h.items() if k != "elapsed"} for h in result["history"]]
    for h in history:
        h["train"] = {k: v for k, v in h["train"].items() if k != "attack_time"}
    return read_state_dict(trainer.checkpoint_path), json.dumps(history, sort_keys=True)


def test_adversarial_finetuning_is_bit_identical_per_seed(tmp_path, patch_images):
    model = tmp_path / "start.pth.tar"
    save_checkpoint({"state_dict": tiny_codec("bmshj2018-hyperprior", seed=2).net.state_dict()}, model)
    (a, ha), (b, hb) = (_finetune_once(tmp_path / o, model, patch_images) for o in ("a", "bb"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert ha == hb
    start = read_state_dict(model)
    assert not torch.equal(a["g_a.0.weight"], start["g_a.0.weight"])  # it did train

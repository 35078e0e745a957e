"""Adversarial fine-tuning on a tiny model: the hook, the run, resuming, the checkpoint, the CLI."""

from __future__ import annotations

import pytest
import torch

from robustnic.attacks import MSE, PSNR, AttackSettings, Linf, attack_and_verify
from robustnic.cli.main import main
from robustnic.codecs import load_codec
from robustnic.codecs.architectures import get_architecture
from robustnic.codecs.checkpoint import read_state_dict, save_checkpoint
from robustnic.codecs.learned import is_updated
from robustnic.data.images import save_image
from robustnic.data.photos import bundled_photos, training_photo_paths
from robustnic.training.finetune import AdversarialPerturb, FinetuneConfig, FinetuneTrainer, finetune, ramped_budget
from robustnic.errors import RobustnicError
from robustnic.training.data import PatchSampler


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny hyperprior checkpoint (N=8, M=16) in CompressAI's layout, and training photos."""
    folder = tmp_path_factory.mktemp("finetune")
    torch.manual_seed(3)
    net = get_architecture("bmshj2018-hyperprior").build(8, 16)
    save_checkpoint({"state_dict": net.state_dict(), "config": {"lmbda": 0.01}}, folder / "tiny.pth.tar")
    for name, x in bundled_photos(["chelsea", "flower"], crop=128).items():
        save_image(x, folder / "images" / f"{name}.png")
    return folder


def _config(folder, **overrides) -> FinetuneConfig:
    base = dict(model=str(folder / "tiny.pth.tar"), steps=3, batch_size=2, patch_size=64, attack_steps=2,
                ramp_steps=2, val_every=3, val_photos=["coffee"], val_crop=64, val_attack_steps=2,
                checkpoint_every=3, images=[str(folder / "images")], lr=1e-3)
    return FinetuneConfig(**(base | overrides))


def test_budget_ramps_up_from_zero():
    assert ramped_budget(PSNR(30), 0.0) is None
    assert ramped_budget(PSNR(30), 0.25).tau == pytest.approx(0.25e-3)
    assert ramped_budget(PSNR(30), 2.0).tau == pytest.approx(1e-3)
    assert ramped_budget(Linf(8), 0.5).eps == 4
    capped = ramped_budget(PSNR(30, linf_cap=16), 0.5)  # the cap stays while the ball grows
    assert capped.linf_cap == 16 and capped.tau == pytest.approx(0.5e-3)
    assert ramped_budget(PSNR(30), 0.5).linf_cap is None
    hook = AdversarialPerturb(FinetuneConfig(budget="mse:1e-3", ramp_steps=10))
    taus = [hook.budget_at(s).tau for s in (0, 4, 9, 50)]
    assert taus == pytest.approx([1e-4, 5e-4, 1e-3, 1e-3])


def test_hook_attacks_a_fraction_inside_the_budget_and_leaves_parameters_alone():
    torch.manual_seed(0)
    net = get_architecture("bmshj2018-hyperprior").build(8, 16)
    net.requires_grad_(True)
    batch = torch.cat(list(bundled_photos(["astronaut", "coffee", "chelsea", "china"], crop=64).values()))
    hook = AdversarialPerturb(FinetuneConfig(budget="psnr:30", ramp_steps=4, adv_fraction=0.5, attack_steps=3))
    out = hook(net, batch, step=1)  # half the ramp: MSE budget 5e-4
    assert out.shape == batch.shape and hook.last["n_adv"] == 2
    assert torch.equal(out[2:], batch[2:])
    assert not torch.equal(out[:2], batch[:2])
    assert MSE(5e-4).satisfied(batch[:2], out[:2])
    assert torch.equal(out[:2], (out[:2] * 255).round() / 255)  # 8-bit images
    assert all(p.requires_grad and p.grad is None for p in net.parameters())
    assert torch.equal(AdversarialPerturb(FinetuneConfig(adv_fraction=0.0))(net, batch, 5), batch)


def test_finetuning_changes_weights_and_the_checkpoint_loads_in_the_zoo(tiny_checkpoint, tmp_path):
    out = tmp_path / "run"
    result = finetune(_config(tiny_checkpoint), out, export_to=tmp_path / "robust.pth.tar", progress=False)
    assert result["step"] == 3 and not result["resumed"]
    val = result["history"][-1]["val"]
    assert {"bpp", "psnr-rgb", "psnr-attacked", "psnr-drop"} <= set(val)
    assert result["source"]["lmbda"] == 0.01  # the source checkpoint's own λ
    before, after = read_state_dict(tiny_checkpoint / "tiny.pth.tar"), read_state_dict(out / "last.pth.tar")
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("g_a."))
    x = bundled_photos(["coffee"], crop=(45, 71))["coffee"]
    for path in (out / "last.pth.tar", tmp_path / "robust.pth.tar"):
        codec = load_codec(str(path))
        assert is_updated(codec.net)
        coded = codec.roundtrip(x)
        assert coded.x_hat.shape == x.shape and coded.bpp > 0
    # the checkpoint's coder tables are the ones its weights give (no stale tables)
    reference = load_codec(str(out / "last.pth.tar"))
    reference.net.update(force=True)
    assert load_codec(str(out / "last.pth.tar")).compress(x) == reference.compress(x)


def test_rerun_resumes_and_other_settings_are_refused(tiny_checkpoint, tmp_path):
    out = tmp_path / "run"
    finetune(_config(tiny_checkpoint, steps=2, checkpoint_every=1, val_every=100), out, progress=False)
    resumed = FinetuneTrainer(_config(tiny_checkpoint, steps=4, checkpoint_every=1, val_every=100), out, progress=False)
    assert resumed.resumed and resumed.step == 2
    with pytest.raises(RobustnicError, match="other settings"):
        FinetuneTrainer(_config(tiny_checkpoint, budget="psnr:35"), out, progress=False)


def test_source_target_follows_the_input_target_when_nothing_is_attacked(tiny_checkpoint, tmp_path):
    """Same seeds: with no attacked patch the two targets coincide; with attacked ones they differ."""
    def weights(**kw):
        trainer = FinetuneTrainer(_config(tiny_checkpoint, **kw), tmp_path / str(len(list(tmp_path.iterdir()))),
                                  progress=False)
        for _ in range(2):
            trainer.train_step()
        return trainer.net.state_dict()

    a = weights(adv_fraction=0.0, target="input")
    b = weights(adv_fraction=0.0, target="source")
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = weights(adv_fraction=1.0, ramp_steps=0, target="input")
    d = weights(adv_fraction=1.0, ramp_steps=0, target="source")
    assert any(not torch.equal(c[k], d[k]) for k in c if k.startswith("g_s."))


def test_cli_finetune(tiny_checkpoint, tmp_path, capsys):
    args = ["finetune", "--model", str(tiny_checkpoint / "tiny.pth.tar"), "--out", str(tmp_path / "cli"),
            "--steps", "2", "--batch-size", "2", "--patch-size", "64", "--attack-steps", "1", "--ramp-steps", "1",
            "--val-every", "100", "--checkpoint-every", "2", "--images", str(tiny_checkpoint / "images"),
            "--no-progress", "--export", str(tmp_path / "cli.pth.tar")]
    assert main(args) == 0
    assert (tmp_path / "cli" / "last.pth.tar").is_file() and (tmp_path / "cli.pth.tar").is_file()
    assert '"sha256"' in capsys.readouterr().out
    assert main(args[:-2] + ["--budget", "psnr:abc", "--out", str(tmp_path / "bad")]) == 2
    assert "error" in capsys.readouterr().err


def test_finetune_options_and_recorded_commands_come_from_the_config():
    """Every FinetuneConfig field has an option with help and default; a config survives the command line,
    and the command recorded for a shipped robust model reproduces its settings."""
    import dataclasses
    import shlex

    from robustnic.cli.common import config_from_args
    from robustnic.cli.main import build_parser
    from robustnic.training.config import cli_arguments, cli_options
    from robustnic.training.robust import finetune_command

    parser = build_parser(["finetune"])
    sub = next(a for a in parser._actions if a.dest == "command").choices["finetune"]
    actions = {a.dest: a for a in sub._actions}
    assert all("(default: " in actions[o.dest].help for o in cli_options(FinetuneConfig))
    assert config_from_args(FinetuneConfig, sub.parse_args(["--out", "x"])) == FinetuneConfig()
    cfg = FinetuneConfig(model="a.pth.tar", steps=9, lr_drops=[(0.5, 0.1), (0.9, 0.5)], lmbda=0.02, attack="ifgsm",
                         attack_steps=3, budget="linf:4", ramp_steps=7, adv_fraction=0.25, standin="ste",
                         attack_reference="clean", target="input", val_every=5, val_photos=["astronaut"], val_crop=64,
                         val_attack="pgd", val_attack_steps=4, checkpoint_every=6, threads=2, batch_size=3,
                         patch_size=192, lr=3e-4, aux_lr=2e-3, clip_max_norm=0.5, seed=8, images=["d 1", "d2"],
                         max_pixels=99, regularizer="jacobian", reg_weight=3.0)
    default = FinetuneConfig()
    assert all(getattr(cfg, f.name) != getattr(default, f.name) for f in dataclasses.fields(cfg))  # all covered
    assert config_from_args(FinetuneConfig, sub.parse_args(cli_arguments(cfg) + ["-o", "x"])) == cfg
    args = build_parser(["finetune"]).parse_args(shlex.split(finetune_command(cfg, "runs/r 1", export="m.pt"))[1:])
    assert (args.out, args.export) == ("runs/r 1", "m.pt")
    assert config_from_args(FinetuneConfig, args).settings() == cfg.settings()


def _attack_damage(codec, x: torch.Tensor) -> tuple[float, float]:
    """Mean damage of a seeded 20-step ``paper`` attack at psnr:30 (clean-reconstruction PSNR minus
    attacked-reconstruction PSNR, both decoded from real bitstreams) and the mean clean PSNR."""
    rows = attack_and_verify(codec, x, AttackSettings("paper", PSNR(30), steps=20, seed=0)).rows
    assert all(r["budget-ok"] for r in rows)
    return sum(r["psnr-drop"] for r in rows) / len(rows), sum(r["psnr-clean"] for r in rows) / len(rows)


def test_adversarial_finetuning_reduces_the_attack_damage(tmp_path):
    """40 steps of PGD-1 fine-tuning of the smallest shipped model against psnr:30 cut the damage of a
    stronger attack at the same budget (measured: 1.93 -> 1.08 dB on these crops) at a small clean
    cost (-0.9 dB); the same 40 steps on clean patches only do not (measured: 2.21 dB)."""
    x = torch.cat(list(bundled_photos(["astronaut", "coffee", "chelsea", "china"], crop=64).values()))
    sources = [str(p) for p in training_photo_paths(include_mate=False)]  # never the held-out photos

    def finetuned(adv_fraction: float):
        cfg = FinetuneConfig(model="hyperprior-small:q3", steps=40, batch_size=4, patch_size=64, lr=1e-4, lr_drops=[],
                             attack="pgd", attack_steps=1, budget="psnr:30", ramp_steps=0, adv_fraction=adv_fraction,
                             threads=1, seed=0)
        trainer = FinetuneTrainer(cfg, tmp_path / f"adv{adv_fraction}", sampler=PatchSampler(sources, 64, scales=(256,)),
                                  val_images={"v": x[:1]}, progress=False)
        for _ in range(cfg.steps):
            trainer.train_step()
        trainer.save()
        return load_codec(str(trainer.checkpoint_path))

    vanilla, vanilla_clean = _attack_damage(load_codec("hyperprior-small:q3"), x)
    robust, robust_clean = _attack_damage(finetuned(0.5), x)
    assert robust < vanilla - 0.5, (vanilla, robust)
    assert robust_clean > vanilla_clean - 1.5, (vanilla_clean, robust_clean)  # not by wrecking the codec
    clean_only, _ = _attack_damage(finetuned(0.0), x)
    assert clean_only > vanilla - 0.5, (vanilla, clean_only)  # the adversarial patches do it, not any fine-tuning


def _mean_squared_gain(net, x: torch.Tensor, draws: int = 8) -> float:
    """The codec's ‖J‖_F²/n at x, averaged over random projections (training-mode forward, seeded)."""
    from robustnic.training.regularizers import jacobian_penalty

    net.train()
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    total = 0.0
    for _ in range(draws):
        xx = x.clone().requires_grad_(True)
        total += jacobian_penalty(xx, net(xx)["x_hat"], generator=gen).item()
    return total / draws


def test_jacobian_regularizer_lowers_the_codecs_gain_without_an_inner_attack(tiny_checkpoint, tmp_path):
    """Same patches and steps, with and without the penalty: the penalised run ends with a lower gain."""
    x = bundled_photos(["coffee"], crop=64)["coffee"]
    runs = {}
    for reg in ("none", "jacobian"):
        cfg = _config(tiny_checkpoint, steps=20, adv_fraction=0.0, regularizer=reg, reg_weight=1e7, lr=1e-3,
                      val_every=100, checkpoint_every=100)
        trainer = FinetuneTrainer(cfg, tmp_path / reg, progress=False,
                                  sampler=PatchSampler([tiny_checkpoint / "images"], 64, scales=(128,)))
        terms = [trainer.train_step() for _ in range(cfg.steps)]
        assert ("jacobian" in terms[-1]) == (reg == "jacobian")
        assert all(t["n_adv"] == 0 for t in terms)  # no inner attack
        runs[reg] = _mean_squared_gain(trainer.net, x)
    assert runs["jacobian"] < 0.8 * runs["none"], runs


def test_old_runs_without_the_new_settings_still_resume(tiny_checkpoint, tmp_path):
    import json

    out = tmp_path / "old"
    FinetuneTrainer(_config(tiny_checkpoint), out, progress=False)
    saved = json.loads((out / "finetune.json").read_text())
    del saved["regularizer"], saved["reg_weight"]  # written before those settings existed
    (out / "finetune.json").write_text(json.dumps(saved))
    FinetuneTrainer(_config(tiny_checkpoint), out, progress=False)  # same settings: accepted
    with pytest.raises(RobustnicError, match="regularizer"):
        FinetuneTrainer(_config(tiny_checkpoint, regularizer="jacobian"), out, progress=False)

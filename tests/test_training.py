"""Training: the loss falls, checkpoints are CompressAI-compatible, kill -9 loses nothing past the last checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from robustnic.codecs import load_codec
from robustnic.codecs.checkpoint import read_checkpoint_file
from robustnic.data.images import save_image
from robustnic.data.photos import bundled_photos
from robustnic.training import TrainConfig, Trainer, export_model

TINY = dict(N=8, M=16, batch_size=2, patch_size=64, lr=1e-3, val_every=10_000, checkpoint_every=5, threads=1, seed=7)


@pytest.fixture(scope="module")
def train_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train-images")
    for name, x in bundled_photos(["chelsea", "flower"], crop=160).items():
        save_image(x, folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def val_images():
    return bundled_photos(["coffee"], crop=64)


def test_loss_falls_and_validation_uses_real_bitstreams(train_folder, val_images, tmp_path):
    cfg = TrainConfig(steps=60, images=[str(train_folder)], **TINY)
    trainer = Trainer(cfg, tmp_path / "run", progress=False, val_images=val_images)
    losses = [trainer.train_step()["loss"] for _ in range(60)]
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:5]) / 5
    val = trainer.validate()
    assert val["bpp"] > 0 and 5 < val["psnr-rgb"] < 60


def test_the_train_step_measures_the_distortion_against_the_hooks_target(train_folder, val_images, tmp_path):
    """One train step for every job: the target hook says what the model sees and what it is measured against."""
    calls = []

    def white(net, batch, step):  # train on the batch, measure against a white image
        calls.append(step)
        return batch, torch.ones_like(batch)

    cfg = TrainConfig(steps=3, images=[str(train_folder)], **TINY | {"lr": 0.0, "aux_lr": 0.0})  # weights stay put
    trainer = Trainer(cfg, tmp_path / "run", target=white, progress=False, val_images=val_images)
    patches = trainer.sampler.generator.get_state()
    torch.manual_seed(11)
    terms = trainer.train_step()
    trainer.sampler.generator.set_state(patches)  # replay the same patches and quantisation noise
    x = trainer.sampler.sample(cfg.batch_size)
    trainer.net.train()
    torch.manual_seed(11)
    with torch.no_grad():
        x_hat = trainer.net(x)["x_hat"]
    assert calls == [0] and trainer.step == 1
    assert terms["mse"] == pytest.approx(torch.mean((x_hat - 1) ** 2).item(), rel=1e-5)
    assert terms["mse"] != pytest.approx(torch.mean((x_hat - x) ** 2).item(), rel=0.1)


def _train_cli(out, steps, folder):
    return [sys.executable, "-m", "robustnic.cli.main", "train", "--N", "8", "--M", "16", "--steps", str(steps),
            "--batch-size", "2", "--patch-size", "64", "--lr", "1e-3", "--checkpoint-every", "5",
            "--val-every", "10000", "--threads", "1", "--seed", "7", "--images", str(folder), "--out", str(out),
            "--no-progress"]


def test_resume_after_kill_9_is_bit_identical(train_folder, val_images, tmp_path):
    steps = 40
    # the run that is killed: started with a huge step count so it is surely still running
    proc = subprocess.Popen(_train_cli(tmp_path / "killed", 100_000, train_folder),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / "last.pth.tar"
    deadline = time.time() + 240
    while time.time() < deadline:
        if ckpt.is_file() and read_checkpoint_file(ckpt)["step"] >= 10:
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved_step = read_checkpoint_file(ckpt)["step"]
    assert 10 <= saved_step < steps
    # SIGKILL can land inside a save: the checkpoint is then the previous whole one (written to a
    # hidden temporary file and renamed); the interrupted write can only leave that temporary file,
    # under a name nothing loads, never a half-written ``last.pth.tar``
    leftovers = [p.name for p in ckpt.parent.iterdir() if p.name != "last.pth.tar"]
    assert all(n.startswith(".last.pth.tar.") and n.endswith(".part") for n in leftovers), leftovers

    cfg = dict(images=[str(train_folder)], **TINY)
    resumed = Trainer(TrainConfig(steps=steps, **cfg), tmp_path / "killed", progress=False, val_images=val_images)
    assert resumed.resumed and resumed.step == saved_step
    resumed.fit()
    fresh = Trainer(TrainConfig(steps=steps, **cfg), tmp_path / "fresh", progress=False, val_images=val_images)
    fresh.fit()
    a, b = resumed.net.state_dict(), fresh.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_exports_and_loads_in_zoo_and_compressai(train_folder, val_images, tmp_path, photo):
    cfg = TrainConfig(steps=5, images=[str(train_folder)], **TINY)
    trainer = Trainer(cfg, tmp_path / "run", progress=False, val_images=val_images)
    trainer.fit()
    # the training checkpoint itself is a CompressAI checkpoint ({"state_dict": ...})
    from compressai.zoo.image import model_architectures

    net = model_architectures["bmshj2018-hyperprior"].from_state_dict(read_checkpoint_file(trainer.checkpoint_path)["state_dict"])
    assert sum(p.numel() for p in net.parameters()) > 0
    info = export_model(trainer.checkpoint_path, tmp_path / "model.pt")
    assert (info["architecture"], info["N"], info["M"]) == ("bmshj2018-hyperprior", 8, 16)
    shipped = load_codec(str(tmp_path / "model.pt"))
    again = load_codec(str(tmp_path / "model.pt"))
    assert torch.equal(again.decompress(shipped.compress(photo)), shipped.roundtrip(photo).x_hat)


def test_a_save_cut_off_by_a_kill_leaves_a_loadable_checkpoint_and_resume_ignores_it(train_folder, val_images,
                                                                                       tmp_path):
    # what SIGKILL inside a save leaves: a hidden, truncated temporary file beside the previous checkpoint
    cfg = TrainConfig(steps=5, images=[str(train_folder)], **TINY)
    first = Trainer(cfg, tmp_path / "run", progress=False, val_images=val_images)
    first.fit()
    whole = (tmp_path / "run" / "last.pth.tar").read_bytes()
    (tmp_path / "run" / ".last.pth.tar.cut0ff.part").write_bytes(whole[: len(whole) // 3])
    resumed = Trainer(TrainConfig(steps=7, images=[str(train_folder)], **TINY), tmp_path / "run", progress=False,
                      val_images=val_images)
    assert resumed.resumed and resumed.step == 5
    assert all(torch.equal(v, first.net.state_dict()[k]) for k, v in resumed.net.state_dict().items())
    resumed.fit()
    assert read_checkpoint_file(tmp_path / "run" / "last.pth.tar")["step"] == 7


def test_resume_refuses_a_different_architecture(train_folder, val_images, tmp_path):
    cfg = TrainConfig(steps=5, images=[str(train_folder)], **TINY)
    Trainer(cfg, tmp_path / "run", progress=False, val_images=val_images).fit()
    other = TrainConfig(steps=5, images=[str(train_folder)], **(TINY | {"N": 16}))
    from robustnic.errors import RobustnicError

    with pytest.raises(RobustnicError, match="N=8|another --out"):
        Trainer(other, tmp_path / "run", progress=False, val_images=val_images)


def test_export_with_a_finer_scale_table(tmp_path, photo):
    from robustnic.codecs.architectures import get_architecture
    from robustnic.codecs.checkpoint import save_checkpoint
    from robustnic.codecs.learned import scale_levels_of
    from robustnic.errors import BitstreamError

    torch.manual_seed(0)
    net = get_architecture("mbt2018-mean").build(8, 16)
    save_checkpoint({"state_dict": net.state_dict()}, tmp_path / "ckpt.pth.tar")
    first = export_model(tmp_path / "ckpt.pth.tar", tmp_path / "coarse.pt")
    assert export_model(tmp_path / "ckpt.pth.tar", tmp_path / "again.pt")["sha256"] == first["sha256"]  # reproducible
    coarse = load_codec(str(tmp_path / "coarse.pt"))
    info = export_model(tmp_path / "ckpt.pth.tar", tmp_path / "fine.pt", scale_levels=128)
    fine = load_codec(str(tmp_path / "fine.pt"))
    assert info["scale_levels"] == 128 and scale_levels_of(fine.net) == 128 and scale_levels_of(coarse.net) == 64
    x = photo
    # the table changes the code, never the decoded image; a stream from the other table is refused
    assert torch.equal(fine.roundtrip(x).x_hat, coarse.roundtrip(x).x_hat)
    with pytest.raises(BitstreamError):
        fine.decompress(coarse.compress(x))


@pytest.mark.parametrize("spec", ["mean-small:q3", "joint-small:q3"])
def test_shipped_mean_scale_models_code_close_to_their_estimate(spec):
    from robustnic.codecs.evaluate import evaluate_codec

    ev = evaluate_codec(load_codec(spec), bundled_photos(["coffee"], crop=256), progress=False)["results"]
    assert abs(ev["bpp"] / ev["bpp-estimated"] - 1) < 0.02, ev


def test_recorded_train_commands_parse_back_to_their_configs():
    """The command written into each manifest row is the CLI form of the run's config (so it reproduces it)."""
    import dataclasses
    import shlex

    from robustnic.cli.common import config_from_args
    from robustnic.cli.main import build_parser
    from robustnic.training.zoo import PLAN, command_line, train_command

    assert command_line("x", [("lr_drop", ["0.5:0.3", "0.8:0.1"]), ("init_from", None), ("out", "a b")]) == \
        "robustnic x --lr-drop 0.5:0.3 --lr-drop 0.8:0.1 --out 'a b'"
    # fields the recorded command leaves at their defaults (they do not change the weights)
    unrecorded = {"val_every", "checkpoint_every", "threads"}
    for planned in PLAN:
        args = build_parser().parse_args(shlex.split(train_command(planned.config, planned.run_dir))[1:])
        parsed, cfg = config_from_args(TrainConfig, args), planned.config
        differ = {f.name for f in dataclasses.fields(cfg) if getattr(parsed, f.name) != getattr(cfg, f.name)}
        assert differ <= unrecorded, (planned.spec, differ)
        assert args.out == str(planned.run_dir)


def test_shipped_models_commands_parse_back_to_their_recorded_configs():
    """Each manifest row's command line (train or finetune) gives the config the row records."""
    import dataclasses
    import json
    import shlex

    from robustnic.cli.common import config_from_args
    from robustnic.cli.main import build_parser
    from robustnic.codecs.zoo import read_manifest
    from robustnic.training.config import FinetuneConfig

    def plain(cfg) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(cfg)))

    rows = [m.info for m in read_manifest().values()]
    assert {shlex.split(r["command"])[1] for r in rows} == {"train", "finetune"}
    for row in rows:
        argv = shlex.split(row["command"])[1:]
        cls = FinetuneConfig if argv[0] == "finetune" else TrainConfig
        parsed, recorded = plain(config_from_args(cls, build_parser([argv[0]]).parse_args(argv))), row["config"]
        if cls is FinetuneConfig:  # named by today's label; the run's settings may hold the one from before 0.2
            assert parsed.pop("model") == row["finetuned_from"]["spec"]
        assert {k: parsed[k] for k in recorded if k in parsed} == {k: v for k, v in recorded.items() if k in parsed}, \
            row["family"]


def test_train_options_come_from_the_config_with_help_and_defaults():
    from robustnic.cli.common import config_from_args
    from robustnic.cli.main import build_parser
    from robustnic.training.config import cli_arguments, cli_options

    parser = build_parser(["train"])
    sub = next(a for a in parser._actions if a.dest == "command").choices["train"]
    options = {a.dest: a for a in sub._actions}
    for option in cli_options(TrainConfig):
        action = options[option.dest]
        assert action.help and "(default: " in action.help, option.name
    assert {"--arch", "--N", "--M", "--lmbda", "--lr-drop", "--clip", "--init-from", "--out"} <= set(sub._option_string_actions)
    # no options: the dataclass's defaults; every field's option reaches the config
    assert config_from_args(TrainConfig, sub.parse_args(["--out", "x"])) == TrainConfig()
    cfg = TrainConfig(architecture="mbt2018-mean", N=16, M=24, metric="ms-ssim", lmbda=2.5, steps=7, batch_size=3,
                      patch_size=192, lr=2e-4, aux_lr=2e-3, lr_drops=[(0.5, 0.1)], clip_max_norm=0.0, seed=4,
                      images=["a", "b c"], val_every=9, val_crop=64, checkpoint_every=3, init_from="x.pt",
                      threads=2, max_pixels=10)
    assert config_from_args(TrainConfig, sub.parse_args(cli_arguments(cfg) + ["--out", "x"])) == cfg
    # λ left out: CompressAI's quality-3 λ for the metric
    assert config_from_args(TrainConfig, sub.parse_args(["--metric", "ms-ssim", "--out", "x"])).lmbda == 8.73
    with pytest.raises(SystemExit):
        sub.parse_args(["--lr-drop", "0.5", "--out", "x"])


@pytest.mark.parametrize("arch", ["bmshj2018-hyperprior", "bmshj2018-factorized"])
def test_warm_start_into_wider_model_keeps_the_function(tmp_path, photo, arch):
    """A wider model (larger N and M) warm-started from a narrower one decodes the same image at first."""
    from robustnic.codecs.architectures import get_architecture
    from robustnic.codecs.checkpoint import save_checkpoint
    from robustnic.training.rd import warm_start

    torch.manual_seed(0)
    narrow = get_architecture(arch).build(8, 16)
    for p in narrow.parameters():  # move away from the initialisation so the copy is visible
        p.data.add_(0.05 * torch.randn_like(p))
    save_checkpoint({"state_dict": narrow.state_dict()}, tmp_path / "narrow.pth.tar")
    wide = get_architecture(arch).build(12, 24)
    copied, total = warm_start(wide, str(tmp_path / "narrow.pth.tar"))
    assert copied > total * 0.8
    narrow.eval(), wide.eval()
    with torch.no_grad():
        x = photo[..., :64]
        a, b = narrow(x)["x_hat"], wide(x)["x_hat"]
    assert torch.allclose(a, b, atol=1e-5)
    # without widening, mismatched tensors keep their random initialisation and the output differs
    fresh = get_architecture(arch).build(12, 24)
    warm_start(fresh, str(tmp_path / "narrow.pth.tar"), widen=False)
    fresh.eval()
    with torch.no_grad():
        assert not torch.allclose(a, fresh(x)["x_hat"], atol=1e-3)


def test_card_attack_damage_is_measured_on_real_bitstreams():
    from robustnic.training.card import attack_damage

    photos = bundled_photos(["astronaut", "chelsea"], crop=64)
    result = attack_damage(load_codec("hyperprior-small:q3"), photos, ["psnr:30", "psnr:40"], steps=5)
    assert set(result) == {"psnr:30", "psnr:40"}
    for budget, row in result.items():
        assert row["budget-ok"] and row["psnr-in"] >= float(budget.split(":")[1]) - 0.01
        assert row["psnr-drop"] == pytest.approx(row["psnr-clean"] - row["psnr-out"])
    assert result["psnr:30"]["psnr-drop"] > result["psnr:40"]["psnr-drop"] > 0


def test_card_attacks_only_models_whose_weights_or_setup_changed(tmp_path, monkeypatch):
    import json
    import shutil

    import robustnic.training.card as card
    from robustnic.codecs.zoo import WEIGHTS_DIR, read_manifest

    row = read_manifest()["hyperprior-small:q3"].info
    shutil.copy(WEIGHTS_DIR / row["file"], tmp_path / row["file"])
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [{k: v for k, v in row.items() if k != "vulnerability"}]}))
    calls = []
    monkeypatch.setattr(card, "attack_damage", lambda codec, photos, budgets, steps, seed:
                        calls.append(codec.name) or {b: {"psnr-drop": 1.0} for b in budgets})
    setup = card.VULNERABILITY | {"crop": 64}
    assert card.record_vulnerability(tmp_path, setup, progress=False) == 1
    stored = read_manifest(tmp_path)["hyperprior-small:q3"].info["vulnerability"]
    assert stored["setup"] == setup and stored["results"]["psnr:40"] == {"psnr-drop": 1.0}
    assert card.record_vulnerability(tmp_path, setup, progress=False) == 0  # up to date: nothing attacked
    assert card.record_vulnerability(tmp_path, setup | {"steps": 7}, progress=False) == 1  # new setup
    assert calls == ["hyperprior-small:q3", "hyperprior-small:q3"]


def test_time_limit_stops_after_a_checkpoint_and_a_rerun_continues(train_folder, val_images, tmp_path):
    cfg = TrainConfig(steps=30, images=[str(train_folder)], **TINY | {"checkpoint_every": 1000})
    first = Trainer(cfg, tmp_path / "run", progress=False, val_images=val_images).fit(time_limit=0)
    assert not first["finished"] and first["step"] == 1
    assert read_checkpoint_file(tmp_path / "run" / Trainer.CHECKPOINT)["step"] == 1
    second = Trainer(cfg, tmp_path / "run", progress=False, val_images=val_images)
    assert second.resumed and second.fit()["finished"] and second.step == 30

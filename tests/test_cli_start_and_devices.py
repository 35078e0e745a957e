"""Fast CLI start (no torch or compressai for --help / --version) and one device resolution for all.

* ``robustnic --help``, ``--version`` and ``robustnic CMD --help`` for every command run in a fresh
  interpreter that must not import torch or compressai; the torch-free tables the parsers are built
  from (command list, attack names, objectives, stand-ins, config defaults) match the real ones.
* :func:`robustnic.utils.runtime.resolve_device` accepts cpu, cuda, cuda:N, mps and auto and turns
  a device that is not there into one :class:`RobustnicError`; every command with ``--device``
  runs with ``--device auto`` (tiny real runs), and ``--device cuda`` without CUDA is one line, exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustnic.cli.commands import COMMANDS
from robustnic.cli.main import build_parser, main
from robustnic.data import bundled_photos, save_image
from robustnic.errors import RobustnicError
from robustnic.utils.runtime import resolve_device

TINY = "bmshj2018-hyperprior:N=8:M=16:random"
HEAVY = ("torch", "compressai")

pytestmark = pytest.mark.usefixtures("one_thread")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# ----- fast start -----------------------------------------------------------------------------------
PROBE = r"""
import json, sys
from robustnic.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "heavy": [m for m in %r if m in sys.modules]}), file=sys.stderr)
""" % (HEAVY,)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], *[[name, "--help"] for name in COMMANDS]],
                         ids=lambda argv: " ".join(argv))
def test_help_and_version_import_neither_torch_nor_compressai(argv):
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    probe = json.loads(proc.stderr.strip().splitlines()[-1])
    assert probe == {"code": 0, "heavy": []}, proc.stderr
    assert proc.stdout.startswith("robustnic 0.") if argv == ["--version"] else "usage: robustnic" in proc.stdout


def test_command_table_matches_the_registered_parsers():
    """COMMANDS (what ``robustnic --help`` lists) names every command each module registers, with its help."""
    full = build_parser()
    action = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    assert list(action.choices) == list(COMMANDS)
    assert {c.dest: c.help for c in action._choices_actions} == {name: c.help for name, c in COMMANDS.items()}
    for name in COMMANDS:  # building the parser for one command registers it completely
        assert _subparsers(build_parser([name]))[name].add_help


def test_torch_free_tables_match_the_real_registries():
    from robustnic.attacks import ATTACKS, BASELINES, OBJECTIVES
    from robustnic.attacks.registry import ATTACK_NAMES, OBJECTIVE_NAMES
    from robustnic.codecs.architectures import ARCHITECTURES
    from robustnic.codecs.base import STANDINS
    from robustnic.codecs import load_codec
    from robustnic.training.config import FinetuneConfig
    from robustnic.training.rd import TrainConfig

    assert tuple(ATTACKS) == ATTACK_NAMES and all(ATTACKS[n].name == n for n in ATTACK_NAMES)
    assert set(BASELINES) <= set(ATTACK_NAMES)
    assert tuple(OBJECTIVES) == OBJECTIVE_NAMES and all(OBJECTIVES[n].name == n for n in OBJECTIVE_NAMES)
    for name, arch in ARCHITECTURES.items():  # every lazily named class exists and is recognised back
        net = arch.build(8, 8) if arch.takes_m else arch.build(8)
        assert type(net) is arch.cls and arch.cls.__module__.startswith("compressai.")
    codec = load_codec(TINY)
    x = bundled_photos(["coffee"], crop=64)["coffee"]
    for standin in STANDINS:
        assert codec.forward(x, standin=standin).x_hat.shape == x.shape
    # the CLI's defaults are the configs' own
    sub = _subparsers(build_parser(["train", "finetune", "attack"]))
    train, finetune, attack = (vars(sub[c].parse_args(a)) for c, a in
                               [("train", ["--out", "x"]), ("finetune", ["--out", "x"]), ("attack", [])])
    t, f = TrainConfig(), FinetuneConfig()
    assert (train["arch"], train["N"], train["M"], train["steps"], train["lr"]) == (t.architecture, t.N, t.M, t.steps, t.lr)
    assert {k: finetune[k] for k in ("model", "attack", "budget", "standin", "target", "steps")} == \
        {k: getattr(f, k) for k in ("model", "attack", "budget", "standin", "target", "steps")}
    assert dataclasses.is_dataclass(t) and attack["standin"] in STANDINS
    assert sorted(sub["attack"]._option_string_actions["--method"].choices) == sorted([*ATTACK_NAMES, "all"])


# ----- device resolution ----------------------------------------------------------------------------
def test_resolve_device_names():
    assert resolve_device(None) == resolve_device("cpu") == resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if expected == "cpu" and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected
    for bad in ("gpu", "cuda:x", "cuda:-1", "tpu", "", "cpu:0:1"):
        with pytest.raises(RobustnicError, match="unknown device"):
            resolve_device(bad)
    with pytest.raises(RobustnicError, match="string or torch.device"):
        resolve_device(3)  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_missing_cuda_and_mps_are_one_clear_error():
    for name in ("cuda", "cuda:0", "cuda:1", torch.device("cuda")):
        with pytest.raises(RobustnicError, match="CUDA is not available") as info:
            resolve_device(name)
        assert "\n" not in str(info.value)
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        with pytest.raises(RobustnicError, match="MPS is not available"):
            resolve_device("mps")


def test_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(RobustnicError, match="has 2 CUDA device"):
        resolve_device("cuda:2")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_api_entry_points_resolve_devices(tmp_path):
    from robustnic.codecs import LearnedCodec, load_codec
    from robustnic.studies.grid import run_grid
    from robustnic.training import TrainConfig, Trainer

    codec = load_codec(TINY, device="auto")
    assert codec.device == torch.device("cpu") and codec.to("auto").device == torch.device("cpu")
    with pytest.raises(RobustnicError, match="CUDA"):
        load_codec("jpeg:q75", device="cuda")
    with pytest.raises(RobustnicError, match="CUDA"):
        LearnedCodec(codec.net, device="cuda")
    with pytest.raises(RobustnicError, match="unknown device"):
        Trainer(TrainConfig(N=8, M=16, steps=1), tmp_path / "t", device="gpu", val_images={})
    with pytest.raises(RobustnicError, match="CUDA"):
        run_grid([], tmp_path / "s.sqlite", device="cuda", progress=False)


# ----- every command with --device ------------------------------------------------------------------
@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A 64x64 and a 128x128 PNG, a folder of 128x128 training images, a JPEG stream and a grid spec."""
    d = tmp_path_factory.mktemp("device-inputs")
    photos = bundled_photos(["coffee", "chelsea"], crop=128)
    save_image(photos["coffee"][..., :64, :64], d / "small.png")
    for name, x in photos.items():
        save_image(x, d / "train" / f"{name}.png")
    assert main(["compress", str(d / "small.png"), "-o", str(d / "small.rnic"), "-m", "jpeg:q50"]) == 0
    (d / "grid.yaml").write_text(
        "seed: 0\ncrop: 64\nimages: [bundled:coffee]\nstudy:\n"
        f"  - kind: rd\n    models: ['{TINY}']\n"
        f"  - kind: attack\n    models: ['{TINY}']\n    attacks: [noise]\n    budgets: ['psnr:35']\n    steps: 1\n"
    )
    return d


def _device_argv(cmd: str, d, out) -> list[str]:
    """A tiny real run of ``cmd`` (seconds on a CPU)."""
    small, train = str(d / "small.png"), str(d / "train")
    study = ["--images", small, "--crop", "64", "-m", TINY, "--out", str(out), "--no-progress"]
    return {
        "analyze": ["analyze", "-m", TINY, "--images", small, "--steps", "1", "--iters", "4", "--out", str(out),
                    "--no-progress"],
        "attack": ["attack", "-m", TINY, "--images", small, "--steps", "1", "--out", str(out), "--no-progress"],
        "bench": ["bench", str(d / "grid.yaml"), "--store", str(out / "s.sqlite"), "--no-progress"],
        "compress": ["compress", small, "-o", str(out / "x.rnic"), "-m", TINY],
        "decompress": ["decompress", str(d / "small.rnic"), "-o", str(out / "x.png")],
        "curves": ["curves", *study, "--budgets", "psnr:40", "--steps", "1"],
        "defend": ["defend", "-m", TINY, "--images", small, "--steps", "1", "--defense", "bits:5"],
        "eval": ["eval", "-m", TINY, "--images", small, "--crop", "64", "-o", str(out / "rd"), "--no-progress"],
        "finetune": ["finetune", "-m", TINY, "--out", str(out), "--images", train, "--steps", "1", "--batch-size", "1",
                     "--patch-size", "64", "--val-attack-steps", "1", "--no-progress"],
        "recompress": ["recompress", *study, "--generations", "2", "--snapshots", "1,2", "--classical", "jpeg"],
        "train": ["train", "--N", "8", "--M", "16", "--steps", "1", "--batch-size", "1", "--patch-size", "64",
                  "--images", train, "--out", str(out), "--no-progress"],
        "transfer": ["transfer", *study, "--no-cross-image", "--steps", "1", "-t", "jpeg:q75"],
    }[cmd]


DEVICE_COMMANDS = sorted(name for name, p in _subparsers(build_parser()).items() if "--device" in p._option_string_actions)


def test_every_device_command_is_covered(tmp_path):
    for cmd in DEVICE_COMMANDS:
        _device_argv(cmd, tmp_path, tmp_path)  # a KeyError names a command with --device this test misses


@pytest.mark.parametrize("cmd", DEVICE_COMMANDS)
def test_every_command_runs_with_device_auto(cmd, inputs, tmp_path, capsys):
    argv = _device_argv(cmd, inputs, tmp_path / "out")
    rc = main([*argv, "--device", "auto"])
    err = capsys.readouterr().err
    assert rc == 0, err[-2000:]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
@pytest.mark.parametrize("cmd", DEVICE_COMMANDS)
def test_device_cuda_without_cuda_is_one_line_and_exit_2(cmd, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main([*_device_argv(cmd, inputs, out), "--device", "cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"robustnic {cmd}: error: device 'cuda'") and "CUDA is not available" in err[0]
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_device_cuda_from_a_real_process_is_one_line(inputs, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "robustnic.cli.main", "compress", str(inputs / "small.png"),
                           "-o", str(tmp_path / "x.rnic"), "--device", "cuda"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_gpu_smoke_without_cuda_is_one_line_and_exit_0():
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_smoke.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stdout.strip().splitlines()) == 1 and "no CUDA device" in proc.stdout

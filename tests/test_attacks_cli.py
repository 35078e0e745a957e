"""``robustnic attack``: files written, numbers consistent with the images on disk, clear errors."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from robustnic.attacks import PSNR, Linf
from robustnic.cli.main import main
from robustnic.data import bundled_photos, load_image, save_image

TINY = "bmshj2018-hyperprior:N=8:M=16:random"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two odd-sized (45x71) PNGs."""
    d = tmp_path_factory.mktemp("attack-images")
    for name, x in bundled_photos(["coffee", "chelsea"], crop=(45, 71)).items():
        save_image(x, d / f"{name}.png")
    return d


def test_cli_attack_writes_images_reconstructions_json_and_csv(folder, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["attack", "--model", TINY, "--images", str(folder), "--method", "paper", "--method", "noise",
               "--budget", "psnr:35", "--budget", "linf:4", "--steps", "2", "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "results.json").read_text())
    assert len(report["rows"]) == 2 * 2 * 2 and len(report["summary"]) == 4
    assert report["config"]["methods"] == ["paper", "noise"] and report["config"]["steps"] == 2
    budgets = {"psnr:35": PSNR(35), "linf:4": Linf(4)}
    for row in report["rows"]:
        source = load_image(folder / f"{row['image']}.png")
        x_adv = load_image(out / row["adversarial-png"])
        assert budgets[row["budget"]].satisfied(source, x_adv) and row["budget-ok"] is True
        assert row["psnr-in"] >= 35 if row["budget"] == "psnr:35" else row["linf-in"] <= 4
    recon = sorted(p.name for p in (out / "reconstructions").iterdir())
    assert "coffee--clean.png" in recon and "chelsea--paper--psnr-35.png" in recon and len(recon) == 10
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {"image", "method", "budget", "psnr-in", "psnr-out", "bpp-adv"} <= set(rows[0])
    with open(out / "summary.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    printed = capsys.readouterr().out
    assert "PSNR attacked" in printed and "psnr:35" in printed


def test_cli_attack_targeted_with_a_mask(folder, tmp_path):
    out = tmp_path / "out"
    rc = main(["attack", "--model", TINY, "--images", str(folder / "coffee.png"), "--objective", "targeted",
               "--target", str(folder / "chelsea.png"), "--mask", "10,5,60,40", "--steps", "2",
               "--budget", "psnr:30", "--out", str(out), "--json"])
    assert rc == 0
    assert json.loads((out / "results.json").read_text())["config"]["objective"] == "targeted"


@pytest.mark.parametrize("args, message", [
    (["--budget", "psnr:200"], "allows no 8-bit change"),
    (["--budget", "psnr:fast"], "budget"),
    (["--objective", "targeted"], "needs --target"),
    (["--mask", "0,0,500,500", "--objective", "targeted", "--target", "SELF"], "mask rectangle"),
])
def test_cli_attack_bad_input_exits_2_with_one_line(args, message, folder, tmp_path, capsys):
    args = [str(folder / "coffee.png") if a == "SELF" else a for a in args]
    rc = main(["attack", "--model", TINY, "--images", str(folder), "--steps", "1", "--out", str(tmp_path), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and message in err[-1] and err[-1].startswith("robustnic attack: error:")


def test_cli_attack_on_an_empty_folder_or_mismatched_target(folder, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["attack", "--model", TINY, "--images", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "no image files" in capsys.readouterr().err
    other = tmp_path / "big.png"
    save_image(torch.zeros(1, 3, 64, 64), other)
    rc = main(["attack", "--model", TINY, "--images", str(folder), "--objective", "targeted", "--target", str(other),
               "--steps", "1", "--out", str(tmp_path / "o")])
    assert rc == 2 and "target" in capsys.readouterr().err

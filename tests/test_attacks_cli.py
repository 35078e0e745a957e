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


# ----- resuming, progress -----------------------------------------------------------------------------
def _attack_args(folder, out, *extra: str) -> list[str]:
    return ["attack", "--model", TINY, "--images", str(folder), "--method", "paper", "--budget", "psnr:35",
            "--steps", "2", "--batch-size", "1", "--no-progress", "--out", str(out), *extra]


def _stable(row: dict) -> dict:
    """A result row without its timings (they differ between runs)."""
    return {k: v for k, v in row.items() if "time" not in k}


def test_cli_attack_interrupted_keeps_finished_images_and_resumes(folder, tmp_path, monkeypatch, capsys):
    import robustnic.attacks.pipeline as pipeline  # the one attack path: every result is verified there

    real, calls = pipeline.verify_images, []

    def verify(*args, **kwargs):
        calls.append(1)
        if interrupt_at and len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "verify_images", verify)
    out = tmp_path / "out"
    interrupt_at = 2  # Ctrl-C while the second image (second batch) is being verified
    assert main(_attack_args(folder, out)) == 130
    err = capsys.readouterr().err
    assert "kept 1 finished result(s)" in err and "rerun the same command to resume" in err
    kept = json.loads((out / "results.json").read_text())
    assert [r["image"] for r in kept["rows"]] == ["chelsea"] and kept["summary"][0]["n"] == 1
    assert (out / kept["rows"][0]["adversarial-png"]).is_file()
    assert len((out / "results.csv").read_text().splitlines()) == 2

    calls.clear()
    interrupt_at = 0
    assert main(_attack_args(folder, out)) == 0
    assert len(calls) == 1, "the rerun attacks only the unfinished image"
    assert "resuming" in capsys.readouterr().err
    resumed = json.loads((out / "results.json").read_text())
    assert [r["image"] for r in resumed["rows"]] == ["chelsea", "coffee"] and resumed["summary"][0]["n"] == 2
    assert resumed["rows"][0] == kept["rows"][0]
    with open(out / "results.csv") as f:
        assert [r["image"] for r in csv.DictReader(f)] == ["chelsea", "coffee"]

    # the same numbers as a run that was never interrupted
    assert main(_attack_args(folder, tmp_path / "fresh")) == 0
    fresh = json.loads((tmp_path / "fresh" / "results.json").read_text())
    assert [_stable(r) for r in fresh["rows"]] == [_stable(r) for r in resumed["rows"]]

    # a finished run reruns nothing
    calls.clear()
    assert main(_attack_args(folder, out)) == 0 and calls == []


@pytest.mark.parametrize("change, named", [
    (["--steps", "3"], "steps"),
    (["--budget", "psnr:30"], "budgets"),
    (["--method", "noise"], "methods"),
    (["--seed", "1"], "fingerprint, seed"),
])
def test_cli_attack_refuses_to_mix_other_settings_into_a_folder(change, named, folder, tmp_path, capsys):
    out = tmp_path / "out"
    args = _attack_args(folder, out)
    assert main(args) == 0
    before = (out / "results.json").read_text()
    for flag, value in zip(change[::2], change[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"other settings ({named})" in err[0] and "use another --out" in err[0], err
    assert (out / "results.json").read_text() == before
    # the device and batch size are not settings: a rerun with others resumes
    assert main(_attack_args(folder, out, "--batch-size", "2", "--device", "auto")) == 0


def test_cli_attack_refuses_a_folder_of_other_results(folder, tmp_path, capsys):
    (tmp_path / "results.json").write_text(json.dumps({"config": {}, "rows": []}))
    assert main(_attack_args(folder, tmp_path)) == 2
    assert "not written by a resumable attack run" in capsys.readouterr().err


def test_cli_attack_failed_start_leaves_no_settings_behind(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_attack_args(folder, out, "--budget", "psnr:200")) == 2  # refused before any image
    assert not (out / "results.json").exists()
    assert main(_attack_args(folder, out)) == 0


def test_cli_attack_no_progress_writes_no_control_characters(folder, tmp_path, capfd):
    assert main(_attack_args(folder, tmp_path / "out", "--method", "noise")) == 0
    captured = capfd.readouterr()
    assert "\r" not in captured.err and "\x1b" not in captured.err and "\r" not in captured.out
    assert captured.err == ""

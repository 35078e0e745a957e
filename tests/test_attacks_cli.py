"""``robustnic attack``: files written, numbers consistent with the images on disk, clear errors."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from PIL import Image

from robustnic.attacks import PSNR, Linf, run_attacks
from robustnic.attacks.runner import PERTURBATION_GAIN, perturbation_image, write_results
from robustnic.cli.main import main
from robustnic.codecs import load_codec
from robustnic.data import bundled_photos, load_image, save_image
from robustnic.utils.tables import from_json

TINY = "bmshj2018-hyperprior:N=8:M=16:random"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two odd-sized (45x71) PNGs."""
    d = tmp_path_factory.mktemp("attack-images")
    for name, x in bundled_photos(["coffee", "chelsea"], crop=(45, 71)).items():
        save_image(x, d / f"{name}.png")
    return d


def _decoded(path, size) -> torch.Tensor:
    """An image file that decodes to a non-constant ``size`` (H, W) image."""
    x = load_image(path)
    assert tuple(x.shape[-2:]) == size, (path, tuple(x.shape))
    assert float(x.std()) > 0, f"{path} is constant"
    return x


def test_cli_attack_writes_summary_per_image_tables_and_every_image(folder, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["attack", "--model", TINY, "--images", str(folder), "--method", "paper", "--method", "noise",
               "--budget", "psnr:35", "--budget", "linf:4", "--steps", "2", "--seed", "3", "--no-progress",
               "--out", str(out)])
    assert rc == 0
    assert not any((out / name).exists() for name in ("results.json", "results.csv", "adversarial", "reconstructions"))
    summary = json.loads((out / "summary.json").read_text())
    per_image = json.loads((out / "per_image.json").read_text())
    rows = per_image["rows"]
    assert len(rows) == 2 * 2 * 2 and len(summary["summary"]) == 4 and summary["n-images"] == 2
    assert summary["config"]["methods"] == ["paper", "noise"] and summary["config"]["steps"] == 2
    assert summary["settings"] == per_image["settings"] and summary["perturbation"]["k"] == PERTURBATION_GAIN

    # every image file: the right size, not constant; the budget holds on the saved adversarial file
    budgets = {"psnr:35": PSNR(35), "linf:4": Linf(4)}
    for row in rows:
        source = _decoded(out / row["source-png"], (45, 71))
        assert torch.equal(source, load_image(folder / f"{row['image']}.png"))  # the image as attacked
        x_adv = _decoded(out / row["adversarial-png"], (45, 71))
        assert row["adversarial-png"] == f"images/{row['image']}/{row['method']}--{row['budget'].replace(':', '-')}" \
                                         "/adversarial.png"
        assert budgets[row["budget"]].satisfied(source, x_adv) and row["budget-ok"] is True
        assert row["psnr-in"] >= 35 if row["budget"] == "psnr:35" else row["linf-in"] <= 4
        for key in ("clean-reconstruction-png", "reconstruction-png"):
            _decoded(out / row[key], (45, 71))
        perturbation = _decoded(out / row["perturbation-png"], (45, 71))
        assert torch.allclose(perturbation, perturbation_image(source, x_adv), atol=0.5 / 255)
    for image in ("coffee", "chelsea"):
        with Image.open(out / "images" / image / "triplets.png") as fig:
            assert fig.width >= 5 * 128 and fig.height > 4 * 128 * 45 / 71  # five columns, four rows of tiles
            low, high = fig.convert("L").getextrema()
            assert high - low > 100

    # the CSVs hold the same rows and means; every summary mean is the mean of its per-image rows
    with open(out / "per_image.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == 8 and {"image", "method", "budget", "psnr-in", "psnr-out", "bpp-adv",
                                   "source-png", "perturbation-png"} <= set(csv_rows[0])
    with open(out / "summary.csv") as f:
        assert [(r["method"], r["budget"], r["n"]) for r in csv.DictReader(f)] == \
            [(s["method"], s["budget"], "2") for s in summary["summary"]]
    for mean in summary["summary"]:
        group = [r for r in rows if (r["method"], r["budget"]) == (mean["method"], mean["budget"])]
        assert mean["n"] == len(group) == 2
        columns = [k for k in mean if k not in ("method", "budget", "n") and not k.startswith("n:")]
        assert {"psnr-in", "psnr-clean", "psnr-out", "bpp-clean", "bpp-adv", "budget-ok"} <= set(columns)
        for key in columns:  # finite values only (an infinite PSNR of identical images enters no mean)
            values = [float(v) for r in group if isinstance(v := from_json(r[key]), (int, float)) and math.isfinite(v)]
            expected = sum(values) / len(values) if values else None
            assert mean[key] == pytest.approx(expected), key
            assert mean.get(f"n:{key}", 2) == len(values), key
    printed = capsys.readouterr().out
    assert "PSNR attacked" in printed and "psnr:35" in printed and "summary.json" in printed


def test_write_results_api_writes_the_same_layout(folder, tmp_path):
    torch.manual_seed(0)
    codec = load_codec(TINY)
    images = {name: load_image(folder / f"{name}.png") for name in ("coffee", "chelsea")}
    results = run_attacks(codec, images, methods=["noise"], budgets=["psnr:30"], seed=0)
    report = write_results(results, tmp_path, {"model": TINY})
    assert report["config"] == {"model": TINY} and report["summary"][0]["n"] == 2
    for name in ("coffee", "chelsea"):
        folder_ = tmp_path / "images" / name
        for path in ("source.png", "clean-reconstruction.png", "triplets.png", "noise--psnr-30/adversarial.png",
                     "noise--psnr-30/reconstruction.png", "noise--psnr-30/perturbation.png"):
            assert (folder_ / path).is_file(), path
    assert len(json.loads((tmp_path / "per_image.json").read_text())["rows"]) == 2


def test_cli_attack_targeted_with_a_mask(folder, tmp_path):
    out = tmp_path / "out"
    rc = main(["attack", "--model", TINY, "--images", str(folder / "coffee.png"), "--objective", "targeted",
               "--target", str(folder / "chelsea.png"), "--mask", "10,5,60,40", "--steps", "2",
               "--budget", "psnr:30", "--out", str(out), "--json"])
    assert rc == 0
    assert json.loads((out / "summary.json").read_text())["config"]["objective"] == "targeted"
    assert (out / "images" / "coffee" / "triplets.png").is_file()


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
    kept = json.loads((out / "per_image.json").read_text())
    assert [r["image"] for r in kept["rows"]] == ["chelsea"]
    assert json.loads((out / "summary.json").read_text())["summary"][0]["n"] == 1
    assert (out / kept["rows"][0]["adversarial-png"]).is_file() and (out / "images/chelsea/triplets.png").is_file()
    assert len((out / "per_image.csv").read_text().splitlines()) == 2

    calls.clear()
    interrupt_at = 0
    assert main(_attack_args(folder, out)) == 0
    assert len(calls) == 1, "the rerun attacks only the unfinished image"
    assert "resuming" in capsys.readouterr().err
    resumed = json.loads((out / "per_image.json").read_text())
    assert [r["image"] for r in resumed["rows"]] == ["chelsea", "coffee"]
    assert json.loads((out / "summary.json").read_text())["summary"][0]["n"] == 2
    assert resumed["rows"][0] == kept["rows"][0]
    with open(out / "per_image.csv") as f:
        assert [r["image"] for r in csv.DictReader(f)] == ["chelsea", "coffee"]

    # the same numbers as a run that was never interrupted
    assert main(_attack_args(folder, tmp_path / "fresh")) == 0
    fresh = json.loads((tmp_path / "fresh" / "per_image.json").read_text())
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
    before = (out / "per_image.json").read_text()
    for flag, value in zip(change[::2], change[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"other settings ({named})" in err[0] and "use another --out" in err[0], err
    assert (out / "per_image.json").read_text() == before
    # the device and batch size are not settings: a rerun with others resumes
    assert main(_attack_args(folder, out, "--batch-size", "2", "--device", "auto")) == 0


@pytest.mark.parametrize("name", ["per_image.json", "summary.json", "results.json"])
def test_cli_attack_refuses_a_folder_of_other_results(name, folder, tmp_path, capsys):
    (tmp_path / name).write_text(json.dumps({"config": {}, "rows": []}))  # results.json: an older attack run's
    assert main(_attack_args(folder, tmp_path)) == 2
    assert "not written by a resumable attack run" in capsys.readouterr().err


def test_cli_attack_failed_start_leaves_no_settings_behind(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_attack_args(folder, out, "--budget", "psnr:200")) == 2  # refused before any image
    assert not out.exists() or not any(out.iterdir())
    assert main(_attack_args(folder, out)) == 0


def test_cli_attack_no_progress_writes_no_control_characters(folder, tmp_path, capfd):
    assert main(_attack_args(folder, tmp_path / "out", "--method", "noise")) == 0
    captured = capfd.readouterr()
    assert "\r" not in captured.err and "\x1b" not in captured.err and "\r" not in captured.out
    assert captured.err == ""


@pytest.mark.parametrize("command", ["attack", "defend", "curves", "transfer"])
def test_every_attacking_command_takes_color_and_rd_weight(command):
    from robustnic.cli.commands.attack import changed_settings
    from robustnic.cli.main import build_parser

    required = {"attack": ["-m", "x"], "defend": ["-m", "x"], "curves": ["-m", "x"], "transfer": ["-m", "x"]}[command]
    parser = build_parser([command])
    args = parser.parse_args([command, *required, "--color", "ycbcr", "--rd-weight", "0.5"])
    assert (args.color, args.rd_weight) == ("ycbcr", 0.5)
    own = ("reference",) if command == "defend" else ()  # defend defines --reference itself (repeatable)
    assert changed_settings(args, own) == {"color": "ycbcr", "rd_weight": 0.5}  # what curves / transfer put in specs
    defaults = parser.parse_args([command, *required])
    assert changed_settings(defaults, own) == {}  # unchanged options stay out of grid specs (job keys as before)

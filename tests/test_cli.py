"""The foundation's CLI commands: compress/decompress through files, eval outputs, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from robustnic.cli.main import main
from robustnic.codecs import load_codec
from robustnic.data.images import load_image, save_image
from tests.conftest import TINY


def test_compress_decompress_files_match_the_api(tmp_path, odd_photo, capsys):
    save_image(odd_photo, tmp_path / "in.png")
    torch.manual_seed(0)
    spec = f"mbt2018-mean:{TINY}"
    assert main(["compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "x.rnic"), "--model", spec]) == 0
    # a random model is rebuilt identically under the same seed, so its fingerprint matches
    torch.manual_seed(0)
    assert main(["decompress", str(tmp_path / "x.rnic"), "-o", str(tmp_path / "out.png"), "--model", spec]) == 0
    torch.manual_seed(0)
    codec = load_codec(spec)
    expected = codec.decompress((tmp_path / "x.rnic").read_bytes())
    decoded = load_image(tmp_path / "out.png")
    assert decoded.shape == odd_photo.shape
    assert torch.equal(decoded, expected.mul(255).round().div(255))
    assert "bpp" in capsys.readouterr().out


def test_decompress_finds_classical_codecs_from_the_header(tmp_path, photo):
    save_image(photo, tmp_path / "in.png")
    assert main(["compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "x.rnic"), "-m", "webp:q70"]) == 0
    assert main(["decompress", str(tmp_path / "x.rnic"), "-o", str(tmp_path / "out.png")]) == 0
    assert load_image(tmp_path / "out.png").shape == photo.shape


def test_decompress_max_pixels_refuses_large_declared_images(tmp_path, photo, capsys):
    save_image(photo, tmp_path / "in.png")
    assert main(["compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "x.rnic"), "-m", "jpeg:q50"]) == 0
    args = ["decompress", str(tmp_path / "x.rnic"), "-o", str(tmp_path / "out.png")]
    assert main(args + ["--max-pixels", str(64 * 96 - 1)]) == 2
    assert not (tmp_path / "out.png").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0], err
    assert main(args + ["--max-pixels", str(64 * 96)]) == 0


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert main(["compress", str(tmp_path / "bad.png"), "-o", str(tmp_path / "x.rnic"), "-m", "jpeg:q50"]) == 2
    assert not (tmp_path / "x.rnic").exists()
    (tmp_path / "junk.rnic").write_bytes(b"RNIC" + bytes(20))
    assert main(["decompress", str(tmp_path / "junk.rnic"), "-o", str(tmp_path / "o.png"), "-m", "jpeg:q50"]) == 2
    assert not (tmp_path / "o.png").exists()
    (tmp_path / "empty").mkdir()
    assert main(["eval", "-m", "jpeg:q50", "--images", str(tmp_path / "empty"), "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("robustnic ") and "error:" in line for line in err)


def test_eval_several_models_writes_json_and_csv(tmp_path, photo):
    for i in range(2):
        save_image(photo.flip(-1) if i else photo, tmp_path / "imgs" / f"p{i}.png")
    assert main(["eval", "-m", "jpeg:q30", "-m", "jpeg:q90", "--images", str(tmp_path / "imgs"),
                 "-o", str(tmp_path / "rd"), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "rd.json").read_text())
    assert summary["models"] == ["jpeg:q30", "jpeg:q90"]
    bpp, db = summary["results"]["bpp"], summary["results"]["psnr-rgb"]
    assert bpp[0] < bpp[1] and db[0] < db[1]
    assert len((tmp_path / "rd.csv").read_text().strip().splitlines()) == 1 + 2 * 3


@pytest.mark.parametrize(
    "mode,make",
    [
        ("L", lambda: Image.fromarray(np.full((5, 7), 200, np.uint8), "L")),
        ("I;16", lambda: Image.fromarray(np.full((5, 7), 65535, np.uint16))),
        ("P", lambda: Image.new("RGB", (7, 5), (10, 20, 30)).convert("P", palette=Image.Palette.ADAPTIVE)),
        ("RGBA", lambda: Image.new("RGBA", (7, 5), (0, 0, 0, 0))),
        ("CMYK", lambda: Image.new("CMYK", (7, 5), (0, 0, 0, 0))),
    ],
)
def test_image_modes_are_converted_as_documented(mode, make, tmp_path):
    img = make()
    assert img.mode == mode
    path = tmp_path / ("x.tif" if mode in ("I;16", "CMYK") else "x.png")
    img.save(path)
    x = load_image(path)
    assert x.shape == (1, 3, 5, 7) and x.dtype == torch.float32
    expected = {"L": 200, "I;16": 255, "P": None, "RGBA": 255, "CMYK": 255}[mode]
    if expected is not None:
        assert torch.all(x == expected / 255)  # gray replicated; 16-bit scaled; alpha over white
    else:
        assert torch.allclose(x[0, :, 0, 0], torch.tensor([10, 20, 30]) / 255)


# ----- what a researcher reads (#19) -----------------------------------------------------------------
def test_compress_labels_payload_and_file_bpp(tmp_path, photo, capsys):
    from robustnic.codecs.base import payload_bits

    save_image(photo, tmp_path / "in.png")
    assert main(["compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "x.rnic"), "-m", "jpeg:q50"]) == 0
    out = capsys.readouterr().out
    data = (tmp_path / "x.rnic").read_bytes()
    pixels = photo.shape[-2] * photo.shape[-1]
    payload = next(line for line in out.splitlines() if "bpp (payload):" in line)
    file = next(line for line in out.splitlines() if "bpp (file):" in line)
    assert f"{payload_bits(data) / pixels:.4f}" in payload
    assert f"{len(data) * 8 / pixels:.4f}" in file and "header" in file
    assert payload_bits(data) < len(data) * 8


def test_eval_skips_unreadable_files_warns_about_crops_and_exits_1(tmp_path, photo, capsys):
    """One unreadable file: a warning naming it, the others evaluated and written, then exit 1 with
    'N of M images could not be read'. A crop larger than an image: a warning naming it and both sizes."""
    folder = tmp_path / "imgs"
    save_image(photo, folder / "normal.png")  # 96x64
    save_image(photo[..., :10, :10], folder / "tiny.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    rc = main(["eval", "-m", "jpeg:q50", "--images", str(folder), "--crop", "80", "-o", str(tmp_path / "rd"),
               "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 1, err
    lines = err.strip().splitlines()
    assert sum("broken.png" in line for line in lines) == 1
    assert any(line.startswith("robustnic eval: warning: skipped") and "broken.png" in line for line in lines)
    assert lines[-1].startswith("robustnic eval: 1 of 3 images could not be read")
    crop = {name: next(line for line in lines if f"warning: {name} is" in line) for name in ("normal", "tiny")}
    assert "96x64" in crop["normal"] and "80x80" in crop["normal"] and "using 80x64" in crop["normal"]
    assert "10x10" in crop["tiny"] and "using 10x10" in crop["tiny"]
    summary = json.loads((tmp_path / "rd.json").read_text())
    assert sorted(summary["per_image"]["jpeg:q50"]) == ["normal", "tiny"]
    assert summary["per_image"]["jpeg:q50"]["normal"]["bpp"] == summary["results"]["bpp"][0]  # tiny left out
    header = out.splitlines()[0]
    assert "bpp (payload)" in header and "bpp (file)" in header and "images" in header
    assert "mean over 1 of 2 images" in out and "tiny" in out


def test_eval_folder_none_of_whose_files_reads_is_an_error(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / name).write_bytes(b"not an image")
    assert main(["eval", "-m", "jpeg:q50", "--images", str(folder), "-o", str(tmp_path / "rd")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and err[-1].startswith("robustnic eval: error:") and "none of the 2" in err[-1]
    assert not (tmp_path / "rd.json").exists()


def test_eval_crop_that_fits_is_silent(tmp_path, photo, capsys):
    save_image(photo, tmp_path / "p.png")
    assert main(["eval", "-m", "jpeg:q50", "--images", str(tmp_path / "p.png"), "--crop", "32",
                 "-o", str(tmp_path / "rd"), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    assert json.loads((tmp_path / "rd.json").read_text())["mean_over"]["jpeg:q50"]["images"] == 1


def test_models_table_is_aligned_for_any_name_and_names_its_photos(monkeypatch, capsys):
    from robustnic.codecs import zoo
    from robustnic.data.photos import HELDOUT_PHOTOS

    rows = zoo.list_models()
    long = rows[0] | {"spec": "a-very-long-family-name-for-alignment-robust:q3",
                      "architecture": "cheng2020-attn-with-a-longer-name", "metric": "ms-ssim-long"}
    monkeypatch.setattr(zoo, "list_models", lambda: [long, *rows])
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = lines[: 2 + len(rows)]
    header = table[0]
    for heading in ("architecture", "metric", "bpp (payload)", "PSNR (dB)"):
        start = header.index(heading)
        for line in table[1:]:  # every row's cell starts (left-aligned) or ends (numbers) at the heading
            if heading in ("architecture", "metric"):
                assert line[start - 2 : start] == "  " and line[start] != " ", (heading, line)
            else:
                end = start + len(heading)
                assert line[end - 1] != " " and (end == len(line) or line[end] == " "), (heading, line)
    note = next(line for line in lines if "held-out photos" in line)
    assert all(name in note for name in HELDOUT_PHOTOS) and "bpp (payload)" in note


def test_models_json(capsys):
    from robustnic.codecs.zoo import list_models
    from robustnic.data.photos import HELDOUT_PHOTOS

    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["spec"] for m in data["models"]] == [m["spec"] for m in list_models()]
    assert data["rd_photos"]["names"] == list(HELDOUT_PHOTOS) and "bmshj2018-hyperprior" in data["architectures"]

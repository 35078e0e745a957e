"""The HTML report: self-contained, every section present, numbers from the store; panels and figures."""

from __future__ import annotations

import base64
import csv
import io
import re

import pytest
import torch
from PIL import Image

from robustnic.cli.main import main
from robustnic.report import amplified_perturbation, attack_panel, build_report, zoom_window
from robustnic.report.html import family
from robustnic.report.panels import panel_array
from robustnic.studies import Artifact, ResultStore, Row, TransferMatrix
from robustnic.studies.jobs import png_bytes


def _img(seed: int, size: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, size, size, generator=g).mul(255).round().div(255)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with hand-made rows of every kind (no codec runs: the report only reads rows)."""
    path = tmp_path_factory.mktemp("store") / "s.sqlite"
    x = _img(0)
    x_adv = (x + 0.02 * torch.sign(_img(1) - 0.5)).clamp(0, 1).mul(255).round().div(255)
    rc = x.clone()
    ra = rc.clone()
    ra[..., 30:40, 5:15] = 1.0  # the attacked reconstruction differs here
    with ResultStore(path) as s:
        for i, (model, q, bpp, p) in enumerate([("jpeg:q30", 30, 0.9, 28.0), ("jpeg:q70", 70, 1.6, 33.0),
                                                ("hyperprior-small:q3", 2, 0.4, 30.5)]):
            s.put(Row(f"rd{i}", "rd", {"kind": "rd", "model": model, "defense": "none", "crop": 48,
                                         "image": {"name": "a"}}, "v1",
                      {"bpp": bpp, "bpp-file": bpp + 0.01, "psnr-rgb": p, "ms-ssim-rgb": None}))
        for i, (budget, out) in enumerate([("psnr:30", 17.5), ("psnr:40", 23.25), ("psnr:50", 29.0)]):
            config = {"kind": "attack", "model": "hyperprior-small:q3", "defense": "none", "attack": "paper",
                      "budget": budget, "objective": "distortion", "standin": "none", "steps": 10,
                      "adaptive": False, "crop": 48, "seed": 0, "image": {"name": "a"}}
            result = {"psnr-in": float(budget[5:]), "psnr-clean": 30.5, "psnr-out": out, "psnr-drop": 30.5 - out,
                      "delta-psnr": 6.5, "bpp-clean": 0.4, "bpp-adv": 0.5, "bpp-increase": 0.1, "budget-ok": True}
            s.put(Row(f"atk{i}", "attack", config, "v1", result), [
                Artifact("source.png", png_bytes(x)), Artifact("adversarial.png", png_bytes(x_adv)),
                Artifact("reconstruction-clean.png", png_bytes(rc)),
                Artifact("reconstruction-adversarial.png", png_bytes(ra))])
        for i, (model, match, ps) in enumerate([("hyperprior-small:q3", None, [30.0, 27.0, 24.0]),
                                                ("jpeg:match", "hyperprior-small:q3", [29.0, 28.9, 28.9])]):
            config = {"kind": "recompression", "model": model, "defense": "none", "generations": 3, "crop": 48,
                      "seed": 0, "snapshots": [1, 3], "image": {"name": "a"}}
            result = {"codec": "jpeg:q12" if match else model, "psnr": ps, "bpp": [0.4, 0.41, 0.42]}
            if match:
                config["match"] = match
                result["matched-quality"] = 12
            s.put(Row(f"rec{i}", "recompression", config, "v1", result), [
                Artifact("generation-000.png", png_bytes(x)), Artifact("generation-001.png", png_bytes(rc)),
                Artifact("generation-003.png", png_bytes(ra))])
        matrix = TransferMatrix(["a", "b"], ["a", "b"], {"psnr-drop": [[7.0, 1.5], [2.0, 6.0]]})
        s.put(Row("ti", "transfer-image", {"kind": "transfer-image", "model": "hyperprior-small:q3",
                                           "defense": "none", "attack": "paper", "budget": "psnr:40"}, "v1",
                  matrix.as_dict()))
    return path


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["report", str(store), "-o", str(out)]) == 0
    return out


def test_report_is_self_contained_and_has_every_section(report):
    page = (report / "report.html").read_text()
    for section in ("rd", "attacks", "curves", "recompression", "transfer"):
        assert f'<section id="{section}">' in page
    # no network: nothing is loaded from a URL, no script at all
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page and "<link" not in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 7  # rd, 3 panels, curves, recompression curves + strip, heatmap
    for data in images:
        Image.open(io.BytesIO(base64.b64decode(data))).verify()


def test_report_numbers_come_from_the_store(report):
    page = (report / "report.html").read_text()
    assert "23.25" in page  # psnr-out at 40 dB
    # AUC of (30, 17.5), (40, 23.25), (50, 29.0): a straight line, mean 23.25
    assert re.search(r"<td[^>]*>psnr</td><td[^>]*>30–50</td><td>3</td><td>1</td><td>23\.25</td>", page)
    assert "jpeg (bpp-matched to hyperprior-small:q3)" in page and "<td>12</td>" in page
    with open(report / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 + 3 + 2 + 1 and {r["kind"] for r in rows} == {"rd", "attack", "recompression", "transfer-image"}
    assert (report / "figures" / "curves.png").is_file() and (report / "figures" / "panel-1.png").is_file()


def test_empty_store_gives_a_page_that_says_so(tmp_path):
    ResultStore(tmp_path / "e.sqlite").close()
    page = build_report(tmp_path / "e.sqlite", tmp_path / "out").read_text()
    assert "no rows yet" in page


def test_panel_zooms_where_the_reconstructions_differ():
    a = torch.zeros(1, 3, 64, 80)
    b = a.clone()
    b[..., 40:50, 60:70] = 1.0
    top, left, side = zoom_window(a, b, 16)
    assert side == 16 and top <= 40 and top + side >= 50 and left <= 60 and left + side >= 70
    pert, k = amplified_perturbation(a, a + 0.01)
    assert k == pytest.approx(50.0) and torch.allclose(pert, torch.ones_like(pert))
    png = attack_panel(a, a, a, b, title="t")
    arr = panel_array(png)
    assert arr.shape[1] > 5 * 200 and arr.shape[0] > 2 * 200  # five columns, two rows of tiles


def test_codec_family_drops_the_quality():
    assert family("jpeg:q50") == "jpeg" and family("hyperprior-small:q3") == "hyperprior-small"
    assert family("bmshj2018-hyperprior:3:mse") == "bmshj2018-hyperprior:mse"


def test_rows_of_newer_code_supersede_older_ones_in_the_report(tmp_path):
    from robustnic.studies import latest_rows

    config = {"kind": "rd", "model": "jpeg:q50", "defense": "none", "crop": 48, "image": {"name": "a"}}
    old = Row("old", "rd", config, "v1", {"bpp": 1.0, "bpp-file": 1.0, "psnr-rgb": 11.11, "ms-ssim-rgb": None}, created=1.0)
    new = Row("new", "rd", config, "v2", {"bpp": 1.0, "bpp-file": 1.0, "psnr-rgb": 22.22, "ms-ssim-rgb": None}, created=2.0)
    other = Row("o", "rd", dict(config, model="jpeg:q60"), "v1", old.result, created=1.5)
    assert [r.key for r in latest_rows([new, old, other])] == ["o", "new"]
    with ResultStore(tmp_path / "s.sqlite") as s:
        for r in (old, new):
            s.put(r)
    page = build_report(tmp_path / "s.sqlite", tmp_path / "out").read_text()
    assert "22.22" in page and "11.11" not in page


def test_strip_label_names_the_codec_once():
    from robustnic.report.html import strip_label

    assert strip_label("hyperprior-small:q3 +ensemble", "hyperprior-small:q3+ensemble") == "hyperprior-small:q3 +ensemble"
    assert strip_label("jpeg (bpp-matched to hyperprior-small:q3)", "jpeg:q31") == (
        "jpeg\n(matched to hyperprior-small:q3)\njpeg:q31")


# ----- sections come from a per-kind registry; other kinds get a generic table -----------------------
def _fuzz_store(path):
    with ResultStore(path) as s:
        for i, (case, crashed) in enumerate([("truncated", False), ("bitflip", True)]):
            s.put(Row(f"fz{i}", "fuzz", {"kind": "fuzz", "model": "hyperprior-small:q3", "case": case},
                      "v1", {"decoded": not crashed, "seconds-to-fail": 0.125 + i, "error": "BitstreamError"}))
    return path


def test_a_kind_without_a_section_gets_a_generic_table(tmp_path):
    page = build_report(_fuzz_store(tmp_path / "s.sqlite"), tmp_path / "out").read_text()
    section = re.search(r'<section id="kind-fuzz"><h2>fuzz</h2>(.*?)</section>', page, re.S)
    assert section is not None and 'href="#kind-fuzz"' in page  # listed in the navigation too
    body = section.group(1)
    # values every row shares are said once; the rest is one table row per job
    assert re.search(r"Every row: model = hyperprior-small:q3; error = BitstreamError", body)
    assert re.search(r"<th class=\"l\">case</th><th>decoded</th><th>seconds-to-fail</th>", body)
    assert re.search(r"<td class=\"l\">truncated</td><td>yes</td><td>0\.1250</td>", body)
    assert re.search(r"<td class=\"l\">bitflip</td><td>no</td><td>1\.12</td>", body)


def test_a_registered_section_replaces_the_generic_table(tmp_path, monkeypatch):
    from robustnic.report import sections

    monkeypatch.setattr(sections, "SECTIONS", list(sections.SECTIONS))  # leave the real registry alone

    @sections.register_section("fuzz")
    def fuzz_section(ctx: sections.ReportContext) -> str:
        rows = ctx.rows("fuzz")
        return f'<section id="fuzz"><h2>Fuzzing</h2><p>{sum(r.result["decoded"] for r in rows)} of {len(rows)} decoded</p></section>'

    assert "fuzz" in sections.covered_kinds()
    page = build_report(_fuzz_store(tmp_path / "s.sqlite"), tmp_path / "out").read_text()
    assert '<section id="fuzz"><h2>Fuzzing</h2><p>1 of 2 decoded</p>' in page and 'id="kind-fuzz"' not in page
    with pytest.raises(ValueError):
        sections.register_section()


def test_the_report_layer_does_not_import_the_code_that_runs_studies():
    import ast
    from pathlib import Path

    import robustnic.report

    banned = ("robustnic.app", "robustnic.studies.grid", "robustnic.studies.jobs", "robustnic.studies.presets",
              "robustnic.cli")
    for path in Path(robustnic.report.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.startswith(banned)], (path.name, names)

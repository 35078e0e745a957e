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


def make_store(path):
    """A store at ``path`` with hand-made rows of every kind (no codec runs: the report only reads rows)."""
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
def store(tmp_path_factory):
    """The store of :func:`make_store`, once per module."""
    return make_store(tmp_path_factory.mktemp("store") / "s.sqlite")


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


# ----- every image panel renders ------------------------------------------------------------------
def _tiles(png: bytes, heights: list[int], ncols: int, titled: bool, row_labels: bool = False):
    """The tiles of a panel, decoded with Pillow, row by row."""
    from robustnic.report.panels import tile_boxes

    img = Image.open(io.BytesIO(png))
    img.load()
    return [[img.crop(box).convert("RGB") for box in row] for row in tile_boxes(heights, ncols, titled, row_labels)]


def _distinct(tile: Image.Image) -> int:
    return len(tile.getcolors(maxcolors=1 << 24))


def _shifted(x: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """``x`` brighter by ``low`` levels in the top half, ``high`` in the bottom half (the shift baseline)."""
    out = x.clone()
    h = x.shape[-2]
    out[..., : h // 2, :] += low / 255
    out[..., h // 2 :, :] += high / 255
    return out.clamp(0, 1)


@pytest.mark.parametrize("kind", ["gradient", "shift", "none"])
def test_every_attack_panel_kind_decodes_to_tiles_with_content(kind):
    x = _img(3, 64).mul(0.8).add(0.1).mul(255).round().div(255)  # no value near 0 or 1: nothing clips
    x_adv = {"gradient": (x + 0.02 * torch.sign(_img(4, 64) - 0.5)).clamp(0, 1),
             "shift": _shifted(x, 2, 3), "none": x.clone()}[kind]
    rc = x.clone()
    ra = x_adv.clone()
    ra[..., 8:20, 30:44] = 0.5
    png = attack_panel(x, x_adv, rc, ra, title=f"panel {kind}")
    assert _distinct(Image.open(io.BytesIO(png)).convert("RGB")) > 100
    for row in _tiles(png, [240, 240], 5, titled=True):
        for col, tile in enumerate(row):
            assert tile.size == (240, 240)
            assert _distinct(tile) > 1, (kind, col)  # no blank tile, the perturbation's zoom included
    pert, pert_zoom = (row[2] for row in _tiles(png, [240, 240], 5, titled=True))
    if kind != "gradient":
        # a constant perturbation is one grey with its value written on it, not two amplified halves
        for tile in (pert, pert_zoom):
            colours = tile.getcolors(maxcolors=1 << 16)
            top_share = max(colours)[0] / (240 * 240)
            assert top_share > 0.8, (kind, top_share)
            upper, lower = tile.crop((20, 20, 220, 60)), tile.crop((20, 180, 220, 220))
            assert max(upper.getcolors(1 << 16))[1] == max(lower.getcolors(1 << 16))[1]


def test_a_uniform_perturbation_is_recognised_and_measured():
    from robustnic.report import uniform_offset

    x = _img(5, 32).mul(0.8).add(0.1)
    assert uniform_offset(_shifted(x, 2, 3) - x) == pytest.approx(2.5, abs=0.05)
    assert uniform_offset(-3 / 255 * torch.ones_like(x)) == pytest.approx(-3.0)
    assert uniform_offset(torch.zeros_like(x)) == 0.0
    assert uniform_offset(0.02 * torch.sign(_img(6, 32) - 0.5)) is None  # ±5 levels: amplified as before
    # a few clipped values do not make a shift look like noise
    delta = 2 / 255 * torch.ones_like(x)
    delta[..., :2, :] = 0.0
    assert uniform_offset(delta) == pytest.approx(2.0)


def test_generation_strip_decodes_with_content_in_every_tile():
    from robustnic.report import generation_strip

    x = _img(7, 48)
    png = generation_strip({"codec a": {1: x, 3: x.flip(-1)}, "codec b": {1: x.flip(-2)}}, x, crop=32)
    for r, row in enumerate(_tiles(png, [240, 240], 3, titled=False, row_labels=True)):
        for col, tile in enumerate(row):
            assert _distinct(tile) > 1, (r, col)  # "not kept" is a labelled tile, not a blank


# ----- figures: RD lines per family, spread, shared heatmap scale, readable labels ----------------
@pytest.fixture
def drawn(monkeypatch):
    """The matplotlib figures the report draws (their PNGs are still made)."""
    from robustnic.report import figures

    made = []
    real = figures.figure_png

    def capture(fig):
        made.append(fig)
        return real(fig)

    monkeypatch.setattr(figures, "figure_png", capture)
    return made


def test_rd_plot_draws_a_line_per_family_with_a_marker_per_rate(drawn):
    from robustnic.report.figures import rd_figure
    from robustnic.report.html import rate_label, rd_series

    means = [{"model": f"hyperprior-long:q{q}", "defense": "none", "bpp": 0.1 * q, "psnr-rgb": 25.0 + q} for q in (8, 2, 5)]
    means += [{"model": f"jpeg:q{q}", "defense": "none", "bpp": q / 40, "psnr-rgb": 20.0 + q / 10} for q in (10, 50, 90)]
    means += [{"model": "hyperprior-small:q3", "defense": "ensemble", "bpp": 0.4, "psnr-rgb": 27.0}]
    series = rd_series(means)
    assert sorted(series) == ["hyperprior-long", "hyperprior-small +ensemble", "jpeg"]
    assert [p[2] for p in series["hyperprior-long"]] == ["q8", "q2", "q5"] and rate_label("jpeg:q50") == "q50"
    rd_figure(series)
    (ax,) = drawn[-1].axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"hyperprior-long", "hyperprior-small +ensemble (q3)", "jpeg"}
    assert list(lines["hyperprior-long"].get_xdata()) == pytest.approx([0.2, 0.5, 0.8])  # one marker per rate, by bpp
    assert lines["jpeg"].get_linestyle() == "--" and lines["hyperprior-long"].get_linestyle() == "-"
    assert {t.get_text() for t in ax.texts} >= {"q2", "q5", "q8", "q10", "q50", "q90"}
    assert [t.get_text() for t in ax.get_legend().get_texts()] == sorted(lines)
    assert not ax.child_axes  # nothing crowds: no inset
    # models that meet at one rate get a magnified inset with every family in it
    rd_figure({"a": [(0.40, 27.0, "q3")], "b": [(0.401, 27.01, "q3")], "jpeg": [(0.3, 25.0, "q10"), (2.0, 36.0, "q90")]})
    (inset,) = drawn[-1].axes[0].child_axes
    assert len(inset.get_lines()) == 3 and inset.get_xlim()[0] < 0.40 < 0.401 < inset.get_xlim()[1]


def test_heatmaps_share_one_scale_with_two_decimals_full_names_and_readable_labels(drawn):
    from robustnic.report.figures import heatmap_figure, metric_label, wrap_label
    from robustnic.report.html import shared_scale

    names = ["hyperprior-small-robust:q2", "bmshj2018-hyperprior:8:mse", "jpeg:q50"]
    a = TransferMatrix(names, names, {"psnr-drop": [[0.41, 0.05, 0.0], [0.12, 0.33, 0.01], [0.2, 0.1, 0.3]]})
    b = TransferMatrix(["a", "b"], ["a", "b"], {"psnr-drop": [[2.5, -0.25], [0.5, 1.0]]})
    assert shared_scale([a, b]) == (-0.25, 2.5)
    for m in (a, b):
        heatmap_figure(m, "psnr-drop", vmin=-0.25, vmax=2.5)
    for fig, m in zip(drawn[-2:], (a, b)):
        ax, bar = fig.axes
        assert ax.images[0].get_clim() == (-0.25, 2.5)  # the same colours mean the same dB everywhere
        cells = [t.get_text() for t in ax.texts]
        assert all(re.fullmatch(r"-?\d+\.\d\d", c) for c in cells) and ("0.41" in cells or "2.50" in cells)
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert [t.replace("\n", "") for t in ticks] == [c.replace(" ", "") for c in m.cols]  # wrapped, never cut
        assert bar.get_ylabel() == "PSNR drop (dB)" and "psnr-drop" not in ax.get_title()
    assert metric_label("psnr-drop") == "PSNR drop (dB)"
    assert wrap_label("hyperprior-small-robust:q2") == "hyperprior-small-\nrobust:q2"


def _multi_image_store(path):
    """One model attacked on three images at psnr:40 and on one of them at psnr:30 and psnr:50."""
    with ResultStore(path) as s:
        for i, (image, budget, out) in enumerate([("a", "psnr:40", 24.0), ("b", "psnr:40", 26.0), ("c", "psnr:40", 25.0),
                                                   ("a", "psnr:30", 18.0), ("a", "psnr:50", 29.0),
                                                   ("b", "psnr:30", 20.0), ("b", "psnr:50", 29.5)]):
            config = {"kind": "attack", "model": "hyperprior-long:q4", "defense": "none", "attack": "paper",
                      "budget": budget, "objective": "distortion", "standin": "none", "steps": 10, "adaptive": False,
                      "crop": 48, "seed": 0, "image": {"name": image}}
            clean = {"a": 30.0, "b": 31.0, "c": 29.0}[image]
            s.put(Row(f"m{i}", "attack", config, "v1", {
                "psnr-in": float(budget[5:]), "psnr-clean": clean, "psnr-out": out, "psnr-drop": clean - out,
                "delta-psnr": 6.54321, "bpp-clean": 0.40123, "bpp-adv": 0.41234, "bpp-increase": 0.01111,
                "budget-ok": True}))
    return path


def test_attack_table_groups_by_model_and_image_set_with_fixed_precision(tmp_path, drawn):
    page = build_report(_multi_image_store(tmp_path / "s.sqlite"), tmp_path / "out").read_text()
    section = re.search(r'<section id="attacks">(.*?)</section>', page, re.S).group(1)
    headers = re.findall(r'<tr class="group"><th class="l" colspan="\d+">([^<]+)</th></tr>', section)
    # c was attacked at 40 dB only: the 3-image row and the 2-image rows are apart, each under its header
    assert headers == ["hyperprior-long:q4 · 3 images: a, b, c", "hyperprior-long:q4 · 2 images: a, b"]
    assert "image sets differ in size" in section
    first, second = section.split('<tr class="group">')[1:3]
    assert first.count("<tr>") == 1 and second.count("<tr>") == 2
    assert re.findall(r"<td[^>]*>(psnr:\d\d)</td>", second) == ["psnr:30", "psnr:50"]  # in budget order
    cells = re.findall(r"<td>([^<]*)</td>", first)
    assert "6.54" in cells and "0.401" in cells and "0.412" in cells and "0.011" in cells and "100%" in cells
    assert "5.00" in cells and "3" in cells  # drop (mean of 6, 5, 4) and n
    assert not re.search(r"<td>-?\d+\.\d{4,}</td>", section)  # no 4-decimal cell left


def test_robustness_curves_and_bars_show_the_spread_over_images(tmp_path, drawn):
    from robustnic.report.html import attack_bars, curve_spread
    from robustnic.studies.curves import robustness_curves

    path = _multi_image_store(tmp_path / "s.sqlite")
    with ResultStore(path) as s:
        rows = s.rows("attack")
    (curve,) = robustness_curves(rows)
    assert curve.budgets == [30.0, 40.0, 50.0] and curve.images == [2, 2, 2]
    spread = curve_spread(curve, rows)
    assert spread["psnr-out"] == ([18.0, 24.0, 29.0], [20.0, 26.0, 29.5])  # min–max over a and b (c is not on the curve)
    assert curve_spread(curve, [r for r in rows if r.config["image"]["name"] == "a"]) is None  # one image: no band
    (bar,) = attack_bars(rows, "psnr:40")
    assert (bar.n, bar.mean, bar.low, bar.high) == (3, 5.0, 4.0, 6.0)
    page = build_report(path, tmp_path / "out").read_text()
    assert "Shaded: min–max over the images" in page and "whiskers: min–max" in page
    curves_fig = next(f for f in drawn if len(f.axes) == 2 and "under attack" in f.axes[0].get_title())
    assert all(ax.collections for ax in curves_fig.axes)  # a band on both plots
    bars_fig = next(f for f in drawn if f.axes and f.axes[0].get_xlabel() == "PSNR drop (dB)")
    assert any(t.get_text() == "n=3" for t in bars_fig.axes[0].texts)

"""The report's robust rate-distortion section: one row per model × defense, numbers recomputed from the store."""

from __future__ import annotations

import html as _html
import re

import pytest

from robustnic.codecs.architectures import LAMBDAS
from robustnic.metrics.bd import bd_rate
from robustnic.report.html import render_report
from robustnic.report.robust_rd import rd_lambda, robust_rd_section, robust_rd_tables
from robustnic.report.sections import SECTIONS, ReportContext, fmt_as
from robustnic.studies import ResultStore, Row
from robustnic.utils.tables import finite_mean

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = "bmshj2018-hyperprior:N=8:M=16:random"
BUDGETS = ("psnr:30", "psnr:40")
SPEC = {
    "seed": 0,
    "crop": 64,
    "images": ["bundled:astronaut"],
    "study": [
        {"kind": "rd", "models": [TINY], "defenses": ["none", "jpeg:q90"]},
        {"kind": "attack", "models": [TINY], "attacks": ["pgd"], "budgets": list(BUDGETS),
         "defenses": ["none", "jpeg:q90"], "adaptive": True, "steps": 2},
        {"kind": "attack", "models": [TINY], "attacks": ["shift"], "budgets": list(BUDGETS),
         "defenses": ["none", "jpeg:q90"]},
    ],
}


def _section(page: str) -> str:
    start = page.index('<section id="robust-rd">')
    return page[start:page.index("</section>", start)]


def _table_rows(section: str) -> tuple[list[str], list[list[str]]]:
    """Headers and body rows (cell texts, tags stripped) of the first table in ``section``."""
    table = section[section.index("<table>"):section.index("</table>")]
    headers = [_html.unescape(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", table)]
    body = [[_html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
            for tr in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>", 1)[1])]
    return headers, body


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from robustnic.studies.grid import run_spec

    path = tmp_path_factory.mktemp("robust-rd") / "s.sqlite"
    summary = run_spec(SPEC, path, progress=False)
    assert summary.done == 2 + 4 + 4 and not summary.failed
    return path


def test_the_section_is_registered_for_rd_and_attack_rows():
    (section,) = [s for s in SECTIONS if s.name == "robust_rd"]
    assert section.kinds == ("rd", "attack")


def test_section_has_a_row_per_model_and_defense_with_the_stores_means(store):
    with ResultStore(store, readonly=True) as s:
        page = render_report(s)
        attacks = s.rows("attack")
    section = _section(page)
    headers, body = _table_rows(section)
    assert [(r[0], r[1]) for r in body] == [(TINY, "none"), (TINY, "jpeg:q90")]
    col = {h: i for i, h in enumerate(headers)}
    (table,) = robust_rd_tables(_rows(store, "rd"), attacks)
    assert table.budgets == list(BUDGETS) and table.names == ("astronaut",) and table.crop == 64
    for cells, row in zip(body, table.rows):
        defense = row["defense"]
        for budget in BUDGETS:
            def drops(method: str) -> list[float]:
                return [r.result["psnr-drop"] for r in attacks if r.config["attack"] == method
                        and r.config["defense"] == defense and r.config["budget"] == budget]

            damage, floor = finite_mean(drops("pgd")), finite_mean(drops("shift"))
            assert row[f"drop@{budget}"] == pytest.approx(damage, abs=1e-12)
            assert row[f"above@{budget}"] == pytest.approx(damage - floor, abs=1e-12)
            assert cells[col[f"damage @{budget} (dB)"]] == fmt_as(damage, 2)
            assert cells[col[f"above shift floor @{budget} (dB)"]] == fmt_as(damage - floor, 2)
        assert cells[col["attack reported"]] == "pgd · 2 steps · adaptive"
        # a random model has no training λ: no rate change, for the plain row too
        assert row["rate"] is None and cells[col["RD cost vs none"]] == "–"
        assert cells[col["images"]] == "1"
    plain = table.rows[0]
    assert plain["encode"] == pytest.approx(1.0) and body[0][col["encode × none"]] == "1.00×"
    rd = {r.config["defense"]: r for r in _rows(store, "rd")}
    assert table.rows[1]["psnr"] == rd["jpeg:q90"].result["psnr-rgb"]
    assert table.rows[1]["decode"] == pytest.approx(
        rd["jpeg:q90"].timing["decoding_time"] / rd["none"].timing["decoding_time"])


def _rows(path, kind: str) -> list[Row]:
    with ResultStore(path, readonly=True) as s:
        return s.rows(kind)


# ----- hand-made rows: rate change along the RD slope, BD-rate, choice of the attack ------------------
def _rd(model: str, defense: str, image: str, bpp: float, psnr: float, enc: float) -> Row:
    config = {"kind": "rd", "model": model, "defense": defense, "crop": 32, "seed": 0, "image": {"name": image}}
    return Row(f"rd-{model}-{defense}-{image}", "rd", config, "v1", {"bpp": bpp, "psnr-rgb": psnr},
               {"encoding_time": enc, "decoding_time": enc / 2})


def _attack(model: str, defense: str, image: str, method: str, adaptive: bool, drop: float) -> Row:
    config = {"kind": "attack", "model": model, "defense": defense, "attack": method, "budget": "psnr:35",
              "adaptive": adaptive, "objective": "distortion", "standin": "none", "steps": 5, "crop": 32, "seed": 0,
              "image": {"name": image}}
    return Row(f"atk-{defense}-{image}-{method}-{adaptive}", "attack", config, "v1", {"psnr-drop": drop})


RD_POINTS = {  # (model, defense) -> per image (bpp, PSNR, encode seconds)
    ("hyperprior-long:q2", "none"): [(0.20, 28.0, 1.0), (0.30, 29.0, 1.0)],
    ("hyperprior-long:q4", "none"): [(0.45, 31.0, 1.0), (0.55, 32.0, 1.0)],
    ("hyperprior-long:q2", "jpeg:q90"): [(0.22, 27.5, 3.0), (0.31, 28.6, 2.0)],
    ("hyperprior-long:q4", "jpeg:q90"): [(0.47, 30.2, 3.0), (0.58, 31.1, 2.0)],
}


def _hand_rows() -> tuple[list[Row], list[Row]]:
    rd = [_rd(m, d, img, *p) for (m, d), points in RD_POINTS.items() for img, p in zip("ab", points)]
    attacks = [
        _attack("hyperprior-long:q2", "jpeg:q90", "a", "pgd", True, 4.0),
        _attack("hyperprior-long:q2", "jpeg:q90", "b", "pgd", True, 6.0),
        _attack("hyperprior-long:q2", "jpeg:q90", "a", "pgd", False, 9.0),   # not adaptive: not reported
        _attack("hyperprior-long:q2", "jpeg:q90", "b", "pgd", False, 9.0),
        _attack("hyperprior-long:q2", "jpeg:q90", "a", "noise", True, 20.0),  # the noise baseline: left out
        _attack("hyperprior-long:q2", "jpeg:q90", "a", "shift", False, 1.5),
        _attack("hyperprior-long:q2", "jpeg:q90", "b", "shift", False, 2.5),
        _attack("hyperprior-long:q2", "none", "a", "pgd", True, 7.0),        # one of the two images only
        _attack("hyperprior-long:q2", "none", "a", "shift", False, 2.0),
    ]
    return rd, attacks


def test_rate_change_bd_rate_and_the_reported_attack_from_hand_made_rows():
    rd, attacks = _hand_rows()
    (table,) = robust_rd_tables(rd, attacks)
    by = {(r["model"], r["defense"]): r for r in table.rows}
    assert list(by) == [("hyperprior-long:q2", "none"), ("hyperprior-long:q2", "jpeg:q90"),
                        ("hyperprior-long:q4", "none"), ("hyperprior-long:q4", "jpeg:q90")]

    def mean(model: str, defense: str, i: int) -> float:
        return sum(p[i] for p in RD_POINTS[(model, defense)]) / 2

    def mse(model: str, defense: str) -> float:
        return sum(10 ** (-p[1] / 10) for p in RD_POINTS[(model, defense)]) / 2

    for model, q in (("hyperprior-long:q2", 2), ("hyperprior-long:q4", 4)):
        lmbda = LAMBDAS["mse"][q]
        cost = mean(model, "jpeg:q90", 0) + lmbda * 255**2 * mse(model, "jpeg:q90")
        cost0 = mean(model, "none", 0) + lmbda * 255**2 * mse(model, "none")
        assert by[(model, "jpeg:q90")]["rate"] == pytest.approx(cost / cost0 - 1)
        assert by[(model, "none")]["rate"] == 0
        assert by[(model, "jpeg:q90")]["encode"] == pytest.approx(2.5)
        assert by[(model, "jpeg:q90")]["decode"] == pytest.approx(2.5)
    curve = {d: ([mean(m, d, 0) for m in ("hyperprior-long:q2", "hyperprior-long:q4")],
                 [mean(m, d, 1) for m in ("hyperprior-long:q2", "hyperprior-long:q4")]) for d in ("none", "jpeg:q90")}
    expected = bd_rate(*curve["none"], *curve["jpeg:q90"]) / 100
    assert expected > 0
    assert by[("hyperprior-long:q2", "jpeg:q90")]["bd"] == pytest.approx(expected)
    assert by[("hyperprior-long:q4", "jpeg:q90")]["bd"] == pytest.approx(expected)
    assert by[("hyperprior-long:q2", "none")]["bd"] == pytest.approx(0)
    # adaptive before not adaptive, noise left out, the floor subtracted image by image
    defended = by[("hyperprior-long:q2", "jpeg:q90")]
    assert defended["drop@psnr:35"] == 5.0 and defended["above@psnr:35"] == 3.0
    assert defended["attack"] == "pgd · 5 steps · adaptive"
    plain = by[("hyperprior-long:q2", "none")]
    assert plain["drop@psnr:35"] == 7.0 and plain["n:drop@psnr:35"] == 1 and plain["above@psnr:35"] == 5.0
    assert "drop@psnr:35" not in by[("hyperprior-long:q4", "jpeg:q90")]  # not attacked: blank
    # the page: (k/n) where fewer images entered a mean, percentages and ratios
    section = robust_rd_section(ReportContext(None, {"rd": rd, "attack": attacks}))  # type: ignore[arg-type]
    headers, body = _table_rows(section)
    col = {h: i for i, h in enumerate(headers)}
    assert body[0][col["damage @psnr:35 (dB)"]] == "7.00 (1/2)"
    assert body[0][col["RD cost vs none"]] == "+0.0%"
    assert body[1][col["RD cost vs none"]] == f"{100 * defended['rate']:+.1f}%"
    assert body[1][col["encode × none"]] == "2.50×"
    assert body[3][col["damage @psnr:35 (dB)"]] == "–"


def test_a_store_of_clean_undefended_rd_rows_only_gets_no_section():
    rd = [r for r in _hand_rows()[0] if r.config["defense"] == "none"]
    assert robust_rd_tables(rd, []) == []
    assert robust_rd_section(ReportContext(None, {"rd": rd})) == ""  # type: ignore[arg-type]


@pytest.mark.parametrize("model, lmbda", [
    ("hyperprior-small:q3", 0.0067),               # the shipped model's manifest
    ("bmshj2018-hyperprior:q5:random", LAMBDAS["mse"][5]),
    ("bmshj2018-hyperprior:q2:ms-ssim", None),     # trained for MS-SSIM: no MSE slope
    ("hyperprior-ssim:q3", None),
    (TINY, None), ("jpeg:q3", None), ("runs/x/last.pth.tar", None),
])
def test_rd_lambda_without_loading_the_model(model, lmbda):
    got = rd_lambda(model)
    assert got == lmbda if lmbda is None else got == pytest.approx(lmbda)
    recorded = Row("k", "rd", {"model": model}, "v1", {"lambda": 0.5})
    assert rd_lambda(model, [recorded]) == 0.5


def test_the_example_spec_expands_to_the_grid_the_section_reads():
    from collections import Counter
    from pathlib import Path

    from robustnic.studies import expand_spec
    from robustnic.studies.grid import load_spec

    jobs = expand_spec(load_spec(Path(__file__).resolve().parent.parent / "examples" / "robust_rd.yaml"))
    assert len(jobs) == 56
    kinds = Counter((j.config["kind"], j.config.get("attack"), j.config.get("adaptive")) for j in jobs)
    assert kinds == {("rd", None, None): 8, ("attack", "paper", True): 24, ("attack", "shift", False): 24}
    assert {j.config["defense"] for j in jobs} == {"none", "ensemble", "jpeg:q90", "refine"}

"""``build_report``: one self-contained HTML page from a results store.

The page needs no network: plots and image panels are PNGs embedded as base64 data URIs, the CSS is
inline and there is no JavaScript. Sections come from a registry keyed by job kind
(:func:`robustnic.report.sections.register_section`) and appear for the kinds of rows the store holds:

* clean rate-distortion (table + RD plot),
* attacks (table of means over images + image panels),
* robustness curves (PSNR under attack and bpp increase vs budget, with the AUC of each curve),
* recompression (PSNR and bpp at every generation + decoded images at selected generations),
* transfer (cross-image and cross-model heatmaps),
* analyze (the Jacobian's worst-case gain beside the attack's VI per image, and the layer magnify ratios),
* for a kind with no registered section, a generic table of its rows.

Every number on the page is read from the store (measured by ``robustnic bench`` on real
bitstreams); ``results.csv`` and ``results.json`` beside the page hold every row.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from robustnic import __version__
from robustnic.attacks import BASELINES
from robustnic.report.figures import (Bar, Spread, bar_figure, heatmap_figure, magnify_figure, metric_label, rd_figure,
                                      recompression_figure, robustness_figure)
from robustnic.report.panels import attack_panel, generation_strip
from robustnic.report.sections import (BPP, DB, SSIM, ReportContext, fmt, html_table, img_tag, register_section,
                                       render_sections)
from robustnic.studies.analyze import correlations
from robustnic.studies.curves import CURVE_KEYS, CURVE_METRICS, RobustnessCurve, budget_axis, budget_cap, robustness_curves
from robustnic.studies.recompression import recompression_series
from robustnic.studies.store import ResultStore, Row, export_rows, latest_rows, row_means
from robustnic.utils.tables import finite_mean
from robustnic.studies.transfer import TransferMatrix, mean_matrix
from robustnic.utils.io import atomic_write_bytes, atomic_write_text

REPORT_NAME = "report.html"

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
main{max-width:1300px;margin:0 auto;padding:18px 28px 60px;background:#fff}
h1{font-size:26px;margin:8px 0 4px} h2{font-size:20px;border-bottom:2px solid #dde3ea;padding-bottom:4px;margin-top:34px}
h3{font-size:15px;margin:20px 0 6px} p.note,.meta{color:#56606b;font-size:13px}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0 14px}
th,td{border:1px solid #dde3ea;padding:3px 8px;text-align:right} th{background:#eef2f6}
td.l,th.l{text-align:left} td.l{white-space:nowrap} tr:nth-child(even) td{background:#fafbfc}
img{max-width:100%;height:auto;display:block;margin:6px 0 12px}
figure{margin:0 0 18px} figcaption{font-size:12.5px;color:#56606b}
nav a{margin-right:14px;font-size:13.5px} code{background:#eef2f6;padding:0 3px;border-radius:3px}
tr.group th{background:#e2e8ef;text-align:left;font-weight:600;padding-top:5px}
"""


# ----- small helpers ---------------------------------------------------------------------------------
def family(model: str) -> str:
    """A codec's family for RD lines: the spec without its quality (``jpeg:q50`` -> ``jpeg``)."""
    parts = [p for p in str(model).split(":") if not re.fullmatch(r"q?\d+", p)]
    return ":".join(parts)


def rate_label(model: str) -> str:
    """The rate part of a codec spec, as written (``jpeg:q50`` -> ``q50``; ``"" `` when it has none)."""
    return ":".join(p for p in str(model).split(":") if re.fullmatch(r"q?\d+", p))


def image_name(row: Row) -> str:
    """The name of the image a row was run on (its hash when it has no name; ``?`` when unrecorded)."""
    image = row.config.get("image")
    if isinstance(image, dict):
        return str(image.get("name") or image.get("sha256") or "?")
    return "?" if image is None else str(image)


def _setting(config: dict[str, Any], by: Iterable[str]) -> tuple[str, ...]:
    return tuple(repr(config.get(k)) for k in by)


def image_sets(rows: Iterable[Row], by: Iterable[str]) -> dict[tuple[str, ...], tuple[str, ...]]:
    """The sorted image names of each setting (the ``repr`` of its configuration values ``by``)."""
    by = tuple(by)
    sets: dict[tuple[str, ...], set[str]] = {}
    for r in rows:
        sets.setdefault(_setting(r.config, by), set()).add(image_name(r))
    return {k: tuple(sorted(v)) for k, v in sets.items()}


def image_set_label(names: Iterable[str], most: int = 4) -> str:
    """``3 images: a, b, c`` (the first ``most`` names, then how many more)."""
    names = list(names)
    shown = ", ".join(names[:most]) + (f" +{len(names) - most} more" if len(names) > most else "")
    return f"{len(names)} image{'s' if len(names) != 1 else ''}: {shown}"


def _label(config: dict[str, Any]) -> str:
    label = str(config.get("model"))
    if config.get("defense") not in (None, "none"):
        label += f" +{config['defense']}"
    return label


# ----- sections --------------------------------------------------------------------------------------
#: Configuration keys that identify a clean RD setting, and the results averaged over its images.
RD_BY = ("model", "defense", "crop")
RD_METRICS = ("bpp", "bpp-file", "psnr-rgb", "ms-ssim-rgb")


def rd_means(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """The RD table: means over images per :data:`RD_BY` setting (:func:`~robustnic.studies.store.row_means`)."""
    return row_means(rows, RD_BY, RD_METRICS)


@register_section("rd")
def rd_section(ctx: ReportContext) -> str:
    """Clean rate-distortion: a table of means grouped by codec family and image set, and the RD plot."""
    rows, figures = ctx.rows("rd"), ctx.figures
    if not rows:
        return ""
    means = rd_means(rows)
    sets = image_sets(rows, RD_BY)
    for r in means:
        r["family"] = family(r["model"]) + ("" if r["defense"] in (None, "none") else f" +{r['defense']}")
        r["images"] = sets.get(_setting(r, RD_BY), ())
    means.sort(key=lambda r: (r["family"], -len(r["images"]), r["images"], _num(r["bpp"])))
    series = rd_series(means)
    table = html_table(means, [("model", "codec"), ("defense", "defense"), ("crop", "crop"), ("bpp", "bpp", BPP),
                               ("bpp-file", "bpp (file)", BPP), ("psnr-rgb", "PSNR (dB)", DB),
                               ("ms-ssim-rgb", "MS-SSIM", SSIM), ("n", "images")], left=2,
                       group=lambda r: html.escape(f"{r['family']} · {image_set_label(r['images'])}"))
    return (
        '<section id="rd"><h2>Clean rate-distortion</h2>'
        '<p class="note">Means over images, grouped by codec family and the images the means are over; bpp counts '
        "the entropy-coded payload (for JPEG/WebP: the whole JPEG/WebP file), “bpp (file)” the robustnic container "
        "too.</p>"
        f"{table}<figure>{img_tag(figures.setdefault('rd.png', rd_figure(series)), 'RD plot')}"
        "<figcaption>PSNR vs bpp: one line per codec family, a marker per rate (labelled with its quality when "
        "the family has several).</figcaption></figure></section>"
    )


def rd_series(means: Iterable[dict[str, Any]]) -> dict[str, list[tuple[float, float, str]]]:
    """The RD plot's lines from RD means: codec family (+defense) -> [(bpp, PSNR, rate label), ...]."""
    series: dict[str, list[tuple[float, float, str]]] = {}
    for r in means:
        name = family(r["model"]) + ("" if r.get("defense") in (None, "none") else f" +{r['defense']}")
        series.setdefault(name, []).append((r["bpp"], r["psnr-rgb"], rate_label(r["model"])))
    return series


def _num(v: Any) -> float:
    """``v`` as a sort key: a finite number, else +inf (so missing values sort last)."""
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else math.inf


def _budget_key(budget: Any) -> tuple[str, float, str]:
    """Budgets in order of kind and value (``psnr:30`` before ``psnr:45``), unparsable ones by text."""
    try:
        kind, value = budget_axis(str(budget))
    except ValueError:
        return (str(budget), math.inf, str(budget))
    return (kind, value, str(budget))


#: Configuration keys that identify an attack setting in the report's table (all but the image).
ATTACK_BY = ("model", "defense", "adaptive", "attack", "budget", "objective", "standin", "steps", "crop")
ATTACK_METRICS = (*CURVE_METRICS, "budget-ok")


def attack_means(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """The attack table: means over images per :data:`ATTACK_BY` setting, by the rule of every robustnic
    table (:func:`robustnic.utils.tables.group_means`, which the ``attack`` command's summary uses too)."""
    return row_means(rows, ATTACK_BY, ATTACK_METRICS)


#: The attack table's columns: (key, header, format).
ATTACK_COLUMNS = [
    ("model", "model"), ("defense", "defense"), ("attack", "attack"), ("budget", "budget"), ("adaptive", "adaptive"),
    ("steps", "steps"), ("psnr-in", "PSNR in", DB), ("psnr-clean", "PSNR clean", DB),
    ("psnr-out", "PSNR attacked", DB), ("psnr-drop", "drop (dB)", DB), ("delta-psnr", "ΔPSNR (VI)", DB),
    ("bpp-clean", "bpp clean", BPP), ("bpp-adv", "bpp attacked", BPP), ("bpp-increase", "bpp +", BPP),
    ("budget-ok", "in budget", "%"), ("n", "images"),
]


def attack_bars(rows: list[Row], budget: str, metric: str = "psnr-drop") -> list[Bar]:
    """Per attack setting at ``budget``: the mean of ``metric`` over its images and their min–max, in the
    order of the attack table (model, images, defense, attack)."""
    groups: dict[tuple[str, ...], list[Row]] = {}
    for r in rows:
        if r.config.get("budget") == budget:
            groups.setdefault(_setting(r.config, ATTACK_BY), []).append(r)
    bars = []
    for members in groups.values():
        c = members[0].config
        values = [v for v in (m.result.get(metric) for m in members)
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
        if not values:
            continue
        label = f"{_label(c)} · {c.get('attack')}" + (" (adaptive)" if c.get("adaptive") else "")
        bars.append(Bar(label, sum(values) / len(values), min(values), max(values), len(values)))
    return sorted(bars, key=lambda b: b.label)


@register_section("attack")
def attack_section(ctx: ReportContext) -> str:
    """Attacks: a table of means grouped by model and image set, bars of the damage at the budget most
    settings share, and per setting a panel of the image the attack hurt most."""
    rows, store, max_panels, figures = ctx.rows("attack"), ctx.store, ctx.max_panels, ctx.figures
    if not rows:
        return ""
    means = attack_means(rows)
    sets = image_sets(rows, ATTACK_BY)
    for r in means:
        r["images"] = sets.get(_setting(r, ATTACK_BY), ())
    means.sort(key=lambda r: (str(r["model"]), -len(r["images"]), r["images"], str(r["defense"]), str(r["attack"]),
                              _budget_key(r["budget"])))
    distinct = {(str(r["model"]), r["images"]) for r in means}
    mixed = len({len(r["images"]) for r in means}) > 1
    table = html_table(means, ATTACK_COLUMNS, left=4,
                       group=lambda r: html.escape(f"{r['model']} · {image_set_label(r['images'])}"))
    # panels: per setting, the image the attack hurt most
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        groups.setdefault(_setting(r.config, ATTACK_BY), []).append(r)
    def drop(r: Row) -> float:
        v = r.result.get("psnr-drop")
        return v if isinstance(v, (int, float)) and math.isfinite(v) else -math.inf

    # the budget most settings share first (there models and defenses meet side by side), then the rest;
    # within a budget the most damaging settings first, the baselines after every real attack
    shared = Counter(m[0].config["budget"] for m in groups.values())
    ordered = sorted(groups.values(), key=lambda m: (-shared[m[0].config["budget"]], str(m[0].config["budget"]),
                                                     m[0].config["attack"] in BASELINES, -max(map(drop, m))))
    bars_html = ""
    # the bars: at the budget most settings share, of those the one run on the most images
    rows_at = Counter(r.config["budget"] for r in rows)
    top_budget = max(shared, key=lambda b: (shared[b], rows_at[b], -_budget_key(b)[1]))
    bars = attack_bars(rows, top_budget)
    if bars:
        png = figures.setdefault("attack-bars.png", bar_figure(
            bars, metric_label("psnr-drop"), f"Reconstruction PSNR drop at {top_budget}"))
        bars_html = (f"<figure>{img_tag(png, 'PSNR drop per setting')}<figcaption>Mean reconstruction PSNR drop "
                     f"(clean − attacked) per setting at {html.escape(str(top_budget))}, the budget most settings "
                     "share; whiskers: min–max over the images (n beside each bar).</figcaption></figure>")
    panels = []
    for members in ordered:
        if len(panels) >= max_panels:
            break
        worst = max(members, key=drop)
        art = store.artifacts(worst.key)
        needed = ("source.png", "adversarial.png", "reconstruction-clean.png", "reconstruction-adversarial.png")
        if not all(n in art for n in needed):
            continue
        c = worst.config
        title = f"{_label(c)} · {c['attack']} · {c['budget']} · {image_name(worst)}"
        png = attack_panel(*(art[n].data for n in needed), title=title)
        figures[f"panel-{len(panels) + 1}.png"] = png
        panels.append(f"<figure>{img_tag(png, title)}<figcaption>{html.escape(title)}: the image of this setting "
                      f"with the largest PSNR drop ({fmt_db(worst.result.get('psnr-drop'))} dB, of {len(members)} "
                      f"image{'s' if len(members) != 1 else ''}).</figcaption></figure>")
    grouping = ("Rows are grouped by model and by the images their means are over"
                + (f" ({len(distinct)} groups; image sets differ in size, so PSNR clean differs between groups of "
                   "the same model: compare rows within a group)" if mixed else "") + ".")
    return (
        '<section id="attacks"><h2>Attacks</h2>'
        '<p class="note">Verified on real bitstreams; means over images. PSNR clean/attacked: reconstruction '
        "vs the source image; ΔPSNR (VI) = 10·log10(MSE(x̂(x′), x̂(x)) / MSE(x′, x)), Chen &amp; Ma's "
        f"amplification; “adaptive”: the attack differentiated through the defense. {html.escape(grouping)}</p>"
        f"{table}{bars_html}<h3>Image panels</h3>{''.join(panels) or '<p class=note>no stored images</p>'}</section>"
    )


def fmt_db(v: Any) -> str:
    """A dB value with the report's two decimals (– when missing)."""
    return f"{v:.{DB}f}" if isinstance(v, (int, float)) and math.isfinite(v) else "–"


def curve_spread(curve: RobustnessCurve, rows: Iterable[Row],
                 metrics: Iterable[str] = ("psnr-out", "bpp-increase")) -> Spread | None:
    """The min–max over images of ``metrics`` at each budget of ``curve`` (over the images the curve
    averages: those attacked at every budget), or None when it averages a single image."""
    want = repr(curve.setting)
    by_budget: dict[float, dict[str, Row]] = {b: {} for b in curve.budgets}
    for r in rows:
        try:
            kind, value = budget_axis(r.config["budget"])
        except (KeyError, ValueError):
            continue
        setting = {k: r.config.get(k) for k in CURVE_KEYS}
        if (cap := budget_cap(r.config["budget"])) is not None:
            setting["linf-cap"] = cap
        if kind == curve.budget_kind and value in by_budget and repr(setting) == want:
            image = r.config.get("image")
            by_budget[value][str(image.get("sha256") or image.get("name")) if isinstance(image, dict) else str(image)] = r
    common = set.intersection(*(set(v) for v in by_budget.values())) if by_budget else set()
    if len(common) < 2:
        return None
    spread: Spread = {}
    for metric in metrics:
        lows, highs = [], []
        for b in curve.budgets:
            values = [v for v in (by_budget[b][i].result.get(metric) for i in common)
                      if isinstance(v, (int, float)) and math.isfinite(v)]
            lows.append(min(values) if values else math.nan)
            highs.append(max(values) if values else math.nan)
        spread[metric] = (lows, highs)
    return spread


@register_section("attack")
def curves_section(ctx: ReportContext) -> str:
    """Robustness curves of the attack settings run at two budgets or more, with their spread over images."""
    figures = ctx.figures
    rows = ctx.rows("attack")
    curves = [c for c in robustness_curves(rows) if len(c.budgets) >= 2]
    if not curves:
        return ""
    spreads = [curve_spread(c, rows) for c in curves]
    table = html_table(
        [{"label": c.label, "kind": c.budget_kind, "range": f"{min(c.budgets):g}–{max(c.budgets):g}",
          "points": len(c.budgets), "images": min(c.images), "auc": c.auc, "clean": finite_mean(c.points["psnr-clean"]),
          "worst": min(c.points["psnr-out"]), "bppmax": max(c.points["bpp-increase"])} for c in curves],
        [("label", "setting"), ("kind", "budget"), ("range", "range"), ("points", "budgets"), ("images", "images"),
         ("auc", "robust PSNR = AUC (dB)", DB), ("clean", "clean PSNR (dB)", DB), ("worst", "worst PSNR (dB)", DB),
         ("bppmax", "max bpp +", BPP)], left=3,
    )
    banded = sum(s is not None for s in spreads)
    band_note = (f"Shaded: min–max over the images ({banded} of {len(curves)} curves have more than one image; "
                 "a curve over one image has no band)." if banded else
                 "Every curve here is over a single image, so there is no spread to show.")
    png = figures.setdefault("curves.png", robustness_figure(curves, spreads))
    return (
        '<section id="curves"><h2>Robustness curves</h2>'
        '<p class="note">Each point: mean over the images attacked at every budget of the curve. AUC = the area under the '
        "reconstruction-PSNR curve divided by the width of the budget range, i.e. the average reconstruction "
        "PSNR under attack over that range (higher is more robust; compare only over equal ranges).</p>"
        f"{table}<figure>{img_tag(png, 'robustness curves')}<figcaption>{html.escape(band_note)}</figcaption>"
        "</figure></section>"
    )


@register_section("recompression")
def recompression_section(ctx: ReportContext) -> str:
    """Recompression: PSNR and bpp per generation, and decoded images at the kept generations."""
    store, figures = ctx.store, ctx.figures
    series = recompression_series(ctx.rows("recompression"))
    if not series:
        return ""
    table = [{"label": s["label"], "q": ", ".join(map(str, s["qualities"])) or "–", "gens": len(s["psnr"]),
              "bpp1": s["bpp"][0], "p1": s["psnr"][0], "pn": s["psnr"][-1], "pmin": min(s["psnr"]),
              "drop": s["psnr"][0] - s["psnr"][-1], "n": len(s["rows"])} for s in series]
    figures["recompression.png"] = recompression_figure({s["label"]: s for s in series})
    out = [
        '<section id="recompression"><h2>Recompression</h2>'
        '<p class="note">Each generation decodes the previous generation’s 8-bit image from real bytes; '
        "PSNR is against the original. JPEG/WebP use, per image, the quality whose first-generation bpp is "
        "closest to the matched model’s. Curves are means over images.</p>",
        html_table(table, [("label", "codec"), ("q", "matched quality"), ("gens", "generations"),
                            ("bpp1", "bpp (gen 1)", BPP), ("p1", "PSNR gen 1", DB), ("pn", "PSNR last", DB),
                            ("pmin", "PSNR min", DB), ("drop", "drop gen 1→last", DB), ("n", "images")]),
        f"<figure>{img_tag(figures['recompression.png'], 'recompression curves')}</figure>",
    ]
    # decoded images at the kept generations, for images that every setting saw
    common = sorted(set.intersection(*(set(s["images"]) for s in series)))
    for name in common[:1]:
        strip_rows, original = {}, None
        for s in series:
            row = next(r for r in s["rows"] if r.config["image"]["name"] == name)
            art = store.artifacts(row.key)
            if "generation-000.png" in art:
                original = original or art["generation-000.png"].data
            strip_rows[strip_label(s["label"], row.result["codec"])] = {
                int(n[len("generation-"):-4]): a.data for n, a in art.items() if n != "generation-000.png"}
        if original is not None:
            figures[f"recompression-{name}.png"] = png = generation_strip(strip_rows, original, crop=128)
            out.append(f"<figure>{img_tag(png, 'generations of ' + name)}<figcaption>{html.escape(name)}: centre "
                       "128×128 pixels at the kept generations.</figcaption></figure>")
    out.append("</section>")
    return "".join(out)


def strip_label(series_label: str, codec: str) -> str:
    """A recompression series' label for the image strip: the codec spec is added on its own line
    only when the label does not already name it (labels write ``model +defense``, specs ``model+defense``)."""
    label = series_label.replace(" (bpp-matched to", "\n(matched to")
    if codec not in series_label.replace(" +", "+"):
        label += f"\n{codec}"
    return label


#: The metric the transfer heatmaps show.
TRANSFER_METRIC = "psnr-drop"


def shared_scale(matrices: Iterable[TransferMatrix], metric: str = TRANSFER_METRIC) -> tuple[float, float]:
    """One colour scale for several heatmaps: from min(0, smallest value) to the largest |value|."""
    values = [v for m in matrices if metric in m.values for row in m.values[metric] for v in row
              if isinstance(v, (int, float)) and math.isfinite(v)]
    if not values:
        return 0.0, 1.0
    lo, hi = min(0.0, min(values)), max(abs(v) for v in values)
    return lo, hi if hi > lo else lo + 1.0


@register_section("transfer-image", "transfer-model")
def transfer_section(ctx: ReportContext) -> str:
    """Transfer: a heatmap per cross-image matrix, and per cross-model setting the mean matrix, all on
    one colour scale."""
    image_rows, model_rows, figures = ctx.rows("transfer-image"), ctx.rows("transfer-model"), ctx.figures
    if not image_rows and not model_rows:
        return ""
    maps: list[tuple[str, str, TransferMatrix]] = []  # (figure name, title, matrix)
    for i, r in enumerate(image_rows):
        c = r.config
        maps.append((f"transfer-image-{i + 1}.png", f"cross-image · {_label(c)} · {c['attack']} · {c['budget']}",
                     TransferMatrix.from_dict(r.result)))
    groups: dict[tuple, list[Row]] = {}
    for r in model_rows:
        c = r.config
        groups.setdefault((c["attack"], c["budget"], tuple(c["sources"]), tuple(c["targets"]), c.get("crop")), []).append(r)
    for i, ((attack, budget, _, _, _), members) in enumerate(groups.items()):
        n = len(members)
        maps.append((f"transfer-model-{i + 1}.png",
                     f"cross-model · {attack} · {budget} · mean over {n} image{'s' if n != 1 else ''}",
                     mean_matrix([TransferMatrix.from_dict(m.result) for m in members])))
    lo, hi = shared_scale(m for _, _, m in maps)
    out = ['<section id="transfer"><h2>Transfer</h2><p class="note">Cells: reconstruction PSNR drop (dB) '
           "of the target caused by what was crafted on the source, from real bitstreams; the diagonal is "
           f"the white-box attack. Every heatmap uses the same colour scale ({lo:.2f} to {hi:.2f} dB).</p>"]
    for name, title, matrix in maps:
        figures[name] = png = heatmap_figure(matrix, TRANSFER_METRIC, title, vmin=lo, vmax=hi)
        out.append(f"<figure>{img_tag(png, title)}<figcaption>{html.escape(title)}</figcaption></figure>")
    out.append("</section>")
    return "".join(out)


#: Configuration keys that identify an ``analyze`` setting (its rows differ by image only).
ANALYZE_BY = ("model", "attack", "budget", "steps", "standin", "crop")


@register_section("analyze")
def analyze_section(ctx: ReportContext) -> str:
    """Diagnostics: per setting, each image's worst-case linear gain (20·log10 σ₁ of the relaxed codec's
    Jacobian) beside the attack's VI, their Spearman correlation over the images, and a plot of the
    magnify ratio per layer (mean over the images)."""
    rows = ctx.rows("analyze")
    if not rows:
        return ""
    groups: dict[tuple[str, ...], list[Row]] = {}
    for r in rows:
        groups.setdefault(_setting(r.config, ANALYZE_BY), []).append(r)
    out = ['<section id="analyze"><h2>Amplification spectrum</h2><p class="note">gain = 20·log10 σ₁, σ₁ the '
           "largest singular value of the Jacobian of the relaxed codec x ↦ x̂ at the image (Lanczos): linearised, no "
           "perturbation is amplified more. VI = Chen &amp; Ma’s ΔPSNR of the attack, from real bitstreams, on the "
           "same scale; linear = the linearised gain of the attack’s own perturbation; align = |cos| between it "
           "and the top singular vector. Spearman: rank correlation of gain and VI over the images.</p>"]
    series: dict[str, list[tuple[str, float]]] = {}
    for members in groups.values():
        c = members[0].config
        attack = "no attack" if c.get("attack") in (None, "none") else f"{c.get('attack')} {c.get('budget')}, " \
                 f"{c.get('steps')} steps"
        label = f"{c.get('model')} · {attack}"
        table = []
        for r in sorted(members, key=image_name):
            res = r.result
            sig = list(res.get("sigmas") or [])
            table.append({"image": image_name(r), "gain": res.get("gain-db"), "s1": sig[0] if sig else None,
                          "s2": sig[1] if len(sig) > 1 else None, "vi": res.get("delta-psnr"),
                          "lin": res.get("linear-db"), "drop": res.get("psnr-drop"), "align": res.get("alignment"),
                          "it": res.get("iterations")})
        rho = correlations([{"gain-db": t["gain"], "delta-psnr": t["vi"]} for t in table])
        corr = rho[0] if rho else None
        corr_text = ("Spearman(gain, VI) = " + (f"{corr['spearman']:+.3f} over {corr['n']} images"
                     if corr and corr["spearman"] is not None else "– (fewer than 3 images with both)"))
        out.append(f"<h3>{html.escape(label)}</h3>")
        out.append(html_table(table, [("image", "image"), ("gain", "gain (dB)", DB), ("s1", "σ₁", 3), ("s2", "σ₂", 3),
                                      ("it", "steps"), ("vi", "VI (dB)", DB), ("lin", "linear (dB)", DB),
                                      ("drop", "PSNR drop (dB)", DB), ("align", "align", 3)]))
        out.append(f'<p class="note">{html.escape(corr_text)}.</p>')
        layers: dict[str, list[float]] = {}
        for r in members:
            for layer in r.result.get("layers") or []:
                layers.setdefault(str(layer.get("name")), []).append(layer.get("magnify"))
        if layers:
            series[label] = [(n, finite_mean(v)) for n, v in layers.items()]
    if series:
        ctx.figures["analyze-magnify.png"] = png = magnify_figure(series)
        out.append(f"<figure>{img_tag(png, 'magnify ratio per layer')}<figcaption>Magnify ratio of the adversarial "
                   "image per layer, (‖Δa‖/‖a‖) / (‖Δx‖/‖x‖), mean over the images (Wu et al. 2024): above 1, the "
                   "layer grew the perturbation relative to the signal.</figcaption></figure>")
    out.append("</section>")
    return "".join(out)


# ----- the page ---------------------------------------------------------------------------------------
def render_report(store: ResultStore, title: str = "robustnic report", max_panels: int = 8,
                  notes: Iterable[str] = (), figures: dict[str, bytes] | None = None) -> str:
    """The report page for every row of ``store``, as an HTML string: the registered sections of the
    kinds it holds (:mod:`robustnic.report.sections`), a generic table for any other kind.

    The PNGs embedded in the page are also put into ``figures`` (file name -> bytes) when given.
    """
    figures = {} if figures is None else figures
    rows = latest_rows(store.rows())
    by_kind: dict[str, list[Row]] = {}
    for r in rows:
        by_kind.setdefault(r.kind, []).append(r)
    sections = render_sections(ReportContext(store, by_kind, figures, max_panels))
    present = re.findall(r'<section id="([^"]+)"><h2>([^<]+)</h2>', "".join(sections))
    nav = " ".join(f'<a href="#{i}">{html.escape(t)}</a>' for i, t in present)
    counts = ", ".join(f"{n} {k}" for k, n in sorted(Counter(r.kind for r in rows).items())) or "no rows"
    versions = ", ".join(sorted({r.code_version for r in rows})) or "–"
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    note_html = "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
    body = "".join(sections) or "<p>The store holds no rows yet: run <code>robustnic bench</code>.</p>"
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><main>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="meta">robustnic {__version__} · store <code>{html.escape(Path(store.path).name)}</code> · '
        f"{len(rows)} rows ({html.escape(counts)}) · code {html.escape(versions)} · generated {created}. "
        "All rows: <a href=results.csv>results.csv</a>, <a href=results.json>results.json</a>.</p>"
        f"{note_html}<nav>{nav}</nav>{body}</main></body></html>\n"
    )


def build_report(store: str | os.PathLike, out_dir: str | os.PathLike, title: str = "robustnic report",
                 max_panels: int = 8, notes: Iterable[str] = (), save_figures: bool = True) -> Path:
    """Write ``OUT_DIR/report.html`` (self-contained) and ``results.csv``/``results.json``; return the page.

    With ``save_figures`` the plots and panels are also written as PNGs into ``OUT_DIR/figures``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, bytes] = {}
    with ResultStore(store, readonly=True) as results:
        page = render_report(results, title, max_panels, notes, figures)
        rows = results.rows()
    export_rows(rows, out / "results.csv")
    export_rows(rows, out / "results.json")
    if save_figures:
        for name, png in figures.items():
            atomic_write_bytes(out / "figures" / name, png)
    path = out / REPORT_NAME
    atomic_write_text(path, page)
    return path

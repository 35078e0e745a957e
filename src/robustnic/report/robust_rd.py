"""The report's robust rate-distortion table (issue 17): per model × defense, the clean cost, the damage
under the defense's own worst attack, and the speed, all read from a store's ``rd`` and ``attack`` rows.

One table per image set (crop and images of the ``rd`` rows); one row per (model, defense) with
``rd`` rows:

* clean bpp and PSNR: means over the images;
* RD cost vs none: the change of the RD cost ``bpp + λ·255²·MSE`` (the loss the model was trained to
  minimise, at its training λ from :func:`rd_lambda`) against the undefended model's, the rule of
  ``benchmarks/defense_table.py`` (negative: a better trade-off; a first-order "rate at equal PSNR"
  along the slope λ·255² would exaggerate changes of more than a few tenths of a dB);
* BD-rate vs none, when the model's family (``hyperprior-long:q2``, ``:q4``, ...) has two rates or
  more in the table, with and without the defense (:func:`robustnic.metrics.bd.bd_rate`);
* per budget, the damage (mean ``psnr-drop``) of the worst distortion attack run on the entry, adaptive
  settings (the defense's own attack modes) preferred, and its part above the brightness-shift floor
  (the ``shift`` attack's damage on the same images);
* encode and decode time over the undefended model's (ratio of the means of the ``rd`` rows' timing).
"""

from __future__ import annotations

import html
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from robustnic.attacks import BASELINES
from robustnic.report.html import _budget_key, family, image_set_label, image_name
from robustnic.report.sections import BPP, DB, ReportContext, fmt, html_table, register_section
from robustnic.studies.store import Row
from robustnic.utils.tables import finite_mean, is_finite_number, is_number, mean_count

#: The undefended setting every entry is compared with.
PLAIN = "none"
#: Configuration keys that do not make two attack rows different settings (an image, a budget).
_NOT_SETTING = ("image", "budget", "fingerprints", "kind")


def _image_id(row: Row) -> str:
    """What identifies a row's image: its sha256 where recorded, else its name."""
    image = row.config.get("image")
    if isinstance(image, dict):
        return str(image.get("sha256") or image.get("name") or "?")
    return str(image)


def _psnr_to_mse(psnr: Any) -> float | None:
    """MSE in [0, 1]² units for a PSNR in dB (0 for an infinite PSNR; None for no value)."""
    if not is_number(psnr) or math.isnan(psnr):
        return None
    return 10.0 ** (-psnr / 10) if math.isfinite(psnr) else (0.0 if psnr > 0 else None)


def rd_lambda(model: str, rows: Iterable[Row] = ()) -> float | None:
    """The RD trade-off λ (MSE) a model was trained with, without loading it; None when unknown.

    In this order: a ``lambda`` / ``lmbda`` recorded in one of ``rows`` (result or configuration); the
    manifest's λ of a shipped model trained for MSE; CompressAI's λ for the spec's quality ``qK``
    (:data:`robustnic.codecs.architectures.LAMBDAS`) for a learned MSE codec. Classical codecs,
    checkpoint files, MS-SSIM models and specs without a quality get None.
    """
    for r in rows:
        for d in (r.result, r.config):
            for key in ("lambda", "lmbda"):
                if is_finite_number(d.get(key)) and d[key] > 0:
                    return float(d[key])
    from robustnic.codecs.architectures import LAMBDAS
    from robustnic.codecs.spec import parse_codec_spec
    from robustnic.errors import RobustnicError

    try:
        spec = parse_codec_spec(str(model))
    except RobustnicError:
        return None
    if spec.kind in ("classical", "file") or spec.quality is None:
        return None
    if spec.kind == "zoo":
        from robustnic.codecs.zoo import read_manifest

        shipped = read_manifest().get(f"{spec.name}:q{spec.quality}")
        if shipped is not None:
            info = shipped.info
            return float(info["lambda"]) if shipped.metric == "mse" and is_finite_number(info.get("lambda")) else None
    if (spec.metric or "mse") != "mse":
        return None
    return LAMBDAS["mse"].get(spec.quality)


@dataclass
class Entry:
    """One (model, defense, crop) with ``rd`` rows: its rows by image id and the table row it becomes."""

    model: str
    defense: str
    crop: Any
    rd: dict[str, Row] = field(default_factory=dict)
    row: dict[str, Any] = field(default_factory=dict)

    @property
    def images(self) -> frozenset[str]:
        return frozenset(self.rd)

    def mean(self, metric: str) -> float:
        return finite_mean(r.result.get(metric) for r in self.rd.values())

    def mean_timing(self, key: str) -> float:
        return finite_mean(r.timing.get(key) for r in self.rd.values())

    def mean_mse(self) -> float:
        return finite_mean(_psnr_to_mse(r.result.get("psnr-rgb")) for r in self.rd.values())


@dataclass
class RobustTable:
    """One image set's table: its crop, image names, budgets (in order) and rows (one per entry)."""

    crop: Any
    names: tuple[str, ...]
    budgets: list[str]
    rows: list[dict[str, Any]]


def _setting_key(config: dict[str, Any]) -> str:
    return repr(sorted((k, repr(v)) for k, v in config.items() if k not in _NOT_SETTING))


def _attack_label(config: dict[str, Any]) -> str:
    steps = config.get("steps")
    label = str(config.get("attack")) + (f" · {steps} steps" if steps is not None else "")
    return label + (" · adaptive" if config.get("adaptive") else " · not adaptive")


def _worst_setting(groups: dict[str, list[Row]], prefer_adaptive: bool = True) -> list[Row] | None:
    """The rows of the setting to report: adaptive ones first (when asked), then the one covering the
    most images, then the most damaging (mean ``psnr-drop``)."""
    def key(members: list[Row]) -> tuple[bool, int, float]:
        drop, n = mean_count(m.result.get("psnr-drop") for m in members)
        return (prefer_adaptive and bool(members[0].config.get("adaptive")), n, drop if n else -math.inf)

    return max(groups.values(), key=key) if groups else None


def _attack_groups(rows: Iterable[Row], entry: Entry, budget: str) -> tuple[dict[str, list[Row]], dict[str, list[Row]]]:
    """The distortion-attack rows of ``entry`` at ``budget`` on its images, by setting: (gradient
    attacks, the ``shift`` floor). The ``noise`` baseline, other objectives, targeted and multi-model
    attacks are left out."""
    attacks: dict[str, list[Row]] = {}
    shifts: dict[str, list[Row]] = {}
    for r in rows:
        c = r.config
        if (c.get("model") != entry.model or str(c.get("defense") or PLAIN) != entry.defense
                or c.get("crop") != entry.crop or c.get("budget") != budget or _image_id(r) not in entry.rd):
            continue
        if c.get("objective", "distortion") != "distortion" or c.get("target") or c.get("also_against"):
            continue
        method = c.get("attack")
        if method == "shift":
            shifts.setdefault(_setting_key(c), []).append(r)
        elif method not in BASELINES:
            attacks.setdefault(_setting_key(c), []).append(r)
    return attacks, shifts


def _drops(rows: Iterable[Row]) -> dict[str, float]:
    return {_image_id(r): r.result["psnr-drop"] for r in rows if is_finite_number(r.result.get("psnr-drop"))}


def _bd_points(entries: Iterable[Entry]) -> tuple[list[float], list[float]]:
    points = sorted((e.row["bpp"], e.row["psnr"]) for e in entries
                    if is_finite_number(e.row["bpp"]) and e.row["bpp"] > 0 and is_finite_number(e.row["psnr"]))
    return [p[0] for p in points], [p[1] for p in points]


def _bd_rate(plain: list[Entry], defended: list[Entry]) -> float | None:
    """BD-rate (a fraction) of the defended curve against the plain one; None below two rates each."""
    from robustnic.metrics.bd import bd_rate

    (b0, p0), (b1, p1) = _bd_points(plain), _bd_points(defended)
    if min(len(set(b0)), len(set(b1)), len(set(p0)), len(set(p1))) < 2:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = bd_rate(b0, p0, b1, p1) / 100
    except (ValueError, np.linalg.LinAlgError):  # the curves do not overlap, or a degenerate fit
        return None
    return value if math.isfinite(value) else None


def _ratio(a: float, b: float) -> float | None:
    return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else None


def robust_rd_tables(rd_rows: Iterable[Row], attack_rows: Iterable[Row]) -> list[RobustTable]:
    """The robust-RD tables of a store's newest ``rd`` and ``attack`` rows (module docstring); a model
    with neither a defended ``rd`` row nor an attack on these images is left out.

    Row keys: ``model``, ``defense``, ``bpp``, ``psnr``, ``rate`` and ``bd`` (fractions: 0.05 is 5 % more
    bits), ``drop@BUDGET``, ``above@BUDGET`` (dB), ``attack`` (the settings reported), ``encode`` and
    ``decode`` (ratios), ``n`` (images) and ``n:drop@BUDGET`` / ``n:above@BUDGET`` where fewer images
    entered a mean.
    """
    attack_rows = list(attack_rows)
    entries: dict[tuple[str, str, str], Entry] = {}
    for r in rd_rows:
        c = r.config
        model, defense = str(c.get("model")), str(c.get("defense") or PLAIN)
        entry = entries.setdefault((model, defense, repr(c.get("crop"))), Entry(model, defense, c.get("crop")))
        entry.rd[_image_id(r)] = r
    tables: dict[tuple[str, frozenset[str]], list[Entry]] = {}
    for e in entries.values():
        tables.setdefault((repr(e.crop), e.images), []).append(e)
    out = []
    for members in tables.values():
        plain = {e.model: e for e in members if e.defense == PLAIN}
        for e in members:
            e.row = {"model": e.model, "defense": e.defense, "bpp": e.mean("bpp"), "psnr": e.mean("psnr-rgb"),
                     "n": len(e.rd), "rate": None, "bd": None, "encode": None, "decode": None, "attack": ""}
        budgets: set[str] = set()
        for e in members:
            ref = plain.get(e.model)
            if ref is not None:
                lmbda = rd_lambda(e.model, [*e.rd.values(), *ref.rd.values()])
                bpp0, mse0, mse = ref.row["bpp"], ref.mean_mse(), e.mean_mse()
                if lmbda is not None and all(map(math.isfinite, (bpp0, mse0, mse, e.row["bpp"]))) and bpp0 > 0:
                    e.row["rate"] = (e.row["bpp"] + lmbda * 255.0**2 * mse) / (bpp0 + lmbda * 255.0**2 * mse0) - 1
                e.row["encode"] = _ratio(e.mean_timing("encoding_time"), ref.mean_timing("encoding_time"))
                e.row["decode"] = _ratio(e.mean_timing("decoding_time"), ref.mean_timing("decoding_time"))
            budgets |= {str(r.config.get("budget")) for r in attack_rows
                        if r.config.get("model") == e.model and r.config.get("attack") not in BASELINES}
        by_family: dict[tuple[str, str], list[Entry]] = {}
        for e in members:
            by_family.setdefault((family(e.model), e.defense), []).append(e)
        for e in members:
            e.row["bd"] = _bd_rate(by_family.get((family(e.model), PLAIN), []), by_family[(family(e.model), e.defense)])
        ordered = sorted(budgets, key=_budget_key)
        kept = []
        for b in ordered:
            found = False
            for e in members:
                found |= _fill_budget(e, attack_rows, b)
            if found:
                kept.append(b)
        # a model run neither defended nor attacked adds nothing to the clean RD table: left out
        shown = {e.model for e in members if e.defense != PLAIN or any(k.startswith("drop@") for k in e.row)}
        members = sorted((e for e in members if e.model in shown),
                         key=lambda e: (e.model, e.defense != PLAIN, e.defense))
        if not members:
            continue
        names = tuple(sorted(image_name(r) for r in members[0].rd.values()))
        out.append(RobustTable(members[0].crop, names, kept, [e.row for e in members]))
    out.sort(key=lambda t: (-len(t.names), t.names, repr(t.crop)))
    return out


def _fill_budget(entry: Entry, attack_rows: list[Row], budget: str) -> bool:
    """Put the damage of ``entry`` at ``budget`` and its part above the shift floor into its row;
    whether a (non-baseline) attack was found."""
    attacks, shifts = _attack_groups(attack_rows, entry, budget)
    chosen = _worst_setting(attacks)
    if chosen is None:
        return False
    n = len(entry.rd)
    drops = _drops(chosen)
    entry.row[f"drop@{budget}"] = finite_mean(drops.values())
    if len(drops) < n:
        entry.row[f"n:drop@{budget}"] = len(drops)
    label = _attack_label(chosen[0].config)
    labels = [s for s in entry.row["attack"].split("; ") if s]
    entry.row["attack"] = "; ".join(labels + [label] * (label not in labels))
    floor = _worst_setting(shifts, prefer_adaptive=False)
    if floor is not None:
        shift = _drops(floor)
        common = [i for i in drops if i in shift]
        entry.row[f"above@{budget}"] = finite_mean(drops[i] - shift[i] for i in common)
        if len(common) < n:
            entry.row[f"n:above@{budget}"] = len(common)
    return True


def _percent(v: Any) -> str:
    return f"{100 * v:+.1f}%" if is_finite_number(v) else fmt(v)


def _times(v: Any) -> str:
    return f"{v:.2f}×" if is_finite_number(v) else fmt(v)


def table_columns(budgets: list[str]) -> list[tuple]:
    """The columns of a robust-RD table with ``budgets``: (key, header, format)."""
    return [("model", "model"), ("defense", "defense"), ("bpp", "bpp", BPP), ("psnr", "PSNR (dB)", DB),
            ("rate", "RD cost vs none", _percent), ("bd", "BD-rate vs none", _percent),
            *((f"drop@{b}", f"damage @{b} (dB)", DB) for b in budgets),
            *((f"above@{b}", f"above shift floor @{b} (dB)", DB) for b in budgets),
            ("attack", "attack reported"), ("encode", "encode × none", _times), ("decode", "decode × none", _times),
            ("n", "images")]


@register_section("rd", "attack", name="robust_rd")
def robust_rd_section(ctx: ReportContext) -> str:
    """The robust rate-distortion table: one per image set, a row per (model, defense) with ``rd`` rows."""
    tables = robust_rd_tables(ctx.rows("rd"), ctx.rows("attack"))
    if not tables:
        return ""
    out = ['<section id="robust-rd"><h2>Robust rate-distortion</h2><p class="note">'
           "One row per model × defense with clean <code>rd</code> rows, one table per image set. bpp and PSNR: "
           "means over the images. RD cost vs none: the change of bpp + λ·255²·MSE (the loss the model was trained "
           "to minimise; MSE from each image’s PSNR) against the undefended model’s, negative when the defended "
           "codec codes at a better trade-off; λ is the one recorded in the rows, else the shipped "
           "model’s or CompressAI’s λ for its quality <code>qK</code> (blank for classical codecs, checkpoints, "
           "MS-SSIM models and specs without a quality). BD-rate vs none: Bjøntegaard over the family’s rates "
           "(blank below two rates with and without the defense). Damage: mean PSNR drop (clean − attacked "
           "reconstruction, real bitstreams) of the distortion attack reported, chosen per budget among the "
           "attack rows of that model and defense on these images: adaptive settings (the defense’s own worst "
           "attack mode kept per image) before non-adaptive ones, then the most images, then the most damage; "
           "the noise baseline is left out. Above shift floor: mean over the images of damage − the "
           "<code>shift</code> attack’s damage at the same budget (blank without shift rows). Encode/decode × "
           "none: mean encode/decode time of the <code>rd</code> rows over the undefended model’s (wall clock, "
           "one thread). (k/n): k of the n images entered the mean.</p>"]
    for t in tables:
        label = f"crop {t.crop} · {image_set_label(t.names)}" if t.crop is not None else image_set_label(t.names)
        out.append(f"<h3>{html.escape(label)}</h3>")
        out.append(html_table(t.rows, table_columns(t.budgets), left=2))
    out.append("</section>")
    return "".join(out)


__all__ = ["PLAIN", "RobustTable", "rd_lambda", "robust_rd_section", "robust_rd_tables", "table_columns"]

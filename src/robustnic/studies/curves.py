"""Robustness curves from attack rows, and the one number that summarises a curve.

A curve is one attack setting (model, defense, attack, objective, stand-in, steps, restarts, distortion
reference and metric, adaptive, and a budget's L∞ cap if it has one) swept over budgets of one kind
(``psnr:30 … psnr:50`` or ``linf:1 … linf:16``); every point is the mean over
the same images (those attacked at every budget of the curve) of the reconstruction PSNR under attack (``psnr-out``, vs the source image), the bpp
increase and Chen & Ma's ΔPSNR (VI), all measured on real bitstreams.

**Robust PSNR (the curve's area, normalised).** :func:`curve_auc` integrates ``psnr-out`` over the
budget axis with the trapezoid rule and divides by the width of the budget range::

    AUC = 1 / (b_max − b_min) · ∫ psnr_out(b) db        (one budget: AUC = psnr_out there)

so it is the *average reconstruction PSNR in dB over the budget range*: higher is more robust, and
a codec whose reconstruction the attack cannot move scores its clean PSNR. It is only comparable
between curves over the same budget range, which is why every AUC is reported with its range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from robustnic.studies.store import Row, row_means
from robustnic.utils import tables

#: Configuration keys that identify an attack setting (all but the budget and the image). ``restarts``,
#: ``reference``, ``metric``, ``target`` and ``mask`` are absent from configurations at their defaults.
CURVE_KEYS = ("model", "defense", "attack", "objective", "standin", "steps", "adaptive", "crop", "seed",
              "restarts", "reference", "metric", "target", "mask")
#: Per-image results averaged at each point.
CURVE_METRICS = ("psnr-in", "psnr-clean", "psnr-out", "psnr-drop", "delta-psnr", "bpp-clean", "bpp-adv",
                 "bpp-increase")


def budget_axis(budget: str) -> tuple[str, float]:
    """``"psnr:40"`` -> ``("psnr", 40.0)`` (kind and value as a spec writes them; a capped budget
    ``"psnr:40,linf:16"`` gives the same, its cap is :func:`budget_cap`)."""
    kind, _, value = str(budget).partition(",")[0].partition(":")
    return kind.strip().lower(), float(value)


def budget_cap(budget: str) -> float | None:
    """The L∞ cap of a budget spec in 1/255 units (``"psnr:40,linf:16"`` -> 16.0), None without one."""
    _, _, cap = str(budget).partition(",")
    return float(cap.partition(":")[2]) if cap else None


def finite_mean(values: Iterable[float | None]) -> float:
    """Mean of the finite values (NaN if there is none): :func:`robustnic.utils.tables.finite_mean`."""
    return tables.finite_mean(values)


def curve_auc(x: list[float], y: list[float]) -> float:
    """Normalised trapezoid area of ``y`` over ``x`` (see the module docstring); NaN points skipped."""
    pts = sorted((a, b) for a, b in zip(x, y) if math.isfinite(a) and math.isfinite(b))
    if not pts:
        return math.nan
    if len(pts) == 1 or pts[-1][0] == pts[0][0]:
        return finite_mean(b for _, b in pts)
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(pts, pts[1:]))
    return area / (pts[-1][0] - pts[0][0])


@dataclass
class RobustnessCurve:
    """Means over images at each budget of one attack setting (``setting``: the :data:`CURVE_KEYS`)."""

    setting: dict[str, Any]
    budget_kind: str
    budgets: list[float]
    points: dict[str, list[float]] = field(default_factory=dict)
    images: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        s = self.setting
        label = str(s["model"])
        if s.get("defense") not in (None, "none"):
            label += f" +{s['defense']}" + (" (adaptive)" if s.get("adaptive") else "")
        extra = [f"{k} {s[k]}" for k in ("restarts", "reference", "metric") if s.get(k) is not None]
        if s.get("linf-cap") is not None:
            extra.append(f"L∞ ≤ {s['linf-cap']:g}/255")
        return f"{label}, {s['attack']}" + "".join(f", {e}" for e in extra)

    @property
    def budget_specs(self) -> list[str]:
        """The budgets of the points as specs (``"psnr:40"``, ``"psnr:40,linf:16"``)."""
        cap = self.setting.get("linf-cap")
        return [f"{self.budget_kind}:{b:g}" + ("" if cap is None else f",linf:{cap:g}") for b in self.budgets]

    @property
    def auc(self) -> float:
        """Robust PSNR: mean reconstruction PSNR under attack over the budget range (dB)."""
        return curve_auc(self.budgets, self.points["psnr-out"])

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "setting": self.setting, "budget_kind": self.budget_kind,
                "budgets": self.budgets, "points": self.points, "images": self.images, "auc": self.auc,
                "range": [min(self.budgets), max(self.budgets)]}


def _image(row: Row) -> str:
    image = row.config.get("image")
    return image.get("sha256") or image.get("name") if isinstance(image, dict) else str(image)


def robustness_curves(rows: Iterable[Row]) -> list[RobustnessCurve]:
    """Group ``attack`` rows into curves (one per setting and budget kind), sorted by label.

    Every point of a curve averages the same images: those attacked at every budget of the curve
    (a setting run at 40 dB on 6 images and at 30 and 50 dB on 2 gives a curve over those 2).
    """
    groups: dict[tuple, dict[float, list[Row]]] = {}
    settings: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        if row.kind != "attack":
            continue
        kind, value = budget_axis(row.config["budget"])
        setting = {k: row.config.get(k) for k in CURVE_KEYS}
        if (cap := budget_cap(row.config["budget"])) is not None:
            setting["linf-cap"] = cap
        gid = (kind, *map(repr, setting.values()))
        settings[gid] = setting
        groups.setdefault(gid, {}).setdefault(value, []).append(row)
    curves = []
    for gid, by_budget in groups.items():
        # the same images at every budget, or the curve would mix images of unequal difficulty
        common = set.intersection(*({_image(r) for r in rs} for rs in by_budget.values()))
        by_budget = {b: [r for r in rs if _image(r) in common] for b, rs in by_budget.items()}
        budgets = sorted(by_budget)
        curve = RobustnessCurve(settings[gid], gid[0], budgets)
        for metric in CURVE_METRICS:
            curve.points[metric] = [finite_mean(r.result.get(metric) for r in by_budget[b]) for b in budgets]
        curve.images = [len(by_budget[b]) for b in budgets]
        curves.append(curve)
    return sorted(curves, key=lambda c: (c.budget_kind, c.label))


def group_means(rows: Iterable[Row], by: tuple[str, ...], metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    """Average ``metrics`` (from each row's result) over rows that share the configuration values ``by``:
    :func:`robustnic.studies.store.row_means` (the rule of :func:`robustnic.utils.tables.group_means`)."""
    return row_means(rows, by, metrics)

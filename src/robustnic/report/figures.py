"""Plots for the report, drawn with matplotlib's Agg canvas (no display, no global pyplot state).

Every function returns PNG bytes, so the report can embed them and the CLI can write them.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from robustnic.studies.curves import RobustnessCurve
from robustnic.studies.transfer import TransferMatrix

DPI = 110
_MARKERS = "osD^v<>ph*"


def figure_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _style(ax, xlabel: str, ylabel: str, title: str | None = None) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)


#: Readable axis and colour-bar labels for result keys (others are shown as they are).
METRIC_LABELS = {
    "psnr-drop": "PSNR drop (dB)",
    "delta-psnr": "ΔPSNR (VI, dB)",
    "psnr-in": "input PSNR (dB)",
    "psnr-clean": "clean reconstruction PSNR (dB)",
    "psnr-out": "reconstruction PSNR under attack (dB)",
    "bpp-clean": "bpp (clean)",
    "bpp-adv": "bpp (attacked)",
    "bpp-increase": "bpp increase (attacked − clean)",
}


def metric_label(metric: str) -> str:
    """The axis label of a result key (``"psnr-drop"`` -> ``"PSNR drop (dB)"``)."""
    return METRIC_LABELS.get(metric, metric)


#: An RD point: (bpp, PSNR) or (bpp, PSNR, rate label such as ``"q3"``).
RDPoint = tuple[float, float] | tuple[float, float, str]


def rd_figure(series: dict[str, list[RDPoint]], title: str = "Clean rate-distortion",
              classical: Sequence[str] = ("jpeg", "webp")) -> bytes:
    """PSNR vs bpp, one line per codec family with a marker per rate (``series``: family -> points).

    A family with several rates labels each marker with its rate; one with a single rate names it in
    the legend (beside the plot, so it covers no point). Markers are hollow and differ per family; where
    points of different families nearly coincide, an inset magnifies them. The ``classical`` families
    are dashed.
    """
    fig = Figure(figsize=(8.6, 4.6))
    ax = fig.add_subplot()
    lines: list[tuple[list[float], list[float], dict[str, Any]]] = []
    for i, (label, pts) in enumerate(sorted(series.items())):
        pts = sorted((p for p in pts if all(math.isfinite(v) for v in p[:2])), key=lambda p: p[:2])
        if not pts:
            continue
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        rates = [p[2] if len(p) > 2 else "" for p in pts]
        name = label if len(pts) > 1 or not rates[0] else f"{label} ({rates[0]})"
        dashed = label.split(" ", 1)[0].split(":", 1)[0] in classical
        style = dict(linestyle="--" if dashed else "-", marker=_MARKERS[i % len(_MARKERS)], markersize=7 + (i % 3),
                     mfc="none", mew=1.6)
        (line,) = ax.plot(xs, ys, label=name, **style)
        style["color"] = line.get_color()
        lines.append((xs, ys, style))
        if len(pts) > 1:
            for x, y, rate in zip(xs, ys, rates):
                if rate:
                    ax.annotate(rate, (x, y), textcoords="offset points", xytext=(5, -10), fontsize=7,
                                color=line.get_color())
    _style(ax, "bits per pixel (real bitstreams)", "PSNR (dB)", title)
    ax.legend(fontsize=8, title="codec family", title_fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    if (box := _crowded(lines, ax)) is not None:
        inset = ax.inset_axes((0.6, 0.1, 0.37, 0.4))  # lower right: empty below RD curves
        for xs, ys, style in lines:
            inset.plot(xs, ys, **style)
        inset.set_xlim(box[0], box[1])
        inset.set_ylim(box[2], box[3])
        inset.tick_params(labelsize=7)
        inset.grid(True, alpha=0.3)
        inset.set_title("magnified", fontsize=7)
        ax.indicate_inset_zoom(inset, edgecolor="#56606b")
    fig.tight_layout()
    return figure_png(fig)


def _crowded(lines: list[tuple[list[float], list[float], dict[str, Any]]], ax, near: float = 0.03,
             ) -> tuple[float, float, float, float] | None:
    """The (x0, x1, y0, y1) box around points of different lines that lie within ``near`` of the axes'
    extent of each other (padded so they separate), or None when no two lines crowd."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    w, h = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    pts = [(x, y, i) for i, (xs, ys, _) in enumerate(lines) for x, y in zip(xs, ys)]
    close = [(a, b) for k, a in enumerate(pts) for b in pts[k + 1:]
             if a[2] != b[2] and abs(a[0] - b[0]) < near * w and abs(a[1] - b[1]) < near * h]
    if not close:
        return None
    xs = [p[0] for pair in close for p in pair]
    ys = [p[1] for pair in close for p in pair]
    px = max(max(xs) - min(xs), 0.01 * w)
    py = max(max(ys) - min(ys), 0.01 * h)
    return min(xs) - px, max(xs) + px, min(ys) - py, max(ys) + py


#: Per-image spread of a curve: metric -> (lows, highs), one value per budget of the curve.
Spread = dict[str, tuple[Sequence[float], Sequence[float]]]


def robustness_figure(curves: Sequence[RobustnessCurve], spreads: Sequence[Spread | None] | None = None) -> bytes:
    """Reconstruction PSNR under attack and bpp increase vs budget, one line per curve.

    ``spreads`` (aligned with ``curves``) shades each curve's band over its images (e.g. min–max),
    where it has one.
    """
    spreads = list(spreads) if spreads is not None else [None] * len(curves)
    kinds = sorted({c.budget_kind for c in curves})
    fig = Figure(figsize=(11, 3.9 * len(kinds)))
    for row, kind in enumerate(kinds):
        ax1 = fig.add_subplot(len(kinds), 2, 2 * row + 1)
        ax2 = fig.add_subplot(len(kinds), 2, 2 * row + 2)
        members = [(c, s) for c, s in zip(curves, spreads) if c.budget_kind == kind]
        for i, (c, spread) in enumerate(members):
            m = _MARKERS[i % len(_MARKERS)]
            n = min(c.images) if c.images else 0
            for ax, metric, label in ((ax1, "psnr-out", f"{c.label} (AUC {c.auc:.2f} dB, n={n})"),
                                      (ax2, "bpp-increase", f"{c.label} (n={n})")):
                (line,) = ax.plot(c.budgets, c.points[metric], marker=m, label=label)
                if spread and metric in spread:
                    lo, hi = spread[metric]
                    ax.fill_between(c.budgets, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
        xlabel = {"psnr": "input PSNR budget (dB)", "linf": "L∞ budget (1/255)", "mse": "MSE budget",
                  "l2": "L2 budget"}.get(kind, kind)
        _style(ax1, xlabel, "reconstruction PSNR under attack (dB)", "Reconstruction quality under attack")
        _style(ax2, xlabel, "bpp increase (attacked − clean)", "Rate increase under attack")
        if kind == "linf":
            for ax in (ax1, ax2):
                ax.invert_xaxis()  # left = stronger attack, as for PSNR budgets
        ax1.legend(fontsize=7)
    fig.tight_layout()
    return figure_png(fig)


@dataclass(frozen=True)
class Bar:
    """One bar: a mean over ``n`` images and the ``low``–``high`` spread over them."""

    label: str
    mean: float
    low: float
    high: float
    n: int


def bar_figure(bars: Sequence[Bar], xlabel: str, title: str) -> bytes:
    """Horizontal bars, top to bottom in the given order, with min–max error bars where ``n > 1`` and
    each bar's ``n`` written beside it."""
    fig = Figure(figsize=(8.5, 1.2 + 0.34 * max(1, len(bars))))
    ax = fig.add_subplot()
    ys = [float(y) for y in range(len(bars) - 1, -1, -1)]
    ax.barh(ys, [b.mean if math.isfinite(b.mean) else 0.0 for b in bars], color="#6b8fb5", height=0.6)
    spread = [(y, b) for y, b in zip(ys, bars) if b.n > 1 and math.isfinite(b.low) and math.isfinite(b.high)]
    if spread:
        ax.errorbar([b.mean for _, b in spread], [y for y, _ in spread], fmt="none", ecolor="#1d232a", capsize=3,
                    xerr=[[b.mean - b.low for _, b in spread], [b.high - b.mean for _, b in spread]])
    ax.set_yticks(ys, [b.label for b in bars], fontsize=8)
    finite = [b.high if b.n > 1 else b.mean for b in bars if math.isfinite(b.mean)]
    pad = 0.02 * (max(map(abs, finite), default=1.0) or 1.0)
    for y, b in zip(ys, bars):
        x = max(b.mean, b.high if b.n > 1 else b.mean, 0.0)
        ax.text(x + pad if math.isfinite(x) else pad, y, f"n={b.n}", va="center", fontsize=7, color="#56606b")
    ax.axvline(0, color="#1d232a", linewidth=0.8)
    _style(ax, xlabel, "", title)
    ax.grid(True, axis="x", alpha=0.3)
    ax.grid(False, axis="y")
    ax.margins(x=0.12)
    return figure_png(fig)


def recompression_figure(series: dict[str, dict[str, list[float]]], title: str = "Recompression") -> bytes:
    """PSNR vs the original and bpp at every generation (``series``: label -> {"psnr", "bpp"})."""
    fig = Figure(figsize=(11, 3.9))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, (label, s) in enumerate(series.items()):
        g = np.arange(1, len(s["psnr"]) + 1)
        style = "--" if label.split(":", 1)[0] in ("jpeg", "webp") else "-"
        ax1.plot(g, s["psnr"], style, label=label, marker=_MARKERS[i % len(_MARKERS)], markevery=max(1, len(g) // 8))
        ax2.plot(g, s["bpp"], style, label=label, marker=_MARKERS[i % len(_MARKERS)], markevery=max(1, len(g) // 8))
    _style(ax1, "generation", "PSNR vs original (dB)", f"{title}: quality")
    _style(ax2, "generation", "bits per pixel", f"{title}: rate")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    return figure_png(fig)


def heatmap_figure(matrix: TransferMatrix, metric: str = "psnr-drop", title: str | None = None,
                   fmt: str = "{:.2f}", vmin: float | None = None, vmax: float | None = None) -> bytes:
    """A transfer matrix as an annotated heatmap of one metric.

    ``vmin``/``vmax`` fix the colour scale (give several heatmaps the same to compare them); by
    default it spans this matrix's values (and 0). Names are wrapped, never cut.
    """
    values = np.array(matrix.metric(metric), dtype=float)
    n, m = values.shape
    finite = values[np.isfinite(values)]
    lo = min(0.0, float(finite.min()) if finite.size else 0.0) if vmin is None else vmin
    hi = (float(np.abs(finite).max()) if finite.size else 1.0) if vmax is None else vmax
    hi = hi if hi > lo else lo + 1.0
    cols = [wrap_label(c) for c in matrix.cols]
    rows = [wrap_label(r) for r in matrix.rows]
    col_lines = max((c.count("\n") + 1 for c in cols), default=1)
    row_chars = max((len(line) for r in rows for line in r.split("\n")), default=4)
    fig = Figure(figsize=(1.9 + 0.07 * row_chars + 1.2 * m, 1.5 + 0.18 * col_lines + 0.62 * n))
    ax = fig.add_subplot()
    im = ax.imshow(np.nan_to_num(values, nan=lo, posinf=hi, neginf=lo),
                   cmap="coolwarm" if metric == "delta-psnr" else "magma_r", vmin=lo, vmax=hi)
    ax.set_xticks(range(m), cols, fontsize=8)
    ax.set_yticks(range(n), rows, fontsize=8)
    ax.set_xlabel(matrix.col_label)
    ax.set_ylabel(matrix.row_label)
    for i in range(n):
        for j in range(m):
            v = values[i, j]
            dark = math.isfinite(v) and (v - lo) > 0.6 * (hi - lo)
            ax.text(j, i, fmt.format(v) if math.isfinite(v) else "–", ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    fig.colorbar(im, ax=ax, label=metric_label(metric), shrink=0.8)
    ax.set_title(title or metric_label(metric), fontsize=10)
    return figure_png(fig)


def magnify_figure(series: dict[str, list[tuple[str, float]]], title: str = "Layer-wise magnify ratio") -> bytes:
    """The magnify ratio per layer, in forward order, one line per setting (``series``: label -> (layer
    name, ratio) pairs; the layers of the first setting name the ticks). A dotted line marks 1 (the
    input's ratio); the axis is logarithmic when the ratios span more than a factor of 10."""
    names: list[str] = []
    for pts in series.values():
        names.extend(n for n, _ in pts if n not in names)
    fig = Figure(figsize=(max(6.0, 1.5 + 0.32 * len(names)), 4.2))
    ax = fig.add_subplot()
    finite: list[float] = []
    for i, (label, pts) in enumerate(series.items()):
        xs = [names.index(n) for n, v in pts if math.isfinite(v) and v > 0]
        ys = [v for _, v in pts if math.isfinite(v) and v > 0]
        finite += ys
        ax.plot(xs, ys, "-", marker=_MARKERS[i % len(_MARKERS)], label=label, markersize=4)
    ax.axhline(1.0, color="#1d232a", linestyle=":", linewidth=0.9)
    if finite and max(finite) / min(finite) > 10:
        ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    _style(ax, "", "magnify ratio (relative Δ vs input's)", title)
    if len(series) > 1:
        ax.legend(fontsize=7)
    return figure_png(fig)


def wrap_label(label: Any, width: int = 18) -> str:
    """``label`` broken into lines of about ``width`` characters after ``:``, ``-``, ``+`` or spaces;
    nothing is cut (a longer piece keeps its own line)."""
    pieces = re.findall(r"[^:\-+ ]+[:\-+ ]*|[:\-+ ]+", str(label))
    lines: list[str] = []
    for piece in pieces:
        if lines and len(lines[-1]) + len(piece.rstrip()) <= width:
            lines[-1] += piece
        else:
            lines.append(piece)
    return "\n".join(line.strip() for line in lines) or str(label)

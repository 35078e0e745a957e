"""Plots for the report, drawn with matplotlib's Agg canvas (no display, no global pyplot state).

Every function returns PNG bytes, so the report can embed them and the CLI can write them.
"""

from __future__ import annotations

import io
import math
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


def rd_figure(series: dict[str, list[tuple[float, float]]], title: str = "Clean rate-distortion") -> bytes:
    """PSNR vs bpp, one line per codec family (``series``: label -> [(bpp, psnr), ...])."""
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    for i, (label, pts) in enumerate(sorted(series.items())):
        pts = sorted(p for p in pts if all(math.isfinite(v) for v in p))
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker=_MARKERS[i % len(_MARKERS)], label=label)
    _style(ax, "bits per pixel (real bitstreams)", "PSNR (dB)", title)
    ax.legend(fontsize=8)
    return figure_png(fig)


def robustness_figure(curves: Sequence[RobustnessCurve]) -> bytes:
    """Reconstruction PSNR under attack and bpp increase vs budget, one line per curve."""
    kinds = sorted({c.budget_kind for c in curves})
    fig = Figure(figsize=(11, 3.9 * len(kinds)))
    for row, kind in enumerate(kinds):
        ax1 = fig.add_subplot(len(kinds), 2, 2 * row + 1)
        ax2 = fig.add_subplot(len(kinds), 2, 2 * row + 2)
        for i, c in enumerate(c for c in curves if c.budget_kind == kind):
            m = _MARKERS[i % len(_MARKERS)]
            ax1.plot(c.budgets, c.points["psnr-out"], marker=m, label=f"{c.label} (AUC {c.auc:.2f} dB)")
            ax2.plot(c.budgets, c.points["bpp-increase"], marker=m, label=c.label)
        xlabel = {"psnr": "input PSNR budget (dB)", "linf": "L∞ budget (1/255)", "mse": "MSE budget",
                  "l2": "L2 budget"}.get(kind, kind)
        _style(ax1, xlabel, "reconstruction PSNR under attack (dB)", "Reconstruction quality under attack")
        _style(ax2, xlabel, "bpp increase (adv − clean)", "Rate increase under attack")
        if kind == "linf":
            for ax in (ax1, ax2):
                ax.invert_xaxis()  # left = stronger attack, as for PSNR budgets
        ax1.legend(fontsize=7)
    fig.tight_layout()
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
                   fmt: str = "{:.1f}") -> bytes:
    """A transfer matrix as an annotated heatmap of one metric."""
    values = np.array(matrix.metric(metric), dtype=float)
    n, m = values.shape
    fig = Figure(figsize=(1.6 + 1.05 * m, 1.3 + 0.6 * n))
    ax = fig.add_subplot()
    finite = values[np.isfinite(values)]
    vmax = float(np.abs(finite).max()) if finite.size else 1.0
    im = ax.imshow(np.nan_to_num(values, nan=0.0, posinf=vmax, neginf=-vmax), cmap="magma_r" if metric != "delta-psnr"
                   else "coolwarm", vmin=min(0.0, float(finite.min()) if finite.size else 0.0), vmax=vmax or 1.0)
    ax.set_xticks(range(m), [_short(c) for c in matrix.cols], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(n), [_short(r) for r in matrix.rows], fontsize=8)
    ax.set_xlabel(matrix.col_label)
    ax.set_ylabel(matrix.row_label)
    for i in range(n):
        for j in range(m):
            v = values[i, j]
            ax.text(j, i, fmt.format(v) if math.isfinite(v) else "–", ha="center", va="center", fontsize=8,
                    color="white" if finite.size and abs(v) > 0.6 * vmax else "black")
    fig.colorbar(im, ax=ax, label=metric + (" (dB)" if "psnr" in metric else ""), shrink=0.8)
    ax.set_title(title or metric, fontsize=10)
    return figure_png(fig)


def _short(label: Any, width: int = 24) -> str:
    s = str(label)
    return s if len(s) <= width else s[: width - 1] + "…"

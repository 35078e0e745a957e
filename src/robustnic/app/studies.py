"""Run a study spec into a store and write its report: what the study commands (``curves``,
``recompress``, ``transfer``) and the demo share.

This is the application layer: it runs studies (:mod:`robustnic.studies.grid`) and then renders
them (:mod:`robustnic.report`), which only reads stores.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from robustnic.report.html import build_report
from robustnic.studies.grid import GridSummary, expand_spec, run_grid
from robustnic.studies.presets import PRETRAINED_DEMO, demo_spec
from robustnic.studies.store import ResultStore, latest_rows, row_means


@dataclass
class StudyRun:
    """Where a study's results went and what the run did."""

    summary: GridSummary
    store: Path
    report: Path
    seconds: float
    notes: list[str]


def run_study(
    spec: dict[str, Any],
    out_dir: str | os.PathLike,
    store: str | os.PathLike | None = None,
    title: str = "robustnic report",
    notes: Iterable[str] = (),
    workers: int = 1,
    threads: int = 1,
    device: str = "cpu",
    progress: bool = True,
    max_pixels: int | None = None,
) -> StudyRun:
    """Run ``spec`` into ``store`` (default ``OUT_DIR/results.sqlite``; resumes) and report it in ``OUT_DIR``.

    The spec is expanded (every image checked) before anything is written.
    """
    t0 = time.perf_counter()
    jobs = expand_spec(spec, max_pixels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store_path = Path(store) if store is not None else out / "results.sqlite"
    summary = run_grid(jobs, store_path, workers=workers, threads=threads, device=device, progress=progress)
    notes = list(notes)
    if summary.failed:
        notes.append(f"{len(summary.failed)} job(s) failed and are missing from this report (rerun to retry)")
    report = build_report(store_path, out, title=title, notes=notes)
    return StudyRun(summary, store_path, report, time.perf_counter() - t0, notes)


def attack_headline(store: str | os.PathLike, budget: str | None = None) -> list[dict[str, Any]]:
    """Mean clean and attacked reconstruction PSNR per (model, defense, attack, budget), from a store."""
    with ResultStore(store, readonly=True) as results:
        rows = [r for r in latest_rows(results.rows("attack")) if budget is None or r.config["budget"] == budget]
    means = row_means(rows, ("model", "defense", "attack", "budget"),
                      ("psnr-in", "psnr-clean", "psnr-out", "delta-psnr", "bpp-increase"))
    return sorted(means, key=lambda r: (str(r["budget"]), str(r["attack"]), str(r["model"]), str(r["defense"])))


def pretrained_demo_cached() -> bool:
    """Whether CompressAI's weights for :data:`~robustnic.studies.presets.PRETRAINED_DEMO` are already in
    torch's hub cache (then the demo can use them without a network)."""
    from robustnic.codecs.zoo import pretrained_cache_path

    specs = [s.split(":") for s in PRETRAINED_DEMO]
    return all(pretrained_cache_path(arch, int(q[1:])).is_file() for arch, q, _ in specs)


def run_demo(out_dir: str | os.PathLike, quick: bool = False, workers: int = 2, vanilla: str | None = None,
             robust: list[str] | None = None, progress: bool = True, pretrained: bool | None = None) -> StudyRun:
    """The demo (see :func:`robustnic.studies.presets.demo_spec`): run it and write its report.

    ``pretrained``: run it on CompressAI's pretrained models (True), on the shipped zoo (False), or on
    CompressAI's models when their weights are already in the torch hub cache (None, the default)."""
    if pretrained is None:
        pretrained = not quick and vanilla is None and pretrained_demo_cached()
    spec, notes = demo_spec(quick=quick, vanilla=vanilla, robust=robust, pretrained=pretrained)
    title = "robustnic demo" + (" (quick)" if quick else "")
    return run_study(spec, out_dir, title=title, notes=notes, workers=workers, progress=progress)


__all__ = ["StudyRun", "attack_headline", "pretrained_demo_cached", "run_demo", "run_study"]

"""Recompression benchmark (Chen & Ma's real-life case study) -> ``benchmarks/RESULTS-studies.md``.

Every image is encoded and decoded for ``--generations`` generations, each generation through real
bytes and an 8-bit image. Compared: the vanilla shipped model, its self-ensemble, every fine-tuned
(robust) shipped model, and JPEG / WebP at the quality whose first-generation bpp is closest to the
vanilla model's (per image, by exhaustive search over qualities 1-100).

The grid runs through ``robustnic.studies`` into an SQLite store (rerun to resume); the Markdown
file, its figures (``docs/figures/recompression*.png``) and the full HTML report are written from
that store, so every number in them was measured by this command.

    .venv/bin/python benchmarks/recompression.py                      # 50 generations, 6 photos, 256 px
    .venv/bin/python benchmarks/recompression.py --robust runs/ft/x.pth.tar   # a fine-tuned checkpoint
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from robustnic.codecs.zoo import DEFAULT_MODEL, read_manifest
from robustnic.report import build_report
from robustnic.report.figures import recompression_figure
from robustnic.report.panels import generation_strip
from robustnic.studies import ResultStore, expand_spec, run_grid
from robustnic.studies.grid import CODE_VERSION_ENV
from robustnic.studies.presets import recompression_spec, robust_models
from robustnic.studies.recompression import recompression_series
from robustnic.utils.io import atomic_write_bytes, atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
SHOW = (1, 2, 5, 10, 20, 30, 40, 50)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"vanilla model (default {DEFAULT_MODEL})")
    p.add_argument("--robust", action="append", default=None,
                   help="fine-tuned model spec(s), optionally LABEL=SPEC (default: every robust model in the manifest)")
    p.add_argument("--note", action="append", default=[], help="a line to add to the results file (provenance)")
    p.add_argument("--no-ensemble", action="store_true", help="skip the self-ensemble")
    p.add_argument("--generations", type=int, default=50)
    p.add_argument("--images", action="append", default=None, help="image sets (default: bundled, all 6 photos)")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--store", default=str(ROOT / "runs" / "studies" / "recompression.sqlite"))
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS-studies.md"))
    p.add_argument("--figures", default=str(ROOT / "docs" / "figures"))
    p.add_argument("--report", default=str(ROOT / "runs" / "studies" / "recompression-report"))
    return p.parse_args(argv)


def _f(v: float, digits: int = 2) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def markdown(series: list[dict], args: argparse.Namespace, command: str, notes: list[str],
             figures: Path, results_path: Path, version: str) -> str:
    gens = len(series[0]["psnr"])
    shown = [g for g in SHOW if g <= gens]
    rel = Path(os.path.relpath(figures.resolve(), results_path.resolve().parent)).as_posix()
    lines = [
        "# Studies: recompression",
        "",
        "Chen & Ma's real-life case study: an image is re-encoded every time it is re-shared. Each generation",
        "encodes the previous generation's **8-bit image** into **real bytes** and decodes them; PSNR is against",
        "the original. JPEG and WebP use, per image, the quality whose first-generation bpp is closest to the",
        f"vanilla model's (`{args.model}`), found by trying every quality 1-100. Means over "
        f"{len(series[0]['rows'])} images ({', '.join(sorted(series[0]['images']))}), centre crops of "
        f"{args.crop}×{args.crop}.",
        "",
        "Produced by (every number below comes from this run):",
        "",
        f"    {command}",
        "",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs), {args.workers} worker "
        f"process(es) with 1 torch thread each, CPU only; torch {torch.__version__}",
        "- bpp: entropy-coded payload of the learned codecs (+3 bits/image for the self-ensemble's transform); "
        "the whole JPEG/WebP file (headers and tables included) for the classical codecs",
        f"- code version `{version}`; store `{os.path.relpath(args.store, ROOT)}` (rows, images, timings)",
    ]
    lines += [f"- note: {n}" for n in notes]
    lines += ["", f"## PSNR (dB) vs the original, by generation", "",
              "| codec | quality | bpp (gen 1) | " + " | ".join(f"gen {g}" for g in shown) + " | min | drop 1→last |",
              "|---|---|---|" + "---|" * len(shown) + "---|---|"]
    for s in series:
        q = ", ".join(map(str, s["qualities"])) or "–"
        lines.append(f"| {s['label']} | {q} | {_f(s['bpp'][0], 3)} | "
                     + " | ".join(_f(s["psnr"][g - 1]) for g in shown)
                     + f" | {_f(min(s['psnr']))} | {_f(s['psnr'][0] - s['psnr'][-1])} |")
    lines += ["", "## bpp by generation", "",
              "| codec | " + " | ".join(f"gen {g}" for g in shown) + " |", "|---|" + "---|" * len(shown)]
    for s in series:
        lines.append(f"| {s['label']} | " + " | ".join(_f(s["bpp"][g - 1], 3) for g in shown) + " |")
    lines += ["", "## Per image: PSNR at generation 1 → last (dB)", "",
              "| codec | " + " | ".join(sorted(series[0]["images"])) + " |", "|---|" + "---|" * len(series[0]["images"])]
    for s in series:
        by = {r.config["image"]["name"]: r.result for r in s["rows"]}
        lines.append(f"| {s['label']} | " + " | ".join(
            f"{_f(by[n]['psnr'][0])} → {_f(by[n]['psnr'][-1])}" if n in by else "–" for n in sorted(series[0]["images"])) + " |")
    lines += ["", "## Curves", "", f"![recompression curves]({rel}/recompression.png)", ""]
    for img in sorted(series[0]["images"])[:2]:
        lines += [f"![generations of {img}]({rel}/recompression-{img}.png)", ""]
    lines += [
        "Images: centre 128×128 pixels of the decoded image at the kept generations (title: PSNR of the full",
        "crop vs the original).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    manifest = read_manifest()
    notes: list[str] = []
    if args.model not in manifest and not Path(args.model).is_file():
        print(f"{args.model} is not shipped yet (manifest: {', '.join(manifest) or 'empty'})", file=sys.stderr)
        return 2
    labels: dict[str, str] = {}
    robust = []
    for entry in args.robust if args.robust is not None else robust_models(manifest):
        label, _, spec = entry.rpartition("=")
        robust.append(spec)
        if label:
            labels[spec] = label
    notes += args.note
    if not robust:
        notes.append("no fine-tuned (robust) model was shipped when this ran: only vanilla, self-ensemble, JPEG, WebP")
    snapshots = tuple(g for g in (1, 5, 10, 25, 50) if g <= args.generations) + (args.generations,)
    spec = recompression_spec([args.model, *robust], images=args.images or ["bundled"], crop=args.crop,
                              generations=args.generations, match=args.model, snapshots=tuple(sorted(set(snapshots))))
    if not args.no_ensemble:
        spec["study"].append({"kind": "recompression", "models": [args.model], "defenses": ["ensemble"],
                              "generations": args.generations, "snapshots": sorted(set(snapshots))})
    jobs = expand_spec(spec)  # keys fixed now: the code version is read once, before anything runs
    t0 = time.perf_counter()
    summary = run_grid(jobs, args.store, workers=args.workers)
    seconds = time.perf_counter() - t0
    if summary.failed:
        for key, err in summary.failed:
            print(f"failed {key}: {err}", file=sys.stderr)
        return 1
    wanted = {job.key for job in jobs}
    with ResultStore(args.store, readonly=True) as store:
        rows = [r for r in store.rows("recompression") if r.key in wanted]
        series = recompression_series(rows)
        for s in series:  # display names given on the command line
            model = s["setting"]["model"]
            if model in labels:
                s["label"] = s["label"].replace(model, f"{labels[model]} ({model})" if len(model) < 30 else labels[model])
        order = {args.model: 0, **{m: 1 for m in robust}}
        series.sort(key=lambda s: (s["setting"]["match"] is not None, s["setting"]["defense"] != "none",
                                   order.get(s["setting"]["model"], 2), s["label"]))
        figures = Path(args.figures)
        atomic_write_bytes(figures / "recompression.png", recompression_figure({s["label"]: s for s in series}))
        for img in sorted(series[0]["images"])[:2]:
            strip, original = {}, None
            for s in series:
                row = next(r for r in s["rows"] if r.config["image"]["name"] == img)
                art = store.artifacts(row.key)
                original = original or art["generation-000.png"].data
                codec = row.result["codec"]
                strip[s["label"] if codec in s["label"] else f"{s['label']}\n{codec}"] = {
                    int(n[len("generation-"):-4]): a.data for n, a in art.items() if n != "generation-000.png"}
            atomic_write_bytes(figures / f"recompression-{img}.png", generation_strip(strip, original, crop=128))
    job_seconds = sum(r.timing.get("elapsed", 0.0) for r in rows)
    notes.insert(0, f"compute: {job_seconds / 60:.1f} min summed over the {len(rows)} jobs (from the store); this "
                    f"invocation {seconds / 60:.1f} min wall, {summary.done} jobs run, {summary.skipped} found in "
                    "the store (same configuration and code version)")
    command = ".venv/bin/python benchmarks/recompression.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    if os.environ.get(CODE_VERSION_ENV):
        command = f"{CODE_VERSION_ENV}={os.environ[CODE_VERSION_ENV]} {command}"
    results = Path(args.results)
    atomic_write_text(results, markdown(series, args, command.strip(), notes, figures, results, jobs[0].code_version))
    build_report(args.store, args.report, title="robustnic recompression benchmark")
    print(f"wrote {results} and {figures}/recompression*.png; report {args.report}/report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())

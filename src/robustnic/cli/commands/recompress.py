"""``robustnic recompress``: encode/decode images for N generations (re-sharing), learned codecs vs
JPEG/WebP at matched first-generation bpp; curves, image strips and the report."""

from __future__ import annotations

import argparse

from robustnic.cli.common import add_device, add_seed, print_json
from robustnic.report import run_study
from robustnic.studies import ResultStore, latest_rows
from robustnic.studies.presets import recompression_spec
from robustnic.studies.recompression import recompression_series


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def add_study_options(p: argparse.ArgumentParser, out: str) -> None:
    """Options every single-study command shares: images, crop, output, store, workers, seed, device."""
    p.add_argument("--images", "-i", action="append", default=None,
                   help="image set: 'bundled', 'bundled:NAME', a folder or a file; repeatable (default bundled)")
    p.add_argument("--crop", type=int, default=256, help="centre crop side in pixels (default 256; 0: whole images)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="refuse images larger than this many pixels (default 36 million)")
    p.add_argument("--out", "-o", default=out, help=f"output folder for the report and figures (default ./{out})")
    p.add_argument("--store", default=None, help="results store (default OUT/results.sqlite); reruns resume")
    p.add_argument("--workers", "-j", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_seed(p)
    add_device(p)


def study_kwargs(args: argparse.Namespace) -> dict:
    return {"store": args.store, "workers": args.workers, "device": args.device, "progress": not args.no_progress,
            "max_pixels": args.max_pixels}


def images_and_crop(args: argparse.Namespace) -> dict:
    return {"images": args.images or ["bundled"], "crop": args.crop or None, "seed": args.seed}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recompress", help="recompression study: N generations of encode/decode vs JPEG/WebP")
    p.add_argument("--model", "-m", action="append", required=True, help="codec spec; repeatable")
    p.add_argument("--defense", action="append", default=None,
                   help="also run each model through this defense (e.g. ensemble); repeatable")
    p.add_argument("--match", default=None, help="model whose first-generation bpp JPEG/WebP match (default: first -m)")
    p.add_argument("--classical", default="jpeg,webp", help="classical codecs to compare (default jpeg,webp; '' none)")
    p.add_argument("--generations", "-g", type=int, default=50, help="generations (default 50)")
    p.add_argument("--snapshots", default="1,2,5,10,20,50", help="generations whose images are kept (default 1,2,5,10,20,50)")
    add_study_options(p, "recompression-out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = recompression_spec(
        args.model, generations=args.generations, match=args.match, snapshots=tuple(_ints(args.snapshots)),
        classical=tuple(c for c in args.classical.split(",") if c), defenses=tuple(["none", *(args.defense or [])]),
        **images_and_crop(args),
    )
    result = run_study(spec, args.out, title="robustnic recompression", **study_kwargs(args))
    with ResultStore(result.store, readonly=True) as store:
        series = recompression_series(latest_rows(store.rows("recompression")))
    print_json([{"codec": s["label"], "matched-quality": s["qualities"] or None, "bpp-gen1": s["bpp"][0],
                 "psnr-gen1": s["psnr"][0], "psnr-last": s["psnr"][-1], "psnr-min": min(s["psnr"]),
                 "generations": len(s["psnr"]), "images": len(s["rows"])} for s in series])
    print(f"report: {result.report.resolve()}")
    return 1 if result.summary.failed else 0

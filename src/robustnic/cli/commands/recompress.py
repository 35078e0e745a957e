"""``robustnic recompress``: encode/decode images for N generations (re-sharing), learned codecs vs
JPEG/WebP at matched first-generation bpp; curves, image strips and the report."""

from __future__ import annotations

import argparse

from robustnic.cli.commands import help_of
from robustnic.cli.common import add_study_options, images_and_crop, print_json, study_kwargs


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recompress", help=help_of("recompress"))
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
    from robustnic.app import run_study
    from robustnic.studies import ResultStore, latest_rows
    from robustnic.studies.presets import recompression_spec
    from robustnic.studies.recompression import recompression_series

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

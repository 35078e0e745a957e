"""``robustnic eval``: clean rate-distortion of one or more codecs over images, from real bitstreams."""

from __future__ import annotations

import argparse

from robustnic.cli.commands import help_of
from robustnic.cli.common import add_device, add_images, add_model, print_json
from robustnic.codecs.options import DEFAULT_MODEL


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help=help_of("eval"))
    add_model(p, multiple=True)
    add_images(p)
    add_device(p)
    p.add_argument("--out", "-o", default="eval", help="output path stem: writes STEM.json and STEM.csv")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustnic.codecs.evaluate import evaluate_codec, write_results
    from robustnic.codecs.zoo import load_codec
    from robustnic.data.photos import load_photo_set

    images = load_photo_set(args.images, crop=args.crop, max_pixels=args.max_pixels)
    evaluations = []
    for spec in args.model or [DEFAULT_MODEL]:
        codec = load_codec(spec, device=args.device)
        evaluations.append(evaluate_codec(codec, images, progress=not args.no_progress))
    json_path, csv_path = write_results(evaluations, args.out)
    print_json({e["name"]: e["results"] for e in evaluations})
    print(f"wrote {json_path} and {csv_path}")
    return 0

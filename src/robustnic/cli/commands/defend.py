"""``robustnic defend``: a defense under an attack that knows it, verified on real bitstreams."""

from __future__ import annotations

import argparse
import json

from robustnic.attacks.registry import REFERENCES
from robustnic.cli.commands import help_of
from robustnic.cli.commands.attack import BUDGET_HELP, add_attack_settings
from robustnic.cli.common import add_device, add_images, add_model, add_seed


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "defend", help=help_of("defend"),
        description="Wrap the model in each --defense (none, ensemble, ensemble:rd:proxy, refine, jpeg:q90, diffjpeg:q90, "
                    "blur:0.8, median:3, unsharp:1, bits:5, quantize:32, resize:0.75, noise:2, crop:0.9, rotate:5, "
                    "flip, jpeg:q90+ensemble, ...), attack it through the defense (randomised purifiers also with "
                    "an expectation over 8 draws) and around it, and report per budget the reconstruction PSNR of "
                    "the worst attack (real bitstreams).",
    )
    add_model(p)
    p.add_argument("--defense", "-d", action="append", default=None, help="defense spec (repeatable; default ensemble)")
    p.add_argument("--budget", "-b", action="append", default=None,
                   help=f"budget(s): {BUDGET_HELP}; repeatable (default psnr:35)")
    p.add_argument("--method", default="paper", help="attack method (default paper)")
    p.add_argument("--steps", type=int, default=100, help="attack iterations (default 100)")
    p.add_argument("--reference", action="append", default=None, choices=list(REFERENCES),
                   help="distortion reference(s) of the attack, worst kept (default clean)")
    add_attack_settings(p, skip=("reference",))
    p.add_argument("--out", "-o", default=None, help="write every verified row to this JSON file")
    add_images(p)
    add_seed(p)
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from robustnic.codecs.zoo import load_codec
    from robustnic.data.photos import load_photo_set
    from robustnic.defenses import attack_defense, make_defense
    from robustnic.errors import ImageError
    from robustnic.utils.io import atomic_write_text

    images = load_photo_set(args.images, crop=args.crop, max_pixels=args.max_pixels)
    shapes = {tuple(x.shape) for x in images.values()}
    if len(shapes) != 1:
        raise ImageError(f"images differ in size {sorted(shapes)}: use --crop to attack them together")
    x = torch.cat(list(images.values()))
    codec = load_codec(args.model, device=args.device)
    report: dict = {}
    print(f"{'defense':28s} {'budget':16s} {'psnr-clean':>10s} {'psnr-out':>9s} {'damage':>7s} {'bpp-clean':>9s}  worst modes")
    for spec in args.defense or ["ensemble"]:
        defended = make_defense(codec, spec)
        for budget in args.budget or ["psnr:35"]:
            res = attack_defense(defended, x, method=args.method, references=tuple(args.reference or ["clean"]),
                                 budget=budget, steps=args.steps, seed=args.seed, restarts=args.restarts,
                                 objective=args.objective, metric=args.metric, standin=args.standin,
                                 color=args.color, rd_weight=args.rd_weight)
            modes = sorted({r["attack-mode"] for r in res.rows})
            print(f"{spec:28s} {budget:16s} {res.mean('psnr-clean'):10.2f} {res.mean('psnr-out'):9.2f} "
                  f"{res.mean('psnr-drop'):7.2f} {res.mean('bpp-clean'):9.4f}  {', '.join(modes)}")
            report[f"{spec}@{budget}"] = {"codec": defended.name, "rows": dict(zip(images, res.rows)),
                                          "by_mode": {m: dict(zip(images, rows)) for m, rows in res.by_mode.items()}}
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=1, default=str) + "\n")
        print(f"wrote {args.out}")
    return 0

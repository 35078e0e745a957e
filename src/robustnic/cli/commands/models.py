"""``robustnic models``: the models robustnic ships (offline) and the architectures it knows."""

from __future__ import annotations

import argparse

from robustnic.cli.commands import help_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help=help_of("models"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustnic.codecs.architectures import ARCHITECTURES
    from robustnic.codecs.zoo import list_models

    from robustnic.data.photos import HELDOUT_PHOTOS

    rows = list_models()
    width = max([len("spec"), *(len(r["spec"]) for r in rows)])
    print(f"{'spec':<{width}} {'architecture':<22} {'N':>4} {'M':>4} {'metric':<8} {'lambda':>8} {'bpp':>7} {'PSNR':>7}")
    for r in rows:
        rd = r.get("rd", {})
        bpp, db = rd.get("bpp"), rd.get("psnr-rgb")
        print(f"{r['spec']:<{width}} {r['architecture']:<22} {r['N']:>4} {r['M']:>4} {r['metric']:<8} "
              f"{r.get('lambda', 0):>8.4g} {bpp if bpp is None else f'{bpp:.3f}':>7} {db if db is None else f'{db:.2f}':>7}")
    if rows:
        print(f"(qK = CompressAI's quality K; bpp and PSNR: means over the held-out photos {', '.join(HELDOUT_PHOTOS)}, "
              "full size, real bitstreams)")
    if not rows:
        print("(no shipped models found)")
    print("\narchitectures (CompressAI; pretrained weights need internet once):")
    for a in ARCHITECTURES.values():
        print(f"  {a.name:<22} {a.paper}")
    print("classical: jpeg:qQ, webp:qQ (Pillow)")
    return 0

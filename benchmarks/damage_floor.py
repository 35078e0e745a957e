"""What a brightness shift at the attack's budget costs each codec: a floor under any defense's damage.

The defenses table measures damage = clean PSNR - PSNR of the decoded adversarial image, both against
the source. This script applies the simplest perturbation that fits a PSNR budget, a uniform brightness
shift (``robustnic.attacks.ShiftAttack``: an offset of k or k+1 levels on every value, so that the
8-bit input MSE meets the budget; upwards or downwards, whichever clips less), and measures the same damage through each entry's real bitstreams, on the same crops.

A codec that keeps clean images intact has to reproduce a brighter image brighter, so a shift costs
it about its pass-through damage, and no defense that preserves clean rate-distortion can push an
attacker's damage below what this perturbation, one an attacker can always choose, already does.

    .venv/bin/python benchmarks/damage_floor.py --crop 128
"""

from __future__ import annotations

import argparse
import sys

import torch

from defense_table import default_entries, parse_entry
from robustnic.attacks import PSNR, ShiftAttack
from robustnic.codecs import load_codec
from robustnic.data.photos import bundled_photos, center_crop
from robustnic.defenses import make_defense
from robustnic.metrics import psnr


def damage_row(label: str, spec: str, defense: str, crops: list[torch.Tensor], budgets: list[float]) -> str:
    codec = make_defense(load_codec(spec), defense)
    clean = [psnr(x, codec.roundtrip(x).x_hat) for x in crops]
    cells = [label, f"`{codec.name}`", f"{sum(clean) / len(clean):.2f}"]
    for db in budgets:
        shift = ShiftAttack(codec, budget=PSNR(db))
        shifted = [shift(x) for x in crops]
        p_in = [psnr(x, s) for x, s in zip(crops, shifted)]
        out = [psnr(x, codec.roundtrip(s).x_hat) for x, s in zip(crops, shifted)]
        drop = sum(c - o for c, o in zip(clean, out)) / len(crops)
        cells.append(f"{sum(out) / len(out):.2f} ({drop:+.2f}), input {min(p_in):.2f} dB")
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entry", action="append", default=None, help="LABEL=SPEC[|DEFENSE] (default: the defenses table's)")
    p.add_argument("--budgets", type=float, nargs="+", default=[30, 35, 40])
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    crops = [center_crop(x, args.crop) for x in bundled_photos().values()]
    print(f"Uniform brightness shift at each budget, {len(crops)} held-out photos, centre crops {args.crop}x{args.crop}, "
          "real bitstreams; PSNR of the decoded shifted image against the source (damage = clean - shifted; "
          "input: the lowest input PSNR over the crops).\n")
    head = "| entry | codec | crop clean PSNR | " + " | ".join(f"shifted @{db:g} dB (damage)" for db in args.budgets) + " |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for text in args.entry or default_entries():
        print(damage_row(*parse_entry(text), crops, args.budgets), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

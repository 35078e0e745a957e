"""Reconstruction PSNR before and after attack, for every method and the noise baseline, by budget.

Every number comes from real bitstreams (compress -> bytes -> decompress of the 8-bit adversarial
image, :func:`robustnic.attacks.verify_attack`); means over the bundled held-out photos
(centre crops). Iterative methods run ``--steps`` steps (default 100); ``paper-reference`` runs
its own faithful 1001-step schedule unless ``--reference-steps`` says otherwise.

    .venv/bin/python benchmarks/attack_table.py --model hyperprior-small:q3 --crop 128
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from robustnic.attacks import ATTACKS, BASELINES, run_attacks, summarize, write_results
from robustnic.codecs import load_codec
from robustnic.data.photos import bundled_photos

COLUMNS = [
    ("method", "method", "{}"), ("objective", "objective", "{}"), ("steps", "steps", "{}"), ("budget", "budget", "{}"), ("psnr-in", "PSNR in", "{:.2f}"),
    ("psnr-clean", "PSNR clean", "{:.2f}"), ("psnr-out", "PSNR attacked", "{:.2f}"), ("psnr-drop", "drop", "{:.2f}"),
    ("psnr-out-clean", "attacked vs clean rec.", "{:.2f}"), ("delta-psnr", "VI", "{:.2f}"),
    ("bpp-clean", "bpp clean", "{:.4f}"), ("bpp-adv", "bpp attacked", "{:.4f}"), ("bpp-increase", "bpp change", "{:+.4f}"),
    ("vif-in", "input VIF", "{:.3f}"),
    ("standin-gap", "stand-in gap", "{:.1f}"), ("attack-time", "s/img", "{:.1f}"),
]


def main() -> None:
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="hyperprior-small:q3")
    p.add_argument("--crop", type=int, default=128, help="centre crop of the bundled photos (default 128)")
    p.add_argument("--photos", nargs="*", default=None, help="bundled photo names (default: all six)")
    p.add_argument("--methods", nargs="*", default=list(ATTACKS))
    p.add_argument("--budgets", nargs="*", default=["psnr:30", "psnr:35", "psnr:40"])
    p.add_argument("--objectives", nargs="*", default=["distortion"],
                   help="objectives each method is run with (distortion, added-noise, rate, rate-distortion, ...)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--reference-steps", type=int, default=None, help="paper-reference steps (default: its 1001)")
    p.add_argument("--standin", default="none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="also write images, reconstructions, JSON and CSV here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    codec = load_codec(args.model)
    images = bundled_photos(args.photos, crop=args.crop)
    print(f"model {args.model} ({codec.name}); photos {', '.join(images)}; {args.crop}x{args.crop} centre crops; "
          f"stand-in {args.standin}; seed {args.seed}; {args.threads} thread(s)\n")
    start = time.perf_counter()
    rows = []
    for method in args.methods:
        # the baselines ignore the objective: run them once
        for objective in (args.objectives[:1] if method in BASELINES else args.objectives):
            steps = args.reference_steps if method == "paper-reference" else args.steps
            results = run_attacks(codec, images, methods=[method], budgets=args.budgets, standin=args.standin,
                                  steps=steps, seed=args.seed, objective=objective)
            if args.out:
                write_results(results, f"{args.out}/{method}-{objective}",
                              {"model": args.model, "steps": steps, "crop": args.crop, "objective": objective})
            shown = steps if steps is not None else ATTACKS[method](codec).steps
            shown = 1 if method == "fgsm" or method in BASELINES else shown
            label = "-" if method in BASELINES else objective
            rows.extend(r.row | {"steps": shown, "objective": label} for r in results)
            assert all(r.row["budget-ok"] for r in results)
    order = {b: i for i, b in enumerate(args.budgets)}
    summary = sorted(summarize(rows, by=("method", "objective", "steps", "budget")), key=lambda r: (order[r["budget"]],))
    print("| " + " | ".join(title for _, title, _ in COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in summary:
        print("| " + " | ".join(fmt.format(row[k]) if isinstance(row.get(k), (int, float))
                                else "-" if row.get(k) is None else str(row[k])
                                for k, _, fmt in COLUMNS) + " |")
    print(f"\n{len(rows)} attacked images in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

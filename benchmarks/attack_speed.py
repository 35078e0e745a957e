"""Attack speed: cost of one attack step, and the steps the default needs to match the reference.

1. Step overhead: wall time of one attack step (``atk.elapsed / steps``, everything included:
   objective set-up, projections, 8-bit checks, final rounding) divided by one bare
   forward + backward of the same codec on the same input (``codec.forward`` with the attack's
   stand-in, MSE to a fixed reconstruction, ``autograd.grad`` to the input). Both are measured in
   this run, alternated ``--repeats`` times; medians of the per-repeat ratios, of the process's
   CPU time (one thread: robust to other jobs on a shared machine) and of wall time. Goal <= 1.10.
2. Damage: the default ``paper`` attack after 50/100/200 steps against the faithful
   ``paper-reference`` schedule (1001 steps), all verified on real bitstreams: PSNR of the
   attacked reconstruction vs the clean one (Chen & Ma's objective; lower = more damage), vs the
   source, and ΔPSNR (VI). Goal: ``paper`` reaches the reference's damage in <= 100 steps.

    .venv/bin/python benchmarks/attack_speed.py --model hyperprior-small:q3 --crop 128
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from robustnic.attacks import make_attack, parse_budget, verify_attack
from robustnic.attacks.objectives import clean_reconstruction
from robustnic.codecs import load_codec
from robustnic.data.photos import bundled_photos


def bare_step_time(codec, x: torch.Tensor, standin: str, n: int) -> tuple[float, float]:
    """Wall and CPU seconds of one forward + backward to the input (the floor for a gradient step)."""
    ref = clean_reconstruction(codec, x)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        xi = x.detach().requires_grad_(True)
        loss = ((codec.forward(xi, standin=standin).x_hat - ref) ** 2).flatten(1).mean(1).sum()
        torch.autograd.grad(loss, xi)
    return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n


def attack_step_time(atk, x: torch.Tensor) -> tuple[float, float]:
    """Wall and CPU seconds per step of a whole attack call (set-up and final rounding included)."""
    cpu = time.process_time()
    atk(x)
    return atk.elapsed / atk.steps, (time.process_time() - cpu) / atk.steps


def mean(rows, key):
    return sum(r[key] for r in rows) / len(rows)


def main() -> None:
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="hyperprior-small:q3")
    p.add_argument("--crop", type=int, default=128, help="centre crop of the bundled photos (default 128)")
    p.add_argument("--photos", nargs="*", default=None, help="bundled photo names (default: all six)")
    p.add_argument("--budget", action="append", default=None, help="repeatable (default psnr:40 and psnr:30)")
    p.add_argument("--speed-methods", nargs="*", default=["paper", "pgd", "paper-reference"])
    p.add_argument("--speed-steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--paper-steps", nargs="*", type=int, default=[50, 100, 200])
    p.add_argument("--reference-steps", type=int, default=1001)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-damage", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    codec = load_codec(args.model)
    photos = bundled_photos(args.photos, crop=args.crop)
    x = torch.cat(list(photos.values()))
    budgets = [parse_budget(b) for b in (args.budget or ["psnr:40", "psnr:30"])]
    print(f"model {args.model} ({codec.name}); {x.shape[0]} bundled photos, {args.crop}x{args.crop} centre crops, "
          f"batch {tuple(x.shape)}; {args.threads} thread(s); torch {torch.__version__}")

    print(f"\n## Step overhead ({args.speed_steps} steps, {args.repeats} alternated repeats, budget {budgets[0]})\n")
    print("| method | CPU s/step | bare fwd+bwd CPU s | ratio (CPU time) | wall s/step | bare wall s | ratio (wall) |")
    print("|---|---|---|---|---|---|---|")
    bare_step_time(codec, x, "none", 2)  # warm-up
    for method in args.speed_methods:
        atk = make_attack(method, codec, budget=budgets[0], steps=args.speed_steps, seed=0)
        bare, step = [], []
        for _ in range(args.repeats):  # alternated, so both see the same load on a shared machine
            bare.append(bare_step_time(codec, x, atk.standin, args.speed_steps))
            step.append(attack_step_time(atk, x))
        med = [statistics.median(v[k] for v in series) for series in (step, bare) for k in (0, 1)]
        wall_ratio = statistics.median(s[0] / b[0] for s, b in zip(step, bare))
        cpu_ratio = statistics.median(s[1] / b[1] for s, b in zip(step, bare))
        print(f"| {method} | {med[1]:.4f} | {med[3]:.4f} | {cpu_ratio:.3f} | {med[0]:.4f} | {med[2]:.4f} "
              f"| {wall_ratio:.3f} |", flush=True)

    if args.skip_damage:
        return
    print("\n## Damage vs steps (real bitstreams; means over images)\n")
    print("| budget | method | steps | PSNR in | PSNR attacked vs clean rec. | PSNR attacked vs source "
          "| PSNR clean | VI (dB) | bpp + | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for budget in budgets:
        runs = [("paper", s) for s in args.paper_steps] + [("paper-reference", args.reference_steps)]
        for method, steps in runs:
            atk = make_attack(method, codec, budget=budget, steps=steps, seed=0)
            rows = verify_attack(codec, x, atk(x), budget=budget)
            assert all(r["budget-ok"] for r in rows)
            print(f"| {budget} | {method} | {steps} | {mean(rows, 'psnr-in'):.2f} | {mean(rows, 'psnr-out-clean'):.2f} "
                  f"| {mean(rows, 'psnr-out'):.2f} | {mean(rows, 'psnr-clean'):.2f} | {mean(rows, 'delta-psnr'):.2f} "
                  f"| {mean(rows, 'bpp-increase'):+.4f} | {atk.elapsed:.0f} |", flush=True)


if __name__ == "__main__":
    main()

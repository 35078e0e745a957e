"""Agnostic-ratio attack: one perturbation crafted against several qualities at once, measured on every quality.

Wu et al. (2024) ask for a perturbation that damages a codec whatever rate it codes at. robustnic's
answer (:class:`robustnic.attacks.AgnosticAttack`, ``robustnic attack --also-against``) maximises the
mean of the objective over the models it is given. Here the models are the shipped qualities of one
family (``hyperprior-long:q2`` .. ``q8``); the agnostic attack is crafted on some of them (default q2,
q5, q8) and every adversarial image is measured on every quality, the held-out ones included, beside
the same method crafted on one quality only (transfer to the others) and noise of the same budget. The
agnostic attack combines the qualities' objectives by their mean or by the mean of their logarithms
(``combine="log-mean"``: every quality counts by its relative gain).

Every number comes from real bitstreams (:func:`robustnic.attacks.evaluate_on_models`): the drop of
the reconstruction's PSNR (dB) per quality, means over the photos; ``*`` marks the qualities an attack
was crafted on. The attacks run as one batch per attack, on one CPU thread.

    .venv/bin/python benchmarks/agnostic_ratio.py --crop 128
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from robustnic.attacks import AgnosticAttack, evaluate_on_models, make_attack, parse_budget
from robustnic.codecs import load_codec, read_manifest
from robustnic.data.photos import bundled_photos


def main() -> None:
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="hyperprior-long", help="shipped family whose qualities are used")
    p.add_argument("--crafted-on", nargs="*", type=int, default=[2, 5, 8], help="qualities the agnostic attack sees")
    p.add_argument("--singles", nargs="*", type=int, default=[2, 5, 8],
                   help="qualities a one-model attack is crafted on, for comparison")
    p.add_argument("--method", default="paper")
    p.add_argument("--budget", default="psnr:35")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--photos", nargs="*", default=["astronaut", "coffee", "chelsea"])
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    specs = sorted((s for s in read_manifest() if s.startswith(f"{args.family}:q")), key=lambda s: int(s.split(":q")[1]))
    models = {s.split(":")[1]: load_codec(s) for s in specs}
    budget = parse_budget(args.budget)
    x = torch.cat(list(bundled_photos(args.photos, crop=args.crop).values()))
    print(f"family {args.family} ({', '.join(models)}); method {args.method}, {args.steps} steps, budget {budget}, "
          f"seed {args.seed}; photos {', '.join(args.photos)} ({args.crop}x{args.crop} centre crops, held out); "
          f"{args.threads} CPU thread(s). Drop of the reconstruction PSNR (dB) on each quality, real bitstreams; "
          "* = crafted on it.\n")
    kwargs = dict(budget=budget, steps=args.steps, seed=args.seed)
    runs: list[tuple[str, list[str], torch.Tensor, float]] = []
    seen = [f"q{q}" for q in args.crafted_on]
    for combine in ("mean", "log-mean"):
        agnostic = AgnosticAttack([models[q] for q in seen], method=args.method, combine=combine, **kwargs)
        runs.append((f"{args.method}, agnostic ({combine})", seen, agnostic(x), agnostic.elapsed))
    for q in (f"q{q}" for q in args.singles):
        atk = make_attack(args.method, models[q], **kwargs)
        runs.append((f"{args.method}, one model", [q], atk(x), atk.elapsed))
    noise = make_attack("noise", models[seen[0]], budget=budget, seed=args.seed)
    runs.append(("noise", [], noise(x), noise.elapsed))

    names = list(models)
    held = [m for m in names if m not in seen]
    head = ["attack", "crafted on", *names, "least", "mean", f"mean on {', '.join(held)}", "s/img"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    clean: dict[str, float] = {}
    for label, crafted, x_adv, seconds in runs:
        rows = evaluate_on_models(models, x, x_adv, budget=budget, crafted_on=crafted)
        assert all(r["budget-ok"] for r in rows)
        drop = {m: sum(r["psnr-drop"] for r in rows if r["model"] == m) / x.shape[0] for m in names}
        clean = {m: sum(r["psnr-clean"] for r in rows if r["model"] == m) / x.shape[0] for m in names}
        cells = [f"{drop[m]:.3f}{'*' if m in crafted else ''}" for m in names]
        summary = [min(drop.values()), sum(drop.values()) / len(drop), sum(drop[m] for m in held) / len(held)]
        print(f"| {label} | {', '.join(crafted) or '-'} | " + " | ".join(cells) + " | "
              + " | ".join(f"{v:.3f}" for v in summary) + f" | {seconds / x.shape[0]:.1f} |")
    print("\n*least*: the smallest drop over the qualities (what an attacker who does not know the quality is "
          f"sure of); the last mean is over the qualities the agnostic attack did not see.\n\nPSNR clean: "
          + ", ".join(f"{m} {clean[m]:.2f}" for m in names))

if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"\ndone in {time.perf_counter() - start:.0f} s")

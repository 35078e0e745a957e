"""``robustnic curves``: robustness curves - an attack swept over budgets per model and defense, with
the area under each curve (robust PSNR)."""

from __future__ import annotations

import argparse

from robustnic.cli.commands import help_of
from robustnic.cli.commands.attack import add_attack_settings, changed_settings
from robustnic.cli.common import add_study_options, images_and_crop, print_json, study_kwargs

DEFAULT_BUDGETS = "psnr:30,psnr:35,psnr:40,psnr:45,psnr:50"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("curves", help=help_of("curves"))
    p.add_argument("--model", "-m", action="append", required=True, help="codec spec; repeatable")
    p.add_argument("--attack", "-a", default="paper", help="attack method (default paper)")
    p.add_argument("--budgets", default=DEFAULT_BUDGETS,
                   help=f"comma-separated budgets of one kind (default {DEFAULT_BUDGETS}; e.g. linf:1,linf:4,linf:16); "
                        "a linf:EPS after a PSNR/MSE/L2 budget is its L∞ cap (psnr:30,linf:16,psnr:40,linf:16)")
    p.add_argument("--defense", action="append", default=None, help="defense(s) besides none (e.g. ensemble); repeatable")
    p.add_argument("--adaptive", action="store_true",
                   help="attack every mode of the defense (through it and around it) and keep the worst")
    p.add_argument("--steps", type=int, default=100, help="attack steps (default 100)")
    add_attack_settings(p)
    add_study_options(p, "curves-out")
    p.set_defaults(func=run)


def split_budgets(text: str) -> list[str]:
    """``"psnr:30,linf:16,psnr:40,linf:16"`` -> ``["psnr:30,linf:16", "psnr:40,linf:16"]``: a ``linf``
    part right after a PSNR, MSE or L2 budget is that budget's cap; every other part is a budget."""
    out: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        capped = out and "," not in out[-1] and not out[-1].lower().startswith("linf")
        if part.lower().startswith("linf") and capped:
            out[-1] += f",{part}"
        else:
            out.append(part)
    return out


def run(args: argparse.Namespace) -> int:
    from robustnic.app import run_study
    from robustnic.studies import ResultStore, latest_rows, robustness_curves
    from robustnic.studies.presets import curves_spec

    spec = curves_spec(args.model, split_budgets(args.budgets), attack=args.attack,
                       defenses=tuple(["none", *(args.defense or [])]), steps=args.steps, adaptive=args.adaptive,
                       **images_and_crop(args))
    for study in spec["study"]:
        study.update(changed_settings(args))
    result = run_study(spec, args.out, title="robustnic robustness curves", **study_kwargs(args))
    with ResultStore(result.store, readonly=True) as store:
        curves = robustness_curves(latest_rows(store.rows("attack")))
    print_json([{"setting": c.label, "budgets": c.budget_specs,
                 "psnr-out": c.points["psnr-out"], "bpp-increase": c.points["bpp-increase"],
                 "auc-robust-psnr": c.auc} for c in curves])
    print(f"report: {result.report.resolve()}")
    return 1 if result.summary.failed else 0

"""``robustnic transfer``: cross-model and cross-image transfer of adversarial perturbations (heatmaps)."""

from __future__ import annotations

import argparse

from robustnic.cli.commands import help_of
from robustnic.cli.commands.attack import BUDGET_HELP, add_attack_settings, changed_settings
from robustnic.cli.common import add_study_options, images_and_crop, print_json, study_kwargs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transfer", help=help_of("transfer"))
    p.add_argument("--model", "-m", action="append", required=True, help="model to craft on (learned codec); repeatable")
    p.add_argument("--target", "-t", action="append", default=None,
                   help="codec that decodes the adversarial images (default: the -m models and jpeg:q75); repeatable")
    p.add_argument("--attack", "-a", default="paper", help="attack method (default paper)")
    p.add_argument("--budget", "-b", default="psnr:40", help=f"budget: {BUDGET_HELP} (default psnr:40)")
    p.add_argument("--steps", type=int, default=100, help="attack steps (default 100)")
    add_attack_settings(p)
    p.add_argument("--no-cross-image", action="store_true", help="only the cross-model matrix")
    add_study_options(p, "transfer-out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustnic.app import run_study
    from robustnic.studies import ResultStore, TransferMatrix, latest_rows
    from robustnic.studies.presets import transfer_spec
    from robustnic.studies.transfer import mean_matrix

    targets = args.target or [*args.model, "jpeg:q75"]
    spec = transfer_spec(args.model, targets, attack=args.attack, budget=args.budget, steps=args.steps,
                         cross_image=not args.no_cross_image, **images_and_crop(args))
    for study in spec["study"]:
        study.update(changed_settings(args))
    result = run_study(spec, args.out, title="robustnic transfer", **study_kwargs(args))
    with ResultStore(result.store, readonly=True) as store:
        models = [TransferMatrix.from_dict(r.result) for r in latest_rows(store.rows("transfer-model"))]
        images = {r.config["model"]: TransferMatrix.from_dict(r.result) for r in latest_rows(store.rows("transfer-image"))}
    out = {}
    if models:
        m = mean_matrix(models)
        out["cross-model psnr-drop (rows: crafted on, cols: decoded by)"] = dict(zip(m.rows, m.metric("psnr-drop")))
        out["cross-model columns"] = m.cols
    for name, m in images.items():
        out[f"cross-image psnr-drop on {name} (rows: crafted on, cols: added to)"] = dict(zip(m.rows, m.metric("psnr-drop")))
    print_json(out)
    print(f"report: {result.report.resolve()}")
    return 1 if result.summary.failed else 0

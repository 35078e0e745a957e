"""``robustnic finetune``: adversarial fine-tuning of a zoo model (resumes from OUT/last.pth.tar)."""

from __future__ import annotations

import argparse

from robustnic.cli.commands import help_of
from robustnic.cli.common import add_config_options, add_device, config_from_args, print_json
from robustnic.training.config import FinetuneConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help=help_of("finetune"))
    add_config_options(p, FinetuneConfig)  # every FinetuneConfig field, help and default from its metadata
    p.add_argument("--out", "-o", required=True, help="run folder (checkpoints, resume), e.g. runs/finetune/NAME")
    p.add_argument("--export", default=None,
                   help="also export the result to this model file (fp16, coder tables; default: no export)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustnic.training import distributed
    from robustnic.training.finetune import finetune

    config = config_from_args(FinetuneConfig, args)
    result = finetune(config, args.out, device=args.device, export_to=args.export, progress=not args.no_progress)
    distributed.shutdown()
    if distributed.RankInfo.from_env().rank != 0:  # under torchrun, rank 0 alone reports
        return 0
    print_json({"step": result["step"], "elapsed_s": round(result["elapsed"], 1), "checkpoint": result["checkpoint"],
                "last_validation": result["history"][-1] if result["history"] else None,
                "export": result.get("export")})
    return 0

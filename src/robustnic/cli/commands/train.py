"""``robustnic train``: rate-distortion training (resumable) and ``robustnic export``."""

from __future__ import annotations

import argparse

from robustnic.cli.commands import help_of
from robustnic.cli.common import add_config_options, add_device, config_from_args, print_json
from robustnic.training.config import TrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help=help_of("train"))
    add_config_options(p, TrainConfig)  # every TrainConfig field, help and default from its metadata
    p.add_argument("--out", "-o", required=True, help="run folder (checkpoints, resume)")
    p.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="stop (after a checkpoint) once this much wall time is spent; rerun to continue "
                        "(default: no limit)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_device(p)
    p.set_defaults(func=run_train)

    p = sub.add_parser("export", help=help_of("export"))
    p.add_argument("checkpoint")
    p.add_argument("--out", "-o", required=True)
    p.add_argument("--full-precision", action="store_true", help="keep fp32 weights (default fp16)")
    p.add_argument("--scale-levels", type=int, default=None,
                   help="Gaussian scale table levels (default CompressAI's 64; 256 cuts the real-vs-estimated "
                        "bpp gap of mean-scale models from ~4%% to ~1%%)")
    p.set_defaults(func=run_export)


def run_train(args: argparse.Namespace) -> int:
    from robustnic.training import distributed
    from robustnic.training.rd import Trainer

    trainer = Trainer(config_from_args(TrainConfig, args), args.out, device=args.device, progress=not args.no_progress)
    main = trainer.rank_info.is_main  # under torchrun, rank 0 alone reports
    if trainer.resumed and main:
        print(f"resuming {args.out} at step {trainer.step}")
    result = trainer.fit(time_limit=None if args.time_limit is None else 60 * args.time_limit)
    distributed.shutdown()
    if not main:
        return 0
    print_json({"step": result["step"], "finished": result["finished"], "elapsed_s": round(result["elapsed"], 1),
                "last_validation": result["history"][-1] if result["history"] else None})
    return 0


def run_export(args: argparse.Namespace) -> int:
    from robustnic.training.export import export_model

    print_json(export_model(args.checkpoint, args.out, half=not args.full_precision, scale_levels=args.scale_levels))
    return 0

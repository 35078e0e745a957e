"""``robustnic finetune``: adversarial fine-tuning of a zoo model (resumes from OUT/last.pth.tar)."""

from __future__ import annotations

import argparse

from robustnic.attacks.registry import REFERENCES
from robustnic.cli.commands import help_of
from robustnic.cli.common import add_device, print_json
from robustnic.codecs.options import STANDINS
from robustnic.training.config import FINETUNE_TARGETS, FinetuneConfig


def register(sub: argparse._SubParsersAction) -> None:
    d = FinetuneConfig()
    p = sub.add_parser("finetune", help=help_of("finetune"))
    p.add_argument("--model", "-m", default=d.model, help=f"model to start from: zoo spec or checkpoint (default {d.model})")
    p.add_argument("--out", "-o", required=True, help="run folder (checkpoints, resume), e.g. runs/finetune/NAME")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--patch-size", type=int, default=d.patch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--lmbda", type=float, default=None, help="RD trade-off (default: the model's own)")
    p.add_argument("--attack", default=d.attack, help=f"inner attack method (default {d.attack})")
    p.add_argument("--attack-steps", type=int, default=d.attack_steps, help=f"inner attack steps (default {d.attack_steps})")
    p.add_argument("--budget", default=d.budget, help=f"budget trained against (default {d.budget})")
    p.add_argument("--ramp-steps", type=int, default=d.ramp_steps, help="steps over which the budget grows from 0")
    p.add_argument("--adv-fraction", type=float, default=d.adv_fraction, help="share of each batch attacked")
    p.add_argument("--standin", default=d.standin, choices=list(STANDINS), help="inner attack's stand-in")
    p.add_argument("--attack-reference", default=d.attack_reference, choices=list(REFERENCES),
                   help="inner attack pushes away from the source (default) or the clean reconstruction (paper)")
    p.add_argument("--target", default=d.target, choices=FINETUNE_TARGETS,
                   help="distortion against the clean source (default) or the codec's input (paper)")
    p.add_argument("--images", action="append", default=None, help="training image folder (repeatable)")
    p.add_argument("--max-pixels", type=int, default=None, help="refuse training images larger than this many pixels")
    p.add_argument("--val-every", type=int, default=d.val_every)
    p.add_argument("--val-attack-steps", type=int, default=d.val_attack_steps)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (default 1)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--export", default=None, help="also export the result to this model file (fp16, coder tables)")
    p.add_argument("--no-progress", action="store_true")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustnic.defenses.finetune import finetune

    config = FinetuneConfig(
        model=args.model, steps=args.steps, batch_size=args.batch_size, patch_size=args.patch_size, lr=args.lr,
        lmbda=args.lmbda, attack=args.attack, attack_steps=args.attack_steps, budget=args.budget,
        ramp_steps=args.ramp_steps, adv_fraction=args.adv_fraction, standin=args.standin, target=args.target,
        attack_reference=args.attack_reference,
        images=args.images or [], val_every=args.val_every, val_attack_steps=args.val_attack_steps,
        checkpoint_every=args.checkpoint_every, threads=args.threads, seed=args.seed,
        max_pixels=args.max_pixels,
    )
    result = finetune(config, args.out, device=args.device, export_to=args.export, progress=not args.no_progress)
    print_json({"step": result["step"], "elapsed_s": round(result["elapsed"], 1), "checkpoint": result["checkpoint"],
                "last_validation": result["history"][-1] if result["history"] else None,
                "export": result.get("export")})
    return 0

"""``robustnic attack``: attack images, verify on real bitstreams, write PNGs, JSON and CSV.

The output folder's layout is :mod:`robustnic.attacks.runner`'s (and the README's).

One call into the API: :func:`robustnic.attacks.run_attacks`, writing each verified batch through
:class:`robustnic.attacks.AttackRunDir` as it finishes. An interrupted run keeps every finished
image; rerunning the same command resumes it (finished images are skipped, the final files cover
all of them). An ``--out`` folder that holds a run with other settings (model and its weights,
images, crop, methods, budgets, steps, objective, seed, ...) is refused with one line; the device,
``--batch-size`` and ``--no-progress`` may change between reruns.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robustnic.attacks.registry import ATTACK_NAMES, COLORS, OBJECTIVE_NAMES, REFERENCES
from robustnic.cli.commands import help_of
from robustnic.cli.common import (add_device, add_images, add_model, add_seed, load_images, out_dir, print_json,
                                  unreadable_status)
from robustnic.codecs.options import STANDINS

NAME = "attack"

#: Defaults of the attack options shared by ``attack``, ``defend``, ``curves`` and ``transfer``
#: (the fields of :class:`robustnic.attacks.AttackSettings`).
SETTING_DEFAULTS = {"objective": "distortion", "reference": "clean", "metric": "mse", "standin": "none",
                    "restarts": 1, "color": "rgb", "rd_weight": None}
BUDGET_HELP = ("psnr:DB, mse:TAU, linf:EPS (1/255 units) or l2:EPS, optionally with an L∞ cap: "
               "psnr:40,linf:16")


def add_attack_settings(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """The attack options every attacking command takes (one definition; ``skip``: those it defines itself)."""
    options = {
        "objective": dict(choices=list(OBJECTIVE_NAMES), help="what to maximise (default distortion)"),
        "reference": dict(choices=list(REFERENCES),
                          help="distortion objective: away from the clean reconstruction (paper) or the source"),
        "metric": dict(choices=["mse", "ms-ssim"], help="distortion objective's metric (default mse)"),
        "standin": dict(choices=list(STANDINS),
                        help="quantisation stand-in during the attack (none = g_s(g_a(x)) as the paper)"),
        "restarts": dict(type=int, help="independent runs per image, best kept (default 1)"),
        "color": dict(choices=list(COLORS), help="colour space the distortion objectives measure in (BT.601 full "
                      "range; y = luma only; default rgb)"),
        "rd_weight": dict(type=float, help="rate-distortion objective: weight λ of the distortion (default: "
                          "CompressAI's quality-1 λ, 0.0018 for mse, 2.40 for ms-ssim)"),
    }
    for name, kwargs in options.items():
        if name not in skip:
            flag = "--" + name.replace("_", "-")
            p.add_argument(flag, default=SETTING_DEFAULTS[name], **kwargs)  # type: ignore[arg-type]


def changed_settings(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict:
    """The shared attack options the user changed from their defaults (for grid specs: a default
    is left out, so specs written before these options existed keep their job keys)."""
    return {k: getattr(args, k) for k, v in SETTING_DEFAULTS.items() if k not in skip and getattr(args, k) != v}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help=help_of(NAME),
        description="Attack images (paper, pgd, ...) at one or more budgets; every number comes from real "
        "bitstreams (compress -> bytes -> decompress of the 8-bit adversarial image).",
    )
    add_model(p)
    add_images(p, skips_unreadable=True)
    p.add_argument("--method", action="append", default=None, choices=[*ATTACK_NAMES, "all"],
                   help="attack method; repeatable; 'all' = every method (default: paper)")
    p.add_argument("--budget", "-b", action="append", default=None,
                   help=f"input budget {BUDGET_HELP}; repeatable (default psnr:40)")
    p.add_argument("--steps", type=int, default=None, help="iterations (default: the method's own, 100 for paper)")
    add_attack_settings(p)
    p.add_argument("--also-against", action="append", default=None, metavar="MODEL",
                   help="agnostic-ratio attack: craft one perturbation against --model and this model at once (mean "
                   "objective); repeatable; results are also measured on each (models.json/.csv)")
    p.add_argument("--target", default=None, help="targeted objective: the target image (same size after --crop)")
    p.add_argument("--mask", default=None,
                   help="targeted objective: region LEFT,TOP,RIGHT,BOTTOM in pixels (or a mask image file)")
    p.add_argument("--batch-size", type=int, default=8, help="images attacked together (same size only)")
    p.add_argument("--out", "-o", default="runs/attack",
                   help="output folder (default runs/attack); a rerun with the same arguments resumes it")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_seed(p)
    add_device(p)
    p.set_defaults(func=run)


def _where(spec: str | None) -> str | None:
    """An image option as recorded in the run's settings: existing paths made absolute."""
    if spec is None or spec in ("bundled", "heldout") or not Path(spec).exists():
        return spec
    return str(Path(spec).resolve())


def run(args: argparse.Namespace) -> int:
    import math

    import torch

    from robustnic.attacks import ATTACKS, AttackRunDir, CodecFamily, parse_budget, parse_mask, run_attacks
    from robustnic.attacks.ensemble_models import evaluate_saved_run
    from robustnic.codecs import load_codec
    from robustnic.data.images import load_image
    from robustnic.data.photos import center_crop
    from robustnic.errors import ImageError

    methods = list(ATTACKS) if args.method and "all" in args.method else (args.method or ["paper"])
    budgets = [str(parse_budget(b)) for b in args.budget or ["psnr:40"]]
    torch.manual_seed(args.seed)  # a randomly initialised model (":random" specs) is the same on every rerun
    codec = load_codec(args.model, args.device)
    family = {args.model: codec} | {m: load_codec(m, args.device) for m in args.also_against or []}
    attacked = CodecFamily(list(family.values())) if len(family) > 1 else codec  # numbers: measured on --model
    loaded = load_images(args)  # unreadable files: skipped with a warning, exit 1 at the end
    images = loaded.images
    target = None
    if args.target is not None:
        target = load_image(args.target)
        target = center_crop(target, args.crop) if args.crop is not None else target
    elif args.objective == "targeted":
        raise ImageError("--objective targeted needs --target IMAGE")
    first = next(iter(images.values()))
    mask = parse_mask(args.mask, tuple(first.shape[-2:]))
    settings = {"model": args.model, "codec": codec.name, "fingerprint": getattr(codec, "fingerprint", None),
                "images": _where(args.images), "crop": args.crop, "max_pixels": args.max_pixels, "methods": methods,
                "budgets": budgets, "steps": args.steps, "objective": args.objective, "reference": args.reference,
                "metric": args.metric, "standin": args.standin, "restarts": args.restarts, "seed": args.seed,
                "target": _where(args.target), "mask": _where(args.mask)}
    # added with --color/--rd-weight/--also-against: recorded only when set, so runs written before them still resume
    extra = {k: v for k, v in (("color", args.color), ("rd_weight", args.rd_weight),
                               ("also_against", args.also_against)) if v not in ("rgb", None)}
    settings.update(extra)
    config = {"command": "robustnic " + " ".join(sys.argv[1:]), "model": args.model, "codec": codec.name,
              "images": args.images, "crop": args.crop, "methods": methods, "budgets": budgets,
              "steps": args.steps, "objective": args.objective, "reference": args.reference,
              "metric": args.metric, "standin": args.standin, "restarts": args.restarts, "seed": args.seed,
              "target": args.target, "mask": args.mask, "device": str(codec.device), **extra}
    out = out_dir(args.out)
    state = AttackRunDir(out, settings, config, images=list(images))
    if state.resumed:
        print(f"resuming {out}: {state.resumed} result(s) already finished", file=sys.stderr)
    try:
        results = run_attacks(
            attacked, images, methods=methods, budgets=budgets, target=target, mask=mask, batch_size=args.batch_size,
            progress=not args.no_progress, objective=args.objective, reference=args.reference,
            metric=args.metric, standin=args.standin, steps=args.steps, seed=args.seed, restarts=args.restarts,
            skip=state.done, on_batch=state.add, color=args.color, rd_weight=args.rd_weight,
        )
    except KeyboardInterrupt:
        print(f"robustnic attack: kept {len(state.done)} finished result(s) in {out}; "
              "rerun the same command to resume", file=sys.stderr)
        raise
    report = state.finish()
    by_model = evaluate_saved_run(out, family, crafted_on=list(family)) if len(family) > 1 else []
    if args.json:
        print_json(report["summary"])
        return unreadable_status(args, loaded)
    cols = [("method", "method", "{}"), ("budget", "budget", "{}"), ("n", "n", "{}"), ("psnr-in", "PSNR in", "{:.2f}"),
            ("vif-in", "VIF in", "{:.3f}"), ("psnr-clean", "PSNR clean", "{:.2f}"),
            ("psnr-out", "PSNR attacked", "{:.2f}"),
            ("delta-psnr", "VI", "{:.2f}"), ("bpp-clean", "bpp clean", "{:.4f}"), ("bpp-adv", "bpp attacked", "{:.4f}"),
            ("attack-time", "time/img (s)", "{:.2f}")]
    print(" | ".join(title for _, title, _ in cols))
    for row in report["summary"]:
        cells = []
        for key, _, fmt in cols:
            value = row.get(key)
            cells.append("-" if value is None else fmt.format(value) if isinstance(value, (int, float)) else str(value))
        print(" | ".join(cells))
    if by_model:
        print(f"one perturbation crafted against {', '.join(family)}; measured on each (models.json/.csv):")
        print("model | method | budget | n | PSNR clean | PSNR attacked | drop | VI")
        for row in by_model:
            print(" | ".join([row["model"], row["method"], row["budget"], str(row["n"])]
                             + [f"{v:.2f}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"
                                for v in (row.get(k) for k in ("psnr-clean", "psnr-out", "psnr-drop", "delta-psnr"))]))
    earlier = f" ({state.resumed} more from an earlier run)" if state.resumed else ""
    print(f"wrote {len(results)} result(s){earlier} to {args.out}: summary.json/.csv (means over n images), "
          "per_image.json/.csv, and per image images/IMAGE/: source.png, clean-reconstruction.png, "
          "triplets.png, METHOD--BUDGET/{adversarial,reconstruction,perturbation}.png")
    return unreadable_status(args, loaded)

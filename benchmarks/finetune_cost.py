"""What adversarial fine-tuning costs per step, and what a cheap inner attack costs in robustness.

1. ``timing``: seconds per training step of plain RD training and of adversarial fine-tuning with
   an inner attack of K steps (PGD from a random start, the default recipe) and of the paper's
   recipe (a 300-step attack on the whole batch), same model, batch and patch size, one thread.
2. ``compare``: fine-tunes the same model for the same number of steps with inner attacks of
   different lengths (runs in ``runs/finetune/cost-kK``, resumable), then attacks each result with
   the full attack (``paper``, 100 steps) on held-out centre crops and measures clean RD on the
   full held-out photos - all on real bitstreams.

    .venv/bin/python benchmarks/finetune_cost.py timing --model hyperprior-small:q3
    .venv/bin/python benchmarks/finetune_cost.py compare --model hyperprior-small:q3 --ks 1 3 10 --steps 300
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from defense_table import clean_rd  # noqa: E402

from robustnic.codecs import load_codec  # noqa: E402
from robustnic.codecs.checkpoint import read_checkpoint_file  # noqa: E402
from robustnic.data.photos import bundled_photos, center_crop  # noqa: E402
from robustnic.defenses import attack_defense  # noqa: E402
from robustnic.training.finetune import FinetuneConfig, FinetuneTrainer, finetune  # noqa: E402
from robustnic.training import TrainConfig, Trainer  # noqa: E402
from robustnic.utils.io import atomic_write_text  # noqa: E402


def step_times(trainer: Trainer, steps: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        trainer.train_step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - t0)
    return times


def timing(args) -> dict:
    import tempfile

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = FinetuneConfig(model=args.model, batch_size=args.batch_size, patch_size=args.patch_size,
                              ramp_steps=0, val_every=10**9, checkpoint_every=10**9, threads=args.threads)
        ft = FinetuneTrainer(base, Path(tmp) / "probe", progress=False)
        plain_cfg = TrainConfig(**{**ft.config.__dict__, "init_from": args.model})
        plain = Trainer(plain_cfg, Path(tmp) / "plain", progress=False, val_images={})
        rows["plain RD training"] = step_times(plain, args.repeats)
        recipes = [(f"PGD {k} steps on {int(base.adv_fraction * 100)}% of the batch",
                    dict(attack="pgd", attack_steps=k)) for k in args.ks]
        recipes.append(("Jacobian penalty (weight 10), no inner attack",
                        dict(attack_steps=1, adv_fraction=0.0, regularizer="jacobian", reg_weight=10.0)))
        recipes.append(("paper recipe: 300-step attack on the whole batch",
                        dict(attack="paper", attack_steps=300, adv_fraction=1.0)))
        for name, kw in recipes:
            cfg = FinetuneConfig(**{**base.__dict__, **kw})
            trainer = FinetuneTrainer(cfg, Path(tmp) / name.split(":")[0].replace(" ", "-"), progress=False)
            reps = 1 if kw["attack_steps"] >= 100 else args.repeats
            rows[name] = step_times(trainer, reps, warmup=0 if reps == 1 else 1)
            print(f"{name}: {statistics.median(rows[name]):.2f} s/step", file=sys.stderr)
    plain_s = statistics.median(rows["plain RD training"])
    lines = [f"Model `{args.model}`, batch {args.batch_size} x {args.patch_size}², {args.threads} CPU thread(s); "
             f"median of {args.repeats} steps (1 step for the 300-step recipe).", "",
             "| training step | seconds / step | × plain |", "|---|---|---|"]
    for name, ts in rows.items():
        s = statistics.median(ts)
        lines.append(f"| {name} | {s:.2f} | {s / plain_s:.1f}× |")
    return {"rows": rows, "table": "\n".join(lines)}


def compare(args) -> dict:
    full = bundled_photos()
    crops = torch.cat([center_crop(x, args.crop) for x in full.values()])
    entries = [("vanilla", args.model, None)]
    for k in args.ks:
        out = Path(args.runs) / f"cost-k{k}"
        cfg = FinetuneConfig(model=args.model, steps=args.steps, attack_steps=k, budget=args.budget,
                             ramp_steps=args.ramp_steps, batch_size=args.batch_size, patch_size=args.patch_size,
                             val_every=args.steps, checkpoint_every=25, threads=args.threads)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # the trainer's validation lines: a log, not the table
            result = finetune(cfg, out, progress=False)
        entries.append((f"fine-tuned, PGD-{k} inner attack", result["checkpoint"], result["elapsed"]))
        print(f"k={k}: {result['elapsed']:.0f} s of training ({time.perf_counter() - t0:.0f} s this call)", file=sys.stderr)
    for text in args.extra or []:
        name, _, path = text.partition("=")
        ckpt = read_checkpoint_file(path)
        entries.append((f"{name} ({int(ckpt['step'])} steps)", path, float(ckpt["elapsed"])))
    rows = []
    for name, spec, train_s in entries:
        codec = load_codec(spec)
        rd = clean_rd(codec, full)
        res = attack_defense(codec, crops, method="paper", references=("clean", "source"), budget=args.budget,
                             steps=args.eval_steps, seed=0)
        rows.append({"name": name, "spec": spec, "train_s": train_s, "clean": rd,
                     "psnr-clean": res.mean("psnr-clean"), "psnr-out": res.mean("psnr-out"),
                     "damage": res.mean("psnr-drop")})
        print(f"{name}: clean {rd}, attacked {res.mean('psnr-out'):.2f}", file=sys.stderr)
    lines = [f"Model `{args.model}`; PGD-K rows: fine-tuned {args.steps} steps against {args.budget} (ramp "
             f"{args.ramp_steps}), batch {args.batch_size} x {args.patch_size}², other rows as labelled; evaluated with `paper` x{args.eval_steps} at {args.budget} "
             f"(worst of the clean- and source-reference objectives per image) "
             f"on {len(full)} held-out centre crops {args.crop}² and clean RD on the full photos (real bitstreams).", "",
             "| model | training time | clean bpp | clean PSNR | attacked PSNR (crops) | damage |", "|---|---|---|---|---|---|"]
    for r in rows:
        t = f"{r['train_s'] / 60:.1f} min" if r["train_s"] else "-"
        lines.append(f"| {r['name']} | {t} | {r['clean']['bpp']:.3f} | {r['clean']['psnr']:.2f} | "
                     f"{r['psnr-out']:.2f} | {r['damage']:.2f} dB |")
    return {"rows": rows, "table": "\n".join(lines)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["timing", "compare"])
    p.add_argument("--model", default="hyperprior-small:q3")
    p.add_argument("--ks", type=int, nargs="*", default=[1, 3, 10], help="inner attack lengths (none: only --extra)")
    p.add_argument("--steps", type=int, default=300, help="compare: fine-tuning steps per run")
    p.add_argument("--ramp-steps", type=int, default=100)
    p.add_argument("--budget", default="psnr:30")
    p.add_argument("--eval-steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patch-size", type=int, default=128)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default="runs/finetune")
    p.add_argument("--extra", action="append", default=None, metavar="LABEL=CHECKPOINT",
                   help="compare: also evaluate this fine-tuning checkpoint (training time from the checkpoint)")
    p.add_argument("--out", default=None, help="JSON output (default runs/defenses/finetune_cost_WHAT.json)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = timing(args) if args.what == "timing" else compare(args)
    print(result["table"])
    out = Path(args.out or f"runs/defenses/finetune_cost_{args.what}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps({"args": vars(args), **result}, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

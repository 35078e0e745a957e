"""Regularised vs PGD fine-tuning: clean RD, damage under attack and training time, one table.

    .venv/bin/python benchmarks/regularized_finetune.py \
        --entry "vanilla=hyperprior-small:q3" --entry "PGD-3 (shipped)=hyperprior-small-robust:q3" \
        --entry "jacobian=runs/finetune/hyperprior-small-q3-jacobian/last.pth.tar"

Per entry: clean bpp / PSNR on the six held-out photos at full size, and the model card's
vulnerability setup (``paper`` attack, 100 steps, seed 0, psnr:30/35/40, the held-out photos'
256² centre crops as one batch), every number from real bitstreams. Training steps and seconds
come from the manifest row of a shipped model or from the checkpoint of a run.
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")


def training_info(spec: str) -> tuple[int | None, float | None, str]:
    """(steps, seconds, what) of the fine-tuning that made ``spec``; None for a model not fine-tuned."""
    from robustnic.codecs import read_manifest
    from robustnic.codecs.checkpoint import read_checkpoint_file

    if Path(spec).is_file():
        ckpt = read_checkpoint_file(spec)
        settings = Path(spec).parent / "finetune.json"
        what = settings.read_text().replace("\n", " ") if settings.is_file() else ""
        return int(ckpt["step"]), float(ckpt["elapsed"]), what
    row = read_manifest().get(spec)
    if row is None or not row.info.get("finetuned_from"):
        return None, None, ""
    return row.info.get("steps"), row.info.get("train_seconds"), row.info.get("command", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry", action="append", required=True, help="LABEL=MODEL (zoo spec or checkpoint)")
    parser.add_argument("--steps", type=int, default=100, help="attack steps (default: the card's 100)")
    args = parser.parse_args()

    from robustnic.codecs import load_codec
    from robustnic.codecs.evaluate import evaluate_codec
    from robustnic.data.photos import bundled_photos
    from robustnic.training.card import VULNERABILITY, attack_damage

    full = bundled_photos()
    crops = bundled_photos(crop=VULNERABILITY["crop"])
    budgets = VULNERABILITY["budgets"]
    rows = []
    for entry in args.entry:
        label, _, spec = entry.partition("=")
        codec = load_codec(spec)
        clean = evaluate_codec(codec, full, progress=False)["results"]
        damage = attack_damage(codec, crops, budgets, steps=args.steps, seed=VULNERABILITY["seed"])
        steps, seconds, _ = training_info(spec)
        rows.append((label, spec, clean, damage, steps, seconds))

    print(f"Held-out photos: {len(full)} at full size for clean RD; attack: `paper`, {args.steps} steps, seed 0, "
          f"centre crops {VULNERABILITY['crop']}² as one batch; real bitstreams. Damage = clean - attacked PSNR "
          "of the crops (dB).\n")
    print("| entry | model | fine-tuning steps | fine-tuning time | s / step | clean bpp | clean PSNR (dB) | "
          + " | ".join(f"damage @{b.split(':')[1]} dB" for b in budgets) + " |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(budgets))
    for label, spec, clean, damage, steps, seconds in rows:
        time_cell = "-" if seconds is None else f"{seconds / 60:.1f} min"
        per_step = "-" if not steps or seconds is None else f"{seconds / steps:.2f}"
        cells = " | ".join(f"{damage[b]['psnr-drop']:.2f}" for b in budgets)
        print(f"| {label} | `{spec}` | {steps or '-'} | {time_cell} | {per_step} | {clean['bpp']:.3f} | "
              f"{clean['psnr-rgb']:.2f} | {cells} |")
    ok = all(damage[b]["budget-ok"] for _, _, _, damage, _, _ in rows for b in budgets)
    print(f"\nEvery adversarial image within its budget on the saved 8-bit file: {'yes' if ok else 'NO'}; "
          f"mean input PSNR per budget: "
          + ", ".join(f"{b}: {statistics.fmean(r[3][b]['psnr-in'] for r in rows):.2f}" for b in budgets) + ".")


if __name__ == "__main__":
    main()

"""The defenses table: reconstruction PSNR under attack and clean rate-distortion, real bitstreams.

Every entry is a codec, optionally wrapped by a defense (``robustnic.defenses.make_defense``), and
is attacked *itself* - a defended codec in every attack mode it offers (through the defense and
around it), keeping per image the attack that hurt most (``robustnic.defenses.attack_defense``).

* clean RD: mean bpp and PSNR over the full held-out photos (real bitstreams of the entry itself,
  self-ensemble side bits included);
* attacked: on centre crops of the same photos, the mean PSNR of the decoded adversarial image
  against the source, at each budget, and the damage = clean PSNR - attacked PSNR (same crops).

Entries are ``LABEL=SPEC`` or ``LABEL=SPEC|DEFENSE``; results are cached per entry in ``--out``
(rerun to resume). The goal check compares fine-tuned entries (label starting with ``robust``)
with the vanilla RD curve (``vanilla`` entries of the same family).

    .venv/bin/python benchmarks/defense_table.py --steps 100 --crop 128
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

from robustnic.codecs import load_codec
from robustnic.data.photos import bundled_photos, center_crop
from robustnic.defenses import DEFAULT_PURIFIERS, attack_defense, make_defense
from robustnic.metrics import psnr
from robustnic.metrics.bd import bd_psnr, bd_rate
from robustnic.utils.io import atomic_write_text

BASE = "hyperprior-small:q3"
DEFAULT_ENTRIES = (
    [f"vanilla q3={BASE}", f"ensemble q3={BASE}|ensemble"]
    + [f"{p} q3={BASE}|{p}" for p in DEFAULT_PURIFIERS]
    + ["robust q3=hyperprior-small-robust:q3"]
    + ["vanilla factorized=factorized-small:q3", "robust factorized=factorized-small-robust:q3"]
    + ["robust+jpeg:q90 q3=hyperprior-small-robust:q3|jpeg:q90", "robust+ensemble q3=hyperprior-small-robust:q3|ensemble"]
)


def parse_entry(text: str) -> tuple[str, str, str]:
    label, _, rest = text.partition("=")
    spec, _, defense = rest.partition("|")
    if not label or not spec:
        raise SystemExit(f"entry {text!r}: use LABEL=SPEC or LABEL=SPEC|DEFENSE")
    return label.strip(), spec.strip(), defense.strip() or "none"


def clean_rd(codec, photos: dict[str, torch.Tensor]) -> dict:
    """Mean bpp and PSNR over ``photos`` from real bitstreams."""
    bpp, quality, enc = [], [], []
    for x in photos.values():
        coded = codec.roundtrip(x)
        bpp.append(coded.bpp)
        quality.append(psnr(x, coded.x_hat))
        enc.append(coded.encode_time)
    return {"bpp": float(np.mean(bpp)), "psnr": float(np.mean(quality)), "encode_s": float(np.mean(enc))}


def attack_code() -> str:
    """Fingerprint of the attack engine's source (entries measured with different code differ)."""
    import hashlib

    import robustnic.attacks

    h = hashlib.sha256()
    for path in sorted(Path(robustnic.attacks.__file__).parent.glob("*.py")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:12]


def evaluate(label: str, spec: str, defense: str, args, full: dict, crops: torch.Tensor) -> dict:
    codec = make_defense(load_codec(spec), defense)
    t0 = time.perf_counter()
    result = {"label": label, "spec": spec, "defense": defense, "name": codec.name, "attack_code": attack_code(),
              "clean": clean_rd(codec, full)}
    result["attacked"] = {}
    for db in args.budgets:
        budget = f"psnr:{db:g}"
        res = attack_defense(codec, crops, method=args.attack, references=tuple(args.references), budget=budget,
                             steps=args.steps, seed=args.seed)
        modes: dict[str, int] = {}
        for r in res.rows:
            modes[r["attack-mode"]] = modes.get(r["attack-mode"], 0) + 1
        result["attacked"][budget] = {
            "psnr-in": res.mean("psnr-in"), "psnr-clean": res.mean("psnr-clean"), "psnr-out": res.mean("psnr-out"),
            "damage": res.mean("psnr-drop"), "bpp-adv": res.mean("bpp-adv"), "worst-modes": modes,
            "by-mode-psnr-out": {m: float(np.mean([r["psnr-out"] for r in rows])) for m, rows in res.by_mode.items()},
        }
        print(f"  {label} {budget}: clean {res.mean('psnr-clean'):.2f} attacked {res.mean('psnr-out'):.2f} "
              f"modes {modes}", file=sys.stderr)
    result["seconds"] = time.perf_counter() - t0
    return result


def psnr_at_bpp(curve: list[tuple[float, float]], bpp: float) -> float | None:
    """PSNR of a (bpp, PSNR) curve at ``bpp``, linear in log-bpp; None outside the curve."""
    pts = sorted(curve)
    for (r0, p0), (r1, p1) in zip(pts, pts[1:]):
        if r0 <= bpp <= r1:
            w = (math.log(bpp) - math.log(r0)) / (math.log(r1) - math.log(r0))
            return p0 + w * (p1 - p0)
    return None


def markdown(results: list[dict], args) -> str:
    budgets = [f"psnr:{db:g}" for db in args.budgets]
    head = "| entry | codec | clean bpp | clean PSNR | " + " | ".join(
        f"attacked PSNR @{b.split(':')[1]} dB (damage)" for b in budgets) + " | crop clean PSNR | worst attack modes |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        cells = [r["label"], f"`{r['name']}`", f"{r['clean']['bpp']:.3f}", f"{r['clean']['psnr']:.2f}"]
        cells += [f"{r['attacked'][b]['psnr-out']:.2f} ({r['attacked'][b]['damage']:+.2f})" for b in budgets]
        cells.append(f"{r['attacked'][budgets[0]]['psnr-clean']:.2f}")
        modes = sorted({m for b in budgets for m in r["attacked"][b]["worst-modes"]})
        cells.append(", ".join(modes))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pass_through_damage(attacked: dict) -> float:
    """Damage of a codec that passed the perturbation through unchanged: its reconstruction error
    plus the input perturbation, taken as uncorrelated (MSE_clean + MSE_in), from the mean PSNRs."""
    mse_clean, mse_in = 10 ** (-attacked["psnr-clean"] / 10), 10 ** (-attacked["psnr-in"] / 10)
    return 10 * math.log10((mse_clean + mse_in) / mse_clean)


def goal_check(results: list[dict], args) -> str:
    """Fine-tuned vs vanilla: damage reduction at the vanilla's worst budget, RD loss at equal bpp."""
    budgets = [f"psnr:{db:g}" for db in args.budgets]
    vanilla = {r["label"]: r for r in results if r["label"].startswith("vanilla") and r["defense"] == "none"}
    robust = [r for r in results if r["label"].startswith("robust")]
    if not vanilla or not robust:
        return ""
    # the RD curve: the vanilla entries labelled "vanilla qK" (one family at several rates)
    family = {label: r for label, r in vanilla.items() if re.fullmatch(r"vanilla q\d+", label)}
    curve = [(r["clean"]["bpp"], r["clean"]["psnr"]) for r in family.values()]
    lines = ["| fine-tuned | vs | budget (vanilla hurt most) | damage vanilla -> fine-tuned | damage kept | "
             "goal (1/3 of vanilla) | pass-through damage | ΔPSNR at equal bpp (vanilla curve) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in robust:
        ref_label = "vanilla " + r["label"].split(" ", 1)[1] if " " in r["label"] else None
        ref = vanilla.get(ref_label) if ref_label else None
        if ref is None:
            continue
        worst = max(budgets, key=lambda b: ref["attacked"][b]["damage"])
        before, after = ref["attacked"][worst]["damage"], r["attacked"][worst]["damage"]
        kept = after / before if before > 0 else float("nan")
        at = psnr_at_bpp(curve, r["clean"]["bpp"]) if ref_label in family else None
        delta = f"{r['clean']['psnr'] - at:+.2f} dB" if at is not None else "n/a (outside the vanilla curve)"
        lines.append(f"| {r['label']} | {ref['label']} | {worst} | {before:.2f} -> {after:.2f} dB | {100 * kept:.0f}% | "
                     f"{before / 3:.2f} dB | {pass_through_damage(r['attacked'][worst]):.2f} dB | {delta} |")
    rob = sorted((r["clean"]["bpp"], r["clean"]["psnr"]) for r in robust
                 if r["label"].replace("robust", "vanilla") in family)
    ref = sorted(curve)
    if len(rob) >= 2 and len(ref) >= 2:
        args_ = ([b for b, _ in ref], [p for _, p in ref], [b for b, _ in rob], [p for _, p in rob])
        lines.append("")
        lines.append(f"Fine-tuned curve vs vanilla curve (clean, real bitstreams, full photos): BD-rate "
                     f"{bd_rate(*args_):+.1f}%, BD-PSNR {bd_psnr(*args_):+.2f} dB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entry", action="append", default=None, help="LABEL=SPEC[|DEFENSE] (repeatable; default: the set above)")
    p.add_argument("--budgets", type=float, nargs="+", default=[30, 35, 40], help="PSNR budgets in dB")
    p.add_argument("--attack", default="paper")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--references", nargs="+", default=["source"],
                   help="distortion references of the attack, worst case kept (default source: away from the "
                        "source image, the stronger one here; the self-ensemble's EOT mode always uses clean)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crop", type=int, default=128, help="centre crop of the attacked photos")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/defenses/defense_table.json", help="per-entry results cache (resumable)")
    p.add_argument("--redo", action="store_true", help="ignore cached entries")
    p.add_argument("--keep-stale", action="store_true",
                   help="reuse cached entries measured with other attack-engine source (the table lists each "
                        "source); by default they are measured again")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    full = bundled_photos()
    crops = torch.cat([center_crop(x, args.crop) for x in full.values()])
    out = Path(args.out)
    cache = json.loads(out.read_text()) if out.is_file() and not args.redo else {}
    key_args = {"budgets": args.budgets, "attack": args.attack, "steps": args.steps, "seed": args.seed,
                "crop": args.crop, "references": args.references}
    if cache.get("args") != key_args:
        cache = {"args": key_args, "entries": {}}
    results = []
    code = attack_code()
    for text in args.entry or DEFAULT_ENTRIES:
        label, spec, defense = parse_entry(text)
        key = f"{label}={spec}|{defense}"
        cached = cache["entries"].get(key)
        if cached is None or (cached["attack_code"] != code and not args.keep_stale):
            print(f"{key} ...", file=sys.stderr)
            cache["entries"][key] = evaluate(label, spec, defense, args, full, crops)
            atomic_write_text(out, json.dumps(cache, indent=1) + "\n")
        results.append(cache["entries"][key])
    print(f"Attack `{args.attack}`, {args.steps} steps, seed {args.seed}, against each entry itself (worst case "
          f"per image over its attack modes and the references {'/'.join(args.references)}); attacked PSNR on {len(full)} held-out photos, centre crops {args.crop}x{args.crop}; "
          f"clean RD on the full photos. Real bitstreams throughout. Attack engine source "
          f"{', '.join(sorted({r['attack_code'] for r in results}))} (now {code}).\n")
    print(markdown(results, args))
    check = goal_check(results, args)
    if check:
        print("\n" + check)
    return 0


if __name__ == "__main__":
    sys.exit(main())

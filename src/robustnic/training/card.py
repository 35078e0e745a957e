"""Write the model card (``weights/README.md``) and its RD plot from the manifest.

``python -m robustnic.training.card`` evaluates JPEG and WebP (Pillow) on the same held-out photos,
computes BD-rates of each shipped family against them, the gap between real and estimated bpp,
attacks every shipped model at 30 / 35 / 40 dB (:data:`VULNERABILITY`; the result is kept in its
manifest row and recomputed only when the model or the setup changes) and writes ``weights/rd.png``
and ``weights/README.md``. All numbers come from real bitstreams.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from tqdm.auto import tqdm

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from robustnic.attacks.paper import PaperAttack  # noqa: E402
from robustnic.attacks.verify import verify_attack  # noqa: E402
from robustnic.codecs.classical import ClassicalCodec  # noqa: E402
from robustnic.codecs.evaluate import evaluate_codec  # noqa: E402
from robustnic.codecs.learned import COMPRESSAI_SCALE_LEVELS  # noqa: E402
from robustnic.codecs.base import Codec  # noqa: E402
from robustnic.codecs.zoo import WEIGHTS_DIR, load_shipped, read_manifest  # noqa: E402
from robustnic.data.photos import HELDOUT_PHOTOS, bundled_photos  # noqa: E402
from robustnic.metrics.bd import bd_psnr, bd_rate  # noqa: E402
from robustnic.utils.io import atomic_path, atomic_write_text  # noqa: E402

CLASSICAL_QUALITIES = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90)

#: How the card measures each shipped model's vulnerability: Chen & Ma's attack on the held-out photos
#: (centre crops, one batch), verified on real bitstreams.
VULNERABILITY = {"method": "paper", "steps": 100, "budgets": ["psnr:30", "psnr:35", "psnr:40"], "crop": 256, "seed": 0}
_DAMAGE_KEYS = ("psnr-clean", "psnr-out", "psnr-drop", "bpp-clean", "bpp-adv", "psnr-in")


def attack_damage(codec: Codec, photos: dict[str, torch.Tensor], budgets: list[str], steps: int = 100,
                  seed: int = 0) -> dict[str, dict]:
    """Mean damage of the ``paper`` attack at each budget over ``photos`` (same-size crops, attacked as
    one batch): ``{budget: {"psnr-clean", "psnr-out", "psnr-drop", "bpp-clean", "bpp-adv", "psnr-in",
    "budget-ok"}}``, every number from real bitstreams of the 8-bit adversarial images."""
    x = torch.cat(list(photos.values()))
    attack = PaperAttack(codec, steps=steps, seed=seed)
    out = {}
    for budget, x_adv in attack.sweep(budgets, x).items():
        rows = verify_attack(codec, x, x_adv, budget=budget)
        out[budget] = {k: statistics.fmean(r[k] for r in rows) for k in _DAMAGE_KEYS}
        out[budget]["budget-ok"] = all(r["budget-ok"] for r in rows)
    return out


def record_vulnerability(weights_dir: Path = WEIGHTS_DIR, setup: dict = VULNERABILITY, progress: bool = True,
                         only: list[str] | None = None) -> int:
    """Attack every shipped model (or those in ``only``) whose manifest row has no result for ``setup`` (or
    one measured on other weights), highest rate first, and store it in the row (``"vulnerability"``, one
    row at a time, so an interrupted run keeps what it measured); returns how many models were attacked."""
    from robustnic.training.zoo import manifest_lock  # the zoo build imports this module

    stale = [row for row in read_manifest(weights_dir).values()
             if (only is None or row.spec in only)
             and ((row.info.get("vulnerability") or {}).get("setup") != setup
                  or row.info["vulnerability"].get("sha256") != row.sha256)]
    stale.sort(key=lambda r: -(r.info.get("lambda") or 0) if r.metric == "mse" else 0)
    photos = bundled_photos(crop=setup["crop"])
    for row in tqdm(stale, desc="attack shipped models", disable=not progress):
        codec = load_shipped(row.spec, weights_dir=weights_dir)
        result = {"setup": setup, "sha256": row.sha256,
                  "results": attack_damage(codec, photos, setup["budgets"], setup["steps"], setup["seed"])}
        with manifest_lock(weights_dir) as manifest:
            for stored in manifest["models"]:
                if (stored["family"], stored["quality"]) == (row.family, row.quality):
                    stored["vulnerability"] = result
    return len(stale)


def vulnerability_section(manifest) -> list[str]:
    """The attack's damage per model, ordered by family and rate: how vulnerability grows with rate."""
    rows = [r for r in sorted(manifest.values(), key=lambda r: (r.family, r.quality)) if r.info.get("vulnerability")]
    if not rows:
        return []
    setup = rows[0].info["vulnerability"]["setup"]
    budgets = setup["budgets"]
    lines = ["", "## Vulnerability vs rate", "",
             f"Chen & Ma's attack (`{setup['method']}`, {setup['steps']} steps, seed {setup['seed']}) on the held-out photos, "
             f"centre crops {setup['crop']}x{setup['crop']}, one batch; mean PSNR of the decoded attacked image against the "
             "source and, in brackets, the drop from the clean reconstruction (real bitstreams of the 8-bit adversarial "
             "images). Recomputed by `python -m robustnic.training.card` whenever a model's weights change.", "",
             "| model | λ | clean bpp (crops) | clean PSNR (crops) | " + " | ".join(f"attacked @{b.split(':')[1]} dB" for b in budgets)
             + " | bpp @" + budgets[-1].split(":")[1] + " dB |",
             "|---|---|---|---|" + "---|" * len(budgets) + "---|"]
    for row in rows:
        res = row.info["vulnerability"]["results"]
        first = res[budgets[0]]
        cells = [f"{res[b]['psnr-out']:.2f} ({res[b]['psnr-drop']:.2f})" for b in budgets]
        lines.append(f"| `{row.spec}` | {row.info.get('lambda')} | {first['bpp-clean']:.3f} | {first['psnr-clean']:.2f} | "
                     + " | ".join(cells) + f" | {res[budgets[-1]]['bpp-adv']:.3f} |")
    return lines


def classical_curves(qualities=CLASSICAL_QUALITIES) -> dict[str, list[dict]]:
    """Mean RD of JPEG and WebP at each quality on the held-out photos (real bytes)."""
    photos = bundled_photos()
    return {fmt: [evaluate_codec(ClassicalCodec(fmt, q), photos, progress=False)["results"] | {"quality": q}
                  for q in qualities] for fmt in ("jpeg", "webp")}


def families(manifest) -> dict[str, list]:
    out: dict[str, list] = {}
    for row in manifest.values():
        out.setdefault(row.family, []).append(row)
    return {k: sorted(v, key=lambda r: r.info["rd"]["bpp"]) for k, v in sorted(out.items()) if all("rd" in r.info for r in v)}


def _bd(rows, curve) -> str:
    if len(rows) < 2:
        return "n/a (one rate)"
    try:
        value = bd_rate([c["bpp"] for c in curve], [c["psnr-rgb"] for c in curve],
                        [r.info["rd"]["bpp"] for r in rows], [r.info["rd"]["psnr-rgb"] for r in rows])
    except ValueError:
        return "n/a (no overlap)"
    return f"{value:+.1f}%"


def robust_section(manifest, fams: dict[str, list]) -> list[str]:
    """The adversarially fine-tuned models against the models they started from (clean RD)."""
    robust = [r for r in sorted(manifest.values(), key=lambda r: r.spec) if r.info.get("finetuned_from")]
    if not robust:
        return []
    lines = ["", "## Robust models (adversarial fine-tuning)", "",
             "Fine-tuned by `robustnic finetune` from the model in the second column (the commands are below), then",
             "exported and recorded by `python -m robustnic.training.robust`. Their",
             "robustness under attack, against the vanilla models, the self-ensemble and purification, is measured in",
             "[benchmarks/RESULTS-defenses.md](../../../benchmarks/RESULTS-defenses.md); here, what it costs on clean images.",
             "", "| model | fine-tuned from | bpp | PSNR (dB) | Δbpp | ΔPSNR |", "|---|---|---|---|---|---|"]
    for row in robust:
        src = manifest.get(row.info["finetuned_from"]["spec"])
        rd, base = row.info["rd"], (src.info.get("rd") if src else None)
        delta = (f"{100 * (rd['bpp'] / base['bpp'] - 1):+.1f}% | {rd['psnr-rgb'] - base['psnr-rgb']:+.2f} dB"
                 if base else "n/a | n/a")
        lines.append(f"| `{row.spec}` | `{row.info['finetuned_from']['spec']}` | {rd['bpp']:.3f} | "
                     f"{rd['psnr-rgb']:.2f} | {delta} |")
    for fam, rows in fams.items():
        base = fams.get(fam.removesuffix("-robust"))
        if fam.endswith("-robust") and base and len(rows) >= 2 and len(base) >= 2:
            curve = [r.info["rd"] for r in base]
            points = ([c["bpp"] for c in curve], [c["psnr-rgb"] for c in curve],
                      [r.info["rd"]["bpp"] for r in rows], [r.info["rd"]["psnr-rgb"] for r in rows])
            lines += ["", f"`{fam}` against `{fam.removesuffix('-robust')}` (clean, same photos): BD-rate "
                          f"{_bd(rows, curve)}, BD-PSNR {bd_psnr(*points):+.2f} dB (the vanilla curve is nearly "
                          "flat, which makes BD-rate swing with small PSNR differences)."]
    return lines


def write_card(weights_dir: Path = WEIGHTS_DIR) -> Path:
    manifest = read_manifest(weights_dir)
    fams = families(manifest)
    curves = classical_curves()
    fig, ax = plt.subplots(figsize=(7, 5))
    for fmt, curve in curves.items():
        ax.plot([c["bpp"] for c in curve], [c["psnr-rgb"] for c in curve], "--", marker=".", label=f"{fmt.upper()} (Pillow)")
    for fam, rows in fams.items():
        if rows[0].metric == "mse":
            ax.plot([r.info["rd"]["bpp"] for r in rows], [r.info["rd"]["psnr-rgb"] for r in rows], "-o", label=fam)
    ax.set_xlim(0, max(2.2, *(r.info["rd"]["bpp"] + 0.1 for rows in fams.values() for r in rows)))
    ax.set_xlabel("bpp (real bitstreams)")
    ax.set_ylabel("PSNR-RGB (dB)")
    ax.set_title(f"Held-out photos ({', '.join(HELDOUT_PHOTOS)})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    with atomic_path(weights_dir / "rd.png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)

    lines = [
        "# Model card: robustnic's shipped models",
        "",
        "Small CompressAI-architecture models trained by `robustnic train` on CPU, on photos that packages ship",
        "(Debian's `mate-backgrounds` nature photos and scikit-image's rocket/motorcycle photos), so that",
        "robustnic works offline. They are *small and briefly trained*: use them to exercise the toolkit;",
        "use CompressAI's pretrained models (`bmshj2018-hyperprior:q3:pretrained`) for paper-grade numbers.",
        "",
        "Labels are CompressAI's: `family:qK` was trained with CompressAI's λ for quality K (so `hyperprior-long:q8`",
        "and `bmshj2018-hyperprior:q8:pretrained` aim at the same rate-distortion trade-off). Labels before robustnic",
        "0.2 were one lower; those that are no label today still resolve, with a deprecation message, until 0.3",
        "(a label valid today means today's model). As CompressAI widens its",
        "models at high qualities, the high-rate hyperpriors (q5-q8) have a wider latent (M=192).",
        "",
        f"Held-out evaluation photos (never trained on): {', '.join(HELDOUT_PHOTOS)} (full size, real bitstreams).",
        "Weights are stored in fp16; the entropy-coder tables were computed from the fp16 weights, so decoding is exact.",
        "Reproduce everything: `make zoo` (= `python -m robustnic.training.zoo`, resumable), then",
        "`python -m robustnic.training.card` for this page.",
        "",
        "![RD curves](rd.png)",
        "",
        "*real vs est.*: real bpp against the bpp estimated from the likelihoods. *scale table*: levels of the",
        "Gaussian scale table stored with the model; CompressAI's default 64 levels cost the mean-scale models",
        "(mbt2018-mean, mbt2018) about 4% of real bpp, so they ship with 256 (`robustnic export --scale-levels 256`).",
        "",
        "| model | architecture | N/M | metric | λ | steps | CPU time | bpp | PSNR (dB) | MS-SSIM | est. bpp | real vs est. | scale table | size |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(manifest.values(), key=lambda r: r.spec):
        i, rd = row.info, row.info.get("rd", {})
        if not rd:
            continue
        gap = (rd["bpp"] / rd["bpp-estimated"] - 1) * 100 if rd.get("bpp-estimated") else float("nan")
        lines.append(
            f"| `{row.spec}` | {row.architecture} | {row.N}/{row.M} | {row.metric} | {i['lambda']} | {i['steps']} | "
            f"{i['train_seconds'] / 60:.0f} min | {rd['bpp']:.3f} | {rd['psnr-rgb']:.2f} | {rd['ms-ssim-rgb']:.4f} | "
            f"{rd['bpp-estimated']:.3f} | {gap:+.1f}% | {i.get('scale_levels') or (COMPRESSAI_SCALE_LEVELS if row.architecture != 'bmshj2018-factorized' else '-')} | "
            f"{i['bytes'] / 1e6:.1f} MB |"
        )
    lines += ["", "## BD-rate against the classical codecs (negative = fewer bits than the classical codec)", "",
              "| family | vs JPEG | vs WebP |", "|---|---|---|"]
    for fam, rows in fams.items():
        if rows[0].metric == "mse":
            lines.append(f"| {fam} | {_bd(rows, curves['jpeg'])} | {_bd(rows, curves['webp'])} |")
    lines += vulnerability_section(manifest)
    lines += robust_section(manifest, fams)
    lines += ["", "Classical reference points (mean over the held-out photos):", "",
              "| quality | JPEG bpp | JPEG PSNR | WebP bpp | WebP PSNR |", "|---|---|---|---|---|"]
    for j, w in zip(curves["jpeg"], curves["webp"]):
        lines.append(f"| {j['quality']} | {j['bpp']:.3f} | {j['psnr-rgb']:.2f} | {w['bpp']:.3f} | {w['psnr-rgb']:.2f} |")
    lines += ["", "## How each model was trained", ""]
    for row in sorted(manifest.values(), key=lambda r: r.spec):
        lines += [f"- `{row.spec}`: {row.info.get('note', '')}.", f"  `{row.info.get('command', '')}`"]
    lines += ["", "Training data: `robustnic.data.photos.training_photo_paths()`, each photo at two scales "
              "(shorter side 512 and 768, Lanczos), random 128x128 crops (192 for MS-SSIM) with random flips."]
    path = weights_dir / "README.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    atomic_write_text(weights_dir / "classical.json", json.dumps(curves, indent=2))
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--no-attacks", action="store_true", help="keep the stored vulnerability results, attack nothing")
    p.add_argument("--only", action="append", default=None, help="attack only these models (family:qK; repeatable)")
    args = p.parse_args(argv)
    if not args.no_attacks:
        record_vulnerability(only=args.only)
    print(write_card())


if __name__ == "__main__":
    main()

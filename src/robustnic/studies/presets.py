"""Ready-made grid specs: the single-study commands (``recompress``, ``curves``, ``transfer``) and the demo.

Each function returns a spec dict for :func:`robustnic.studies.grid.run_spec`, so a study started
from the command line is stored, resumed and reported exactly like a hand-written grid.
"""

from __future__ import annotations

import re
from typing import Any

from robustnic.codecs.zoo import DEFAULT_MODEL, read_manifest

#: Manifest words that mark an adversarially fine-tuned (robust) model (not an RD fine-tune).
ROBUST_WORDS = re.compile(r"\brobust\b|\badversarial")
CLASSICAL = ("jpeg", "webp")


def _images(images: str | list[str]) -> list[str]:
    return [images] if isinstance(images, str) else list(images)


def recompression_spec(
    models: list[str], images: str | list[str] = "bundled", crop: int | None = 256, generations: int = 50,
    match: str | None = None, classical: tuple[str, ...] = CLASSICAL, defenses: tuple[str, ...] = ("none",),
    snapshots: tuple[int, ...] = (1, 2, 5, 10, 20, 50), seed: int = 0,
) -> dict[str, Any]:
    """Recompression of ``models`` (each with every defense) plus JPEG/WebP matched to ``match``
    (default: the first model) at first-generation bpp."""
    studies: list[dict[str, Any]] = [{"kind": "recompression", "models": list(models), "defenses": list(defenses),
                                      "generations": generations, "snapshots": list(snapshots)}]
    if classical:
        studies.append({"kind": "recompression", "models": [f"{c}:match" for c in classical],
                        "match": match or models[0], "generations": generations, "snapshots": list(snapshots)})
    return {"seed": seed, "crop": crop, "images": _images(images), "study": studies}


def curves_spec(
    models: list[str], budgets: list[str], attack: str = "paper", defenses: tuple[str, ...] = ("none",),
    images: str | list[str] = "bundled", crop: int | None = 256, steps: int = 100, adaptive: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """A budget sweep of one attack over models x defenses (robustness curves)."""
    return {"seed": seed, "crop": crop, "images": _images(images), "study": [
        {"kind": "attack", "models": list(models), "attacks": [attack], "budgets": list(budgets),
         "defenses": list(defenses), "steps": steps, "adaptive": adaptive},
    ]}


def transfer_spec(
    models: list[str], targets: list[str], attack: str = "paper", budget: str = "psnr:40",
    images: str | list[str] = "bundled", crop: int | None = 256, steps: int = 100, seed: int = 0,
    cross_image: bool = True,
) -> dict[str, Any]:
    """Cross-model transfer (crafted on ``models``, decoded by ``targets``) and, with ``cross_image``,
    cross-image transfer on each model."""
    studies: list[dict[str, Any]] = [{"kind": "transfer-model", "attack": attack, "budget": budget, "steps": steps,
                                      "sources": list(models), "targets": list(targets)}]
    if cross_image:
        studies.append({"kind": "transfer-image", "models": list(models), "attack": attack, "budget": budget,
                        "steps": steps})
    return {"seed": seed, "crop": crop, "images": _images(images), "study": studies}


def robust_models(manifest: dict | None = None) -> list[str]:
    """Shipped models that are adversarially fine-tuned: manifest rows whose family or note has the
    word ``robust`` or ``adversarial``, or that carry an ``adversarial``/``robust`` entry."""
    manifest = read_manifest() if manifest is None else manifest
    found = []
    for spec, m in manifest.items():
        text = f"{m.family} {m.info.get('note', '')}".lower()
        if ROBUST_WORDS.search(text) or any(k in m.info for k in ("adversarial", "robust", "finetune")):
            found.append(spec)
    return sorted(found)


def robust_counterparts(vanilla: str, manifest: dict | None = None) -> list[str]:
    """The shipped robust models fine-tuned from ``vanilla`` (manifest ``finetuned_from``); when none
    is, every robust model."""
    manifest = read_manifest() if manifest is None else manifest
    robust = robust_models(manifest)
    mine = [s for s in robust if (manifest[s].info.get("finetuned_from") or {}).get("spec") == vanilla]
    return mine or robust


def highest_rate_model(manifest: dict | None = None, metric: str = "mse") -> str | None:
    """The shipped model trained at the highest λ (not a robust one): where the attack's damage shows most."""
    manifest = read_manifest() if manifest is None else manifest
    robust = set(robust_models(manifest))
    rows = [m for s, m in manifest.items() if s not in robust and m.metric == metric and m.info.get("lambda")]
    return max(rows, key=lambda m: (m.info["lambda"], m.info.get("steps", 0))).spec if rows else None


#: CompressAI's pretrained models the demo uses with ``--pretrained``: a low and a high rate.
PRETRAINED_DEMO = ("bmshj2018-hyperprior:q3:pretrained", "bmshj2018-hyperprior:q8:pretrained")


def demo_spec(quick: bool = False, vanilla: str | None = None, robust: list[str] | None = None,
              high_rate: str | None = None, pretrained: bool = False) -> tuple[dict, list[str]]:
    """The demo grid and the notes to print with it.

    Full demo (shipped zoo, 256x256 crops of the bundled photos): clean RD against JPEG/WebP, the
    paper's attack at 40 dB on the vanilla model, through the self-ensemble and on each fine-tuned
    model, the attack at 35 and 40 dB on the highest-rate shipped model beside the vanilla one (the
    paper's phenomenon grows with rate), a budget sweep, a short recompression and a cross-model
    transfer. ``pretrained`` runs the same sections on CompressAI's pretrained models
    (:data:`PRETRAINED_DEMO`: q3 as the vanilla model, q8 as the high-rate one; no fine-tuned model).
    ``quick`` runs them on tiny random models and 64x64 crops (a smoke test, seconds).
    """
    notes: list[str] = []
    if quick:
        vanilla = "bmshj2018-hyperprior:N=8:M=16:random"
        robust = ["bmshj2018-factorized:N=8:M=16:random"] if robust is None else robust
        high_rate = "bmshj2018-hyperprior:N=8:M=24:random"
        notes.append("quick mode: tiny random models stand in for the shipped zoo (numbers are meaningless)")
    elif pretrained:
        vanilla, high_rate = vanilla or PRETRAINED_DEMO[0], high_rate or PRETRAINED_DEMO[1]
        robust = [] if robust is None else robust
        notes.append(f"models: CompressAI's pretrained {vanilla} and {high_rate} (from the torch hub cache)")
    else:
        manifest = read_manifest()
        vanilla = vanilla or (DEFAULT_MODEL if DEFAULT_MODEL in manifest else next(iter(manifest), None))
        if vanilla is None:
            from robustnic.errors import CodecLoadError

            raise CodecLoadError("no shipped model yet (weights/manifest.json is empty): run with --quick, or "
                                 "name a model with --model")
        robust = robust_counterparts(vanilla, manifest) if robust is None else robust
        if not robust:
            notes.append("no fine-tuned (robust) model is shipped yet: its rows are skipped")
        high_rate = high_rate or highest_rate_model(manifest)
        if high_rate:
            lmbda = manifest[high_rate].info.get("lambda") if high_rate in manifest else None
            notes.append(f"models: shipped {vanilla} (vanilla), {high_rate} (highest rate"
                         + (f", λ {lmbda}" if lmbda else "") + "), fine-tuned " + (", ".join(robust) or "none"))
    if quick:
        crop, images, steps, gens, budgets = 64, ["bundled:astronaut", "bundled:coffee"], 3, 4, ["psnr:35", "psnr:45"]
        snapshots, rd_q = [1, 4], [30, 70]
    else:
        crop, steps, gens, budgets = 256, 40, 15, ["psnr:30", "psnr:35", "psnr:40", "psnr:45"]
        images = ["bundled:astronaut", "bundled:coffee", "bundled:chelsea"]
        snapshots, rd_q = [1, 5, 15], [10, 30, 50, 70, 90]
    assert vanilla is not None
    learned = [vanilla, *robust]
    # The clean RD plot draws a line per family: the high-rate model's whole ladder of shipped rates.
    ladder = [high_rate] if high_rate else []
    if high_rate and not quick and not pretrained:
        family = high_rate.split(":")[0]
        ladder = [m for m in read_manifest() if m.split(":")[0] == family] or ladder
    rd_learned = list(dict.fromkeys(learned + ladder))
    first_two = images[:2]
    studies: list[dict[str, Any]] = [
        {"kind": "rd", "models": rd_learned + [f"{c}:q{q}" for c in CLASSICAL for q in rd_q]},
        {"kind": "rd", "models": [vanilla], "defenses": ["ensemble"]},
        {"kind": "attack", "models": learned, "attacks": ["paper"], "budgets": ["psnr:40"], "steps": steps},
        {"kind": "attack", "models": [vanilla], "attacks": ["paper"], "budgets": ["psnr:40"], "steps": steps,
         "defenses": ["ensemble"]},
        {"kind": "attack", "models": [vanilla], "attacks": ["noise", "shift"], "budgets": ["psnr:40"]},
        *([{"kind": "attack", "models": [vanilla, high_rate], "attacks": ["paper"], "budgets": ["psnr:35", "psnr:40"],
            "steps": steps}] if high_rate and high_rate != vanilla else []),
        {"kind": "attack", "models": learned, "attacks": ["paper"], "budgets": [b for b in budgets if b != "psnr:40"],
         "steps": steps, "images": images[:1]},
        {"kind": "recompression", "models": learned, "generations": gens, "snapshots": snapshots,
         "images": first_two},
        {"kind": "recompression", "models": [vanilla], "defenses": ["ensemble"], "generations": gens,
         "snapshots": snapshots, "images": first_two},
        {"kind": "recompression", "models": [f"{c}:match" for c in CLASSICAL], "match": vanilla, "generations": gens,
         "snapshots": snapshots, "images": first_two},
        {"kind": "transfer-model", "attack": "paper", "budget": "psnr:40", "steps": steps, "sources": learned,
         "targets": learned + ["jpeg:q50"], "images": first_two[:1]},
        {"kind": "transfer-image", "models": [vanilla], "attack": "paper", "budget": "psnr:40", "steps": steps,
         "images": first_two},
    ]
    return {"seed": 0, "crop": crop, "images": images, "study": studies}, notes

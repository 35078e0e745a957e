"""Self-ensemble encode time against a plain encode, and how often a cheap search picks what the
exhaustive one picks (Chen & Ma's geometric self-ensemble, ``robustnic.defenses.SelfEnsembleCodec``).

For each held-out photo (centre crop), clean and attacked (Chen & Ma's attack on the plain model),
it times ``codec.compress`` and ``SelfEnsembleCodec(...).compress`` for the exhaustive search and
for proxy searches, then compares each proxy's choice with the exhaustive choice: same transform
(%) and the PSNR lost to the exhaustive choice (dB, real decoded images). Times are the minimum
over ``--repeats`` runs (the least disturbed by other processes), one CPU thread.

    .venv/bin/python benchmarks/ensemble_speed.py --model hyperprior-small:q3 --crop 256
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from robustnic.attacks import make_attack
from robustnic.codecs import load_codec
from robustnic.data.photos import bundled_photos
from robustnic.defenses import SelfEnsembleCodec
from robustnic.utils.io import atomic_write_text

#: name -> SelfEnsembleCodec keyword arguments
VARIANTS: dict[str, dict] = {
    "exhaustive": dict(search="exhaustive"),
    "proxy 1/16, top-1": dict(search="proxy", proxy_fraction=1 / 16, top_k=1),
    "proxy 1/8, top-1": dict(search="proxy", proxy_fraction=1 / 8, top_k=1),
    "proxy 1/4, top-1": dict(search="proxy", proxy_fraction=1 / 4, top_k=1),
    "proxy 1/8, top-2": dict(search="proxy", proxy_fraction=1 / 8, top_k=2),
    "proxy whole image, top-1": dict(search="proxy", proxy_fraction=1.0, top_k=1),
}


def best_time(fn, repeats: int) -> float:
    """Minimum wall time of ``fn()`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def parse_crop(text: str) -> int | tuple[int, int]:
    if "x" in text:
        h, w = text.split("x")
        return int(h), int(w)
    return int(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="hyperprior-small:q3")
    p.add_argument("--crop", default="256", help="centre crop, N or HxW (default 256)")
    p.add_argument("--budget", default="psnr:35", help="budget of the attack on the plain model")
    p.add_argument("--attack-steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/defenses/ensemble_speed.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    codec = load_codec(args.model)
    photos = bundled_photos(crop=parse_crop(args.crop))
    names = list(photos)
    x = torch.cat([photos[n] for n in names])
    atk = make_attack("paper", codec, budget=args.budget, steps=args.attack_steps, seed=0)
    x_adv = atk(x)
    ensembles = {name: SelfEnsembleCodec(codec, **kw) for name, kw in VARIANTS.items()}

    rows = []
    for kind, batch in (("clean", x), ("attacked", x_adv)):
        for i, name in enumerate(names):
            xi = batch[i : i + 1]
            plain = best_time(lambda: codec.compress(xi), args.repeats)
            reference = ensembles["exhaustive"].choose(xi)
            mse = reference.costs  # real MSE of all 8 transforms (distortion criterion)
            row = {"image": name, "kind": kind, "plain_encode_s": plain, "exhaustive_choice": reference.transform,
                   "psnr_identity": -10 * math.log10(mse[0]), "psnr_exhaustive": -10 * math.log10(mse[reference.transform])}
            for vname, ens in ensembles.items():
                t = best_time(lambda: ens.compress(xi), args.repeats)
                choice = ens.choose(xi).transform
                row[vname] = {"ratio": t / plain, "transform": choice,
                              "regret_db": 10 * math.log10(mse[choice] / mse[reference.transform])}
            rows.append(row)
            print(f"{kind:8s} {name:12s} plain {plain * 1000:.1f} ms  " + "  ".join(
                f"{v}: {row[v]['ratio']:.2f}x t{row[v]['transform']}" for v in VARIANTS), file=sys.stderr)

    lines = [
        f"Model `{args.model}`, {len(names)} held-out photos, centre crop {args.crop}, attacked = `paper` "
        f"attack ({args.attack_steps} steps, {args.budget}) on the plain model; {args.threads} CPU thread(s), "
        f"min of {args.repeats} runs.",
        "",
        "| search | encode time / plain encode (median) | same transform as exhaustive: clean | attacked "
        "| PSNR lost to exhaustive, mean dB: clean | attacked |",
        "|---|---|---|---|---|---|",
    ]
    for vname in VARIANTS:
        ratios = [r[vname]["ratio"] for r in rows]
        cells = [f"{statistics.median(ratios):.2f}x"]
        same = {k: [r[vname]["transform"] == r["exhaustive_choice"] for r in rows if r["kind"] == k] for k in ("clean", "attacked")}
        regret = {k: [r[vname]["regret_db"] for r in rows if r["kind"] == k] for k in ("clean", "attacked")}
        cells += [f"{100 * sum(same[k]) / len(same[k]):.0f}%" for k in ("clean", "attacked")]
        cells += [f"{statistics.mean(regret[k]):.3f}" for k in ("clean", "attacked")]
        lines.append(f"| {vname} | " + " | ".join(cells) + " |")
    for kind in ("clean", "attacked"):
        sel = [r for r in rows if r["kind"] == kind]
        gain = statistics.mean(r["psnr_exhaustive"] - r["psnr_identity"] for r in sel)
        lines.append("")
        lines.append(f"{kind}: exhaustive ensemble PSNR - identity-transform PSNR = {gain:+.2f} dB (mean over images)")
    table = "\n".join(lines)
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps({"args": vars(args), "rows": rows, "table": table}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Side by side with the peer T-MLA: its attack, robustnic's ``wavelet`` and ``paper``, at the same input PSNR.

T-MLA (Information Sciences 2026) ships on PyPI as ``tmla``; its attack is
``tmla.attacks.maxdistortion_logexp_multiscale``. This script runs it with the package's defaults
- error bound 0.1 (``noiselevel_control="scale_adaptive"``: 0.1·1.8^(3−k) on scale k), 3 Haar
scales, SGD with learning rate 0.01, ``target_quality=[45, 15]`` (45 dB in / 15 dB out; its input
term is off by default, ``keep_perturbation_targeted=False``), loss ``psnr``, its random start
(``torch.randn``, seeded here), 300 iterations, no L1 term - and robustnic's ``wavelet`` and ``paper`` on
the same shipped model and photos, one image at a time, on one CPU thread.

The peer attacks the model through a small adapter: its ``forward(x)`` returns robustnic's
differentiable reconstruction g_s(g_a(x)) (stand-in ``none``, the one robustnic's attacks use), because
CompressAI's own eval-mode forward rounds the latents with a zero gradient (the peer would never
move from its random start), and a constant likelihood (the peer only prints its bpp; computing it
would cost the peer a second forward per iteration).

Every result is brought to the same input PSNR on the saved 8-bit image by robustnic's one budget
projection (:meth:`robustnic.attacks.Budget.finalize`: the largest scale of the perturbation whose
8-bit image is inside the budget; the peer has no budget of its own, so its output is scaled down
onto it); the peer's raw output is reported too. Every other number comes from real bitstreams
(:func:`robustnic.attacks.verify_attack`: compress -> bytes -> decompress): damage is the drop of
the reconstruction's PSNR, VI = 10·log10(MSE out / MSE in); input VIF is ``piq.vif_p`` between the
source and the 8-bit adversarial image (1 = no loss of visual information); time is seconds per image
of the attack itself (the peer's one run serves every budget).

Install the peer first (benchmark only - robustnic never imports it). ``--no-deps``: tmla's own
requirements list kagglehub, gdown, kornia, pandas, ... that its attack does not use, and pip must not
touch robustnic's torch::

    .venv/bin/pip install --no-deps tmla==0.1.1 pytorch-wavelets==1.3.0 six==1.17.0 \\
        torchmetrics==1.9.0 lightning-utilities==0.15.3

(pytorch-wavelets imports ``pkg_resources``, which setuptools 81+ no longer has: this script puts a
stand-in on ``importlib.resources`` in its place when it is missing.) Then::

    .venv/bin/python benchmarks/peer_tmla.py --model hyperprior-small:q3 --crop 256
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import io
import math
import sys
import time
import types
import warnings

import torch

from robustnic.attacks import make_attack, parse_budget, verify_attack
from robustnic.codecs import load_codec
from robustnic.data.images import quantize_8bit
from robustnic.data.photos import bundled_photos

#: The peer's package defaults this script calls it with (tmla 0.1.1: tmla/config.py and the
#: function's own defaults), and its iterations.
PEER_SETTINGS = {"errbound": 0.1, "scales": 3, "learningrate": 0.01, "target_quality": [45.0, 15.0],
                 "losstype": "psnr", "noiselevel_control": "scale_adaptive", "l1_lambda": 0}
PEER_ITERATIONS = 300

COLUMNS = [("method", "method", "{}"), ("budget", "budget", "{}"), ("psnr-in", "PSNR in", "{:.2f}"),
           ("vif-in", "input VIF", "{:.3f}"), ("psnr-clean", "PSNR clean", "{:.2f}"),
           ("psnr-out", "PSNR attacked", "{:.2f}"), ("psnr-drop", "drop", "{:.3f}"), ("delta-psnr", "VI", "{:.2f}"),
           ("bpp-clean", "bpp clean", "{:.3f}"), ("bpp-adv", "bpp attacked", "{:.3f}"),
           ("attack-time", "s/img", "{:.1f}")]


def import_peer():
    """``tmla.attacks.maxdistortion_logexp_multiscale``, with a ``pkg_resources`` stand-in if needed."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        stand_in = types.ModuleType("pkg_resources")
        stand_in.resource_stream = lambda package, name: importlib.resources.files(package).joinpath(name).open("rb")
        sys.modules["pkg_resources"] = stand_in
    try:
        from tmla.attacks import maxdistortion_logexp_multiscale
    except ImportError as exc:
        raise SystemExit(f"the peer is not installed ({exc}); see this script's docstring for the one pip line")
    return maxdistortion_logexp_multiscale


class PeerModel(torch.nn.Module):
    """What the peer calls ``model.forward(x)``: robustnic's differentiable reconstruction (stand-in ``none``)
    and a constant likelihood (the peer only prints the bpp it gives)."""

    def __init__(self, codec):
        super().__init__()
        self.codec = codec

    def forward(self, x: torch.Tensor) -> dict:
        return {"x_hat": self.codec.forward(x, standin="none").x_hat, "likelihoods": {"y": torch.ones(1)}}


def vif(x: torch.Tensor, x_adv: torch.Tensor) -> float:
    """``piq.vif_p`` of the 8-bit adversarial image against the source (1: no information lost)."""
    import piq

    return float(piq.vif_p(x.clamp(0, 1), quantize_8bit(x_adv), data_range=1.0))


def measure(codec, x: torch.Tensor, x_adv: torch.Tensor, method: str, budget: str, seconds: float) -> dict:
    """One image's row: real bitstreams (verify_attack), input VIF and the attack's time."""
    spec = None if budget == "-" else budget
    row = verify_attack(codec, x, x_adv, budget=spec)[0]
    return row | {"method": method, "budget": budget, "vif-in": vif(x, x_adv), "attack-time": seconds}


def run_peer(peer, codec, x: torch.Tensor, iterations: int, seed: int) -> tuple[torch.Tensor, float]:
    """The peer's perturbed image (continuous, clipped to [0, 1]) and its seconds."""
    torch.manual_seed(seed)  # its random start draws from torch's generator
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints shapes and a line every 100 iterations
        adv, _, _, _ = peer(x, model=PeerModel(codec), num_iterations=iterations, device=codec.device,
                            **PEER_SETTINGS)
    return adv.detach().clamp(0, 1), time.perf_counter() - start


def mean_rows(rows: list[dict]) -> list[dict]:
    """Means per (method, budget), in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["budget"]), []).append(r)
    out = []
    for (method, budget), rs in groups.items():
        means = {k: sum(r[k] for r in rs) / len(rs) for k, _, _ in COLUMNS[2:]}
        out.append({"method": method, "budget": budget, "n": len(rs)} | means)
    return out


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [fmt.format(row[k]) if isinstance(row[k], (int, float)) and math.isfinite(row[k]) else str(row[k])
                 for k, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals(means: list[dict], budgets: list[str]) -> str:
    """Per budget: robustnic's wavelet against the projected peer - damage, time, input VIF."""
    by = {(r["method"], r["budget"]): r for r in means}
    lines = ["| budget | drop: wavelet / T-MLA | wavelet ≥ T-MLA | s/img: wavelet / T-MLA | no more time | "
             "input VIF: wavelet / T-MLA | VIF no lower |", "|---|---|---|---|---|---|---|"]
    for b in budgets:
        w, t = by[("wavelet", b)], by[("tmla", b)]
        ok = [w["psnr-drop"] >= t["psnr-drop"], w["attack-time"] <= t["attack-time"], w["vif-in"] >= t["vif-in"]]
        lines.append(f"| {b} | {w['psnr-drop']:.3f} / {t['psnr-drop']:.3f} | {'yes' if ok[0] else 'no'} | "
                     f"{w['attack-time']:.1f} / {t['attack-time']:.1f} | {'yes' if ok[1] else 'no'} | "
                     f"{w['vif-in']:.3f} / {t['vif-in']:.3f} | {'yes' if ok[2] else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="hyperprior-small:q3")
    p.add_argument("--photos", nargs="*", default=["astronaut", "chelsea"], help="bundled held-out photos (two)")
    p.add_argument("--crop", type=int, default=256, help="centre crop (default 256)")
    p.add_argument("--budgets", nargs="*", default=["psnr:35", "psnr:40"], help="input PSNR every result is held to")
    p.add_argument("--steps", type=int, default=100, help="robustnic's wavelet and paper steps (default 100)")
    p.add_argument("--peer-iterations", type=int, default=PEER_ITERATIONS,
                   help=f"the peer's iterations (default {PEER_ITERATIONS}, its fair run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    peer = import_peer()
    codec = load_codec(args.model)
    budgets = [str(parse_budget(b)) for b in args.budgets]
    images = bundled_photos(args.photos, crop=args.crop)
    print(f"model {args.model}; photos {', '.join(images)} ({args.crop}x{args.crop} centre crops, held out); "
          f"one image at a time, {args.threads} CPU thread(s), seed {args.seed}. T-MLA (tmla 0.1.1): "
          f"{args.peer_iterations} iterations, " + ", ".join(f"{k}={v}" for k, v in PEER_SETTINGS.items())
          + f", random start, stand-in none. robustnic: wavelet and paper, {args.steps} steps, "
          "stand-in none, distortion from the clean reconstruction.\n")
    start = time.perf_counter()
    rows: list[dict] = []
    for name, x in images.items():
        adv, seconds = run_peer(peer, codec, x, args.peer_iterations, args.seed)
        rows.append(measure(codec, x, quantize_8bit(adv), "tmla (raw)", "-", seconds) | {"image": name})
        for b in budgets:
            rows.append(measure(codec, x, parse_budget(b).finalize(x, adv), "tmla", b, seconds) | {"image": name})
            for method in ("wavelet", "paper"):
                atk = make_attack(method, codec, budget=b, steps=args.steps, seed=args.seed)
                x_adv = atk(x)
                rows.append(measure(codec, x, x_adv, method, b, atk.elapsed) | {"image": name})
        print(f"{name}: done after {time.perf_counter() - start:.0f} s", file=sys.stderr)
    assert all(r["budget-ok"] for r in rows if r["budget"] != "-")
    means = mean_rows(rows)
    order = {"-": -1} | {b: i for i, b in enumerate(budgets)}
    means.sort(key=lambda r: order[r["budget"]])
    print(f"Means over {len(images)} photos (every adversarial image inside its budget on the saved 8-bit file):\n")
    print(table(means))
    print("\nPer photo, drop (dB) and input VIF: " + "; ".join(
        f"{r['image']} {r['method']} {r['budget']}: {r['psnr-drop']:.3f}, {r['vif-in']:.3f}" for r in rows))
    print("\nGoals (robustnic's wavelet against T-MLA held to the same input PSNR):\n")
    print(goals(means, budgets))
    print(f"\n{len(rows)} results in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

"""Real bpp (rANS bitstreams) vs bpp estimated from the likelihoods, per architecture.

    python benchmarks/rate_gap.py [--model SPEC ...]

Default: every shipped model, on the full-size held-out photos. Prints a Markdown table.

*estimated*: the model's likelihood of the symbols its entropy coder codes (``bpp-estimated`` of
``robustnic eval``), so real / estimated is the coder's own overhead. *forward*: CompressAI's forward-pass
estimate (``bpp-forward``, what training minimises). They differ only for the context models (mbt2018,
cheng2020), whose forward pass predicts means and scales from the context of ``round(y)`` while the coder
codes ``round(y - mean) + mean`` (see ``robustnic.codecs.autoregressive``).

Models with a Gaussian conditional are measured with the scale table they ship with and, when that is not
CompressAI's 64-level default, again with the default (same weights, same decoded images: only the
entropy coder's tables differ), which shows what the finer table buys.
"""

from __future__ import annotations

import argparse
import copy

from robustnic.codecs import load_codec, read_manifest
from robustnic.codecs.evaluate import evaluate_codec
from robustnic.codecs.learned import COMPRESSAI_SCALE_LEVELS, LearnedCodec, scale_levels_of, update_coder_tables
from robustnic.data.photos import bundled_photos


def gap_row(label: str, codec, photos) -> str:
    ev = evaluate_codec(codec, photos, progress=False)
    gaps = [r["bpp"] / r["bpp-estimated"] - 1 for r in ev["per_image"].values()]
    worst = max(gaps, key=abs)
    real, est, fwd, quality = (ev["results"][k] for k in ("bpp", "bpp-estimated", "bpp-forward", "psnr-rgb"))
    arch = codec.arch.name if codec.arch else "?"
    levels = scale_levels_of(codec.net) or "-"
    return (f"| {label} | {arch} | {levels} | {quality:.2f} | {real:.4f} | {est:.4f} | "
            f"{100 * (real / est - 1):+.2f}% | {100 * worst:+.2f}% | {fwd:.4f} ({100 * (real / fwd - 1):+.2f}%) |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", action="append", help="codec spec (default: every shipped model)")
    args = p.parse_args()
    photos = bundled_photos()
    print("| model | architecture | scale table | PSNR (dB) | real bpp | estimated bpp | gap | worst image gap | "
          "forward estimate (real vs it) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for spec in args.model or list(read_manifest()):
        codec = load_codec(spec)
        print(gap_row(f"`{spec}`", codec, photos), flush=True)
        levels = scale_levels_of(codec.net) if isinstance(codec, LearnedCodec) else None
        if levels not in (None, COMPRESSAI_SCALE_LEVELS):
            net = copy.deepcopy(codec.net)
            update_coder_tables(net, COMPRESSAI_SCALE_LEVELS)
            default = LearnedCodec(net, name=f"{spec} (CompressAI's table)")
            print(gap_row(f"`{spec}` with CompressAI's table", default, photos), flush=True)


if __name__ == "__main__":
    main()

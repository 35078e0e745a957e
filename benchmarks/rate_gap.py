"""Real bpp (rANS bitstreams) vs bpp estimated from the likelihoods, per architecture.

    python benchmarks/rate_gap.py [--model SPEC ...]

Default: every shipped model, on the full-size held-out photos. Prints a Markdown table.

*estimated*: CompressAI's forward pass (what `bpp-estimated` reports everywhere). For the autoregressive
models (mbt2018, cheng2020) that forward predicts each latent's mean and scale from the context of
``round(y)``, while the coder uses the decoded latents ``round(y - mean) + mean``; the *decoding-path*
column re-evaluates the likelihood along the real decoding path (the decoded latents and the
parameters the decoder used), so real / decoding-path is the entropy coder's own overhead.

Models with a Gaussian conditional are measured with the scale table they ship with and, when that is not
CompressAI's 64-level default, again with the default (same weights, same decoded images: only the
entropy coder's tables differ), which shows what the finer table buys.
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F

from robustnic.codecs import load_codec, read_manifest
from robustnic.codecs.evaluate import evaluate_codec
from robustnic.codecs.learned import (COMPRESSAI_SCALE_LEVELS, PAD_MULTIPLE, LearnedCodec, scale_levels_of,
                                      update_coder_tables)
from robustnic.data.images import pad_to_multiple
from robustnic.data.photos import bundled_photos


def decoding_path_bits(net, x: torch.Tensor) -> float | None:
    """Bits of the latents y under the likelihood the decoder really uses (autoregressive models only;
    None for the others, whose forward pass already codes what the coder codes)."""
    if not hasattr(net, "context_prediction"):
        return None
    xp, _ = pad_to_multiple(x, PAD_MULTIPLE)
    with torch.no_grad():
        enc = net.compress(xp)
        z_hat = net.entropy_bottleneck.decompress(enc["strings"][1], enc["shape"])
        params = net.h_s(z_hat)
        height, width = params.shape[-2:]  # h_s brings z back to y's size
        kernel = net.context_prediction.kernel_size[0]
        pad = (kernel - 1) // 2
        y_hat = torch.zeros((1, net.context_prediction.in_channels, height + 2 * pad, width + 2 * pad))
        net._decompress_ar(enc["strings"][0][0], y_hat, params, height, width, kernel, pad)
        y_hat = F.pad(y_hat, (-pad, -pad, -pad, -pad))
        scales, means = net.entropy_parameters(torch.cat((params, net.context_prediction(y_hat)), 1)).chunk(2, 1)
        gc = net.gaussian_conditional
        y_bits = -torch.log2(gc.likelihood_lower_bound(gc._likelihood(y_hat, scales, means))).sum()
        z_bits = -torch.log2(net(xp)["likelihoods"]["z"]).sum()  # z is coded as the forward estimates it
    return float(y_bits + z_bits) if torch.isfinite(y_bits + z_bits) else None


def gap_row(label: str, codec, photos) -> str:
    ev = evaluate_codec(codec, photos, progress=False)
    gaps = [r["bpp"] / r["bpp-estimated"] - 1 for r in ev["per_image"].values()]
    worst = max(gaps, key=abs)
    real, est = ev["results"]["bpp"], ev["results"]["bpp-estimated"]
    arch = codec.arch.name if codec.arch else "?"
    levels = scale_levels_of(codec.net) or "-"
    path = "-"
    if isinstance(codec, LearnedCodec):
        bits = [decoding_path_bits(codec.net, x) for x in photos.values()]
        if all(b is not None for b in bits):
            # mean bpp over images, as evaluate_codec averages
            per = [b / (x.shape[-2] * x.shape[-1]) for b, x in zip(bits, photos.values())]
            est_path = sum(per) / len(per)
            path = f"{est_path:.4f} ({100 * (real / est_path - 1):+.2f}%)"
    return (f"| {label} | {arch} | {levels} | {real:.4f} | {est:.4f} | {100 * (real / est - 1):+.2f}% | "
            f"{100 * worst:+.2f}% | {path} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", action="append", help="codec spec (default: every shipped model)")
    args = p.parse_args()
    photos = bundled_photos()
    print("| model | architecture | scale table | real bpp | estimated bpp | gap | worst image gap | "
          "decoding-path estimate (real vs it) |")
    print("|---|---|---|---|---|---|---|---|")
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

"""Cost of the coded-rate estimate of context models: the parallel fixed point vs the serial decoder.

    python benchmarks/coded_rate_speed.py [--model SPEC ...] [--crop H W]

For each model (default: the shipped mbt2018, ``joint-small:q3``) and held-out photo, times
``coded_likelihoods`` (the fixed point of ``robustnic.codecs.autoregressive``) against CompressAI's
serial ``decompress`` of the same image's bitstream (the other way to learn the decoded latents),
checks that both give the same reconstruction, and prints a Markdown table with the ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from robustnic.codecs import load_codec
from robustnic.codecs.autoregressive import coded_likelihoods
from robustnic.codecs.learned import PAD_MULTIPLE
from robustnic.data.images import pad_to_multiple
from robustnic.data.photos import bundled_photos


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", help="context-model spec (default: joint-small:q3)")
    p.add_argument("--crop", type=int, nargs=2, default=(256, 384), metavar=("H", "W"))
    args = p.parse_args()
    torch.set_num_threads(1)
    photos = bundled_photos(crop=tuple(args.crop))
    print("| model | image | sweeps | fixed point (s) | serial decompress (s) | ratio | max abs diff of x_hat |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.model or ["joint-small:q3"]:
        net = load_codec(spec).net
        for name, x in photos.items():
            xp, _ = pad_to_multiple(x, PAD_MULTIPLE)
            start = time.perf_counter()
            coded = coded_likelihoods(net, xp)
            fixed = time.perf_counter() - start
            with torch.no_grad():
                enc = net.compress(xp)
                start = time.perf_counter()
                decoded = net.decompress(enc["strings"], enc["shape"])["x_hat"]
                serial = time.perf_counter() - start
                diff = float((net.g_s(coded.y_hat).clamp(0, 1) - decoded).abs().max())
            print(f"| `{spec}` | {name} | {coded.iterations} | {fixed:.2f} | {serial:.2f} | {serial / fixed:.1f}x | "
                  f"{diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()

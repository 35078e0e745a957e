"""Real bpp (rANS bitstreams) vs bpp estimated from the likelihoods, per architecture.

    python benchmarks/rate_gap.py [--model SPEC ...]

Default: every shipped model, on the full-size held-out photos. Prints a Markdown table.
"""

from __future__ import annotations

import argparse

from robustnic.codecs import load_codec, read_manifest
from robustnic.codecs.evaluate import evaluate_codec
from robustnic.data.photos import bundled_photos


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", action="append", help="codec spec (default: every shipped model)")
    args = p.parse_args()
    photos = bundled_photos()
    print("| model | architecture | real bpp | estimated bpp | gap | worst image gap |")
    print("|---|---|---|---|---|---|")
    for spec in args.model or list(read_manifest()):
        codec = load_codec(spec)
        ev = evaluate_codec(codec, photos, progress=False)
        gaps = [r["bpp"] / r["bpp-estimated"] - 1 for r in ev["per_image"].values()]
        worst = max(gaps, key=abs)
        real, est = ev["results"]["bpp"], ev["results"]["bpp-estimated"]
        arch = codec.arch.name if codec.arch else "?"
        print(f"| `{spec}` | {arch} | {real:.4f} | {est:.4f} | {100 * (real / est - 1):+.2f}% | {100 * worst:+.2f}% |")


if __name__ == "__main__":
    main()

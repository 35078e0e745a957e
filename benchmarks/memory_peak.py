"""Peak memory (RSS) of ``robustnic compress`` and ``robustnic decompress`` on large images.

Each measurement is a fresh Python process that runs the CLI command in-process and reports its
own ``ru_maxrss``; ``import`` is the same process doing nothing but building the CLI parser, which
imports every command module (the floor of any command).
The images are synthetic photos-like PNGs (smooth gradients plus noise) of the given sizes.

    python benchmarks/memory_peak.py                                   # defaults below
    python benchmarks/memory_peak.py --sizes 4000x3000 --models bmshj2018-hyperprior:N=8:M=16:random
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
import torch
from robustnic.cli.main import build_parser, main
argv = json.loads(sys.argv[1])
torch.manual_seed(0)  # random test models: the same weights in compress and decompress
t0 = time.perf_counter()
rc = main(argv) if argv else (build_parser() and 0)
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

DEFAULT_MODELS = ["bmshj2018-hyperprior:N=8:M=16:random", "bmshj2018-hyperprior:q1:random", "jpeg:q75"]
DEFAULT_SIZES = ["1000x750", "2000x1500", "4000x3000"]
#: (model, size) pairs skipped by default: a CompressAI-width model on 12 MP needs more memory
#: than a shared 2-core test machine should give (see the scaling of the smaller sizes).
SKIP = {("bmshj2018-hyperprior:q1:random", "4000x3000")}


def synthetic_image(width: int, height: int, path: Path) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width, yy / height, 0.5 + 0.5 * np.sin((xx + yy) / 97.0)], -1) * 200
    noise = rng.normal(0, 12, size=(height, width, 3)).astype(np.float32)
    Image.fromarray(np.clip(base + noise + 20, 0, 255).astype(np.uint8)).save(path)


def measure(argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(argv)], capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        return {"rc": proc.returncode, "error": proc.stderr.strip().splitlines()[-1:] or ["?"]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["rc"] != 0:
        out["error"] = proc.stderr.strip().splitlines()[-1:]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, help="WIDTHxHEIGHT")
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    p.add_argument("--all", action="store_true", help="also run the pairs skipped by default")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    rows = [{"what": "import", **measure([])}]
    print(json.dumps(rows[0]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for size in args.sizes:
            w, h = (int(v) for v in size.lower().split("x"))
            image = tmp / f"{size}.png"
            synthetic_image(w, h, image)
            for model in args.models:
                if (model, size) in SKIP and not args.all:
                    continue
                bits = tmp / "x.rnic"
                for verb, argv in (
                    ("compress", ["compress", str(image), "-o", str(bits), "--model", model]),
                    ("decompress", ["decompress", str(bits), "-o", str(tmp / "out.png"), "--model", model]),
                ):
                    t0 = time.perf_counter()
                    row = {"what": verb, "model": model, "size": size, "megapixels": w * h / 1e6, **measure(argv)}
                    row["wall_s"] = round(time.perf_counter() - t0, 1)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    if row.get("rc") != 0:
                        break
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

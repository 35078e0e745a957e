"""``robustnic eval``'s encoding/decoding times beside CompressAI's ``eval_model`` on the same checkpoint
and images: the two should mean the same thing (goal: ratio <= 1.10).

For each shipped model, its float state dict (with its entropy-coder tables) is written to a temporary
CompressAI checkpoint; both tools then run as their own commands on it, alternately, over the same 256²
PNG crops of the held-out photos:

    robustnic eval -m ARCH@CKPT --images DIR
    python -m compressai.utils.eval_model checkpoint DIR -a ARCH -p CKPT --no-update

(``--no-update`` keeps robustnic's coder tables, so both write the same bits: the bpp columns must
agree.) Each cell is the median over ``--repeats`` runs of the mean over images.

    .venv/bin/python benchmarks/eval_timing.py [--models hyperprior-small:q3 joint-small:q3] [--repeats 3]
    .venv/bin/python benchmarks/eval_timing.py --src /tmp/before/src   # robustnic eval of another checkout
    .venv/bin/python benchmarks/eval_timing.py --in-process             # also in one process, image by image
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from robustnic.codecs import load_codec
from robustnic.data import bundled_photos
from robustnic.data.images import save_image

PHOTOS = ("astronaut", "coffee", "chelsea", "china")


def run_robustnic(spec: str, images: Path, out: Path, src: str | None = None) -> dict[str, float]:
    """Mean bpp / encoding_time / decoding_time of ``robustnic eval`` (its own process; robustnic
    imported from ``src`` if given, e.g. an older checkout's ``src``)."""
    cmd = [sys.executable, "-m", "robustnic.cli.main", "eval", "-m", spec, "--images", str(images),
           "--no-progress", "-o", str(out)]
    env = os.environ | ({"PYTHONPATH": src} if src else {})
    subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    results = json.loads(out.with_suffix(".json").read_text())["results"]
    return {k: results[k][0] for k in ("bpp", "encoding_time", "decoding_time")}


def run_eval_model(arch: str, checkpoint: Path, images: Path) -> dict[str, float]:
    """Mean bpp / encoding_time / decoding_time of ``python -m compressai.utils.eval_model`` (its own process)."""
    cmd = [sys.executable, "-m", "compressai.utils.eval_model", "checkpoint", str(images), "-a", arch,
           "-p", str(checkpoint), "--no-update"]
    stdout = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    results = json.loads(stdout[stdout.index("{"):])["results"]
    return {k: results[k][0] for k in ("bpp", "encoding_time", "decoding_time")}


def in_process(spec: str, images: Path, checkpoint: Path, arch: str, repeats: int) -> dict[str, float]:
    """Median ratios robustnic / eval_model in this process, alternating image by image: robustnic's
    ``LearnedCodec.roundtrip`` times against ``eval_model``'s ``inference`` on the same checkpoint."""
    from compressai.utils.eval_model.__main__ import inference, load_checkpoint, read_image  # one thread from here

    from robustnic.data.images import load_image

    ours, theirs = load_codec(f"{arch}@{checkpoint}"), load_checkpoint(arch, True, str(checkpoint))
    ratios: dict[str, list[float]] = {"encoding_time": [], "decoding_time": []}
    for r in range(repeats):
        for path in sorted(images.glob("*.png")):
            times = {}
            for who in (("ours", "theirs") if r % 2 == 0 else ("theirs", "ours")):
                if who == "ours":
                    coded = ours.roundtrip(load_image(path))
                    times[who] = (coded.encode_time, coded.decode_time)
                else:
                    rv = inference(theirs, read_image(path))
                    times[who] = (rv["encoding_time"], rv["decoding_time"])
            for i, key in enumerate(ratios):
                ratios[key].append(times["ours"][i] / times["theirs"][i])
    return {key: statistics.median(v) for key, v in ratios.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["hyperprior-small:q3", "joint-small:q3"])
    parser.add_argument("--photos", nargs="+", default=list(PHOTOS))
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--verbose", action="store_true", help="print every run to stderr")
    parser.add_argument("--src", help="run robustnic eval from this source tree (e.g. an older commit's src)")
    parser.add_argument("--in-process", action="store_true",
                        help="also compare in this process, image by image (no process-to-process noise)")
    args = parser.parse_args(argv)

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        images = tmp / "images"
        images.mkdir()
        for name, x in bundled_photos(args.photos, crop=args.crop).items():
            save_image(x, images / f"{name}.png")
        rows = []
        for spec in args.models:
            codec = load_codec(spec)
            arch = codec.arch.name
            checkpoint = tmp / f"{spec.replace(':', '-')}.pth.tar"
            torch.save({k: v.float() if v.is_floating_point() else v for k, v in codec.net.state_dict().items()},
                       checkpoint)
            ours, theirs = [], []
            for r in range(args.repeats):  # alternate who goes first, so a drift in load hits both
                first_ours = r % 2 == 0
                if not first_ours:
                    theirs.append(run_eval_model(arch, checkpoint, images))
                ours.append(run_robustnic(f"{arch}@{checkpoint}", images, tmp / f"rd-{r}", args.src))
                if first_ours:
                    theirs.append(run_eval_model(arch, checkpoint, images))
                if args.verbose:
                    print(f"  {spec} run {r}: robustnic {ours[-1]}, eval_model {theirs[-1]}", file=sys.stderr)
            med = {who: {k: statistics.median(run[k] for run in runs) for k in runs[0]}
                   for who, runs in (("robustnic", ours), ("eval_model", theirs))}
            ratios = {k: [a[k] / b[k] for a, b in zip(ours, theirs)] for k in ("encoding_time", "decoding_time")}
            rows.append((spec, arch, med, ratios))
        same_process = {}
        if args.in_process:  # last: importing eval_model sets this process to one thread
            for spec, arch, *_ in rows:
                same_process[spec] = in_process(spec, images, tmp / f"{spec.replace(':', '-')}.pth.tar", arch,
                                                args.repeats)

    print(f"{len(args.photos)} photos ({', '.join(args.photos)}), {args.crop}x{args.crop} crops; each time is the "
          f"median over {args.repeats} runs of the mean over images, ratio = robustnic / eval_model (median of the "
          f"per-run ratios, their range in brackets); load average {load:.2f} -> {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}")
    print()
    print("| model (architecture) | bpp robustnic / eval_model | encoding s: robustnic | eval_model | ratio "
          "| decoding s: robustnic | eval_model | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for spec, arch, med, ratios in rows:
        a, b = med["robustnic"], med["eval_model"]
        cells = []
        for key in ("encoding_time", "decoding_time"):
            r = ratios[key]
            cells.append(f"{a[key]:.3f} | {b[key]:.3f} | {statistics.median(r):.2f} [{min(r):.2f}-{max(r):.2f}]")
        print(f"| {spec} ({arch}) | {a['bpp']:.4f} / {b['bpp']:.4f} | {cells[0]} | {cells[1]} |")
    for spec, r in same_process.items():
        print(f"\nin one process, image by image: {spec} ratio encoding {r['encoding_time']:.2f}, "
              f"decoding {r['decoding_time']:.2f}")


if __name__ == "__main__":
    main()

"""``robustnic analyze``: the amplification spectrum of a codec per image, beside an attack's VI.

One call into the API, :func:`robustnic.studies.analyze.analyze_images`, then three files in ``--out``,
each written atomically:

* ``analyze.json`` - ``command``, ``robustnic`` (version), ``code-version``, ``settings``, ``images`` (one row
  per image: ``gain-db``, ``sigmas``, ``iterations``, ``converged``, ``residuals``, ``spectrum-time`` and,
  with an attack, ``delta-psnr`` (VI), ``linear-db``, ``alignment``, ``psnr-in``, ``psnr-clean``,
  ``psnr-out``, ``psnr-drop``, ``bpp-clean``, ``bpp-adv``, ``attack-time``), ``layers`` (one row per image
  and layer: ``layer``, ``type``, ``name``, ``transform``, ``shape``, ``distance``, ``relative``,
  ``magnify``, ``rms-gain``), ``correlation`` (gain vs VI: ``x``, ``y``, ``n``, ``spearman``, ``p-value``),
  ``correlations`` (every pair measured) and ``seconds``;
* ``per_image.csv`` and ``layers.csv`` - the same rows.

See ``docs/analyze.md`` for how to read the numbers.
"""

from __future__ import annotations

import argparse
import math
import sys

from robustnic.attacks.registry import ATTACK_NAMES
from robustnic.cli.commands import help_of
from robustnic.cli.common import add_device, add_images, add_model, add_seed, load_images, out_dir, unreadable_status

NAME = "analyze"
#: The files ``robustnic analyze`` writes into ``--out``.
JSON_NAME, IMAGES_CSV, LAYERS_CSV = "analyze.json", "per_image.csv", "layers.csv"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME, help=help_of(NAME),
        description="Diagnostics of a learned codec per image: the top singular values of the Jacobian of its "
        "relaxed forward (worst-case linear gain in dB), an attack's VI on real bitstreams beside it (Spearman "
        "correlation over images), and the layer-wise magnify ratio of the adversarial image through g_a and g_s.",
    )
    add_model(p)
    add_images(p, skips_unreadable=True)
    p.add_argument("--attack", default="paper", choices=list(ATTACK_NAMES), help="attack whose VI is measured "
                   "(default paper)")
    p.add_argument("--budget", "-b", default="psnr:35", help="the attack's input budget (default psnr:35)")
    p.add_argument("--steps", type=int, default=20, help="attack iterations (default 20)")
    p.add_argument("--no-attack", action="store_true", help="the spectrum alone (no VI, no layer ratios)")
    p.add_argument("--standin", default="none", choices=["none", "ste"],
                   help="relaxation the spectrum is taken of and the attack differentiates (default none = g_s(g_a(x)))")
    p.add_argument("--k", type=int, default=3, help="singular values per image (default 3)")
    p.add_argument("--iters", type=int, default=40, help="most Lanczos steps per image (default 40)")
    p.add_argument("--tol", type=float, default=1e-3,
                   help="stop once the top k values change by less than this, relatively (default 1e-3)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    p.add_argument("--out", "-o", default="runs/analyze", help="output folder (default runs/analyze)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_seed(p)
    add_device(p)
    p.set_defaults(func=run)


def _cell(value: object, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def run(args: argparse.Namespace) -> int:
    import json
    import time

    import torch

    from robustnic import __version__
    from robustnic.codecs import load_codec
    from robustnic.errors import RobustnicError
    from robustnic.studies.analyze import analyze_images, attack_settings
    from robustnic.studies.grid import code_version
    from robustnic.utils.io import atomic_write_text
    from robustnic.utils.tables import finite_mean, json_safe, write_csv

    if args.k < 1 or args.iters < 1 or not args.tol > 0:
        raise RobustnicError(f"--k and --iters must be at least 1 and --tol positive, got {args.k}, {args.iters}, "
                             f"{args.tol}")
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)  # a randomly initialised model (":random" specs) is the same on every run
    codec = load_codec(args.model, args.device)
    settings = None if args.no_attack else attack_settings(args.attack, args.budget, args.steps, args.seed,
                                                           args.standin)
    loaded = load_images(args)
    out = out_dir(args.out)
    t0 = time.perf_counter()
    analysis = analyze_images(codec, loaded.images, settings=settings, k=args.k, iters=args.iters, tol=args.tol,
                              seed=args.seed, standin=args.standin, progress=not args.no_progress)
    seconds = time.perf_counter() - t0
    correlation = analysis.correlations[0] if analysis.correlations else None
    report = {"command": "robustnic " + " ".join(sys.argv[1:]) if sys.argv[1:2] == [NAME] else f"robustnic {NAME}",
              "robustnic": __version__, "code-version": code_version(),
              "settings": analysis.settings | {"model": args.model, "images": args.images, "crop": args.crop,
                                               "device": str(codec.device), "threads": torch.get_num_threads()},
              "images": analysis.images, "layers": analysis.layers, "correlation": correlation,
              "correlations": analysis.correlations, "seconds": seconds}
    atomic_write_text(out / JSON_NAME, json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n")
    image_rows = [{k: (" ".join(f"{v:.6g}" for v in r[k]) if isinstance(r.get(k), list) else r.get(k)) for k in r}
                  for r in analysis.images]
    write_csv(out / IMAGES_CSV, image_rows, float_format="{:.6g}")
    write_csv(out / LAYERS_CSV, [r | {"shape": "x".join(map(str, r["shape"]))} for r in analysis.layers],
              float_format="{:.6g}")

    attacked = settings is not None
    header = ["image", "gain dB"] + [f"σ{i + 1}" for i in range(args.k)] + ["steps"]
    if attacked:
        header += ["VI dB", "linear dB", "PSNR drop", "align"]
    table = []
    for r in analysis.images:
        cells = [r["image"], _cell(r["gain-db"])] + [_cell(s, 3) for s in r["sigmas"]]
        cells += ["-"] * (args.k - len(r["sigmas"])) + [f"{r['iterations']}{'' if r['converged'] else '*'}"]
        if attacked:
            cells += [_cell(r.get("delta-psnr")), _cell(r.get("linear-db")), _cell(r.get("psnr-drop")),
                      _cell(r.get("alignment"), 3)]
        table.append(cells)
    print(f"{codec.name}, {len(analysis.images)} image(s)"
          + (f", crop {args.crop}" if args.crop else "")
          + (f"; attack {settings.method} {settings.budget}, {settings.steps} steps" if attacked else "")
          + f"; Jacobian of the stand-in '{args.standin}', top {args.k} by Lanczos (tol {args.tol:g})")
    print()
    print(_markdown(header, table))
    print()
    if attacked:
        for c in analysis.correlations:
            rho = "-" if c["spearman"] is None else f"{c['spearman']:+.3f}"
            p = "" if c["p-value"] is None else f" (p = {c['p-value']:.3f})"
            print(f"Spearman({c['x']}, {c['y']}) = {rho}{p} over {c['n']} image(s)")
        names = list(dict.fromkeys(r["name"] for r in analysis.layers))
        means = {n: finite_mean(r["magnify"] for r in analysis.layers if r["name"] == n) for n in names}
        shapes = {r["name"]: "x".join(map(str, r["shape"])) for r in analysis.layers}
        print()
        print("Magnify ratio per layer, mean over the images: (‖Δa‖/‖a‖) / (‖Δx‖/‖x‖) of the adversarial image")
        print()
        print(_markdown(["layer", "shape", "magnify"], [[n, shapes[n], _cell(means[n])] for n in names]))
        print()
    unconverged = sum(not r["converged"] for r in analysis.images)
    if unconverged:
        print(f"* {unconverged} image(s) stopped at --iters {args.iters} before converging")
    print(f"done in {seconds:.0f} s; wrote {JSON_NAME}, {IMAGES_CSV}, {LAYERS_CSV} to {args.out}")
    return unreadable_status(args, loaded)

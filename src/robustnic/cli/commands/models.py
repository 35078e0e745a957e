"""``robustnic models``: the models robustnic ships (offline) and the architectures it knows."""

from __future__ import annotations

import argparse
from typing import Any, Sequence

from robustnic.cli.commands import help_of

#: How the lambda column is written.
_NUMBER = "{:.4g}"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help=help_of("models"))
    p.add_argument("--json", action="store_true",
                   help="print everything as JSON (manifest rows, the photos their RD was measured on, architectures)")
    p.set_defaults(func=run)


def aligned_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> list[str]:
    """Lines of a text table whose column widths fit the longest cell (heading included); ``right``
    says which columns are right-aligned (numbers)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join((str(c).rjust(w) if r else str(c).ljust(w)) for c, w, r in zip(row, widths, right)).rstrip()
            for row in [header, *rows]]


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def photos_line() -> str:
    """Which photos the shipped models' bpp and PSNR come from (``robustnic.training.zoo`` measures them
    with ``robustnic eval``'s code on :data:`~robustnic.data.photos.HELDOUT_PHOTOS`, full size)."""
    from robustnic.data.photos import HELDOUT_PHOTOS

    by_package: dict[str, list[str]] = {}
    for name, (package, _) in HELDOUT_PHOTOS.items():
        by_package.setdefault(package, []).append(name)
    photos = "; ".join(f"{', '.join(names)} ({package})" for package, names in by_package.items())
    return (f"bpp (payload) and PSNR: means over the {len(HELDOUT_PHOTOS)} held-out photos, full size, never "
            f"trained on: {photos}; real bitstreams")


def run(args: argparse.Namespace) -> int:
    from robustnic.codecs.architectures import ARCHITECTURES
    from robustnic.codecs.zoo import list_models
    from robustnic.data.photos import HELDOUT_PHOTOS

    rows = list_models()
    architectures = {a.name: a.paper for a in ARCHITECTURES.values()}
    if args.json:
        from robustnic.cli.common import print_json
        from robustnic.utils.tables import json_safe

        print_json(json_safe({
            "models": rows,
            "rd_photos": {"names": list(HELDOUT_PHOTOS), "crop": None, "note": photos_line(),
                          "files": {n: f"{pkg}/{path}" for n, (pkg, path) in HELDOUT_PHOTOS.items()}},
            "architectures": architectures,
            "classical": ["jpeg:qQ", "webp:qQ"],
        }))
        return 0
    if rows:
        header = ["spec", "architecture", "N", "M", "metric", "lambda", "bpp (payload)", "PSNR (dB)"]
        cells = []
        for r in rows:
            rd = r.get("rd") or {}
            cells.append([r["spec"], r.get("architecture", "?"), _cell(r.get("N"), "{}"), _cell(r.get("M"), "{}"),
                          r.get("metric", "?"), _cell(r.get("lambda"), _NUMBER), _cell(rd.get("bpp"), "{:.3f}"),
                          _cell(rd.get("psnr-rgb"), "{:.2f}")])
        right = [False, False, True, True, False, True, True, True]
        print("\n".join(aligned_table(header, cells, right)))
        print(f"(qK = CompressAI's quality K; {photos_line()})")
    else:
        print("(no shipped models found)")
    print("\narchitectures (CompressAI; pretrained weights need internet once):")
    print("\n".join("  " + line for line in aligned_table(["name", "paper"], list(architectures.items()),
                                                        [False, False])[1:]))
    print("classical: jpeg:qQ, webp:qQ (Pillow)")
    return 0

"""``robustnic eval``: clean rate-distortion of one or more codecs over images, from real bitstreams."""

from __future__ import annotations

import argparse

from robustnic.cli.commands import help_of
from robustnic.cli.common import add_device, add_images, add_model, load_images, unreadable_status
from robustnic.codecs.options import DEFAULT_MODEL

#: The printed table: (heading, key of the mean row, format). ``bpp`` is the entropy-coded payload
#: (CompressAI's ``bpp``), ``bpp-file`` the whole file with robustnic's container header. VIF is the
#: reconstruction's visual information fidelity (1 = perfect); GMSD and HaarPSI are in the files only.
COLUMNS = (
    ("PSNR (dB)", "psnr-rgb", "{:.2f}"),
    ("MS-SSIM", "ms-ssim-rgb", "{:.4f}"),
    ("scales", "ms-ssim-scales", "{:.3g}"),
    ("VIF", "vif", "{:.4f}"),
    ("bpp (payload)", "bpp", "{:.4f}"),
    ("bpp (file)", "bpp-file", "{:.4f}"),
    ("bpp (estimated)", "bpp-estimated", "{:.4f}"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help=help_of("eval"),
        epilog="bpp (payload) counts the entropy-coded strings, as CompressAI's bpp (the rows' 'bpp'); bpp (file) "
               "counts the whole file with its container header ('bpp-file'). Each mean is over one image set for "
               "every column: images without a value in some column (e.g. VIF under 41 px, MS-SSIM under 11 px) are "
               "left out of the mean and named. Exit status 1 when some image files could not be read (the others "
               "are evaluated).")
    add_model(p, multiple=True)
    add_images(p, skips_unreadable=True)
    add_device(p)
    p.add_argument("--out", "-o", default="eval", help="output path stem: writes STEM.json and STEM.csv")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def format_table(evaluations: list[dict]) -> str:
    """The mean rows as an aligned text table, one line per model, with the image count and, under
    it, which images a mean leaves out and why."""
    from robustnic.codecs.evaluate import mean_note

    header = ["model", "images", *(heading for heading, _, _ in COLUMNS)]
    rows = []
    for e in evaluations:
        total = len(e["per_image"])
        n = total - len(e.get("left_out") or {})
        cells = [e["name"], str(n) if n == total else f"{n}/{total}"]
        for _, key, fmt in COLUMNS:
            value = e["results"].get(key)
            cells.append("-" if value is None else fmt.format(value))
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    notes = [f"{e['name']}: mean {note}" for e in evaluations if (note := mean_note(e))]
    return "\n".join(lines + notes)


def run(args: argparse.Namespace) -> int:
    from robustnic.codecs.evaluate import evaluate_codec, write_results
    from robustnic.codecs.zoo import load_codec

    loaded = load_images(args)
    evaluations = []
    for spec in args.model or [DEFAULT_MODEL]:
        codec = load_codec(spec, device=args.device)
        evaluations.append(evaluate_codec(codec, loaded.images, progress=not args.no_progress))
    json_path, csv_path = write_results(evaluations, args.out)
    print(format_table(evaluations))
    print("bpp (payload): the codec's coded strings, CompressAI's bpp ('bpp' in the files); "
          "bpp (file): the whole file with its container header ('bpp-file')")
    print(f"wrote {json_path} and {csv_path}")
    return unreadable_status(args, loaded)

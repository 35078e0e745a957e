"""``robustnic demo``: the shipped zoo on bundled photos - clean RD, the attack at 40 dB, the
self-ensemble, the fine-tuned model, a short recompression - and the HTML report."""

from __future__ import annotations

import argparse

from robustnic.cli.commands import help_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help=help_of("demo"))
    p.add_argument("--out", "-o", default="demo-out", help="output folder (default ./demo-out); reruns resume")
    p.add_argument("--quick", action="store_true", help="tiny random models and 64px crops (a smoke test)")
    p.add_argument("--workers", "-j", type=int, default=2, help="parallel worker processes (default 2)")
    p.add_argument("--model", default=None, help="the vanilla model (default: hyperprior-small:q3)")
    p.add_argument("--robust", action="append", default=None,
                   help="fine-tuned model(s) to compare (default: the shipped robust model fine-tuned from --model); repeatable")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--pretrained", dest="pretrained", action="store_true", default=None,
                       help="run on CompressAI's pretrained bmshj2018-hyperprior q3 and q8 (downloaded once into the "
                            "torch hub cache; the default when they are already cached)")
    group.add_argument("--shipped", dest="pretrained", action="store_false",
                       help="run on the shipped models even when CompressAI's weights are cached")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustnic.app import attack_headline, run_demo

    result = run_demo(args.out, quick=args.quick, workers=args.workers, vanilla=args.model, robust=args.robust,
                      progress=not args.no_progress, pretrained=args.pretrained)
    for note in result.notes:
        print(f"note: {note}")
    print("attack at psnr:40 (means over images, real bitstreams):")
    rows = attack_headline(result.store, "psnr:40")
    labels = [r["model"] + ("" if r["defense"] in (None, "none") else f" +{r['defense']}") for r in rows]
    width = max(map(len, labels), default=0)
    for label, r in zip(labels, rows):
        print(f"  {label:<{width}}  {r['attack']:<6} clean {r['psnr-clean']:6.2f} dB -> attacked "
              f"{r['psnr-out']:6.2f} dB  (ΔPSNR {r['delta-psnr']:+6.2f} dB, {r['n']} images)")
    s = result.summary
    print(f"{s.done} jobs run, {s.skipped} already done, {len(s.failed)} failed, in {result.seconds:.0f} s")
    print(f"report: {result.report.resolve()}")
    return 1 if s.failed else 0

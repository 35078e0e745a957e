"""``robustnic report``: a self-contained HTML report (plots, tables, image panels) from a results store."""

from __future__ import annotations

import argparse

from robustnic.cli.commands import help_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help=help_of("report"))
    p.add_argument("store", help="SQLite results store written by robustnic bench")
    p.add_argument("--out", "-o", default="report", help="output folder (default ./report)")
    p.add_argument("--title", default="robustnic report", help="page title")
    p.add_argument("--max-panels", type=int, default=8, help="most attack image panels to show (default 8)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustnic.report import build_report

    path = build_report(args.store, args.out, title=args.title, max_panels=args.max_panels)
    print(f"report: {path.resolve()}")
    return 0

"""``robustnic merge``: join results stores (e.g. the shards of a grid), or export them to CSV/JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from robustnic.cli.commands import help_of
from robustnic.cli.common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help=help_of("merge"))
    p.add_argument("stores", nargs="+", help="SQLite results stores to join (a key present twice is kept once)")
    p.add_argument("--out", "-o", required=True,
                   help="output: a new store (.sqlite), or a flat export (.csv) / nested export (.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustnic.studies.store import ResultStore, export_rows, merge_stores

    out = Path(args.out)
    if out.suffix.lower() in (".csv", ".json"):
        rows, seen = [], set()
        for path in args.stores:
            with ResultStore(path, readonly=True) as store:
                for row in store.rows():
                    if row.key not in seen:
                        seen.add(row.key)
                        rows.append(row)
        export_rows(rows, out)
        print_json({"rows": len(rows), "out": str(out)})
        return 0
    counts = merge_stores(args.stores, out)
    print_json(counts | {"out": str(out)})
    return 0

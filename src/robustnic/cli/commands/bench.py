"""``robustnic bench``: run a benchmark grid spec into an SQLite results store (resumable)."""

from __future__ import annotations

import argparse

from robustnic.cli.commands import help_of
from robustnic.cli.common import add_device, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help=help_of("bench"),
        description="Run every job of SPEC that STORE does not hold yet; each finished job is one row, so a "
                    "killed run resumes where it stopped. See docs/benchmark.md for the spec format.",
    )
    p.add_argument("spec", help="grid spec file (.toml, .yaml or .json)")
    p.add_argument("--store", "-s", required=True, help="SQLite results store (created if missing)")
    p.add_argument("--workers", "-j", type=int, default=1, help="parallel worker processes (default 1: in-process)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--shard", default=None, help="run only part I of N (e.g. 1/2), by job key")
    p.add_argument("--export", action="append", default=[], metavar="FILE",
                   help="afterwards, write every row of the store to FILE (.csv or .json); repeatable")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="refuse images larger than this many pixels (default: the spec's max_pixels, else 36 million)")
    p.add_argument("--dry-run", action="store_true", help="list the jobs (and which are finished) without running")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustnic.studies.grid import expand_spec, load_spec, parse_shard, run_grid, select_shard
    from robustnic.studies.store import ResultStore, export_rows

    shard = parse_shard(args.shard) if args.shard else None
    jobs = select_shard(expand_spec(load_spec(args.spec), args.max_pixels), shard)
    if args.dry_run:
        with ResultStore(args.store) as store:
            done = store.keys()
        print_json([{"key": j.key, "job": j.describe(), "finished": j.key in done} for j in jobs])
        return 0
    summary = run_grid(jobs, args.store, workers=args.workers, threads=args.threads, device=args.device,
                       progress=not args.no_progress)
    for path in args.export:
        with ResultStore(args.store) as store:
            export_rows(store.rows(), path)
        print(f"wrote {path}")
    print_json(summary.as_dict() | {"store": args.store})
    return 1 if summary.failed else 0

"""``robustnic bench``: run a benchmark grid spec into an SQLite results store (resumable).

Jobs run on an engine (``--engine local``: this machine; ``--engine ray``: Ray tasks), or, with
``--print-sbatch N``, the command prints a Slurm job-array script that runs N shards and merges them.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from robustnic.cli.commands import help_of
from robustnic.cli.common import print_json
from robustnic.utils.runtime import DEVICE_HELP

#: The store ``--print-sbatch`` merges into when ``--store`` is not given.
DEFAULT_SBATCH_STORE = "results.sqlite"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help=help_of("bench"),
        description="Run every job of SPEC that STORE does not hold yet; each finished job is one row, so a "
                    "killed run resumes where it stopped. See docs/benchmark.md for the spec format and "
                    "docs/cluster.md for running on Ray or Slurm.",
    )
    p.add_argument("spec", help="grid spec file (.toml, .yaml or .json)")
    p.add_argument("--store", "-s", default=None,
                   help="SQLite results store (created if missing); required unless --print-sbatch")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="where jobs run: local (this machine; default) or ray (one Ray task per job; "
                        "needs pip install 'robustnic[ray]')")
    p.add_argument("--address", default=None,
                   help="ray engine: the Ray cluster to join (e.g. auto, ray://head:10001); default: start a "
                        "local Ray instance")
    p.add_argument("--workers", "-j", type=int, default=None,
                   help="local: parallel worker processes (default 1: in-process); ray: CPUs of the local Ray "
                        "instance (default: all)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--shard", default=None, help="run only part I of N (e.g. 1/2), by job key")
    p.add_argument("--export", action="append", default=[], metavar="FILE",
                   help="afterwards, write every row of the store to FILE (.csv or .json); repeatable")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="refuse images larger than this many pixels (default: the spec's max_pixels, else 36 million)")
    p.add_argument("--dry-run", action="store_true", help="list the jobs (and which are finished) without running")
    p.add_argument("--print-sbatch", type=int, default=None, metavar="N",
                   help="print a Slurm job-array script that runs the grid as N shards (--shard i/N, one store "
                        "each) and then merges them into --store; runs nothing")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    # Not the shared add_device: the ray engine resolves the device on the cluster, not on this machine
    # (robustnic's main resolves every args.device here); bench resolves it itself.
    p.add_argument("--device", dest="job_device", default="cpu",
                   help=f"{DEVICE_HELP}; default cpu (ray engine: cpu, cuda or auto, as the cluster has them)")
    p.set_defaults(func=run)


def sbatch_script(
    spec: str,
    shards: int,
    store: str = DEFAULT_SBATCH_STORE,
    threads: int = 1,
    device: str = "cpu",
    max_pixels: int | None = None,
) -> str:
    """A Slurm job-array script: task ``ID`` (0..shards-1) runs shard ``ID+1/shards`` of ``spec`` into
    ``<store stem>-shards/shard-ID.sqlite``; task 0 first submits one merge job that waits for the whole
    array (``afterok``) and joins the shard stores into ``store`` with ``robustnic merge``.

    Paths are used as given (relative ones from the directory ``sbatch`` is run in). ``$ROBUSTNIC``
    overrides the command (default ``robustnic``), e.g. ``ROBUSTNIC="python -m robustnic.cli.main"``.
    """
    from robustnic.errors import RobustnicError

    if shards < 1:
        raise RobustnicError(f"--print-sbatch needs N >= 1 shards, got {shards}")
    store_path = Path(store)
    shard_dir = store_path.with_name(f"{store_path.stem}-shards")
    q = shlex.quote
    shard_store = q(str(shard_dir)) + "/shard-${SLURM_ARRAY_TASK_ID}.sqlite"
    options = f" --threads {threads}" if threads != 1 else ""
    if device != "cpu":
        options += f" --device {q(device)}"
    if max_pixels is not None:
        options += f" --max-pixels {max_pixels}"
    shard_paths = " ".join(q(str(shard_dir / f"shard-{i}.sqlite")) for i in range(shards))
    gres = "#SBATCH --gres=gpu:1\n" if device.startswith("cuda") else ""
    merge = f"$ROBUSTNIC merge {shard_paths} --out {q(str(store_path))}"
    return f"""#!/bin/bash
# robustnic bench {spec} as a Slurm job array of {shards} shard(s), merged into {store} at the end.
#   submit:  sbatch THIS_FILE         (task 0 submits the merge job, which waits for every shard)
#   rerun:   the same, after a failed task (bench exits 1 when a job failed, and the merge then never
#            starts): each shard store resumes where it stopped; remove {store} first if it was merged
# Every task needs robustnic installed (the same version: job keys hash the code). See docs/cluster.md.
#SBATCH --job-name=robustnic-bench
#SBATCH --array=0-{shards - 1}
#SBATCH --ntasks=1
#SBATCH --cpus-per-task={threads}
{gres}#SBATCH --output=robustnic-bench-%A_%a.log
set -euo pipefail
ROBUSTNIC=${{ROBUSTNIC:-robustnic}}
mkdir -p {q(str(shard_dir))}
if [ "${{SLURM_ARRAY_TASK_ID}}" = 0 ]; then
  sbatch --job-name=robustnic-merge --dependency=afterok:${{SLURM_ARRAY_JOB_ID}} --output=robustnic-merge-%j.log \\
    --export=ALL --wrap="{merge}"
fi
$ROBUSTNIC bench {q(spec)} --shard $((SLURM_ARRAY_TASK_ID + 1))/{shards} --store {shard_store} --no-progress{options}
"""


def run(args: argparse.Namespace) -> int:
    from robustnic.errors import RobustnicError
    from robustnic.studies.engines import make_engine
    from robustnic.studies.grid import expand_spec, load_spec, parse_shard, run_grid, select_shard
    from robustnic.studies.store import ResultStore, export_rows

    if args.print_sbatch is not None:
        load_spec(args.spec)  # a script for a spec that does not parse helps nobody
        print(sbatch_script(args.spec, args.print_sbatch, args.store or DEFAULT_SBATCH_STORE, threads=args.threads,
                            device=args.job_device, max_pixels=args.max_pixels), end="")
        return 0
    if args.store is None:
        raise RobustnicError("--store is required (the SQLite results store to fill)")
    engine = make_engine(args.engine, args.workers, args.threads, args.address)  # no Ray: one line, exit 2
    if args.engine == "local":  # a device this machine lacks fails before anything else
        args.job_device = engine.resolve_device(args.job_device)
    shard = parse_shard(args.shard) if args.shard else None
    jobs = select_shard(expand_spec(load_spec(args.spec), args.max_pixels), shard)
    if args.dry_run:
        with ResultStore(args.store) as store:
            done = store.keys()
        print_json([{"key": j.key, "job": j.describe(), "finished": j.key in done} for j in jobs])
        return 0
    summary = run_grid(jobs, args.store, threads=args.threads, device=args.job_device, engine=engine,
                       progress=not args.no_progress)
    for path in args.export:
        with ResultStore(args.store) as store:
            export_rows(store.rows(), path)
        print(f"wrote {path}")
    print_json(summary.as_dict() | {"store": args.store, "engine": args.engine})
    return 1 if summary.failed else 0

"""Scaling out the benchmark grid: the local process pool against Ray on the same spec, Ray's start-up and
per-job overhead, and - on paper, from measured costs - how wall time and store writes grow to 100 workers.

In one run (so the ratios share the machine's load):

1. **Calibration**: an ``attack`` job on a random 8/16-channel hyperprior, its step count chosen so that
   one job takes about ``--job-seconds`` (default 6 s, the issue's ">= 5 s").
2. **Throughput**: ``--jobs`` such jobs (default 8: 4 photos x 2 budgets) as
   ``robustnic bench SPEC --workers 2`` (the local engine's process pool) and as
   ``robustnic bench SPEC --engine ray --workers 2`` (a local Ray instance with 2 CPUs), each into a
   fresh store; the two stores must hold identical results. Each run's *window* goes from the first job's
   start to the last row's commit; the wall time before it is start-up (the pool: spawning workers that
   import torch; Ray: ``ray.init``, then a first task on each worker, timed apart).
3. **Per-job overhead**: ``window x workers - sum of the jobs' own seconds``, per job (goal: <= 5% of a
   >= 5 s job); and ``--small-jobs`` trivial jobs (JPEG on a 32 px crop) on warm Ray workers, which give
   the whole per-job cost on the driver's side (Ray's round trip, unpickling, the store write).
4. **On paper**: from the store's measured write time per row (WAL, ``synchronous=FULL``) and the
   per-job driver cost of step 3, how the wall time, the store write rate and the driver's load grow from
   1 to 100 workers for a grid of ``--paper-jobs`` jobs, and the job size that keeps the driver under
   50% busy.

Prints markdown (progress on stderr)::

    .venv/bin/python benchmarks/scale.py                  # about 3-5 minutes on 2 loaded cores
    .venv/bin/python benchmarks/scale.py --jobs 4 --job-seconds 5
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("ROBUSTNIC_CODE_VERSION", "scale-benchmark")  # keys need not track the source here

from robustnic.studies.engines import LocalEngine, RayEngine, import_ray, run_job  # noqa: E402
from robustnic.studies.grid import Job, expand_spec, run_grid  # noqa: E402
from robustnic.studies.store import ResultStore, Row, canonical_json  # noqa: E402

MODEL = "bmshj2018-hyperprior:N=8:M=16:random"
PHOTOS = ("astronaut", "coffee", "chelsea", "china", "camera", "rocket")
BUDGETS = ("psnr:35", "psnr:40", "psnr:45")
WORKERS = 2
PAPER_WORKERS = (1, 2, 4, 8, 16, 32, 64, 100)


def log(message: str) -> None:
    """Progress on stderr (stdout is the markdown)."""
    print(f"scale: {message}", file=sys.stderr, flush=True)


def attack_spec(steps: int, jobs: int, crop: int) -> dict[str, Any]:
    """``jobs`` attack jobs (photos x budgets) of ``steps`` steps each, on ``crop``-pixel crops."""
    photos = max(1, math.ceil(jobs / len(BUDGETS[:2])))
    budgets = BUDGETS[:2] if jobs > 1 else BUDGETS[:1]
    if photos > len(PHOTOS):
        raise SystemExit(f"--jobs {jobs}: at most {len(PHOTOS) * 2}")
    return {"seed": 0, "crop": crop, "images": [f"bundled:{p}" for p in PHOTOS[:photos]],
            "study": [{"kind": "attack", "models": [MODEL], "attacks": ["paper"], "budgets": list(budgets),
                       "steps": steps}]}


def small_spec(jobs: int) -> dict[str, Any]:
    """``jobs`` trivial jobs: JPEG at ``jobs`` qualities on one 32-pixel crop."""
    qualities = [int(q) for q in range(1, 96)][:: max(1, 95 // jobs)][:jobs]
    return {"seed": 0, "crop": 32, "images": ["bundled:astronaut"],
            "study": [{"kind": "rd", "models": [f"jpeg:q{q}" for q in qualities]}]}


def calibrate(target_s: float, crop: int) -> tuple[int, float]:
    """Attack steps for a job of about ``target_s`` seconds (one torch thread, in this process), from the
    times of a 20-step and an 80-step job (the difference is the steps' cost, the rest the job's fixed cost)."""
    import torch

    torch.set_num_threads(1)
    seconds = {}
    for steps in (20, 20, 80):  # the first run pays imports and warm-up
        job = expand_spec(attack_spec(steps, 1, crop))[0]
        _, seconds[steps], error = run_job(job.kind, job.config, "cpu")
        if error:
            raise SystemExit(f"calibration job failed: {error}")
    per_step = max(1e-4, (seconds[80] - seconds[20]) / 60)
    fixed = max(0.0, seconds[20] - 20 * per_step)
    return max(20, round((target_s - fixed) / per_step)), seconds[80]


def results_of(store: Path) -> dict[str, str]:
    """key -> canonical result, every row of ``store``."""
    with ResultStore(store, readonly=True) as s:
        return {r.key: canonical_json(r.result) for r in s.rows()}


@dataclass
class Timed:
    """A grid run: ``wall`` seconds of :func:`run_grid`, and ``window`` from the first job's start (its row's
    arrival minus its own seconds) to the last row's arrival: the grid on workers that are up."""

    wall: float
    window: float
    jobs: list[float]


def timed_grid(jobs: list[Job], store: Path, **kwargs: Any) -> Timed:
    """:func:`run_grid` over ``jobs`` into a fresh ``store``, timed; every job must succeed."""
    arrived: dict[str, float] = {}
    t0 = time.perf_counter()
    summary = run_grid(jobs, store, progress=False, on_row=lambda job, _: arrived.__setitem__(job.key, time.perf_counter()),
                       **kwargs)
    wall = time.perf_counter() - t0
    if summary.failed or summary.done != len(jobs):
        raise SystemExit(f"{store.name}: {summary.as_dict()}")
    with ResultStore(store, readonly=True) as s:
        elapsed = {r.key: r.timing["elapsed"] for r in s.rows()}
    first_start = min(arrived[k] - elapsed[k] for k in arrived)
    return Timed(wall, max(arrived.values()) - first_start, list(elapsed.values()))


def warm_ray_workers(ray: Any, workers: int) -> float:
    """Seconds until each of ``workers`` Ray workers has run one task that imports the job code."""

    def touch(pause: float) -> int:
        import robustnic.studies.jobs  # noqa: F401  (torch, compressai: what a job's first task pays)

        time.sleep(pause)
        return os.getpid()

    task = ray.remote(touch).options(num_cpus=1)
    t0 = time.perf_counter()
    pids = set(ray.get([task.remote(0.5) for _ in range(workers)]))
    seconds = time.perf_counter() - t0
    if len(pids) < workers:
        log(f"warm-up reached {len(pids)} of {workers} workers")
    return seconds


def store_write_seconds(source: Path, repeats: int = 3) -> tuple[float, float, int]:
    """Median and 90th-percentile seconds of one :meth:`ResultStore.put` (a row with its artifacts, its own
    transaction), replaying ``source``'s rows into fresh stores; and the mean bytes per row on disk."""
    with ResultStore(source, readonly=True) as s:
        rows = [(r, list(s.artifacts(r.key).values())) for r in s.rows()]
    times: list[float] = []
    size = 0
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):
            path = Path(tmp) / f"w{rep}.sqlite"
            with ResultStore(path) as out:
                for row, arts in rows:
                    copy = Row(f"{row.key}-{rep}", row.kind, row.config, row.code_version, row.result, row.timing)
                    t0 = time.perf_counter()
                    out.put(copy, arts)
                    times.append(time.perf_counter() - t0)
                out.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            size = path.stat().st_size
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))], size // max(1, len(rows))


def fmt_s(seconds: float) -> str:
    """Seconds for a table cell: ``12.3 s``, ``2.1 h``, ``3.4 d``."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=8, help="attack jobs in the throughput grid (even; default 8)")
    p.add_argument("--job-seconds", type=float, default=6.0, help="target seconds per job (default 6)")
    p.add_argument("--crop", type=int, default=256, help="attack crop in pixels (default 256)")
    p.add_argument("--small-jobs", type=int, default=40, help="trivial jobs for the per-job driver cost (default 40)")
    p.add_argument("--paper-jobs", type=int, default=20000, help="grid size for the on-paper table (default 20000)")
    args = p.parse_args(argv)
    ray = import_ray()  # the benchmark compares against Ray: without it, the install line and exit 2
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]

    log("calibrating the job size")
    steps, probe_s = calibrate(args.job_seconds, args.crop)
    jobs = expand_spec(attack_spec(steps, args.jobs, args.crop))
    small = expand_spec(small_spec(args.small_jobs))
    log(f"{len(jobs)} attack jobs of {steps} steps (an 80-step probe took {probe_s:.2f} s)")

    with tempfile.TemporaryDirectory(prefix="robustnic-scale-") as tmp:
        tmpdir = Path(tmp)
        log("local: the grid")
        local = timed_grid(jobs, tmpdir / "local.sqlite", engine=LocalEngine(WORKERS))
        # -- ray engine: init, warm-up, trivial jobs, the grid. `owner` starts Ray as `--engine ray
        # --workers 2` does and shuts it down at the end; the runs in between use engines that find Ray
        # running (and leave it so), as run_grid's own engine would after its start-up.
        log("ray: init")
        owner = RayEngine(num_cpus=WORKERS, init_kwargs={"num_gpus": 0})
        with owner:
            ray_init = owner.startup_s
            log("ray: warming the workers")
            ray_warm = warm_ray_workers(ray, WORKERS)
            log("ray: trivial jobs")
            small_run = timed_grid(small, tmpdir / "small.sqlite", engine=RayEngine())
            log("ray: the grid")
            on_ray = timed_grid(jobs, tmpdir / "ray.sqlite", engine=RayEngine())
        same = results_of(tmpdir / "local.sqlite") == results_of(tmpdir / "ray.sqlite")
        log("store writes")
        write_med, write_p90, row_bytes = store_write_seconds(tmpdir / "ray.sqlite")
    load_after = os.getloadavg()[0]

    n = len(jobs)
    mean_job = statistics.mean(local.jobs + on_ray.jobs)
    small_over = (small_run.wall * WORKERS - sum(small_run.jobs)) / len(small)
    driver_s = max(small_run.wall / len(small) - sum(small_run.jobs) / len(small) / WORKERS, write_med)
    ray_total = on_ray.wall + ray_init + ray_warm

    print(f"Machine: {cores} CPU cores, load average {load_before:.1f} before and {load_after:.1f} after "
          f"(shared with other jobs). Ray {ray.__version__}. Grid: {n} `attack` jobs ({MODEL}, `paper`, "
          f"{steps} steps, {args.crop} px crops; {len(set(j.config['image']['name'] for j in jobs))} photos x "
          f"{len(set(j.config['budget'] for j in jobs))} budgets), 1 torch thread per worker, {WORKERS} workers. "
          f"Results of the two engines identical: {'yes' if same else 'NO'}.")
    print()
    print("| engine (command) | wall s | start-up s | grid s on running workers | jobs/min | mean job s | "
          "overhead per job s | overhead % of job |")
    print("|---|---|---|---|---|---|---|---|")
    for name, total, run in (("local (`--workers 2`)", local.wall, local),
                             ("ray (`--engine ray --workers 2`)", ray_total, on_ray)):
        job = statistics.mean(run.jobs)
        over = (run.window * WORKERS - sum(run.jobs)) / n
        print(f"| {name} | {total:.1f} | {total - run.window:.1f} | {run.window:.1f} | {60 * n / total:.1f} | "
              f"{job:.2f} | {over:+.2f} | {100 * over / job:+.1f}% |")
    print()
    print(f"Start-up is the wall time before the first job starts: for ray, `ray.init` {ray_init:.1f} s and "
          f"{ray_warm:.1f} s until both workers ran a first task (importing torch and the job code); for "
          f"local, spawning the pool and the same imports. Throughput ratio ray / local on running workers "
          f"(jobs per second of grid window): {local.window / on_ray.window:.2f}x; end to end, start-ups "
          f"included: {local.wall / ray_total:.2f}x. Overhead per job = (grid window x {WORKERS} workers - "
          f"the jobs' own seconds) / jobs, where the window runs from the first job's start to the last "
          f"row's commit (goal: <= 5% of a >= 5 s job; a worker that starts late counts against it).")
    print()
    print(f"Driver cost per job, from {len(small)} trivial jobs (JPEG, 32 px) on warm Ray workers: "
          f"{1000 * driver_s:.1f} ms of wall per job beyond the jobs' own time ({1000 * small_over:.1f} ms of "
          f"worker-slot time: Ray's round trip, unpickling, the store write); the store write alone (a row "
          f"with its {row_bytes // 1024} KiB of artifacts, one WAL transaction, `synchronous=FULL`): median "
          f"{1000 * write_med:.2f} ms, 90th percentile {1000 * write_p90:.2f} ms, so one store takes at most "
          f"{1 / write_med:.0f} rows/s, and one driver about {1 / driver_s:.0f} jobs/s.")
    print()
    print(f"**On paper**, one driver and one store for a grid of {args.paper_jobs:,} jobs of {mean_job:.1f} s "
          f"(this benchmark's job), d = {1000 * driver_s:.1f} ms of driver time per job: wall = "
          f"max(jobs x job s / workers, jobs x d), start-up aside; the driver is busy workers x d / job s; "
          f"the smallest job that keeps it under 50% busy is 2 x workers x d. Each row adds about "
          f"{row_bytes // 1024} KiB to the store ({args.paper_jobs * row_bytes / 2**30:.1f} GiB for the grid).")
    print()
    print("| workers | wall | store writes / s | driver busy | smallest job for <= 50% busy |")
    print("|---|---|---|---|---|")
    for w in PAPER_WORKERS:
        compute = args.paper_jobs * mean_job / w
        bound = args.paper_jobs * driver_s
        wall = max(compute, bound)
        busy = min(1.0, w * driver_s / mean_job)
        limit = " (driver-bound)" if bound > compute else ""
        print(f"| {w} | {fmt_s(wall)}{limit} | {args.paper_jobs / wall:.2f} | {100 * busy:.1f}% | "
              f"{2 * w * driver_s:.2f} s |")
    print()
    print(f"Past about {mean_job / driver_s:.0f} workers a grid of {mean_job:.1f} s jobs would be bound by the "
          f"one driver (past {mean_job / driver_s / 2:.0f}, busier than 50%); sharded runs (`--shard i/N`, one "
          f"store each, `robustnic merge` after) have no such limit.")


if __name__ == "__main__":
    main()

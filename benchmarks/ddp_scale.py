"""Data-parallel training: 2 processes under torchrun vs 1 process at the same global batch (one run).

    .venv/bin/python benchmarks/ddp_scale.py [--steps 20] [--batch 8] [--patch 128]

Runs the same training step (``Trainer.train_step``: sample, forward, backward, gradient
all-reduce, Adam, auxiliary step) of a hyperprior (N=64, M=96, the shipped ``hyperprior-small``
width) for ``--steps`` timed steps after 3 warm-up steps, in three set-ups on this machine's cores:
1 process with 2 threads, 1 process with 1 thread (batch ``--batch`` each), and 2 processes × 1
thread under ``torch.distributed.run`` (gloo, batch ``--batch / 2`` per process). Prints a markdown
table: steps/s, samples/s, ratio to the 1-process × 2-thread run, and peak resident memory per
process (``ru_maxrss``). Validation and checkpoints are left out: only the step is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(args: argparse.Namespace) -> None:
    """One training process: time ``args.steps`` train steps, write this rank's numbers as JSON."""
    import torch

    from robustnic.data.photos import training_photo_paths
    from robustnic.training import TrainConfig, Trainer

    photos = [str(p) for p in training_photo_paths()[:6]]
    cfg = TrainConfig(architecture="bmshj2018-hyperprior", N=64, M=96, batch_size=args.batch, patch_size=args.patch,
                      steps=10**6, images=photos, threads=args.threads, val_every=10**6, checkpoint_every=10**6)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, progress=False, val_images={})
        for _ in range(3):
            trainer.train_step()
        if trainer.rank_info.enabled:
            torch.distributed.barrier()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        seconds = time.perf_counter() - t0
    rank = trainer.rank_info
    row = {"rank": rank.rank, "world": rank.world_size, "seconds": seconds,
           "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    Path(args.report).with_suffix(f".{rank.rank}.json").write_text(json.dumps(row))
    from robustnic.training import distributed

    distributed.shutdown()


def launch(procs: int, threads: int, batch: int, args: argparse.Namespace, report: Path) -> list[dict]:
    """Run the worker in ``procs`` processes (torchrun when > 1) and read back each rank's numbers."""
    me = [str(Path(__file__).resolve()), "--worker", "--steps", str(args.steps), "--batch", str(batch),
          "--patch", str(args.patch), "--threads", str(threads), "--report", str(report)]
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", *me]
    else:
        cmd = [sys.executable, *me]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    return [json.loads(report.with_suffix(f".{r}.json").read_text()) for r in range(procs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8, help="global batch (patches per step)")
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--report", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    load_before = os.getloadavg()[0]
    setups = [("1 process x 2 threads", 1, 2), ("1 process x 1 thread", 1, 1), ("2 processes x 1 thread (torchrun, gloo)", 2, 1)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, procs, threads) in enumerate(setups):
            ranks = launch(procs, threads, args.batch // procs, args, Path(tmp) / f"setup{i}")
            seconds = max(r["seconds"] for r in ranks)
            rows.append((name, procs, args.batch // procs, args.steps / seconds, max(r["rss_mb"] for r in ranks)))
    base = rows[0][3]
    print(f"Hyperprior N=64/M=96, global batch {args.batch} patches of {args.patch}², {args.steps} timed steps "
          f"after 3 warm-up steps, {os.cpu_count()} CPU cores (load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after: shared with other jobs when above 0); memory: peak RSS of the largest "
          "process.\n")
    print("| set-up | processes | batch per process | steps/s | samples/s | vs 1 process × 2 threads | peak RSS per process (MB) |")
    print("|---|---|---|---|---|---|---|")
    for name, procs, batch, rate, rss in rows:
        print(f"| {name} | {procs} | {batch} | {rate:.3f} | {rate * args.batch:.2f} | {rate / base:.2f}x | {rss:.0f} |")


if __name__ == "__main__":
    main()

"""Record the shipped robust models: ``python -m robustnic.training.robust``.

Each robust model is made by ``robustnic finetune`` from a shipped model (the command is in its
manifest row); this module exports the finished run's checkpoint into ``weights/robust/``, evaluates
it on the held-out photos from real bitstreams and writes its manifest row (atomic, locked), so the
model card (``python -m robustnic.training.card``) and ``load_codec("hyperprior-small-robust:q3")``
see it.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from robustnic.codecs.checkpoint import read_checkpoint_file
from robustnic.codecs.zoo import WEIGHTS_DIR, read_manifest
from robustnic.training.config import FinetuneConfig, cli_arguments
from robustnic.training.export import export_model
from robustnic.training.finetune import SETTINGS_FILE
from robustnic.training.zoo import record_row

#: (family, quality, the shipped model it was fine-tuned from, its ``robustnic finetune --out`` folder)
ROBUST_PLAN = [
    ("hyperprior-small-robust", 3, "hyperprior-small:q3", "runs/finetune/hyperprior-small-q3-v2"),
    ("factorized-small-robust", 3, "factorized-small:q3", "runs/finetune/factorized-small-q3"),
    ("hyperprior-long-robust", 8, "hyperprior-long:q8", "runs/finetune/hyperprior-long-q8"),
]
#: Bookkeeping fields left out of a row's command line (they do not change the weights).
COMMAND_SKIPS = tuple(k for k in FinetuneConfig.BOOKKEEPING if k not in ("steps", "threads"))


def finetune_command(config: FinetuneConfig, out: str | Path, export: str | None = None) -> str:
    """The ``robustnic finetune`` command line that reproduces ``config`` in ``out`` (every setting
    but bookkeeping, from the config's own options)."""
    parts = ["robustnic", "finetune", *cli_arguments(config, skip=COMMAND_SKIPS), "--out", str(out)]
    return shlex.join(parts + (["--export", export] if export else []))


def record(family: str, quality: int, source: str, run: str | Path, weights_dir: Path = WEIGHTS_DIR) -> dict:
    """Export ``run``'s checkpoint as ``family:q{quality}``, evaluate it and write its manifest row."""
    run = Path(run)
    settings = json.loads((run / SETTINGS_FILE).read_text())
    ckpt = read_checkpoint_file(run / "last.pth.tar")
    src = read_manifest(weights_dir)[source]
    file = f"robust/{family}-q{quality}.pt"
    (weights_dir / "robust").mkdir(parents=True, exist_ok=True)
    info = export_model(run / "last.pth.tar", weights_dir / file)
    # the source under today's label (a run's settings may name it by a label from before 0.2)
    config = FinetuneConfig(**settings | {"model": source, "steps": int(ckpt["step"]), "threads": 1})
    command = finetune_command(config, run, export=f"src/robustnic/weights/{file}")
    row = {
        "family": family, "quality": quality, "architecture": info["architecture"], "N": info["N"], "M": info["M"],
        "metric": src.metric, "lambda": src.info.get("lambda"), "file": file, "sha256": info["sha256"],
        "bytes": info["bytes"], "steps": int(ckpt["step"]), "train_seconds": round(float(ckpt["elapsed"]), 1),
        "note": f"adversarially fine-tuned from {source} (robustnic finetune; Chen & Ma, TCSVT 2023)",
        "finetuned_from": {"spec": source, "sha256": src.sha256}, "command": command,
        "config": settings | {"steps": int(ckpt["step"])}, "scale_levels": info["scale_levels"],
    }
    return record_row(row, weights_dir)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", action="append", help="record only these specs (family:qK)")
    args = p.parse_args(argv)
    for family, quality, source, run in ROBUST_PLAN:
        if args.only and f"{family}:q{quality}" not in args.only:
            continue
        row = record(family, quality, source, run)
        print(json.dumps({"spec": f"{family}:q{quality}", "rd": row["rd"]}), flush=True)


if __name__ == "__main__":
    main()

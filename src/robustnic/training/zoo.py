"""How robustnic's shipped models are made: the plan (a table) and the build that follows it.

``python -m robustnic.training.zoo [--only FAMILY:qK ...]`` trains (resuming), exports to fp16,
evaluates on the held-out photos from real bitstreams and records each model in
``weights/manifest.json``, one row at a time (atomic, locked), so partial progress is shipped.
Every row records the equivalent ``robustnic train`` command line.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shlex
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from robustnic.codecs.architectures import LAMBDAS
from robustnic.codecs.evaluate import evaluate_codec
from robustnic.codecs.zoo import WEIGHTS_DIR, load_shipped
from robustnic.data.photos import bundled_photos
from robustnic.training.export import export_model
from robustnic.training.rd import TrainConfig, Trainer
from robustnic.utils.io import atomic_write_text

RUNS = Path("runs/zoo")
BASE = str(RUNS / "hyperprior-small-q3" / Trainer.CHECKPOINT)
LONG = str(RUNS / "hyperprior-long-q3" / Trainer.CHECKPOINT)


@dataclass
class PlannedModel:
    """One shipped model: ``family:qK`` where K is CompressAI's quality (λ = ``LAMBDAS[metric][K]``)."""

    family: str
    quality: int
    config: TrainConfig
    note: str = ""
    #: Gaussian scale table levels of the exported file (None: CompressAI's 64); see
    #: :func:`robustnic.codecs.learned.update_coder_tables`.
    scale_levels: int | None = None

    @property
    def spec(self) -> str:
        return f"{self.family}:q{self.quality}"

    @property
    def run_dir(self) -> Path:
        return RUNS / f"{self.family}-q{self.quality}"


def _cfg(quality: int, metric: str = "mse", **kw) -> TrainConfig:
    base = dict(N=64, M=96, batch_size=8, patch_size=128, val_every=1000, checkpoint_every=200, threads=1, seed=0)
    return TrainConfig(**(base | {"metric": metric, "lmbda": LAMBDAS[metric][quality]} | kw))


_DERIVED = dict(steps=1200, lr=1e-4, lr_drops=[(0.75, 0.3)], init_from=BASE)
HYPERPRIOR = "bmshj2018-hyperprior"
#: The high-rate hyperpriors (CompressAI's qualities 5-8) use a wider latent, as CompressAI widens M at
#: its high qualities; the wider model starts as the same function as hyperprior-long:q3 (see
#: :func:`robustnic.training.rd.warm_start`).
_HIGH_RATE = dict(architecture=HYPERPRIOR, M=192, steps=20000, lr=3e-4, lr_drops=[(0.7, 0.3), (0.9, 0.3)],
                  init_from="hyperprior-long:q3")
Q8 = str(RUNS / "hyperprior-long-q8" / Trainer.CHECKPOINT)
_HIGH_RATE_DERIVED = dict(architecture=HYPERPRIOR, M=192, steps=2000, lr=1e-4, lr_drops=[(0.75, 0.3)])

PLAN: list[PlannedModel] = [
    PlannedModel("hyperprior-small", 3, _cfg(3, architecture=HYPERPRIOR, steps=6000, lr=3e-4,
                                             lr_drops=[(0.7, 0.3), (0.9, 0.3)]), "trained from scratch"),
    PlannedModel("factorized-small", 3, _cfg(3, architecture="bmshj2018-factorized", **_DERIVED | {"lr": 2e-4}),
                 "g_a/g_s initialised from hyperprior-small:q3"),
    PlannedModel("mean-small", 3, _cfg(3, architecture="mbt2018-mean", **_DERIVED | {"lr": 2e-4, "steps": 800}),
                 "g_a/g_s initialised from hyperprior-small:q3; 256-level scale table", scale_levels=256),
    PlannedModel("joint-small", 3, _cfg(3, architecture="mbt2018", **_DERIVED | {"lr": 2e-4, "steps": 400}),
                 "g_a/g_s initialised from hyperprior-small:q3; 256-level scale table", scale_levels=256),
    # Longer-trained hyperprior: hyperprior-small:q3's run continued from step 6000 to 11000 (copy
    # runs/zoo/hyperprior-small-q3/last.pth.tar into runs/zoo/hyperprior-long-q3/ first: the build resumes
    # it, optimizer state included), then q2/q4 derived from it as above.
    PlannedModel("hyperprior-long", 3, _cfg(3, architecture=HYPERPRIOR, steps=11000, lr=1e-4, lr_drops=[(0.9, 0.3)]),
                 "hyperprior-small:q3's run continued from step 6000 to 11000 at lr 1e-4 (first copy runs/zoo/hyperprior-small-q3/last.pth.tar into runs/zoo/hyperprior-long-q3/; the command below resumes it)"),
    PlannedModel("hyperprior-long", 2, _cfg(2, architecture=HYPERPRIOR, **_DERIVED | {"init_from": LONG}),
                 "fine-tuned from hyperprior-long:q3 at a lower lambda"),
    PlannedModel("hyperprior-long", 4, _cfg(4, architecture=HYPERPRIOR, **_DERIVED | {"steps": 800, "init_from": LONG}),
                 "fine-tuned from hyperprior-long:q3 at a higher lambda"),
    # High rates, where the paper finds learned codecs most fragile.
    PlannedModel("hyperprior-long", 8, _cfg(8, **_HIGH_RATE),
                 "high rate, M=192: widened from hyperprior-long:q3 (function-preserving), then trained at λ 0.18"),
    PlannedModel("hyperprior-long", 7, _cfg(7, **_HIGH_RATE_DERIVED, init_from=Q8),
                 "high rate, M=192: fine-tuned from hyperprior-long:q8 at λ 0.0932"),
    PlannedModel("hyperprior-long", 6, _cfg(6, **_HIGH_RATE_DERIVED, init_from=Q8),
                 "high rate, M=192: fine-tuned from hyperprior-long:q8 at λ 0.0483"),
    PlannedModel("hyperprior-long", 5, _cfg(5, **_HIGH_RATE_DERIVED, init_from=Q8),
                 "high rate, M=192: fine-tuned from hyperprior-long:q8 at λ 0.025"),
    PlannedModel("hyperprior-ssim", 3, _cfg(3, metric="ms-ssim", architecture=HYPERPRIOR, batch_size=4, patch_size=192,
                                            **_DERIVED | {"steps": 300}),
                 "MS-SSIM loss, fine-tuned from hyperprior-small:q3"),
]


def command_line(verb: str, options: list[tuple[str, object]]) -> str:
    """``robustnic VERB --option value ...`` (shell-quoted) from (field name, value) pairs; a field name
    becomes its option with dashes, a list value repeats the option, a None value is left out."""
    parts = ["robustnic", verb]
    for name, value in options:
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                parts += ["--" + name.replace("_", "-"), str(item)]
    return shlex.join(parts)


def train_command(cfg: TrainConfig, out: Path) -> str:
    """The ``robustnic train`` command line equivalent to ``cfg``."""
    return command_line("train", [
        ("arch", cfg.architecture), ("N", cfg.N), ("M", cfg.M), ("metric", cfg.metric), ("lmbda", cfg.lmbda),
        ("steps", cfg.steps), ("batch_size", cfg.batch_size), ("patch_size", cfg.patch_size), ("lr", cfg.lr),
        ("lr_drop", [f"{frac}:{factor}" for frac, factor in cfg.lr_drops]), ("init_from", cfg.init_from),
        ("threads", cfg.threads or 1), ("seed", cfg.seed), ("out", out)])


@contextmanager
def manifest_lock(weights_dir: Path) -> Iterator[dict]:
    """Read-modify-write the manifest under an exclusive lock (several builds may run at once)."""
    weights_dir.mkdir(parents=True, exist_ok=True)
    with open(weights_dir / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = weights_dir / "manifest.json"
        manifest = json.loads(path.read_text()) if path.is_file() else {"models": []}
        yield manifest
        manifest["models"].sort(key=lambda r: (r["family"], r["quality"]))
        atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")


def build(planned: PlannedModel, weights_dir: Path = WEIGHTS_DIR) -> dict:
    """Train (or resume), export, evaluate and record one planned model; returns its manifest row."""
    trainer = Trainer(planned.config, planned.run_dir)
    result = trainer.fit()
    file_name = f"{planned.family}-q{planned.quality}.pt"
    info = export_model(trainer.checkpoint_path, weights_dir / file_name, scale_levels=planned.scale_levels)
    row = {
        "family": planned.family, "quality": planned.quality, "architecture": info["architecture"],
        "N": info["N"], "M": info["M"], "metric": planned.config.metric, "lambda": planned.config.lmbda,
        "file": file_name, "sha256": info["sha256"], "bytes": info["bytes"], "steps": result["step"],
        "train_seconds": round(result["elapsed"], 1), "note": planned.note,
        "command": train_command(planned.config, planned.run_dir), "scale_levels": info["scale_levels"],
        "config": json.loads(json.dumps(asdict(planned.config))),
    }
    return record_row(row, weights_dir)


def record_row(row: dict, weights_dir: Path = WEIGHTS_DIR) -> dict:
    """Write ``row`` (an exported model's manifest row) into the manifest, then add its fingerprint and
    its RD on the held-out photos (real bitstreams) and write it again; returns the finished row."""
    key = (row["family"], row["quality"])

    def replace(manifest: dict, new: dict) -> None:
        manifest["models"] = [r for r in manifest["models"] if (r["family"], r["quality"]) != key] + [new]

    with manifest_lock(weights_dir) as manifest:  # provisional row so the model can be loaded
        replace(manifest, row | {"fingerprint": ""})
    codec = load_shipped(f"{row['family']}:q{row['quality']}", weights_dir=weights_dir)
    row["fingerprint"] = codec.fingerprint
    t0 = time.perf_counter()
    row["rd"] = evaluate_codec(codec, bundled_photos(), progress=False)["results"]
    row["rd"]["eval_seconds"] = round(time.perf_counter() - t0, 1)
    with manifest_lock(weights_dir) as manifest:
        replace(manifest, row)
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--only", action="append", help="build only these specs (family:qK); default all, in order")
    args = p.parse_args(argv)
    for planned in PLAN:
        if args.only and planned.spec not in args.only:
            continue
        row = build(planned)
        print(json.dumps({"spec": planned.spec, "rd": row["rd"], "steps": row["steps"]}), flush=True)


if __name__ == "__main__":
    main()

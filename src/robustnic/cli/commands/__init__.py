"""One module per CLI command (or pair of commands). Each defines ``register(subparsers)`` which adds
its parser(s) and sets ``func`` to a ``run(args) -> int`` function.

:data:`COMMANDS` is the table ``robustnic --help`` lists without importing any command module; each
module's ``register`` takes its one-line help from it (:func:`help_of`). Adding a command is adding a
module here and a row to the table. Command modules import torch and the rest of the heavy stack only
inside their run functions, so ``robustnic CMD --help`` stays fast.
"""

from __future__ import annotations

from typing import NamedTuple


class Command(NamedTuple):
    """Where a command lives (module under ``robustnic.cli.commands``) and its one-line help."""

    module: str
    help: str


#: Every command, in the order ``robustnic --help`` lists them.
COMMANDS: dict[str, Command] = {
    "analyze": Command("analyze", "amplification spectrum of a codec per image (worst-case linear gain) beside an attack's VI"),
    "attack": Command("attack", "attack images with adversarial perturbations and measure the damage on real bitstreams"),
    "bench": Command("bench", "run a grid spec (TOML/YAML: models x attacks x budgets x defenses x images) into a store"),
    "compress": Command("compress", "encode an image into a robustnic bitstream file"),
    "decompress": Command("compress", "decode a robustnic bitstream file into an image"),
    "curves": Command("curves", "robustness curves: attacked reconstruction PSNR and bpp increase vs budget"),
    "defend": Command("defend", "attack a defended codec in every way it can be attacked; report the worst case per image"),
    "demo": Command("demo", "run the demo studies on the shipped models and write the HTML report"),
    "eval": Command("eval", "clean RD of codecs over images (real bitstreams) -> JSON + CSV"),
    "finetune": Command("finetune", "adversarially fine-tune a codec (Chen & Ma); resumes from OUT"),
    "merge": Command("merge", "join results stores into one (or export them: -o results.csv / .json)"),
    "models": Command("models", "list shipped models and known architectures"),
    "recompress": Command("recompress", "recompression study: N generations of encode/decode vs JPEG/WebP"),
    "report": Command("report", "write a self-contained HTML report (+ results.csv/json) from a store"),
    "train": Command("train", "train a codec (resumes from OUT/last.pth.tar when present)"),
    "export": Command("train", "turn a training checkpoint into a shippable model file"),
    "transfer": Command("transfer", "transfer matrices: crafted on model/image A, decoded by model B / added to image B"),
}


def help_of(name: str) -> str:
    """The one-line help of command ``name`` (what ``robustnic --help`` shows)."""
    return COMMANDS[name].help

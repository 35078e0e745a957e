"""Options shared by several commands, defined once (torch-free: ``robustnic CMD --help`` imports this)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from robustnic.codecs.options import DEFAULT_MODEL
from robustnic.utils.runtime import DEVICE_HELP


def add_model(p: argparse.ArgumentParser, multiple: bool = False) -> None:
    help_ = "codec spec (shipped name like hyperprior-small:q3, ARCH:qK[:pretrained], checkpoint path, jpeg:q75)"
    if multiple:
        p.add_argument("--model", "-m", action="append", default=None, help=help_ + "; repeatable")
    else:
        p.add_argument("--model", "-m", default=DEFAULT_MODEL, help=help_ + f" (default {DEFAULT_MODEL})")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help=f"{DEVICE_HELP}; default cpu")


def add_images(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--images", "-i", default="bundled", required=required,
                   help="a folder of images, one image file, or 'bundled' (held-out photos shipped by packages)")
    p.add_argument("--crop", type=int, default=None, help="centre-crop every image to this size (pixels)")
    p.add_argument("--max-pixels", type=int, default=None, help="refuse images larger than this many pixels")


def add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def add_study_options(p: argparse.ArgumentParser, out: str) -> None:
    """Options every single-study command shares: images, crop, output, store, workers, seed, device."""
    p.add_argument("--images", "-i", action="append", default=None,
                   help="image set: 'bundled', 'bundled:NAME', a folder or a file; repeatable (default bundled)")
    p.add_argument("--crop", type=int, default=256, help="centre crop side in pixels (default 256; 0: whole images)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="refuse images larger than this many pixels (default 36 million)")
    p.add_argument("--out", "-o", default=out, help=f"output folder for the report and figures (default ./{out})")
    p.add_argument("--store", default=None, help="results store (default OUT/results.sqlite); reruns resume")
    p.add_argument("--workers", "-j", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_seed(p)
    add_device(p)


def study_kwargs(args: argparse.Namespace) -> dict:
    return {"store": args.store, "workers": args.workers, "device": args.device, "progress": not args.no_progress,
            "max_pixels": args.max_pixels}


def images_and_crop(args: argparse.Namespace) -> dict:
    return {"images": args.images or ["bundled"], "crop": args.crop or None, "seed": args.seed}


def add_config_options(p: argparse.ArgumentParser, cls: type) -> None:
    """One option per field of a config dataclass (:func:`robustnic.training.config.cli_options`: help
    text and default from the field); read them back with :func:`config_from_args`."""
    from robustnic.training.config import cli_options

    for option in cli_options(cls):
        kwargs: dict[str, Any] = {"type": option.parse, "choices": option.choices, "metavar": option.metavar,
                                  "help": option.help.replace("%", "%%")}
        if option.repeat:  # None: argparse's append would add to a list default
            kwargs |= {"action": "append", "default": None}
        else:
            kwargs["default"] = option.default
        p.add_argument(*option.flags, **kwargs)


def config_from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """The config dataclass ``cls`` from options added by :func:`add_config_options`."""
    from robustnic.training.config import cli_options

    values = {}
    for option in cli_options(cls):
        value = getattr(args, option.dest)
        values[option.name] = option.default if value is None and option.repeat else value
    return cls(**(values | overrides))


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str, ensure_ascii=False)
    sys.stdout.write("\n")


def out_dir(path: str) -> Path:
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    return p

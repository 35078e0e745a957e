"""Options shared by several commands, defined once (torch-free: ``robustnic CMD --help`` imports this)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustnic.codecs.options import DEFAULT_MODEL
from robustnic.utils.runtime import DEVICE_HELP

if TYPE_CHECKING:
    from robustnic.data.images import ImageSet


def add_model(p: argparse.ArgumentParser, multiple: bool = False) -> None:
    help_ = "codec spec (shipped name like hyperprior-small:q3, ARCH:qK[:pretrained], checkpoint path, jpeg:q75)"
    if multiple:
        p.add_argument("--model", "-m", action="append", default=None, help=help_ + "; repeatable")
    else:
        p.add_argument("--model", "-m", default=DEFAULT_MODEL, help=help_ + f" (default {DEFAULT_MODEL})")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help=f"{DEVICE_HELP}; default cpu")


def add_images(p: argparse.ArgumentParser, required: bool = False, skips_unreadable: bool = False) -> None:
    """``--images``, ``--crop`` and ``--max-pixels``; ``skips_unreadable``: the command reads them with
    :func:`load_images` (skip-and-warn for unreadable files, a warning for crops larger than an image),
    and its help says so."""
    folder = ("a folder of images (an unreadable file is skipped with a warning, and the exit status is 1 "
              "at the end)" if skips_unreadable else "a folder of images")
    p.add_argument("--images", "-i", default="bundled", required=required,
                   help=f"{folder}, one image file, or 'bundled' (held-out photos shipped by packages)")
    crop = "; an image smaller than that is kept whole along its short side, with a warning" if skips_unreadable else ""
    p.add_argument("--crop", type=int, default=None, help=f"centre-crop every image to this size (pixels){crop}")
    p.add_argument("--max-pixels", type=int, default=None, help="refuse images larger than this many pixels")


def warn(args: argparse.Namespace, message: str) -> None:
    """One ``robustnic CMD: warning: ...`` line on stderr."""
    print(f"{_prefix(args)}: warning: {message}", file=sys.stderr)


def _prefix(args: argparse.Namespace) -> str:
    command = getattr(args, "command", None)
    return f"robustnic {command}" if command else "robustnic"


def load_images(args: argparse.Namespace) -> ImageSet:
    """The images of ``--images`` / ``--crop`` / ``--max-pixels`` as an :class:`~robustnic.data.images.ImageSet`.

    * ``--images`` names a folder, one file, or ``bundled`` (the held-out photos). A file that cannot
      be read is skipped with a one-line warning naming it and recorded in ``unreadable`` (finish the
      run, then return :func:`unreadable_status`); a lone file that cannot be read, or a folder none
      of whose files can, raises :class:`~robustnic.errors.ImageError` (exit 2).
    * ``--crop`` centre-crops; an image smaller than the crop along a side is kept whole along that
      side, with a warning naming it and both sizes.
    """
    from robustnic.data.images import (DEFAULT_MAX_PIXELS, ImageSet, crop_warning, image_keys, image_paths,
                                       load_image, read_images)
    from robustnic.data.photos import bundled_photos, center_crop
    from robustnic.errors import ImageError

    spec, crop = args.images, args.crop or None
    if crop is not None and crop < 0:
        raise ImageError(f"--crop must be a positive number of pixels, got {crop}")
    if spec in ("bundled", "heldout"):
        loaded = ImageSet(images=bundled_photos())
    else:
        paths = image_paths(spec)
        max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels
        if Path(spec).is_file():  # one file: its error is the command's error
            loaded = ImageSet(images={paths[0].stem: load_image(paths[0], max_pixels=max_pixels)})
        else:
            loaded = read_images(image_keys(paths), max_pixels=max_pixels, warn=lambda m: warn(args, m))
            if not loaded.images:
                raise ImageError(f"{spec}: none of the {loaded.total} image files could be read")
    if crop is not None:
        for name, x in loaded.images.items():
            message = crop_warning(name, *x.shape[-2:], crop)
            if message:
                warn(args, message)
            loaded.images[name] = center_crop(x, crop)
    return loaded


def unreadable_status(args: argparse.Namespace, loaded: ImageSet) -> int:
    """Exit status at the end of a run over :func:`load_images`' images: 0 when every file was read,
    else 1 after one stderr line ``robustnic CMD: N of M images could not be read ...``."""
    summary = loaded.failure_summary()
    if summary is None:
        return 0
    print(f"{_prefix(args)}: {summary} (skipped, see the warnings above); the results cover the other "
          f"{len(loaded.images)}", file=sys.stderr)
    return 1


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

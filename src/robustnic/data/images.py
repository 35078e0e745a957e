"""Reading, converting, padding and saving images.

Every image inside robustnic is a float tensor of shape ``(1, 3, H, W)`` with values in [0, 1]
that are exact multiples of 1/255 when they come from a file. Conversions from other modes are
defined once here:

* grayscale (``L``, ``1``, ``I``, ``I;16``, ``F``) -> replicated to three channels; 16- and
  32-bit integer data is scaled to 8 bits by ``round(v * 255 / max_of_type)``;
* palette (``P``, ``PA``) -> its RGB(A) colours;
* anything with alpha (``RGBA``, ``LA``, ``PA``) -> composited over white;
* ``CMYK`` / ``YCbCr`` / ``LAB`` -> Pillow's RGB conversion;
* EXIF orientation is applied, so the pixels are the ones a viewer shows.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from robustnic.data.limits import DEFAULT_MAX_PIXELS
from robustnic.errors import ImageError
from robustnic.utils.io import atomic_path


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """Convert a Pillow image of any mode into an ``(H, W, 3)`` uint8 array (see module docstring)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) <= 65535 else float(2**31 - 1)
        arr = np.clip(np.round(arr * 255.0 / top), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img).astype(np.float64)
        if not np.isfinite(arr).all():
            raise ImageError("floating-point image contains NaN or Inf values")
        hi = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        arr = np.clip(np.round(arr * 255.0 / hi), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _check_size(width: int, height: int, max_pixels: int | None, min_side: int, source: str) -> None:
    if width < min_side or height < min_side:
        raise ImageError(f"{source}: image is {width}x{height}, smaller than the minimum side {min_side}")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"{source}: image is {width}x{height} = {width * height / 1e6:.1f} MP, over the limit of "
            f"{max_pixels / 1e6:.1f} MP (raise it with max_pixels / --max-pixels)"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _is_empty(source: object) -> bool:
    if isinstance(source, bytes):
        return not source
    try:
        return os.path.getsize(source) == 0
    except (OSError, TypeError):
        return False


def load_image(
    source: str | os.PathLike | bytes | Image.Image | np.ndarray,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    min_side: int = 1,
) -> torch.Tensor:
    """Read an image into a ``(1, 3, H, W)`` float32 tensor in [0, 1].

    ``source`` is a path, encoded bytes, a Pillow image or an ``(H, W[, C])`` uint8 array.
    Raises :class:`ImageError` (never a Pillow exception) for unreadable, empty, too large or
    too small images. The size limit is checked from the header, before pixels are decoded.
    """
    name = str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8:
            raise ImageError(f"array images must be uint8, got {source.dtype}")
        img = Image.fromarray(source)
    elif isinstance(source, Image.Image):
        img = source
    else:
        try:
            fileobj = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
        except OSError as exc:
            raise ImageError(f"{name}: cannot open ({exc.strerror or exc})") from None
        try:
            with fileobj, warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                warnings.simplefilter("ignore", UserWarning)  # Pillow's "Corrupt EXIF data" etc.
                img = Image.open(fileobj)
                _check_size(img.width, img.height, max_pixels, min_side, name)
                img.load()
                img = ImageOps.exif_transpose(img)
        except ImageError:
            raise
        except UnidentifiedImageError:
            what = "an empty file" if _is_empty(source) else "not an image file Pillow can read"
            raise ImageError(f"{name}: not a readable image ({what})") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(f"{name}: refused as a possible decompression bomb ({_first_line(exc)})") from None
        except (OSError, ValueError, SyntaxError, EOFError, MemoryError, struct.error, IndexError,
                KeyError, TypeError, ZeroDivisionError, OverflowError) as exc:
            # Pillow's plugins raise all of these on malformed headers and chunks.
            raise ImageError(
                f"{name}: image file is truncated or corrupt ({type(exc).__name__}: {_first_line(exc)})"
            ) from None
    _check_size(img.width, img.height, max_pixels, min_side, name)
    try:
        arr = _to_rgb_array(img)
    except ImageError as exc:
        raise ImageError(f"{name}: {exc}") from None
    except (OSError, ValueError, MemoryError) as exc:
        raise ImageError(f"{name}: cannot convert mode {img.mode} to RGB ({_first_line(exc)})") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def check_image_tensor(x: torch.Tensor, name: str = "image") -> torch.Tensor:
    """Validate an API input: a float ``(3, H, W)`` or ``(B, 3, H, W)`` tensor, finite, in [0, 1].

    Returns it as ``(B, 3, H, W)`` float32 (float16/bfloat16/float64 inputs are converted; a
    float32 input is returned as is, not copied).
    """
    if not isinstance(x, torch.Tensor):
        raise ImageError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise ImageError(f"{name} must be a float tensor in [0, 1], got dtype {x.dtype}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != 3:
        raise ImageError(f"{name} must have shape (B, 3, H, W) or (3, H, W), got {tuple(x.shape)}")
    if x.shape[-1] < 1 or x.shape[-2] < 1 or x.shape[0] < 1:
        raise ImageError(f"{name} is empty: shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ImageError(f"{name} contains NaN or Inf values")
    if x.min() < 0 or x.max() > 1:
        raise ImageError(f"{name} values must lie in [0, 1] (got {x.min().item():.3g}..{x.max().item():.3g})")
    return x if x.dtype == torch.float32 else x.float()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` or ``(3, H, W)`` float tensor -> ``(H, W, 3)`` uint8 array (rounded, clamped)."""
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError("to_uint8 takes a single image")
        x = x[0]
    return x.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """Round a float image to the nearest 8-bit value (what saving it as PNG does)."""
    return x.clamp(0, 1).mul(255).round().div(255)


def save_image(x: torch.Tensor, path: str | os.PathLike) -> None:
    """Save an image tensor as an 8-bit file (format from the suffix, PNG recommended), atomically."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unknown image suffix {path.suffix!r}")
    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(x)).save(tmp, format=fmt)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad right and bottom by edge replication so that H and W are multiples of ``multiple``.

    Returns the padded tensor and the original ``(H, W)`` for :func:`crop_to`.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop the top-left ``size = (H, W)`` area (undoes :func:`pad_to_multiple`)."""
    return x[..., : size[0], : size[1]]


def image_paths(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files directly inside ``folder`` (or ``[folder]`` if it is a file).

    Raises :class:`ImageError` when the folder does not exist or holds no image file.
    """
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise ImageError(f"{folder}: no such file or folder")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ImageError(f"{folder}: no image files found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return paths


def iter_images(paths: Iterable[Path], **kwargs) -> Iterable[tuple[Path, torch.Tensor]]:
    """Yield ``(path, image)`` for each path (see :func:`load_image` for kwargs)."""
    for p in paths:
        yield p, load_image(p, **kwargs)


def image_keys(paths: Sequence[Path]) -> dict[str, Path]:
    """Name every path by its stem, or by its full file name where two stems collide (``a.png`` and
    ``a.jpg`` stay two images)."""
    stems = [p.stem for p in paths]
    return {(p.stem if stems.count(p.stem) == 1 else p.name): p for p in paths}


def crop_warning(name: str, height: int, width: int, crop: int | tuple[int, int]) -> str | None:
    """The warning for a centre crop of ``crop`` (side, or ``(H, W)``) that does not fit an image of
    ``height x width``, naming the image and both sizes; None when the crop fits.

    A centre crop keeps the whole image along a side shorter than the crop, so the result is smaller
    than asked; the warning says what is kept."""
    ch, cw = (crop, crop) if isinstance(crop, int) else crop
    if height >= ch and width >= cw:
        return None
    return (f"{name} is {width}x{height}, smaller than --crop {cw}x{ch}; "
            f"using {min(width, cw)}x{min(height, ch)} (a side shorter than the crop is kept whole)")


@dataclass
class ImageSet:
    """Images read from files by name, with the files that could not be read and why."""

    #: name -> ``(1, 3, H, W)`` image, in the order of the files.
    images: dict[str, torch.Tensor]
    #: file -> the one-line reason it was skipped (an :class:`ImageError` message).
    unreadable: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """How many files were tried."""
        return len(self.images) + len(self.unreadable)

    def failure_summary(self) -> str | None:
        """``"N of M images could not be read"``, or None when every file was read."""
        if not self.unreadable:
            return None
        return f"{len(self.unreadable)} of {self.total} images could not be read"


def read_images(
    named_paths: Mapping[str, Path],
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    warn: Callable[[str], None] | None = None,
) -> ImageSet:
    """Read every file of ``named_paths`` (name -> path), skipping the unreadable ones.

    Each file :func:`load_image` refuses (unreadable, corrupt, over ``max_pixels``) is left out and
    recorded in :attr:`ImageSet.unreadable`; ``warn`` (default: :func:`warnings.warn`) gets one line
    per skipped file, naming it. The caller decides what a partial set means (the CLI finishes the
    others and exits non-zero)."""
    warn = warn or (lambda message: warnings.warn(message, stacklevel=3))
    out = ImageSet(images={})
    for name, path in named_paths.items():
        try:
            out.images[name] = load_image(path, max_pixels=max_pixels)
        except ImageError as exc:
            out.unreadable[str(path)] = str(exc)
            warn(f"skipped {exc}")
    return out

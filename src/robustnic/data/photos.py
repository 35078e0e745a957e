"""Photo sets from files that installed packages ship, so nothing is downloaded at run time.

* **held-out** (:data:`HELDOUT_PHOTOS`): natural photos from scikit-image, scikit-learn and
  matplotlib. Never trained on; used by ``robustnic eval``, the attacks, the demo and the tests.
* **training** (:func:`training_photo_paths`): Debian's ``mate-backgrounds`` nature photos
  (``apt-get install mate-backgrounds``) plus scikit-image photos that are not held out.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from robustnic.data.images import load_image
from robustnic.errors import ImageError

#: name -> (python package, path of the file inside that package)
HELDOUT_PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}

#: Extra training photos shipped by Python packages (disjoint from the held-out set).
_PACKAGE_TRAINING_PHOTOS: dict[str, tuple[str, str]] = {
    "rocket": ("skimage", "data/rocket.jpg"),
    "motorcycle_left": ("skimage", "data/motorcycle_left.png"),
    "motorcycle_right": ("skimage", "data/motorcycle_right.png"),
}

MATE_BACKGROUNDS = Path("/usr/share/backgrounds/mate")
_MATE_PHOTOS = ("nature/*.jpg", "abstract/Elephants.jpg")


def package_file(package: str, relative: str) -> Path:
    """Absolute path of a data file shipped inside an installed Python package."""
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise ImageError(f"photo set needs the Python package {package!r} ({exc})") from None
    path = Path(module.__file__).parent / relative
    if not path.is_file():
        raise ImageError(f"{package} does not ship {relative} (looked at {path})")
    return path


def heldout_photo_paths() -> dict[str, Path]:
    """Paths of the held-out photos, by name."""
    return {name: package_file(pkg, rel) for name, (pkg, rel) in HELDOUT_PHOTOS.items()}


def training_photo_paths(include_mate: bool = True) -> list[Path]:
    """Training photos: mate-backgrounds (when installed) plus the package photos not held out."""
    paths = [package_file(pkg, rel) for pkg, rel in _PACKAGE_TRAINING_PHOTOS.values()]
    if include_mate and MATE_BACKGROUNDS.is_dir():
        for pattern in _MATE_PHOTOS:
            paths.extend(sorted(MATE_BACKGROUNDS.glob(pattern)))
    held = {p.resolve() for p in heldout_photo_paths().values()}
    assert not held.intersection(p.resolve() for p in paths), "training and held-out sets overlap"
    return paths


def center_crop(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Centre crop to ``size`` (or the whole image along a side that is smaller)."""
    th, tw = (size, size) if isinstance(size, int) else size
    h, w = x.shape[-2:]
    top, left = max(0, (h - th) // 2), max(0, (w - tw) // 2)
    return x[..., top : top + th, left : left + tw]


def bundled_photos(
    names: list[str] | None = None, crop: int | tuple[int, int] | None = None
) -> dict[str, torch.Tensor]:
    """Load the held-out photos (optionally only ``names``, optionally centre-cropped)."""
    paths = heldout_photo_paths()
    names = list(paths) if names is None else names
    unknown = [n for n in names if n not in paths]
    if unknown:
        raise ImageError(f"unknown bundled photo(s) {unknown}; choose from {sorted(paths)}")
    out = {}
    for name in names:
        x = load_image(paths[name])
        out[name] = center_crop(x, crop) if crop is not None else x
    return out


def load_photo_set(spec: str, crop: int | None = None, max_pixels: int | None = None) -> dict[str, torch.Tensor]:
    """Images named by a CLI spec: ``bundled`` (held-out photos), a folder, or a single file.

    ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`) refuses larger images before decoding them.
    """
    from robustnic.data.images import DEFAULT_MAX_PIXELS, image_paths

    if spec in ("bundled", "heldout"):
        return bundled_photos(crop=crop)
    paths = image_paths(spec)
    stems = [p.stem for p in paths]
    out = {}
    for p in paths:
        x = load_image(p, max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
        key = p.stem if stems.count(p.stem) == 1 else p.name  # a.png and a.jpg stay two images
        out[key] = center_crop(x, crop) if crop is not None else x
    return out

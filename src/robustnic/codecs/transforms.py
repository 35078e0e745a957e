"""The 8 geometric transforms of the square's symmetry group (flips and 90-degree rotations).

Index ``t`` in 0..7 fits the 3-bit field of the bitstream header. Bit 2 = transpose (rotation
family), bit 1 = horizontal flip, bit 0 = vertical flip, applied as transpose -> hflip -> vflip;
:func:`inverse_transform` undoes exactly that. Transposes swap height and width.
"""

from __future__ import annotations

import torch

NUM_TRANSFORMS = 8
TRANSFORM_NAMES = ("identity", "vflip", "hflip", "rot180", "transpose", "rot90", "rot270", "antitranspose")


def _check(t: int) -> None:
    if not 0 <= int(t) < NUM_TRANSFORMS:
        raise ValueError(f"transform index must be in 0..7, got {t}")


def apply_transform(x: torch.Tensor, t: int) -> torch.Tensor:
    """Apply transform ``t`` to the last two dimensions of ``x``."""
    _check(t)
    if t & 4:
        x = x.transpose(-2, -1)
    if t & 2:
        x = x.flip(-1)
    if t & 1:
        x = x.flip(-2)
    return x


def inverse_transform(x: torch.Tensor, t: int) -> torch.Tensor:
    """Undo :func:`apply_transform` with the same index."""
    _check(t)
    if t & 1:
        x = x.flip(-2)
    if t & 2:
        x = x.flip(-1)
    if t & 4:
        x = x.transpose(-2, -1)
    return x


def transformed_size(size: tuple[int, int], t: int) -> tuple[int, int]:
    """``(H, W)`` after transform ``t``."""
    _check(t)
    return (size[1], size[0]) if t & 4 else (size[0], size[1])


def all_transforms(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 transformed copies of ``x`` (shapes differ when H != W)."""
    return [apply_transform(x, t) for t in range(NUM_TRANSFORMS)]

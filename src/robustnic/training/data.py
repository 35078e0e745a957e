"""Random training patches, with flips, from any set of photos held in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from robustnic.data.images import DEFAULT_MAX_PIXELS, image_paths, load_image
from robustnic.errors import ImageError


def _resized(x: torch.Tensor, short_side: int) -> torch.Tensor:
    """Downscale (Lanczos, never up) so the shorter side is ``short_side``; returns uint8 (3, H, W)."""
    arr = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    img = Image.fromarray(arr)
    scale = short_side / min(img.size)
    if scale < 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


class PatchSampler:
    """Samples ``(B, 3, P, P)`` patches from photos kept in memory as uint8.

    Each photo is kept at several scales (shorter side in ``scales``; large photos downscaled with
    Lanczos, which also removes their JPEG artefacts). Sampling uses its own seeded generator, whose
    state is saved in checkpoints so a resumed run continues the same sequence.
    """

    def __init__(
        self,
        sources: list[str | Path],
        patch_size: int,
        scales: tuple[int, ...] = (512, 768),
        seed: int = 0,
        max_pixels: int | None = None,
    ):
        paths: list[Path] = []
        for s in sources:
            paths.extend(image_paths(s))
        self.images = []
        for p in paths:
            x = load_image(p, max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
            for side in scales:
                img = _resized(x, side)
                if min(img.shape[-2:]) >= patch_size:
                    self.images.append(img)
        if not self.images:
            raise ImageError(f"no training image is at least {patch_size} pixels on each side")
        self.patch_size = patch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, batch_size: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
        """A batch of random patches in [0, 1], randomly flipped horizontally and vertically.

        With ``world_size`` K > 1 (data-parallel training) the positions of a global batch of
        ``K · batch_size`` patches are drawn and only slice ``rank`` is cut out: every rank advances
        the generator alike, and the K slices together are the batch one process would draw.
        """
        g, p = self.generator, self.patch_size
        out = torch.empty(batch_size, 3, p, p)
        first = rank * batch_size
        for i in range(batch_size * world_size):
            img = self.images[int(torch.randint(len(self.images), (1,), generator=g))]
            top = int(torch.randint(img.shape[1] - p + 1, (1,), generator=g))
            left = int(torch.randint(img.shape[2] - p + 1, (1,), generator=g))
            flips = torch.randint(2, (2,), generator=g)
            if not first <= i < first + batch_size:
                continue
            patch = img[:, top : top + p, left : left + p]
            if flips[0]:
                patch = patch.flip(-1)
            if flips[1]:
                patch = patch.flip(-2)
            out[i - first] = patch.float() / 255.0
        return out

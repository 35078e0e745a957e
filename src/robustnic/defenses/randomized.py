"""Randomised geometric purifiers: random crop, random rotation, random flip.

In classification these change the image's geometry and the classifier does not mind. A codec's
reconstruction is compared with the original pixel for pixel, and a plain decoder does not know the
random parameters, so a geometric change left in place would cost the whole clean PSNR (a 5° turn
moves the corners of a 256² image by about 11 pixels). So:

* ``crop:F`` - a random window of side fraction ``s ~ U[F, 1]`` (both sides, random position) is
  resized up to the full image (bilinear), then back down to the window (bilinear, antialiased) and
  put back in place: what is left of the crop is a random resampling of the window (a random scale
  and sub-pixel phase), the geometry unchanged.
* ``rotate:A`` - turn by ``θ ~ U[-A, A]`` degrees about the centre, then by ``-θ`` (bilinear, reflected
  borders): a random resampling whose sub-pixel offsets grow from the centre outwards; near the
  corners, which the first turn moves out of the frame, reflected content comes back.
* ``flip`` / ``flip:4`` - a random orientation (``flip``: identity or horizontal flip; ``flip:4``:
  also the vertical flip and the half turn), coded in that orientation and written into the
  container header's transform field, so every decoder (the plain model's included) undoes it
  exactly; 3 side bits, as the self-ensemble's index. (The self-ensemble chooses the orientation
  by cost; this draws it at random.)

All three are randomised purifiers (:class:`~robustnic.defenses.purification.RandomizedPurifier`):
seeded draws, one per image, and attacked with an expectation over transforms (``"eot"``) besides
one draw (``"bpda"``); crop and rotate are differentiable (interpolation), flip exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from robustnic.codecs.transforms import apply_transform
from robustnic.defenses.purification import Purifier, RandomizedPurifier, register_purifier
from robustnic.errors import RobustnicError


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


@register_purifier("crop")
class RandomCropPurifier(RandomizedPurifier):
    """Random crop of side fraction ``s ~ U[fraction, 1]``, resized up and back into place (module doc)."""

    def __init__(self, fraction: float = 0.9, seed: int = 0):
        if not 0 < fraction < 1:
            raise RobustnicError(f"crop fraction must be in (0, 1), got {fraction}")
        self.fraction = float(fraction)
        super().__init__(seed)

    @property
    def value(self) -> float:
        return self.fraction

    def transform(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        h, w = x.shape[-2:]
        out = []
        for xi in x.split(1):
            s = _uniform(generator, self.fraction, 1.0)
            ch, cw = max(1, round(s * h)), max(1, round(s * w))
            top = int(torch.randint(0, h - ch + 1, (), generator=generator))
            left = int(torch.randint(0, w - cw + 1, (), generator=generator))
            window = xi[..., top : top + ch, left : left + cw]
            up = F.interpolate(window, size=(h, w), mode="bilinear", align_corners=False)
            down = F.interpolate(up, size=(ch, cw), mode="bilinear", antialias=True, align_corners=False)
            # put the resampled window back (padding with the untouched border keeps the gradient)
            yi = xi.clone()
            yi[..., top : top + ch, left : left + cw] = down
            out.append(yi)
        return torch.cat(out)


def rotation_grid(angles: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Sampling grids (``F.grid_sample``) that turn ``(B, C, H, W)`` images by ``angles`` (radians,
    ``(B,)``, counter-clockwise on screen) about their centre, in pixel units (non-square images
    are not sheared)."""
    h, w = size
    c, s = torch.cos(angles), torch.sin(angles)
    # output pixel (u, v) samples the input at R(-θ)(u, v); grid_sample's normalised x spans W, y spans H
    theta = torch.stack([torch.stack([c, s * h / w, torch.zeros_like(c)], -1),
                         torch.stack([-s * w / h, c, torch.zeros_like(c)], -1)], -2)
    return F.affine_grid(theta, [len(angles), 1, h, w], align_corners=False)


@register_purifier("rotate")
class RandomRotatePurifier(RandomizedPurifier):
    """Turn by ``θ ~ U[-degrees, degrees]`` and back, bilinear, reflected borders (module doc)."""

    def __init__(self, degrees: float = 5.0, seed: int = 0):
        if not 0 < degrees <= 45:
            raise RobustnicError(f"rotation range must be in (0, 45] degrees, got {degrees}")
        self.degrees = float(degrees)
        super().__init__(seed)

    @property
    def value(self) -> float:
        return self.degrees

    def angles(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` angles in radians, uniform in ``±degrees``."""
        return (torch.rand(n, generator=generator) * 2 - 1) * math.radians(self.degrees)

    def transform(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        angles = self.angles(x.shape[0], generator).to(device=x.device, dtype=x.dtype)
        size = tuple(x.shape[-2:])
        turned = F.grid_sample(x, rotation_grid(angles, size), mode="bilinear", padding_mode="reflection",
                               align_corners=False)
        return F.grid_sample(turned, rotation_grid(-angles, size), mode="bilinear", padding_mode="reflection",
                             align_corners=False)


#: The orientations ``flip:N`` draws from (transform indices of :mod:`robustnic.codecs.transforms`).
FLIP_ORIENTATIONS = {2: (0, 2), 4: (0, 1, 2, 3)}


@register_purifier("flip")
class RandomFlipPurifier(RandomizedPurifier):
    """A random orientation per image among ``orientations`` (2: identity or horizontal flip; 4: also
    vertical flip and half turn), signalled in the header and undone by every decoder (module doc).

    Called alone it returns the image in the drawn orientation (what is coded).
    """

    orientation = True

    def __init__(self, orientations: int = 2, seed: int = 0):
        if orientations not in FLIP_ORIENTATIONS:
            raise RobustnicError(f"flip draws from {' or '.join(map(str, FLIP_ORIENTATIONS))} orientations, "
                                 f"got {orientations}")
        self.choices = FLIP_ORIENTATIONS[int(orientations)]
        super().__init__(seed)

    @classmethod
    def parse(cls, value: str) -> Purifier:
        """empty or ``2``: horizontal flip or not; ``4``: any flip or half turn."""
        return cls(cls.read_number(value, integer=True)) if value else cls()

    @property
    def value(self) -> float:
        return len(self.choices)

    def orientations(self, n: int, generator: torch.Generator | None = None) -> list[int]:
        picks = torch.randint(0, len(self.choices), (n,), generator=self.generator if generator is None else generator)
        return [self.choices[int(i)] for i in picks]

    def transform(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        chosen = self.orientations(x.shape[0], generator)
        return torch.cat([apply_transform(xi, t) for xi, t in zip(x.split(1), chosen)])


__all__ = ["FLIP_ORIENTATIONS", "RandomCropPurifier", "RandomFlipPurifier", "RandomRotatePurifier", "rotation_grid"]

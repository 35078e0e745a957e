"""Recompression: the real-life case study of Chen & Ma (TCSVT 2023, Sec. "real-life case").

An image that is re-shared is encoded and decoded again and again. Each generation here goes through
real bytes (``codec.roundtrip``) and an 8-bit image (what saving a PNG does), and the quality against
the *original* and the rate are recorded at every generation, not only the last.

Classical codecs are compared at a matched first-generation rate: :func:`match_quality` scans the
JPEG/WebP quality range and keeps the quality whose first-generation bpp is closest to a target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from tqdm.auto import tqdm

from robustnic.codecs.base import Codec
from robustnic.codecs.classical import ClassicalCodec
from robustnic.data.images import check_image_tensor, quantize_8bit
from robustnic.metrics import psnr
from robustnic.utils.tables import finite_mean

#: Generations at which the decoded image is kept by default (those past ``generations`` are dropped).
DEFAULT_SNAPSHOTS = (1, 2, 5, 10, 20, 50)


@dataclass
class RecompressionResult:
    """Per-generation curves of one image through one codec (index 0 = generation 1)."""

    codec: str
    psnr: list[float]
    bpp: list[float]
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def generations(self) -> int:
        return len(self.psnr)

    def summary(self) -> dict[str, float]:
        """First/last PSNR, the total drop and the worst generation."""
        worst = min(range(len(self.psnr)), key=lambda i: self.psnr[i])
        return {
            "psnr-first": self.psnr[0], "psnr-last": self.psnr[-1], "psnr-drop": self.psnr[0] - self.psnr[-1],
            "psnr-min": self.psnr[worst], "generation-min": worst + 1,
            "bpp-first": self.bpp[0], "bpp-last": self.bpp[-1],
        }


def recompress(
    codec: Codec,
    x: torch.Tensor,
    generations: int = 50,
    snapshots: tuple[int, ...] = DEFAULT_SNAPSHOTS,
    progress: bool = False,
) -> RecompressionResult:
    """Encode/decode ``x`` (``(1, 3, H, W)``) for ``generations`` generations through real bytes.

    Generation g decodes the bytes of generation g-1's 8-bit image. PSNR is against ``x``; bpp is
    the codec's own (:attr:`Coded.bpp`). Images at the generations in ``snapshots`` are kept.
    """
    x = check_image_tensor(x)
    if generations < 1:
        raise ValueError(f"generations must be at least 1, got {generations}")
    original = quantize_8bit(x)
    current = original
    psnrs, bpps, kept = [], [], {}
    for g in tqdm(range(1, generations + 1), desc=f"recompress {codec.name}", disable=not progress, leave=False):
        coded = codec.roundtrip(current)
        current = quantize_8bit(coded.x_hat.to(original.device))
        psnrs.append(psnr(original, current))
        bpps.append(coded.bpp)
        if g in snapshots:
            kept[g] = current.cpu()
    return RecompressionResult(codec.name, psnrs, bpps, kept)


def first_generation_bpp(codec: Codec, x: torch.Tensor) -> float:
    """bpp of one real encoding of the 8-bit ``x``."""
    return codec.roundtrip(quantize_8bit(x)).bpp


def match_quality(
    fmt: str, x: torch.Tensor, target_bpp: float, qualities: range = range(1, 101)
) -> tuple[ClassicalCodec, float]:
    """The JPEG/WebP codec whose first-generation bpp on ``x`` is closest to ``target_bpp``.

    Scans every quality in ``qualities`` (bpp is not strictly monotone in quality, so no bisection);
    ties go to the higher quality. Returns the codec and its bpp.
    """
    x8 = quantize_8bit(check_image_tensor(x))
    best: tuple[float, int, float] | None = None
    for q in qualities:
        bpp = ClassicalCodec(fmt, q).roundtrip(x8).bpp
        score = abs(bpp - target_bpp)
        if best is None or score <= best[0]:
            best = (score, q, bpp)
    assert best is not None, "empty quality range"
    return ClassicalCodec(fmt, best[1]), best[2]


def _mean(values) -> float:
    return finite_mean(values)  # the rule of every robustnic table (None, NaN, inf left out)


def recompression_series(rows: Iterable) -> list[dict[str, Any]]:
    """Mean curves of ``recompression`` rows, one per (codec, defense, match, generations, crop) setting.

    Each entry: ``label``, ``setting`` (config keys), ``psnr`` and ``bpp`` per generation (means over
    images), ``qualities`` (matched JPEG/WebP qualities), ``images`` (names) and ``rows`` (the rows).
    """
    groups: dict[tuple, list] = {}
    for r in rows:
        if r.kind != "recompression":
            continue
        c = r.config
        groups.setdefault((c["model"], c.get("defense"), c.get("match"), c["generations"], c.get("crop")), []).append(r)
    out = []
    for (model, defense, match, _, crop), members in groups.items():
        label = str(model).replace(":match", "")
        if defense not in (None, "none"):
            label += f" +{defense}"
        if match:
            label += f" (bpp-matched to {match})"
        n = min(len(m.result["psnr"]) for m in members)
        psnr_mean = [_mean(m.result["psnr"][g] for m in members) for g in range(n)]
        out.append({
            "label": label,
            "setting": {"model": model, "defense": defense, "match": match, "crop": crop},
            "psnr": psnr_mean,
            "bpp": [_mean(m.result["bpp"][g] for m in members) for g in range(n)],
            "qualities": sorted({m.result["matched-quality"] for m in members if "matched-quality" in m.result}),
            "images": [m.config["image"]["name"] for m in members],
            "rows": members,
        })
    return out

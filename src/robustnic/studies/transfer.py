"""Transferability of adversarial perturbations (Chen & Ma, "other studies").

* **cross-image** - the perturbation ``δ_A = x'_A − x_A`` crafted on image A is added to image B
  (same size), rounded to 8 bits and decoded: does a perturbation carry over to other content?
* **cross-model** - an adversarial image crafted on model A is decoded by model B (any codec,
  JPEG included): does it carry over to other weights and architectures?

Crafting goes through the one attack path, :func:`robustnic.attacks.attack_and_verify`, given an
:class:`~robustnic.attacks.AttackSettings` (``adaptive`` means what it means there: the worst over
the defense's attack modes). Every cell is a real round trip scored by
:func:`robustnic.attacks.verify_attack`, so the matrices use the same numbers (``delta-psnr``,
reconstruction PSNR, bpp increase) as the attack rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Union

import torch
from tqdm.auto import tqdm

from robustnic.codecs.base import Codec
from robustnic.data.images import quantize_8bit
from robustnic.errors import RobustnicError

if TYPE_CHECKING:
    from robustnic.attacks.pipeline import AttackSettings

#: What each matrix cell keeps from :func:`~robustnic.attacks.verify_attack`.
TRANSFER_METRICS = ("psnr-in", "psnr-clean", "psnr-out", "psnr-drop", "delta-psnr", "bpp-clean", "bpp-adv",
                    "bpp-increase")

#: An attack factory: codec -> callable attack (``x -> x_adv``), for attacks outside robustnic's settings.
AttackFactory = Callable[[Codec], Callable[[torch.Tensor], torch.Tensor]]
#: What crafts the adversarial images: attack settings (the usual case) or a factory.
AttackSpec = Union["AttackSettings", AttackFactory]


@dataclass
class TransferMatrix:
    """``values[metric][i][j]``: the metric when what was crafted on ``rows[i]`` meets ``cols[j]``."""

    rows: list[str]
    cols: list[str]
    values: dict[str, list[list[float]]] = field(default_factory=dict)
    row_label: str = "crafted on"
    col_label: str = "applied to"

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "cols": self.cols, "values": self.values,
                "row_label": self.row_label, "col_label": self.col_label}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TransferMatrix":
        return cls(d["rows"], d["cols"], d["values"], d.get("row_label", "crafted on"), d.get("col_label", "applied to"))

    def metric(self, name: str) -> list[list[float]]:
        if name not in self.values:
            raise KeyError(f"no metric {name!r} in this matrix; it has {sorted(self.values)}")
        return self.values[name]


def _cell(codec: Codec, x: torch.Tensor, x_adv: torch.Tensor) -> dict[str, float]:
    from robustnic.attacks import verify_attack

    res = verify_attack(codec, x, x_adv)[0]
    return {k: float(res[k]) for k in TRANSFER_METRICS}


def _crafter(attack: AttackSpec, adaptive: bool = False) -> Callable[[Codec, torch.Tensor], torch.Tensor]:
    """``(codec, x) -> x_adv``: :func:`~robustnic.attacks.attack_and_verify` for settings, else the factory's attack."""
    from robustnic.attacks.pipeline import AttackSettings, attack_and_verify

    if isinstance(attack, AttackSettings):
        return lambda codec, x: attack_and_verify(codec, x, attack, adaptive=adaptive).x_adv.to(x.device)
    if adaptive:
        raise RobustnicError("adaptive transfer needs AttackSettings (the worst over the defense's attack modes)")
    return lambda codec, x: attack(codec)(x)


def _fill(matrix: TransferMatrix, i: int, j: int, cell: dict[str, float]) -> None:
    n, m = len(matrix.rows), len(matrix.cols)
    for k, v in cell.items():
        grid = matrix.values.setdefault(k, [[math.nan] * m for _ in range(n)])
        grid[i][j] = v


def transfer_across_images(
    codec: Codec,
    attack: AttackSpec,
    images: dict[str, torch.Tensor],
    attack_codec: Codec | None = None,
    progress: bool = False,
    adaptive: bool = False,
) -> TransferMatrix:
    """Craft a perturbation on each image against ``attack_codec or codec`` (with settings: through
    :func:`~robustnic.attacks.attack_and_verify`, ``adaptive`` as there), add it to every image, and
    score the result through ``codec``. All images must have the same size."""
    shapes = {tuple(x.shape) for x in images.values()}
    if len(shapes) != 1:
        raise RobustnicError(f"cross-image transfer needs images of one size (use a crop), got {sorted(shapes)}")
    names = list(images)
    craft = _crafter(attack, adaptive)
    deltas = {}
    for name in tqdm(names, desc="craft", disable=not progress, leave=False):
        x = images[name].to(codec.device)
        deltas[name] = craft(attack_codec or codec, x) - x
    matrix = TransferMatrix(names, names, row_label="perturbation crafted on", col_label="added to")
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            xb = images[b].to(codec.device)
            _fill(matrix, i, j, _cell(codec, xb, quantize_8bit(xb + deltas[a])))
    return matrix


def transfer_across_models(
    sources: dict[str, Codec],
    targets: dict[str, Codec],
    attack: AttackSpec,
    x: torch.Tensor,
    progress: bool = False,
) -> TransferMatrix:
    """Craft ``x'`` on each source codec (white-box; settings go through
    :func:`~robustnic.attacks.attack_and_verify`) and decode it with every target codec."""
    bad = [n for n, c in sources.items() if not c.differentiable]
    if bad:
        raise RobustnicError(f"source models must be differentiable (learned codecs), not {bad}")
    matrix = TransferMatrix(list(sources), list(targets), row_label="crafted on", col_label="decoded by")
    craft = _crafter(attack)
    for i, (_, src) in enumerate(tqdm(sources.items(), desc="craft", disable=not progress, leave=False)):
        x_adv = craft(src, x.to(src.device)).cpu()
        for j, tgt in enumerate(targets.values()):
            _fill(matrix, i, j, _cell(tgt, x.to(tgt.device), x_adv.to(tgt.device)))
    return matrix


def mean_matrix(matrices: list[TransferMatrix]) -> TransferMatrix:
    """Cell-wise mean (finite values only) of matrices with the same rows, columns and metrics."""
    first = matrices[0]
    if any(m.rows != first.rows or m.cols != first.cols for m in matrices):
        raise RobustnicError("transfer matrices to average must have the same rows and columns")
    values = {}
    for metric in first.values:
        values[metric] = []
        for i in range(len(first.rows)):
            row = []
            for j in range(len(first.cols)):
                got = [m.values[metric][i][j] for m in matrices if math.isfinite(m.values[metric][i][j])]
                row.append(sum(got) / len(got) if got else math.nan)
            values[metric].append(row)
    return TransferMatrix(first.rows, first.cols, values, first.row_label, first.col_label)

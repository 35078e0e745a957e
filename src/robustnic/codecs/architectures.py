"""The table of CompressAI image architectures robustnic knows, and how to build or recognise them.

Knowledge lives in tables (as in ``compressai.zoo.image``): adding an architecture is adding rows.
This module imports neither torch nor compressai at import time (the CLI builds its options from
it): each row names its model class by import path, loaded on first use.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from robustnic.errors import CodecLoadError

if TYPE_CHECKING:
    import torch
    from compressai.models.base import CompressionModel


@functools.cache
def _load_class(path: str) -> type:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Architecture:
    """One CompressAI image architecture.

    ``code`` is its stable id in the bitstream header; ``paper`` names what it implements;
    ``class_path`` is ``"module:Class"`` of the model (imported when first needed).
    """

    name: str
    class_path: str
    code: int
    paper: str
    takes_m: bool = True  # cheng2020 models take only N

    @property
    def cls(self) -> type[CompressionModel]:
        """The CompressAI model class (imports compressai)."""
        return _load_class(self.class_path)

    def build(self, N: int, M: int | None = None) -> CompressionModel:
        """A randomly initialised model with channel widths N (and M)."""
        if self.takes_m:
            return self.cls(N, M if M is not None else N)
        return self.cls(N)

    def widths(self, quality: int) -> tuple[int, int]:
        """CompressAI's widths (N, M) for a pretrained quality level."""
        from compressai.zoo.image import cfgs as compressai_widths  # architecture -> quality -> (N, M)

        table = compressai_widths[self.name]
        if quality not in table:
            raise CodecLoadError(f"{self.name} has no quality {quality}; choose from {sorted(table)}")
        w = table[quality]
        return (w[0], w[1] if len(w) > 1 else w[0])


_MODELS = "compressai.models:"

ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in [
        Architecture("bmshj2018-factorized", _MODELS + "FactorizedPrior", 1, "Balle et al. 2018, factorized prior"),
        Architecture("bmshj2018-hyperprior", _MODELS + "ScaleHyperprior", 2, "Balle et al. 2018, scale hyperprior"),
        Architecture("mbt2018-mean", _MODELS + "MeanScaleHyperprior", 3, "Minnen et al. 2018, mean-scale hyperprior"),
        Architecture("mbt2018", _MODELS + "JointAutoregressiveHierarchicalPriors", 4,
                     "Minnen et al. 2018, joint autoregressive"),
        Architecture("cheng2020-anchor", _MODELS + "Cheng2020Anchor", 5, "Cheng et al. 2020, anchor", takes_m=False),
        Architecture("cheng2020-attn", _MODELS + "Cheng2020Attention", 6, "Cheng et al. 2020, with attention",
                     takes_m=False),
    ]
}

#: CompressAI's lambda table for MSE and MS-SSIM training, by quality 1..8.
LAMBDAS: dict[str, dict[int, float]] = {
    "mse": {1: 0.0018, 2: 0.0035, 3: 0.0067, 4: 0.0130, 5: 0.0250, 6: 0.0483, 7: 0.0932, 8: 0.1800},
    "ms-ssim": {1: 2.40, 2: 4.58, 3: 8.73, 4: 16.64, 5: 31.73, 6: 60.50, 7: 115.37, 8: 220.00},
}

METRICS = ("mse", "ms-ssim")


def get_architecture(name: str) -> Architecture:
    """Look up an architecture by name (``bmshj2018-hyperprior`` ...)."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise CodecLoadError(f"unknown architecture {name!r}; choose from {', '.join(ARCHITECTURES)}") from None


def architecture_of(net: torch.nn.Module) -> Architecture | None:
    """The table row whose class ``net`` is an instance of (most derived first), or None."""
    for arch in sorted(ARCHITECTURES.values(), key=lambda a: -len(a.cls.__mro__)):
        if type(net) is arch.cls:
            return arch
    return None


def infer_architecture(state_dict: dict[str, torch.Tensor]) -> str:
    """Recognise the architecture of a CompressAI state dict from its keys and shapes."""
    keys = set(state_dict)
    if "g_a.0.conv1.weight" in keys:  # residual blocks with stride: Cheng 2020
        return "cheng2020-attn" if any(".conv_a." in k for k in keys) else "cheng2020-anchor"
    if "context_prediction.weight" in keys:
        return "mbt2018"
    if not any(k.startswith("h_a.") for k in keys):
        return "bmshj2018-factorized"
    M = state_dict["g_a.6.weight"].shape[0]
    hs_out = state_dict["h_s.4.bias"].shape[0]  # scales (M) or means and scales (2M)
    return "mbt2018-mean" if hs_out == 2 * M else "bmshj2018-hyperprior"


def widths_of(arch: str, state_dict: dict[str, torch.Tensor]) -> tuple[int, int]:
    """Channel widths (N, M) stored in a state dict of architecture ``arch``."""
    if get_architecture(arch).takes_m:
        return state_dict["g_a.0.weight"].shape[0], state_dict["g_a.6.weight"].shape[0]
    n = state_dict["g_a.0.conv1.weight"].shape[0]
    return n, n

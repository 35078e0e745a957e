"""Devices and seeds.

:func:`resolve_device` is the one place a device name becomes a :class:`torch.device`: every CLI
command and every public entry point that takes ``device`` (``load_codec``, ``LearnedCodec``,
``Codec.to``, ``Trainer``, ``finetune``, ``run_grid``) goes through it, so ``auto`` means the same
everywhere and a device that is not there is one clear :class:`~robustnic.errors.RobustnicError`.

This module imports torch only inside its functions: the CLI's option parsing uses
:data:`DEVICE_HELP` without paying for torch.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING, Any

from robustnic.errors import RobustnicError

if TYPE_CHECKING:
    import torch

#: What ``--device`` accepts (for help texts and error messages).
DEVICE_HELP = "cpu, cuda, cuda:N, mps or auto (auto: cuda if available, else mps, else cpu)"

_DEVICE_RE = re.compile(r"^(cpu|cuda|mps)(?::(\d+))?$")


def _mps_available(torch: Any) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(device: "str | torch.device | None" = None) -> "torch.device":
    """Turn a device name into a usable :class:`torch.device`, or raise one clear error.

    Accepts ``None`` or ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` (where this torch has it),
    ``"auto"`` (cuda if available, else mps, else cpu), or a :class:`torch.device` of those types.
    Raises :class:`~robustnic.errors.RobustnicError` for an unknown name or a device this machine
    does not have (no CUDA, CUDA index out of range, no MPS).
    """
    import torch

    if device is None:
        return torch.device("cpu")
    if isinstance(device, torch.device):
        name = str(device)
    elif isinstance(device, str):
        name = device.strip().lower()
    else:
        raise RobustnicError(f"device must be a string or torch.device, got {type(device).__name__}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available(torch) else torch.device("cpu")
    match = _DEVICE_RE.match(name)
    if match is None:
        raise RobustnicError(f"unknown device {device!r}: use {DEVICE_HELP}")
    kind, index = match.group(1), match.group(2)
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RobustnicError(f"device {name!r} requested but CUDA is not available on this machine "
                                 f"(torch {torch.__version__}); use cpu or auto")
        count = torch.cuda.device_count()
        if index is not None and int(index) >= count:
            raise RobustnicError(f"device {name!r} requested but this machine has {count} CUDA device(s) "
                                 f"(cuda:0..cuda:{count - 1})")
        return torch.device(name)
    if not _mps_available(torch):
        raise RobustnicError(f"device {name!r} requested but MPS is not available (torch {torch.__version__}); "
                             "use cpu or auto")
    if index is not None and int(index) != 0:
        raise RobustnicError(f"device {name!r} requested but MPS has only device mps:0")
    return torch.device("mps")


def seed_everything(seed: int) -> "torch.Generator":
    """Seed Python, NumPy and torch; return a CPU generator seeded the same way."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)

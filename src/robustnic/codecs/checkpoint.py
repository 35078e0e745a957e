"""Safe checkpoint reading and atomic writing, in CompressAI's format.

Only plain tensors and containers are ever unpickled (``torch.load(..., weights_only=True)``):
a checkpoint that carries pickled code or objects is refused, never executed.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from compressai.zoo.pretrained import load_pretrained

from robustnic.errors import CheckpointError
from robustnic.utils.io import atomic_write_bytes

#: Entropy-coder buffers whose shapes depend on ``update()``, not on the architecture.
CODER_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")
_STATE_DICT_KEYS = ("state_dict", "network", "model_state_dict", "model")


def read_checkpoint_file(path: str | os.PathLike) -> Any:
    """Load a checkpoint object safely; refuse pickled code with a clear :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the checkpoint file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the error says it all
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused: the file holds pickled Python objects or code, not only tensors; nothing "
            f"in it was executed ({_unpickling_reason(exc)})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, AttributeError, TypeError, KeyError,
            IndexError, struct.error, UnicodeDecodeError, MemoryError, OverflowError) as exc:
        text = str(exc).strip()
        first = text.splitlines()[0][:200] if text else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({first})") from None


def _unpickling_reason(exc: BaseException) -> str:
    """The useful line of torch's weights_only refusal (not its advice to turn the check off)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if "GLOBAL" in line or "Unsupported" in line or "unsupported" in line]
    reason = (useful or [line for line in lines if "weights_only" not in line] or ["unsupported pickle content"])[0]
    return reason[:200]


def extract_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the model state dict in a checkpoint object (plain, or under ``state_dict`` etc.).

    Keys from ``DataParallel`` (``module.``) and old CompressAI names are renamed as CompressAI does.
    """
    if isinstance(obj, dict):
        for key in _STATE_DICT_KEYS:
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{source}: no state dict of tensors found (expected a CompressAI checkpoint)")
    if not all(isinstance(k, str) for k in obj):
        raise CheckpointError(f"{source}: state dict keys must be strings")
    state_dict = {k: v.float() if v.is_floating_point() else v for k, v in load_pretrained(dict(obj)).items()}
    bad = sorted(k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise CheckpointError(f"{source}: {len(bad)} tensors hold NaN or Inf values: {', '.join(bad[:3])}{more}")
    check_coder_tables(state_dict, source)
    return state_dict


#: CompressAI's entropy coder works with 16-bit probabilities: every CDF ends at 2**16.
CDF_PRECISION = 16


def check_coder_tables(state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Refuse entropy-coder tables the native rANS coder would read out of bounds or divide by zero on.

    For each entropy model with tables (``_quantized_cdf``, ``_cdf_length``, ``_offset``): one length
    and offset per CDF row, every length in 2..row width, every used CDF starting at 0, strictly
    increasing and ending at ``2**16``; and exactly one CDF row per scale of ``scale_table`` (a
    Gaussian conditional) or per channel of ``quantiles`` (an entropy bottleneck), since the coder
    indexes rows by them. Empty tables (``update()`` not run yet) are accepted.
    """
    suffix = "_quantized_cdf"
    for key in [k for k in state_dict if k.endswith(suffix)]:
        prefix, cdf = key[: -len(suffix)], state_dict[key]
        if cdf.numel() == 0:
            continue
        where = f"{source}: entropy coder table {prefix}{suffix}"
        lengths, offsets = state_dict.get(prefix + "_cdf_length"), state_dict.get(prefix + "_offset")
        if cdf.dim() != 2 or cdf.is_floating_point() or lengths is None or offsets is None:
            raise CheckpointError(f"{where} is malformed (expected an integer 2-D table with lengths and offsets)")
        rows, width = cdf.shape
        if lengths.reshape(-1).shape[0] != rows or offsets.reshape(-1).shape[0] != rows:
            raise CheckpointError(f"{where}: {rows} rows but {lengths.numel()} lengths and {offsets.numel()} offsets")
        lengths = lengths.reshape(-1).long()
        if lengths.is_floating_point() or (lengths < 2).any() or (lengths > width).any():
            raise CheckpointError(f"{where}: CDF lengths must lie in 2..{width}")
        cdf = cdf.long()
        cols = torch.arange(width)
        last = cdf.gather(1, (lengths - 1)[:, None])[:, 0]
        increasing = (cdf[:, 1:] > cdf[:, :-1]) | (cols[None, 1:] >= lengths[:, None])
        if (cdf[:, 0] != 0).any() or (last != 1 << CDF_PRECISION).any() or not increasing.all():
            raise CheckpointError(f"{where}: a CDF does not rise strictly from 0 to 2**{CDF_PRECISION}")
        scales, quantiles = state_dict.get(prefix + "scale_table"), state_dict.get(prefix + "quantiles")
        if scales is not None and scales.numel() and (scales.numel() != rows or not (scales > 0).all()):
            raise CheckpointError(f"{where}: {rows} CDFs for {scales.numel()} scales (or a scale <= 0)")
        if quantiles is not None and quantiles.shape[0] != rows:
            raise CheckpointError(f"{where}: {rows} CDFs for {quantiles.shape[0]} channels")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read the model state dict of a CompressAI-format checkpoint file, safely."""
    return extract_state_dict(read_checkpoint_file(path), str(path))


def describe_mismatch(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> str:
    """Human summary of how two state dicts differ (missing / unexpected / differently shaped keys)."""

    def relevant(k: str) -> bool:
        return not k.endswith(CODER_BUFFERS)

    missing = sorted(k for k in expected if relevant(k) and k not in got)
    unexpected = sorted(k for k in got if relevant(k) and k not in expected)
    shapes = sorted(
        f"{k}: checkpoint {tuple(got[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if relevant(k) and k in got and tuple(got[k].shape) != tuple(expected[k].shape)
    )
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("different shape", shapes)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:3])}{more}")
    return "; ".join(parts)


def load_into(net: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load ``state_dict`` into ``net`` strictly, explaining any mismatch in one readable line."""
    diff = describe_mismatch(net.state_dict(), state_dict)
    if diff:
        raise CheckpointError(f"{source} does not fit {type(net).__name__}: {diff}")
    net.load_state_dict(state_dict)


def save_checkpoint(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` atomically (a killed process never leaves a half-written checkpoint).

    Serialised in memory first: ``torch.save`` to a file names the archive's root folder after the
    file, so saving through a temporary name would make equal weights give different bytes (and
    sha256s) on every export.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def state_dict_fingerprint(state_dict: dict[str, torch.Tensor]) -> bytes:
    """A 32-byte digest of every tensor (name, dtype, shape, bytes); identifies a model's exact weights."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.digest()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def half_precision_copy(state_dict: dict[str, torch.Tensor], parameters: set[str]) -> dict[str, torch.Tensor]:
    """Learned parameters (names in ``parameters``) in fp16 for shipping; every buffer stays exact.

    Buffers must not be rounded: GDN's pedestal (2**-36) and the likelihood lower bound (1e-9)
    underflow to zero in fp16. Round the parameters *before* ``update()`` so the coder tables
    match the fp16 weights.
    """
    return {k: v.half() if k in parameters and v.is_floating_point() else v for k, v in state_dict.items()}


__all__ = [
    "CODER_BUFFERS",
    "check_coder_tables",
    "describe_mismatch",
    "extract_state_dict",
    "file_sha256",
    "half_precision_copy",
    "load_into",
    "read_checkpoint_file",
    "read_state_dict",
    "save_checkpoint",
    "state_dict_fingerprint",
]

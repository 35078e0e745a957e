"""Turn a training checkpoint into a shippable model file (fp16 weights, exact coder tables)."""

from __future__ import annotations

from pathlib import Path

import torch

from robustnic.codecs.architectures import get_architecture, infer_architecture, widths_of
from robustnic.codecs.checkpoint import file_sha256, half_precision_copy, read_state_dict, save_checkpoint
from robustnic.codecs.learned import scale_levels_of, update_coder_tables


def export_model(checkpoint: str | Path, out_file: str | Path, half: bool = True,
                 scale_levels: int | None = None) -> dict:
    """Write a plain, updated CompressAI state dict to ``out_file``; return architecture, widths, sha256.

    With ``half`` the float weights are rounded to fp16 *before* ``update()``, so the stored coder
    tables are the ones the fp16 weights produce: decoding a shipped model is exact.
    ``scale_levels`` stores a finer Gaussian scale table than CompressAI's 64 levels (see
    :func:`robustnic.codecs.learned.update_coder_tables`); the tables travel inside the file.
    """
    state = read_state_dict(checkpoint)
    arch = infer_architecture(state)
    N, M = widths_of(arch, state)
    net = get_architecture(arch).build(N, M)
    net.load_state_dict(state)
    parameters = {name for name, _ in net.named_parameters()}
    if half:
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(p.half().float())
    update_coder_tables(net, scale_levels)
    sd = net.state_dict()
    save_checkpoint(half_precision_copy(sd, parameters) if half else sd, out_file)
    return {"architecture": arch, "N": N, "M": M, "sha256": file_sha256(out_file),
            "bytes": Path(out_file).stat().st_size, "scale_levels": scale_levels_of(net)}


__all__ = ["export_model"]

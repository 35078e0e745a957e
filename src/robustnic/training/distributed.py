"""Data-parallel training under ``torchrun`` (gloo on CPU, nccl on CUDA).

``torchrun --nproc_per_node=K robustnic train ...`` starts K copies of the same command; each finds
its rank in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and :func:`setup` joins the
process group. The training loop then differs from one process in four places only:

- every rank draws the same global batch of ``K × batch_size`` patch positions from the shared,
  seeded patch sequence and cuts out only its own slice (:meth:`PatchSampler.sample`), so K
  processes see exactly the patches one process with a K-times larger batch would see, and the
  sampler state saved in a checkpoint is the same on every rank: a run resumes with any K;
- the quantisation noise (torch's global generator) is seeded by rank, so ranks do not repeat it;
- after each backward pass the gradients are averaged over ranks (:func:`average_gradients`: one
  flat all-reduce), before clipping and the optimizer step, so the parameters stay identical;
- rank 0 alone validates, writes checkpoints, logs and shows progress.

Gradients are averaged by hand rather than with ``DistributedDataParallel``: the entropy
bottleneck's quantiles get no gradient from the main loss, which DDP would have to search for
every step, and the inner attack of adversarial fine-tuning needs the bare module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class RankInfo:
    """Where this process stands in a data-parallel run (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the rank that validates, checkpoints and logs."""
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "RankInfo":
        """Read ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` as ``torchrun`` sets them (defaults: one process)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        return cls(rank=rank, world_size=world, local_rank=int(os.environ.get("LOCAL_RANK", str(rank))))


def setup(device: torch.device) -> tuple[RankInfo, torch.device]:
    """Join the process group when started by ``torchrun``; returns the rank and this rank's device.

    On CUDA each rank takes ``cuda:LOCAL_RANK`` and the nccl backend; elsewhere gloo. Without
    ``torchrun`` (``WORLD_SIZE`` unset or 1) nothing happens.
    """
    info = RankInfo.from_env()
    if not info.enabled:
        return info, device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def shutdown() -> None:
    """Leave the process group (after a barrier, so no rank exits while another still writes)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (a no-op outside a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def average_gradients(parameters: Iterable[torch.nn.Parameter], world_size: int) -> None:
    """Replace each gradient by its mean over ranks: one all-reduce of all gradients, flattened."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if world_size <= 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any rank (all ranks must call it together)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


__all__ = ["RankInfo", "any_rank", "average_gradients", "broadcast_module", "setup", "shutdown"]

"""Multi-GPU and multi-node training on torchrun (DDP): `torchrun --nproc-per-node N -m mmcore run ...`.

Each rank trains on its shard of one shared shuffled order, so N ranks with batch B match one rank
with batch N·B for joint training. Rank 0 alone writes the run directory.
"""
from __future__ import annotations

import os
import torch
import torch.distributed as dist
from attrs import frozen
from torch import nn


@frozen
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env() -> DistInfo:
    """Join the process group torchrun describes in the environment (or run single-process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def device_for(info: DistInfo, requested: torch.device) -> torch.device:
    if info.enabled and requested.type == "cuda":
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return requested


def all_reduce_gradients(model: nn.Module, info: DistInfo) -> None:
    """Average gradients over ranks once per step, in `finish`, before balancers modulate them.

    Reducing explicitly (rather than through DDP's backward hooks) keeps every combination well
    defined: extra forward passes through `state.model`, several backward passes per step and
    parameters that get no gradient on some ranks. A parameter whose gradient is None on every rank
    stays None; one that has a gradient anywhere gets the average, zeros standing in elsewhere.
    """
    if not info.enabled:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=params[0].device)
    dist.all_reduce(has_grad)
    for p, anywhere in zip(params, has_grad.tolist()):
        if anywhere and p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        flat = torch._utils._flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat /= info.world_size
        for grad, reduced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
            grad.copy_(reduced)


def broadcast_buffers(model: nn.Module, info: DistInfo) -> None:
    """Rank 0's buffers (BatchNorm statistics, prototypes) on every rank, as DDP does each step."""
    if info.enabled:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()

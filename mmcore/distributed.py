"""Multi-GPU and multi-node training on torchrun (DDP): `torchrun --nproc-per-node N -m mmcore run ...`.

Each rank trains on its shard of one shared shuffled order, so N ranks with batch B match one rank
with batch N·B for joint training. Rank 0 alone writes the run directory.
"""
from __future__ import annotations

import atexit
import os
from typing import Any, Sequence

import torch
import torch.distributed as dist
from attrs import frozen
from torch import Tensor, nn


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


def world_size() -> int:
    """Ranks in the running process group; 1 without one."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@torch.no_grad()
def sum_over_ranks(tensors: Sequence[Tensor]) -> None:
    """Sum tensors over DDP ranks in place, one flat all-reduce per dtype; a no-op on one process.
    Plugins use it (and `mean_over_ranks`) for the batch statistics they compute, so that N ranks
    see what one rank with the global batch would see (DESIGN.md section 8)."""
    if world_size() == 1 or not tensors:
        return
    for dtype in dict.fromkeys(t.dtype for t in tensors):  # one flat all-reduce per dtype: no rounding
        same = [t for t in tensors if t.dtype == dtype]  # of an integer count through a float buffer
        flat = torch.cat([t.reshape(-1) for t in same])
        dist.all_reduce(flat)
        for t, part in zip(same, flat.split([t.numel() for t in same])):
            t.copy_(part.view_as(t))


@torch.no_grad()
def mean_over_ranks(tensors: Sequence[Tensor]) -> None:
    """Average floating-point tensors over DDP ranks in place; a no-op on one process."""
    if any(not (t.is_floating_point() or t.is_complex()) for t in tensors):
        raise TypeError("mean_over_ranks averages floating-point tensors; sum integer counts with sum_over_ranks")
    world = world_size()
    sum_over_ranks(tensors)
    if world > 1:
        torch._foreach_div_(list(tensors), world)


def global_mean(total: Tensor, count: Tensor) -> Tensor:
    """A loss term's mean over the global batch: `total` (this rank's sum, differentiable) over the
    count of every rank, times the number of ranks — the trainer averages gradients over ranks, so
    the ranks' terms add up to the global batch's mean even when ranks count different numbers of
    valid samples or tokens. total / count on one process; `count` is not differentiated. Each
    rank's value of the term is its share, so a rank logs its share, not the global mean."""
    world = world_size()
    if world == 1:
        return total / count.clamp_min(1)
    count = count.detach().clone()
    sum_over_ranks([count])
    return world * total / count.clamp_min(1)


def global_sum(tensor: Tensor) -> Tensor:
    """The sum over ranks of a tensor that a loss uses as a statistic of the global batch (class
    means, say), with gradients: every rank computes the same loss from it, and the all-reduce's
    backward brings each rank's samples the gradient of that one loss. The tensor itself on one process."""
    if world_size() == 1:
        return tensor
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(tensor)


def gather_to_main(obj: Any, info: DistInfo) -> list[Any] | None:
    """Every rank's `obj` as a list by rank on rank 0, None on the others ([obj] on one process):
    the per-rank state a checkpoint keeps (each rank's private generators)."""
    if not info.enabled:
        return [obj]
    gathered: list[Any] | None = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def init_from_env() -> DistInfo:
    """Join the process group torchrun describes in the environment (or run single-process), and
    the host group beside it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        atexit.register(_shutdown)  # tear the groups down before the interpreter does, in order
    host_group()  # a collective: every rank creates it here, at the same point
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
    _HOST_GROUPS.clear()


_HOST_GROUPS: dict[int, Any] = {}


def host_group() -> Any:
    """A Gloo group over every rank, for small messages that live on the host (which parameters
    have gradients): exchanging them through NCCL would put them on the GPU and make the host wait
    for the GPU to read them back. Created once per process group, also when that group is Gloo, so
    the CPU tests run the GPU's path."""
    key = id(dist.group.WORLD)
    if key not in _HOST_GROUPS:
        _HOST_GROUPS[key] = dist.new_group(backend="gloo")
    return _HOST_GROUPS[key]


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
    if not params:  # everything frozen: nothing to average
        return
    # Which parameters have a gradient is known on the host: agree on it through the host group, so
    # the CPU does not wait for the GPU here and keeps running ahead of it (copies overlap steps).
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.int32)
    dist.all_reduce(has_grad, group=host_group())
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

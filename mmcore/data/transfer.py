"""Loader batches onto the run's device, finished there by the data's device transforms.

On a CUDA device the copy runs on a stream of its own. The loop that feeds the trainer runs ahead of
the GPU (nothing in a step waits for the GPU), so when batch k+1 arrives the GPU is still computing
step k: on the default stream its copy would queue behind that work, on the copy stream it overlaps
it. The compute stream then waits for the copy before using the batch, and the batch's memory is
marked as used by the compute stream, so the allocator does not hand it out while a step still
reads it. Pinned loader batches (what a CUDA run's loaders make) are what make the copy asynchronous.
"""
from __future__ import annotations

from typing import Callable

import torch

from mmcore.types import Batch


class DeviceTransfer:
    """`transfer(batch)`: the batch on `device`, then `finish(batch)` (float32 whatever the precision)."""

    def __init__(self, device: torch.device, finish: Callable[[Batch], Batch]) -> None:
        self.device = device
        self.finish = finish
        self.copy_stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def __call__(self, batch: Batch) -> Batch:
        if self.copy_stream is None:
            moved = batch.to(self.device, non_blocking=True)
        else:
            compute = torch.cuda.current_stream(self.device)
            with torch.cuda.stream(self.copy_stream):
                moved = batch.to(self.device, non_blocking=True)
            compute.wait_stream(self.copy_stream)
            moved.map(lambda t: _used_by(t, compute))
        with torch.autocast(self.device.type, enabled=False):
            return self.finish(moved)


def _used_by(tensor: torch.Tensor, stream: torch.cuda.Stream) -> torch.Tensor:
    tensor.record_stream(stream)
    return tensor

"""DeviceTransfer: batches reach the device whole and finished; on CUDA the copy stream never lets a
step read a batch before its copy lands, nor the allocator reuse a batch a step still reads."""

from __future__ import annotations

import pytest
import torch

from mmcore.data.transfer import DeviceTransfer
from mmcore.types import Batch


def make_batch(rows: int, width: int, value: float) -> Batch:
    return Batch(
        inputs={"frames": torch.full((rows, width), int(value) % 256, dtype=torch.uint8),
                "audio": torch.full((rows, width), value)},
        present=torch.ones(rows, 2, dtype=torch.bool),
        label=torch.arange(rows),
        index=torch.arange(rows),
        extras={"w": torch.full((rows,), value)},
    )


def finish(batch: Batch) -> Batch:
    """A device transform stand-in: uint8 -> float, and it records the precision it ran under."""
    finish.autocast = torch.is_autocast_enabled(batch.label.device.type)
    return batch.replace(inputs={**batch.inputs, "frames": batch.inputs["frames"].float() / 255})


def test_on_the_cpu_the_batch_is_finished_outside_autocast():
    transfer = DeviceTransfer(torch.device("cpu"), finish)
    assert transfer.copy_stream is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        moved = transfer(make_batch(3, 4, 51.0))
    assert finish.autocast is False
    torch.testing.assert_close(moved.inputs["frames"], torch.full((3, 4), 0.2))
    assert moved.inputs["audio"].dtype == torch.float32 and moved.extras["w"].tolist() == [51.0] * 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the copy stream needs a CUDA device")
def test_copies_on_their_own_stream_arrive_before_the_step_reads_them():
    device = torch.device("cuda")
    transfer = DeviceTransfer(device, finish)
    assert transfer.copy_stream is not None
    busy = torch.randn(4096, 4096, device=device)
    sums = []
    for k in range(20):
        host = make_batch(256, 1 << 16, float(k)).pin_memory()  # 64 MiB of float32: the copy takes a while
        for _ in range(3):
            busy = torch.tanh(busy @ busy)  # the step before, still running when the next copy is issued
        moved = transfer(host)
        sums.append(moved.inputs["audio"].sum() + moved.extras["w"].sum())
        del host, moved  # the allocator may now reuse the memory, but only once the step is done with it
    expected = [float(k) * 256 * ((1 << 16) + 1) for k in range(20)]
    assert [float(s) for s in sums] == pytest.approx(expected, rel=1e-6)

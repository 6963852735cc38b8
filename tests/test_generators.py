"""The trainer's named generators: private per rank, shared across ranks, on the run's device or
on the host, and all restored from a state dict."""
from __future__ import annotations

import torch

from mmcore.generators import Generators


def test_shared_generators_agree_across_ranks_and_private_ones_do_not():
    rank0, rank1 = Generators(7, rank=0), Generators(7, rank=1)
    assert torch.equal(torch.rand(3, generator=rank0.get("x", shared=True)),
                       torch.rand(3, generator=rank1.get("x", shared=True)))
    assert not torch.equal(torch.rand(3, generator=rank0.get("x")), torch.rand(3, generator=rank1.get("x")))


def test_a_host_generator_is_its_own_stream_and_round_trips_with_its_device():
    generators = Generators(7, device="meta")  # a run device other than the CPU, without a GPU
    host = generators.get("plan", shared=True, device="cpu")
    assert host.device.type == "cpu" and generators.get("plan", shared=True, device="cpu") is host
    torch.rand(5, generator=host)
    state = generators.state_dict()
    assert "plan@shared@cpu" in state["generators"]
    restored = Generators(7, device="meta")
    restored.load_state_dict(state)
    again = restored.get("plan", shared=True, device="cpu")
    assert again.device.type == "cpu" and torch.equal(torch.rand(4, generator=again), torch.rand(4, generator=host))

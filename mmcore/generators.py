"""Named random generators the trainer owns, checkpoints and reseeds on resume."""
from __future__ import annotations

import zlib
from typing import Any

import torch


class Generators:
    """`get(name, shared)` returns one torch.Generator per name. Shared generators are seeded the
    same on every rank (e.g. GE noise that must agree); private ones also mix in the rank."""

    def __init__(self, seed: int, rank: int = 0, device: torch.device | str = "cpu") -> None:
        self.seed, self.rank, self.device = seed, rank, torch.device(device)
        self._generators: dict[str, torch.Generator] = {}

    def get(self, name: str, shared: bool = False, device: torch.device | str | None = None) -> torch.Generator:
        """`device`: where the generator draws (default: the run's device). Draws that become host-side
        plans (Monte-Carlo orderings) take "cpu", so reading them back never waits for a GPU."""
        device = self.device if device is None else torch.device(device)
        key = f"{name}@shared" if shared else f"{name}@rank{self.rank}"
        key += "" if device == self.device else f"@{device}"
        if key not in self._generators:
            g = torch.Generator(device=device)
            g.manual_seed(self.derive(key))
            self._generators[key] = g
        return self._generators[key]

    def derive(self, name: str) -> int:
        """A stable 63-bit seed from the run seed and a name."""
        return (self.seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63 - 1)

    def state_dict(self) -> dict[str, Any]:
        states = {k: g.get_state() for k, g in self._generators.items()}
        return {"generators": states, "torch": torch.get_rng_state(), **_cuda_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state["generators"].items():
            parts = key.split("@")  # name@shared|rank<r>[@device]
            g = torch.Generator(device=parts[2] if len(parts) > 2 else self.device)
            g.set_state(value.cpu())  # generator states are CPU byte tensors whatever the device
            self._generators[key] = g
        torch.set_rng_state(state["torch"].cpu())
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"].cpu())


def _cuda_state() -> dict[str, Any]:
    return {"cuda": torch.cuda.get_rng_state()} if torch.cuda.is_available() else {}

"""The decomposition and composition networks of modality decomposition replacement (Eq. 9, 11).

The paper gives their structure only in Fig. 5, which is not in the text. These are small per-step
MLPs in its spirit (ours; README "Decomposition networks"):

- Decom_m: U -> (K^de, U^de), two parallel heads Linear(d, h) -> GELU -> Linear(h, d): K^de is the
  label-irrelevant part the keys are replaced with, U^de the label-relevant part;
- Compo_m: (K^de, U^de) -> U_hat, Linear(2d, h) -> GELU -> Linear(h, d) on the concatenation.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


class Decomposer(nn.Module):
    """Decom_m and Compo_m for one attention block's keys of width `dim`."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.irrelevant = mlp(dim, hidden, dim)  # K^de
        self.relevant = mlp(dim, hidden, dim)  # U^de
        self.compose = mlp(2 * dim, hidden, dim)  # Compo_m

    def decompose(self, keys: Tensor) -> tuple[Tensor, Tensor]:
        """Eq. 9: (K^de, U^de), each shaped like `keys` [B, T, d]."""
        return self.irrelevant(keys), self.relevant(keys)

    def forward(self, keys: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(K^de, U^de, U_hat = Compo(K^de, U^de)) (Eq. 9 and 11)."""
        irrelevant, relevant = self.decompose(keys)
        return irrelevant, relevant, self.compose(torch.cat([irrelevant, relevant], dim=-1))

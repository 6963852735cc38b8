"""The dominant modality's share L_d of the loss ℓ = L_d + L_s (M-SAM Eq. 4), per decomposition.

- `scalar` (the paper's reading): L_d = ν_d·ℓ with one batch weight. ∇L_d = ν_d·∇ℓ, so the ascent
  direction is SAM's and the update needs no third backward; `MSAM.step` handles it without
  calling anything here.
- `per_sample`: L_d = mean_i ν_d^i·ℓ_i with per-sample Shapley shares (a per-sample valuator).
- `logit_attribution`: L_d = task loss of z_d, modality d's Shapley attribution of the logits
  (Σ_m z_m = the fused logits, AGM's decomposition), recomputed from the pass's features with
  gradients — a genuinely modality-specific ascent direction.

Loss terms other than the task loss (fusion aux losses, supervisors' terms) are split by the batch
share ν_d, as in `scalar`, so L_d + L_s is always the whole loss.
"""
from __future__ import annotations

from torch import Tensor

import mmcore
from mmcore_msam.dominance import normalised_shares

DECOMPOSITIONS = ("scalar", "per_sample", "logit_attribution")


def pick(values: Tensor, index: Tensor, dim: int) -> Tensor:
    """values[..., index, ...] along `dim` for a 0-dim index tensor, without a host sync."""
    return values.index_select(dim, index.view(1)).squeeze(dim)


def logit_attributions(model: mmcore.MultimodalModel, output: mmcore.ModelOutput, batch: mmcore.Batch) -> Tensor:
    """[M, B, C] Shapley attributions of the logits (v(∅) = 0), differentiable: head-only passes
    on the pass's own features, the fusion in eval mode so the coalitions see no dropout noise."""

    def coalition_logits(coalition: tuple[str, ...]) -> Tensor:
        presence = model.coalition_presence(output.present, coalition)
        logits = model.fuse(output.features, presence, batch.masks, probe=True).logits
        return logits if logits.dim() == 2 else logits.unsqueeze(-1)

    with mmcore.eval_mode(model.fusion):
        return mmcore.shapley(coalition_logits, model.modalities).values


def other_terms(losses: dict[str, Tensor]) -> Tensor | float:
    return sum((term for name, term in losses.items() if name != "task"), 0.0)


def dominant_loss(state: mmcore.StepState, decomposition: str, dominant: Tensor, nu_dominant: Tensor,
                  sample_weights: Tensor | None) -> Tensor:
    """L_d of the current pass (its output is `state.pass_outputs[-1]`), with its graph."""
    if decomposition == "per_sample":
        task = (sample_weights * state.sample_losses["task"]).mean()
    elif decomposition == "logit_attribution":
        attributions = logit_attributions(state.model, state.pass_outputs[-1], state.batch)
        task = state.task_loss(pick(attributions, dominant, 0), state.batch.label)
    else:
        raise ValueError(f"decomposition {decomposition!r} has no separate dominant loss")
    return task + nu_dominant * other_terms(state.losses)


def sample_shares(values: Tensor, dominant: Tensor) -> Tensor:
    """ν_d^i [B] from per-sample Shapley values [B, M] (same guards as the batch shares)."""
    nu, _ = normalised_shares(values)
    return pick(nu, dominant, 1).detach()


"""The `agm` balancer: recomposes the task loss from Shapley logits whose backward is scaled by kappa."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

import mmcore
from mmcore_agm.clipping import conditional_clip
from mmcore_agm.coefficients import RunningReference, kappa, ratios, unimodal_scores
from mmcore_agm.config import AGMConfig
from mmcore_agm.decomposition import GradientScale, scale_hook, shapley_logits

KIND = "agm"
METRICS = f"balancer/{KIND}"  # diagnostics prefix


class AGM(mmcore.Balancer):
    """Adaptive gradient modulation (Li et al., ICCV 2023), for any fusion.

    `before_backward`: the Shapley logits mtilde_m (extra masked passes, eval mode, autograd on);
    on pass 0 the scores, kappa and the running reference; then losses["task"] is replaced by the
    task loss of sum_m GradientScale_m(mtilde_m), numerically the full logits, whose backward hooks
    scale modality m's component by kappa_m. `after_backward`: the conditional clipping rule.
    Outside the window kappa = 1 and the masked passes run without gradients (they would receive
    none), only to keep the reference up to date as the official code does.
    """

    def __init__(self, config: AGMConfig, modalities: tuple[str, ...], task: str, seed: int) -> None:
        self.config = config
        self.modalities = modalities
        self.task = task
        self.method = config.shapley_method(len(modalities))
        self.kappa = torch.ones(len(modalities))  # read by the backward hooks
        self.reference = RunningReference(len(modalities), config.reference, config.ema_decay)
        # Orderings for Monte-Carlo Shapley: a host generator (drawing them on the GPU would sync
        # every step), the same on every rank, checkpointed with the balancer.
        self.generator = torch.Generator().manual_seed(seed)
        self.model: mmcore.MultimodalModel | None = None
        self.scales: nn.ModuleDict | None = None
        self.handles: list[Any] = []

    # -- hooks on the model -----------------------------------------------------------------------
    def attach(self, model: mmcore.MultimodalModel) -> None:
        self.scales = nn.ModuleDict({m: GradientScale() for m in self.modalities})
        model.extras[KIND] = self.scales  # on the model, so `detach` can be checked to remove them
        self.handles = [self.scales[m].register_full_backward_hook(scale_hook(lambda: self.kappa, i))
                        for i, m in enumerate(self.modalities)]
        self.model = model

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []
        if self.model is not None and KIND in self.model.extras and self.model.extras[KIND] is self.scales:
            del self.model.extras[KIND]
        self.scales = None

    # -- the step ---------------------------------------------------------------------------------
    def before_backward(self, state: mmcore.StepState) -> None:
        active = self.config.in_window(state.epoch)
        with torch.set_grad_enabled(active):
            values = shapley_logits(state, self.config.drop_at, self.method, self.config.samples, self.generator)
        state.private(KIND)["shapley_logits"] = values
        if state.pass_index == 0:  # state (kappa, reference) changes on pass 0 only
            self._update(state, values.values, active)
        if not active:
            return  # kappa = 1: the recomposed loss would give the plain gradient
        recomposed = sum(self.scales[m](values.values[i]) for i, m in enumerate(self.modalities))
        sample_loss = state.task_loss(recomposed, state.batch.label, reduction="none")
        state.sample_losses["task"] = sample_loss
        state.losses["task"] = sample_loss.mean()

    def _update(self, state: mmcore.StepState, shapley: Tensor, active: bool) -> None:
        scores = _all_reduce_mean(unimodal_scores(shapley, state.batch.label, self.task, state.task_loss))
        reference = self.reference.mean.to(scores.device)  # before this batch updates it (official)
        cfg = self.config
        self.kappa = kappa(scores, reference, cfg.alpha, cfg.cap) if active else torch.ones_like(scores)
        self.reference.update(scores)
        current = ratios(scores)
        for i, m in enumerate(self.modalities):
            state.metrics[f"{METRICS}/kappa/{m}"] = self.kappa[i]
            state.metrics[f"{METRICS}/score/{m}"] = scores[i]
            state.metrics[f"{METRICS}/ratio/{m}"] = current[i]
            state.metrics[f"{METRICS}/reference/{m}"] = reference[i]
        state.metrics[f"{METRICS}/leader"] = current.argmax().float()

    def after_backward(self, state: mmcore.StepState) -> None:
        if self.config.clip:
            fired = conditional_clip(state.model, state.model.fusion, self.config.clip_threshold,
                                     self.config.clip_max_norm)
            state.metrics[f"{METRICS}/clipped"] = fired.float()

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"kappa": self.kappa, "reference": self.reference.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kappa = state["kappa"].clone()
        self.reference.load_state_dict(state["reference"])
        self.generator.set_state(state["generator"].cpu())



def _all_reduce_mean(scores: Tensor) -> Tensor:
    """Scores are batch means: under DDP, kappa must be that of the global batch."""
    scores = scores.clone()
    mmcore.mean_over_ranks([scores])  # the core's one all-reduce; a no-op on one process
    return scores


def build_agm(config: AGMConfig, ctx: mmcore.BuildContext) -> AGM:
    if len(ctx.modalities) < 2:
        raise mmcore.ConfigError("$.balancers: agm balances modalities against each other; it needs at least 2")
    return AGM(config, tuple(ctx.modalities), ctx.task, ctx.seed)

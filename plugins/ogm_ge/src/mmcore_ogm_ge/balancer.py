"""The `ogm_ge` balancer: scores each modality on pass 0, modulates gradients once per step in `finish`."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import mmcore
from mmcore_ogm_ge.coefficients import discrepancy_ratios, modulation_coefficients, true_class_confidence
from mmcore_ogm_ge.config import OGMGEConfig
from mmcore_ogm_ge.modulation import GradientModulator, scope_params

KIND = "ogm_ge"


class OGMGE(mmcore.Balancer):
    """On-the-fly gradient modulation with generalization enhancement (Peng et al., CVPR 2022).

    `before_backward` (pass 0, every micro-batch) adds the batch's confidence scores S_m to the
    step; `after_backward` (once per step, on the gradient the update uses) turns them into
    ratios and coefficients and, inside the window, scales each modality's parameter group and
    adds GE noise.
    """

    def __init__(self, config: OGMGEConfig, model: mmcore.MultimodalModel, task: str, use_unimodal: bool) -> None:
        self.config = config
        self.modalities = model.modalities
        self.task = task
        self.use_unimodal = use_unimodal
        self.modulator = GradientModulator({m: scope_params(model, m, config.scope) for m in self.modalities},
                                           ge=config.ge)

    # -- scores, on pass 0 ------------------------------------------------------------------------
    def before_backward(self, state: mmcore.StepState) -> None:
        if state.pass_index != 0 or not self.config.in_window(state.epoch):
            return
        logits = self.unimodal_logits(state)
        label = state.batch.label
        scores = torch.stack([true_class_confidence(logits[m], label, self.task).sum() for m in self.modalities])
        stash = state.private(KIND)
        stash["scores"] = stash["scores"] + scores if "scores" in stash else scores  # summed over micro-batches

    def unimodal_logits(self, state: mmcore.StepState) -> dict[str, Tensor]:
        """The split-head logits the fusion computed, or, where it has none, the fusion probed on
        the step's cached features with only m present (head passes, no encoder pass)."""
        output = state.pass_outputs[-1]  # this micro-batch's pass-0 output
        if self.use_unimodal:
            return output.fusion.unimodal_logits
        model = state.model
        with torch.no_grad(), mmcore.eval_mode(model.fusion):
            return {
                m: model.fuse(output.features, model.coalition_presence(output.present, (m,)),
                              state.batch.masks, probe=True).logits
                for m in self.modalities
            }

    # -- modulation, once per step ----------------------------------------------------------------
    def after_backward(self, state: mmcore.StepState) -> None:
        if not self.config.in_window(state.epoch):
            for m in self.modalities:
                state.metrics[f"balancer/{KIND}/coef/{m}"] = 1.0
            return
        scores = state.private(KIND)["scores"].clone()
        mmcore.sum_over_ranks([scores])  # batch sums: under DDP the ratios are those of the global batch
        ratios = discrepancy_ratios(scores, self.config.ratio)
        coefficients = modulation_coefficients(ratios, self.config.alpha, self.config.variant)
        generator = state.generator(KIND, shared=True) if self.config.ge else None  # same draws on every rank
        self.modulator.apply(coefficients, generator)
        for i, m in enumerate(self.modalities):
            state.metrics[f"balancer/{KIND}/coef/{m}"] = coefficients[i]
            state.metrics[f"balancer/{KIND}/ratio/{m}"] = ratios[i]
            state.metrics[f"balancer/{KIND}/score/{m}"] = scores[i]
        state.metrics[f"balancer/{KIND}/leader"] = ratios.argmax().float()

    def state_dict(self) -> dict[str, Any]:
        return {}  # no state across steps: the coefficient is recomputed per batch; the noise
        # generator belongs to the trainer, which checkpoints it


def build_ogm_ge(config: OGMGEConfig, ctx: mmcore.BuildContext) -> OGMGE:
    if len(ctx.modalities) < 2:
        raise mmcore.ConfigError(f"$.balancers: ogm_ge balances modalities against each other; it needs at least "
                                 f"two, got {list(ctx.modalities)}")
    if ctx.task == "regression":
        raise mmcore.ConfigError("$.balancers: ogm_ge scores modalities by class probabilities; "
                                 "it needs a classification or binary task, not regression")
    has_unimodal = "unimodal_logits" in type(ctx.model.fusion).provides
    if config.logits == "unimodal" and not has_unimodal:
        raise mmcore.ConfigError("$.balancers: ogm_ge logits = 'unimodal' needs a fusion that provides "
                                 "unimodal_logits (concat, sum, late); use logits = 'probe' or 'auto'")
    empty = [m for m in ctx.modalities if not scope_params(ctx.model, m, config.scope)]
    if empty:
        raise mmcore.ConfigError(f"$.balancers: ogm_ge scope = {config.scope!r} selects no parameters of "
                                 f"{', '.join(empty)} (no convolutions?); use scope = 'encoder'")
    use_unimodal = config.logits == "unimodal" or (config.logits == "auto" and has_unimodal)
    return OGMGE(config, ctx.model, ctx.task, use_unimodal)

"""weak_boost: train the own logits of the modalities that contribute less than their share.

With values phi from a valuator and shares s_m = max(phi_m, 0) / sum_k max(phi_k, 0) (uniform when
no modality contributes), every step adds

    L_m = beta * max(0, 1 - M * s_m) * task_loss(o_m, y)

for each modality m, where o_m are the fusion's per-modality logits. A modality at or above its fair
share 1/M gets no extra term; one that contributes nothing gets beta times its own task loss, which
trains its encoder (and its part of the head) without the stronger modalities to lean on.
"""
from __future__ import annotations

from typing import Any

import torch
from attrs import field, frozen
from attrs.validators import ge, instance_of

import mmcore


@frozen(kw_only=True)
class WeakBoostConfig:
    beta: float = field(default=1.0, validator=[instance_of(float), ge(0.0)],
                        metadata={"help": "weight of a modality's own loss at zero share; 0 = plain joint training"})
    valuator: str = field(default="", validator=instance_of(str),
                          metadata={"help": "a [valuators.<name>] table; empty = leave_one_out on true_class_prob"})


class WeakBoost(mmcore.Balancer):
    requires = frozenset({"unimodal_logits"})

    def __init__(self, config: WeakBoostConfig, values_key: str, modalities: tuple[str, ...]) -> None:
        self.beta = config.beta
        self.values_key = values_key  # where the valuator's result appears in state.values
        self.modalities = modalities
        self.weights = torch.zeros(len(modalities))

    def before_backward(self, state: mmcore.StepState) -> None:
        if state.pass_index == 0:  # values exist for pass 0 only; later passes reuse its weights
            shares = state.values[self.values_key].shares()  # the global batch's under DDP: same weights on every rank
            self.weights = self.beta * (1 - len(self.modalities) * shares).clamp_min(0)
        unimodal = state.pass_outputs[-1].fusion.unimodal_logits  # this pass's forward
        for m, weight in zip(self.modalities, self.weights):
            state.losses[f"weak_boost/{m}"] = weight * state.task_loss(unimodal[m], state.batch.label)
            state.metrics[f"balancer/weak_boost/weight/{m}"] = weight.detach()

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights = state["weights"]


def build_weak_boost(config: WeakBoostConfig, ctx: mmcore.BuildContext) -> WeakBoost:
    values_key = ctx.make_valuator(name=config.valuator, kind="leave_one_out")
    return WeakBoost(config, values_key, ctx.modalities)

"""leave_one_out: value each modality by what the fused prediction loses without it.

    phi_m = v(N) - v(N without m)

for the modalities N the fusion saw and a built-in value function v. It costs M + 1 head passes on
the step's cached features (Shapley values cost 2^M - 1), and ignores interactions between the
other modalities, which is what Shapley values average over.
"""
from __future__ import annotations

from typing import Any

import torch
from attrs import field, frozen
from attrs.validators import in_

import mmcore

VALUES = ("accuracy", "true_class_prob", "neg_loss")  # built-in value functions giving one score per sample


@frozen(kw_only=True)
class LeaveOneOutConfig:
    value: str = field(default="true_class_prob", validator=in_(VALUES),
                       metadata={"help": "value function v: " + " | ".join(VALUES)})
    per: str = field(default="batch", validator=in_(("batch", "sample")),
                     metadata={"help": "batch: values [M] (mean over samples); sample: values [B, M]"})


class LeaveOneOut:
    def __init__(self, config: LeaveOneOutConfig, modalities: tuple[str, ...]) -> None:
        self.value_fn = mmcore.VALUE_FUNCTIONS[config.value]
        self.per = config.per
        self.modalities = modalities

    def value(self, state: mmcore.StepState) -> mmcore.ModalityValues:
        model, output, batch = state.model, state.output, state.batch
        coalitions = {self.modalities: output.present}
        coalitions |= {tuple(o for o in self.modalities if o != m): model.presence(output.present, drop=(m,))
                       for m in self.modalities}
        scores = {}
        with torch.no_grad(), mmcore.eval_mode(model):  # a probe: no gradients, no side effects
            for coalition, present in coalitions.items():
                logits = model.fuse(output.features, present, batch.masks, probe=True).logits
                scores[coalition] = self.value_fn(logits, batch.label, coalition=coalition, task_loss=state.task_loss)
        everyone = scores[self.modalities]
        without = [scores[tuple(o for o in self.modalities if o != m)] for m in self.modalities]
        values = everyone[:, None] - torch.stack(without, dim=1)  # [B, M]
        return mmcore.ModalityValues(
            values=values.mean(0) if self.per == "batch" else values,
            modalities=self.modalities,
            coalitions={c: s.mean() for c, s in scores.items()},
        )

    def state_dict(self) -> dict[str, Any]:
        return {}  # nothing random, nothing learned

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def build_leave_one_out(config: LeaveOneOutConfig, ctx: mmcore.BuildContext) -> LeaveOneOut:
    return LeaveOneOut(config, ctx.modalities)

"""`late` fusion: one head per modality, predictions combined over the present modalities.

Classification combines probabilities: p = sum_m w_m softmax(head_m(z_m)), with w uniform over the
present modalities ("average") or a learnable softmax over them ("weighted"). The returned logits
are log p, computed as logsumexp_m(log w_m + log_softmax(head_m)), which equals the log of the
combined probability without clamping and never reaches -inf for finite head outputs; so
cross-entropy on the logits is the NLL of the combined prediction. Binary and regression tasks
combine the raw outputs with the same weights. A sample with no modality present is treated as
if all were present (every head then sees zeroed features), so it never divides by zero.
"""
from __future__ import annotations

import attrs
import torch
from attrs import validators as v
from torch import Tensor, nn

from mmcore.builtin.fusions import split_features, vector_features
from mmcore.interfaces import Fusion
from mmcore.registry import BuildContext, ComponentRegistry
from mmcore.types import FusionOutput

LATE_MODES = ("average", "weighted")


@attrs.frozen(kw_only=True)
class LateConfig:
    mode: str = attrs.field(
        default="average",
        validator=v.in_(LATE_MODES),
        metadata={"help": "average: uniform over present modalities; weighted: learnable modality weights"},
    )
    hidden: tuple[int, ...] = attrs.field(
        default=(),
        converter=tuple,
        validator=v.deep_iterable(member_validator=[v.instance_of(int), v.gt(0)]),
        metadata={"help": "hidden sizes of each per-modality head (empty: a single Linear)"},
    )
    dropout: float = attrs.field(
        default=0.0,
        validator=[v.instance_of(float), v.ge(0.0), v.lt(1.0)],
        metadata={"help": "dropout after each hidden layer of the heads"},
    )
    activate_last: bool = attrs.field(
        default=True,
        validator=v.instance_of(bool),
        metadata={"help": "ReLU after the last hidden layer too (false: Linear -> Linear at the end, as MIE's heads)"},
    )


def make_head(in_dim: int, hidden: tuple[int, ...], num_outputs: int, dropout: float,
              activate_last: bool = True) -> nn.Module:
    """Linear, or an MLP (Linear -> ReLU -> [Dropout]) ending in a Linear to the outputs; without
    `activate_last` the last hidden Linear feeds the output Linear directly."""
    if not hidden:
        return nn.Linear(in_dim, num_outputs)
    layers: list[nn.Module] = []
    width_in = in_dim
    for i, width in enumerate(hidden):
        layers.append(nn.Linear(width_in, width))
        if activate_last or i < len(hidden) - 1:
            layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width_in = width
    layers.append(nn.Linear(width_in, num_outputs))
    return nn.Sequential(*layers)


class LateFusion(Fusion):
    provides = frozenset({"unimodal_logits", "per_modality_heads"})

    def __init__(
        self,
        modalities: tuple[str, ...],
        feature_dims: dict[str, int],
        num_outputs: int,
        task: str,
        config: LateConfig,
    ) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.dims = [feature_dims[m] for m in self.modalities]
        self.combine_probabilities = task == "classification"
        self.mode = config.mode
        self.modality_heads = nn.ModuleDict(
            {m: make_head(feature_dims[m], config.hidden, num_outputs, config.dropout, config.activate_last) for m in self.modalities}
        )
        weight_logits = torch.zeros(len(self.modalities))
        if config.mode == "weighted":
            self.weight_logits = nn.Parameter(weight_logits)
        else:  # fixed uniform weights; not persistent, so checkpoints hold only learned state
            self.register_buffer("weight_logits", weight_logits, persistent=False)

    @property
    def heads(self) -> nn.ModuleDict:
        return self.modality_heads

    def modality_modules(self, modality: str) -> list[nn.Module]:
        return [self.modality_heads[modality]]

    def log_weights(self, present: Tensor) -> Tensor:
        """[B, M] log combination weights: softmax of the weight logits over the present modalities
        (over all of them for a sample with none present); -inf for absent modalities."""
        counted = present | ~present.any(dim=1, keepdim=True)
        scores = self.weight_logits.float().expand(present.shape[0], -1)
        return torch.log_softmax(scores.masked_fill(~counted, float("-inf")), dim=1)

    def combine(self, outputs: list[Tensor], present: Tensor) -> Tensor:
        """The fused prediction from the per-modality head outputs (in `modalities` order)."""
        log_w = self.log_weights(present)
        stacked = torch.stack([out.float() for out in outputs], dim=1)  # [B, M, C]
        if self.combine_probabilities:
            return torch.logsumexp(torch.log_softmax(stacked, dim=-1) + log_w.unsqueeze(-1), dim=1)
        return (stacked * log_w.exp().unsqueeze(-1)).sum(dim=1)

    def forward(self, features, present, masks=None, labels=None, probe=False) -> FusionOutput:
        vectors = vector_features(features, self.modalities, masks)
        unimodal = {m: self.modality_heads[m](z) for m, z in zip(self.modalities, vectors)}

        def predictor(fused: Tensor) -> Tensor:  # the combination on concatenated features, same presence
            parts = split_features(fused, self.dims)
            return self.combine([self.modality_heads[m](z) for m, z in zip(self.modalities, parts)], present)

        return FusionOutput(
            logits=self.combine(list(unimodal.values()), present),
            unimodal_logits=unimodal,
            predictor=predictor,
            fused=torch.cat(vectors, dim=-1),
        )


def build_late(config: LateConfig, ctx: BuildContext) -> LateFusion:
    return LateFusion(ctx.modalities, ctx.feature_dims, ctx.num_outputs, ctx.task, config)


def register(registry: ComponentRegistry) -> None:
    registry.fusion(
        "late",
        LateConfig,
        build_late,
        provides={"unimodal_logits", "per_modality_heads"},
        help="per-modality heads; probabilities (or raw outputs) averaged over the present modalities",
    )

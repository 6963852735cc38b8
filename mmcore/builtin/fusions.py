"""Built-in vector fusions: `concat`, `sum`, `film`, `gated`, plus the helpers the other fusions share.

Every fusion sees absent modalities' features already zeroed (MultimodalModel.fuse) and `present`
as bool [B, M] in `self.modalities` order. Sequence features [B, T, D] are mean-pooled over their
real steps first. None of these fusions keeps buffers or emits aux losses, so `probe=True` needs
no special path; a sample with every modality absent gets the heads' bias-only prediction.
"""
from __future__ import annotations

import attrs
import torch
from attrs import validators as v
from torch import Tensor, nn

from mmcore.errors import ConfigError
from mmcore.interfaces import Fusion
from mmcore.registry import BuildContext, ComponentRegistry
from mmcore.types import FusionOutput


# -- shared helpers ------------------------------------------------------------------------------
def pool_steps(features: Tensor, mask: Tensor | None) -> Tensor:
    """[B, T, D] -> [B, D]: mean over the real steps (plain mean without a mask; zeros for a
    sample without any real step)."""
    if mask is None:
        return features.mean(dim=1)
    weights = mask.to(features.dtype).unsqueeze(-1)
    return (features * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def vector_features(
    features: dict[str, Tensor], modalities: tuple[str, ...], masks: dict[str, Tensor] | None
) -> list[Tensor]:
    """One [B, D_m] tensor per modality, in `modalities` order (sequences pooled over real steps)."""
    masks = masks or {}
    return [pool_steps(features[m], masks.get(m)) if features[m].dim() == 3 else features[m] for m in modalities]


def split_features(fused: Tensor, dims: list[int]) -> list[Tensor]:
    return list(torch.split(fused, dims, dim=-1))


def presence_column(present: Tensor, index: int, like: Tensor) -> Tensor:
    """present[:, index] as a [B, 1] float column in `like`'s dtype."""
    return present[:, index : index + 1].to(like.dtype)


def common_dim(requested: int | None, ctx: BuildContext) -> int:
    return requested if requested is not None else max(ctx.feature_dims[m] for m in ctx.modalities)


positive_int = [v.instance_of(int), v.gt(0)]


# -- concat --------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class ConcatConfig:
    """One Linear on [z_1; ...; z_M]. Deliberately linear: a hidden layer would break the exact
    decomposition into per-modality logits that OGM-GE-style balancers read."""


class ConcatFusion(Fusion):
    """logits = W [z_1; ...; z_M] + b, computed as the sum of the per-modality logits
    W_m z_m + b/M (OGM-GE's weight-slice reading), so the decomposition is exact bit for bit."""

    provides = frozenset({"unimodal_logits"})

    def __init__(self, modalities: tuple[str, ...], feature_dims: dict[str, int], num_outputs: int) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.dims = [feature_dims[m] for m in self.modalities]
        self.head = nn.Linear(sum(self.dims), num_outputs)

    def forward(self, features, present, masks=None, labels=None, probe=False) -> FusionOutput:
        vectors = vector_features(features, self.modalities, masks)
        weight_slices = torch.split(self.head.weight, self.dims, dim=1)
        shared_bias = self.head.bias / len(self.modalities)
        unimodal = {
            m: nn.functional.linear(z, w, shared_bias) for m, z, w in zip(self.modalities, vectors, weight_slices)
        }
        logits = sum(unimodal.values())
        return FusionOutput(
            logits=logits, unimodal_logits=unimodal, predictor=self.head, fused=torch.cat(vectors, dim=-1)
        )


def build_concat(config: ConcatConfig, ctx: BuildContext) -> ConcatFusion:
    return ConcatFusion(ctx.modalities, ctx.feature_dims, ctx.num_outputs)


# -- sum -----------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class SumConfig:
    """One Linear head per modality; the logits are the sum of the heads' outputs."""


class SumFusion(Fusion):
    """logits = sum_m head_m(z_m); each head keeps its own bias (it stays when z_m is zeroed)."""

    provides = frozenset({"unimodal_logits", "per_modality_heads"})

    def __init__(self, modalities: tuple[str, ...], feature_dims: dict[str, int], num_outputs: int) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.dims = [feature_dims[m] for m in self.modalities]
        self.modality_heads = nn.ModuleDict({m: nn.Linear(feature_dims[m], num_outputs) for m in self.modalities})

    @property
    def heads(self) -> nn.ModuleDict:
        return self.modality_heads

    def modality_modules(self, modality: str) -> list[nn.Module]:
        return [self.modality_heads[modality]]

    def predict(self, fused: Tensor) -> Tensor:
        """The summed heads applied to concatenated features [z_1; ...; z_M]."""
        parts = split_features(fused, self.dims)
        return sum(self.modality_heads[m](z) for m, z in zip(self.modalities, parts))

    def forward(self, features, present, masks=None, labels=None, probe=False) -> FusionOutput:
        vectors = vector_features(features, self.modalities, masks)
        unimodal = {m: self.modality_heads[m](z) for m, z in zip(self.modalities, vectors)}
        return FusionOutput(
            logits=sum(unimodal.values()),
            unimodal_logits=unimodal,
            predictor=self.predict,
            fused=torch.cat(vectors, dim=-1),
        )


def build_sum(config: SumConfig, ctx: BuildContext) -> SumFusion:
    return SumFusion(ctx.modalities, ctx.feature_dims, ctx.num_outputs)


# -- film ----------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class FiLMConfig:
    condition: str | None = attrs.field(
        default=None,
        validator=v.optional(v.instance_of(str)),
        metadata={"help": "the conditioning modality that produces gamma and beta; default: the first"},
    )
    dim: int | None = attrs.field(
        default=None,
        validator=v.optional(positive_int),
        metadata={"help": "common feature size; default: the largest modality feature size"},
    )


class FiLMFusion(Fusion):
    """FiLM (Perez et al., 2018): the conditioning modality c yields gamma, beta = W z_c + b; the
    other modalities are projected (without bias) to a common size and summed, then modulated:
    fused = gamma * sum_{n != c} P_n z_n + beta, followed by a linear head.

    The projections have no bias so an absent (zeroed) modality adds nothing; with every other
    modality absent, fused = beta still carries the conditioning modality, as in OGM-GE's FiLM
    where the modulated branch is zeroed directly."""

    def __init__(
        self, modalities: tuple[str, ...], feature_dims: dict[str, int], num_outputs: int, condition: str, dim: int
    ) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.condition = condition
        self.dim = dim
        self.modulated = tuple(m for m in self.modalities if m != condition)
        self.film = nn.Linear(feature_dims[condition], 2 * dim)
        self.projections = nn.ModuleDict({m: nn.Linear(feature_dims[m], dim, bias=False) for m in self.modulated})
        self.head = nn.Linear(dim, num_outputs)

    def modality_modules(self, modality: str) -> list[nn.Module]:
        return [self.film] if modality == self.condition else [self.projections[modality]]

    def forward(self, features, present, masks=None, labels=None, probe=False) -> FusionOutput:
        vectors = dict(zip(self.modalities, vector_features(features, self.modalities, masks)))
        gamma, beta = self.film(vectors[self.condition]).chunk(2, dim=-1)
        projected = [self.projections[m](vectors[m]) for m in self.modulated]
        summed = sum(projected) if projected else torch.zeros_like(beta)
        fused = gamma * summed + beta
        return FusionOutput(logits=self.head(fused), predictor=self.head, fused=fused)


def build_film(config: FiLMConfig, ctx: BuildContext) -> FiLMFusion:
    condition = config.condition if config.condition is not None else ctx.modalities[0]
    if condition not in ctx.modalities:
        raise ConfigError(
            f"$.fusion.condition: {condition!r} is not a modality of this run ({', '.join(ctx.modalities)})"
        )
    return FiLMFusion(ctx.modalities, ctx.feature_dims, ctx.num_outputs, condition, common_dim(config.dim, ctx))


# -- gated ---------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class GatedConfig:
    dim: int | None = attrs.field(
        default=None,
        validator=v.optional(positive_int),
        metadata={"help": "common feature size; default: the largest modality feature size"},
    )


class GatedFusion(Fusion):
    """fused = sum over present m of sigmoid(G_m z_m) * P_m z_m (elementwise gates computed from the
    modality's own features), followed by a linear head. Absent modalities are left out of the
    sum explicitly, since their gates and projections still carry biases."""

    def __init__(self, modalities: tuple[str, ...], feature_dims: dict[str, int], num_outputs: int, dim: int) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.dim = dim
        self.projections = nn.ModuleDict({m: nn.Linear(feature_dims[m], dim) for m in self.modalities})
        self.gates = nn.ModuleDict({m: nn.Linear(feature_dims[m], dim) for m in self.modalities})
        self.head = nn.Linear(dim, num_outputs)

    def modality_modules(self, modality: str) -> list[nn.Module]:
        return [self.projections[modality], self.gates[modality]]

    def forward(self, features, present, masks=None, labels=None, probe=False) -> FusionOutput:
        vectors = vector_features(features, self.modalities, masks)
        fused = sum(
            presence_column(present, i, z) * torch.sigmoid(self.gates[m](z)) * self.projections[m](z)
            for i, (m, z) in enumerate(zip(self.modalities, vectors))
        )
        return FusionOutput(logits=self.head(fused), predictor=self.head, fused=fused)


def build_gated(config: GatedConfig, ctx: BuildContext) -> GatedFusion:
    return GatedFusion(ctx.modalities, ctx.feature_dims, ctx.num_outputs, common_dim(config.dim, ctx))


def register(registry: ComponentRegistry) -> None:
    registry.fusion(
        "concat",
        ConcatConfig,
        build_concat,
        provides={"unimodal_logits"},
        help="linear head on the concatenated features; per-modality logits from its weight slices",
    )
    registry.fusion(
        "sum",
        SumConfig,
        build_sum,
        provides={"unimodal_logits", "per_modality_heads"},
        help="one linear head per modality, logits summed",
    )
    registry.fusion("film", FiLMConfig, build_film, help="FiLM: one modality modulates the others (gamma, beta)")
    registry.fusion("gated", GatedConfig, build_gated, help="sigmoid-gated sum of projected modality features")


"""`sam_lml` attention supervisor: ranking supervision of any attention fusion's records (Eq. 3-15, 26-29).

Per record, corrupted keys are scored with the block's own projections (`record.score_fn`), so no
extra forward pass runs. Intra-modal records get noise addition, decomposition replacement, the
variance and the context constraint; inter-modal records get noise addition, modality mixing and
the variance constraint (paper §3.1-3.2). The returned terms are already weighted as Eq. 29; their
unweighted sums go to `state.metrics["supervisor/sam_lml/<term>"]`.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

import mmcore
from mmcore_sam_lml import losses as L
from mmcore_sam_lml.config import SamLmlConfig
from mmcore_sam_lml.decomposition import Decomposer
from mmcore_sam_lml.discovery import RecordShape, discover_records


def module_key(record_name: str) -> str:
    """A ModuleDict key for a record name ('layer1/intra/a' -> 'layer1__intra__a')."""
    return record_name.replace("/", "__").replace("->", "_to_").replace(".", "_")


def valid_steps(mask: Tensor | None, like: Tensor) -> Tensor:
    return mask if mask is not None else torch.ones(like.shape[:2], dtype=torch.bool, device=like.device)


class SamLmlSupervisor:
    requires: ClassVar[frozenset[str]] = frozenset({"attention"})

    def __init__(self, config: SamLmlConfig, shapes: list[RecordShape]) -> None:
        self.config = config
        self.shapes = shapes
        self.decomposers = nn.ModuleDict()
        self.namespace = "sam_lml"

    # -- assembly ---------------------------------------------------------------------------
    def attach(self, model: mmcore.MultimodalModel) -> None:
        """Registers one Decom/Compo pair per supervised intra-modal record on `model.extras`."""
        cfg = self.config
        if cfg.decomposition and cfg.intra:
            for shape in self.shapes:
                if shape.kind == "intra":
                    hidden = cfg.decomposition_hidden or shape.key_dim
                    self.decomposers[module_key(shape.name)] = Decomposer(shape.key_dim, hidden)
        index = 0
        while self.namespace in model.extras:  # a second sam_lml supervisor gets its own corner
            index += 1
            self.namespace = f"sam_lml_{index}"
        model.extras[self.namespace] = self.decomposers

    # -- the step -------------------------------------------------------------------------------
    def losses(self, state: mmcore.StepState) -> dict[str, Tensor]:
        cfg = self.config
        fusion = state.pass_outputs[-1].fusion  # this pass's output (a step owner may run several)
        generator = state.generator("sam_lml")
        raw: dict[str, list[Tensor]] = defaultdict(list)
        for record in fusion.attention:
            if (record.kind == "intra" and cfg.intra) or (record.kind == "inter" and cfg.inter):
                for term, value in self.record_terms(record, fusion.predictor, generator).items():
                    raw[term].append(value)
        sums = {term: torch.stack(values).sum() for term, values in raw.items()}
        for term, value in sums.items():
            state.metrics[f"supervisor/{self.namespace}/{term}"] = value.detach()
        return self.weighted(sums, fusion.logits)

    def weighted(self, sums: dict[str, Tensor], like: Tensor) -> dict[str, Tensor]:
        """Eq. 29 (and Eq. 13 inside the decomposition term); every enabled term is always present."""
        cfg = self.config
        zero = like.new_zeros((), dtype=torch.float32)
        get = lambda term: sums.get(term, zero)  # noqa: E731
        out: dict[str, Tensor] = {}
        if cfg.noise or cfg.augmented_noise:
            out["noise"] = cfg.alpha * (get("noise") + get("augmented_noise"))
        if cfg.decomposition and cfg.intra:
            parts = get("orthogonality") + get("mi") + cfg.distance_weight * get("distance") + get("reconstruction")
            out["decomposition"] = cfg.alpha * (get("decomposition") + cfg.alpha_de * parts)
        if cfg.mixing and cfg.inter:
            out["mixing"] = cfg.alpha_mix * get("mixing")
        if cfg.variance:
            out["variance"] = cfg.alpha_c * get("variance")
        if cfg.context and cfg.intra:
            out["context"] = cfg.alpha_c * get("context")
        return out

    def record_terms(self, record: mmcore.AttentionRecord, predictor: Any, generator: torch.Generator) -> dict[str, Tensor]:
        """The unweighted terms one record contributes."""
        cfg = self.config
        scores = record.scores.float()
        queries_ok = valid_steps(record.query_mask, record.queries)
        keys_ok = valid_steps(record.key_mask, record.keys)
        pairs = L.pair_mask(queries_ok, keys_ok)
        terms: dict[str, Tensor] = {}
        if cfg.noise or cfg.augmented_noise:
            terms |= self.noise_terms(record, scores, pairs, generator)
        if cfg.variance:
            terms["variance"] = L.variance_loss(scores, queries_ok, keys_ok, cfg.beta)
        if record.kind == "intra":
            if cfg.context:
                terms["context"] = L.context_loss(scores, queries_ok, keys_ok, cfg.gamma, cfg.rho)
            if cfg.decomposition:
                terms |= self.decomposition_terms(record, scores, pairs, keys_ok, predictor, generator)
        elif cfg.mixing and scores.shape[-1] == scores.shape[-2]:  # Eq. 28 needs aligned steps
            terms["mixing"] = self.mixing_term(record, scores, queries_ok & keys_ok, generator)
        return terms

    def gaussian(self, like: Tensor, generator: torch.Generator) -> Tensor:
        noise = torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
        return noise * self.config.noise_std

    def uniform_per_sample(self, like: Tensor, generator: torch.Generator) -> Tensor:
        """lambda ~ U(0, 1), one per sample, shaped to broadcast over [B, T, d]."""
        return torch.rand((like.shape[0], 1, 1), generator=generator, device=like.device, dtype=like.dtype)

    def noise_terms(self, record, scores, pairs, generator) -> dict[str, Tensor]:
        """Eq. 3-6: A^n from pure-noise keys; A^n' from lambda U + (1 - lambda) N with the same N."""
        cfg = self.config
        noise = self.gaussian(record.keys, generator)
        noisy = record.score_fn(record.queries, noise).float()
        terms = {}
        if cfg.noise:
            terms["noise"] = L.ranking_hinge(noisy, scores, cfg.gamma1, pairs)
        if cfg.augmented_noise:
            lam = self.uniform_per_sample(record.keys, generator)
            augmented = record.score_fn(record.queries, lam * record.keys + (1 - lam) * noise).float()
            terms["augmented_noise"] = L.ranking_hinge(noisy, augmented, cfg.gamma1, pairs)
        return terms

    def decomposition_terms(self, record, scores, pairs, keys_ok, predictor, generator) -> dict[str, Tensor]:
        """Eq. 7-13: rank the label-irrelevant K^de below the real keys, plus its constraints."""
        cfg = self.config
        decomposer = self.decomposers[module_key(record.name)]
        irrelevant, relevant, reconstructed = decomposer(record.keys)
        replaced = record.score_fn(record.queries, irrelevant).float()
        terms = {
            "decomposition": L.ranking_hinge(replaced, scores, cfg.gamma1, pairs),
            "orthogonality": L.orthogonality_loss(relevant.float(), irrelevant.float(), keys_ok),
            "distance": L.distance_loss(record.keys.float(), irrelevant.float(), keys_ok, cfg.epsilon),
            "reconstruction": L.reconstruction_loss(record.keys.float(), reconstructed.float(), keys_ok),
        }
        if cfg.mi:
            noise = self.gaussian(irrelevant, generator)
            terms["mi"] = L.prediction_gap_loss(predictor(irrelevant).float(), predictor(noise).float(), keys_ok)
        return terms

    def mixing_term(self, record, scores, steps_ok, generator) -> Tensor:
        """Eq. 26-28: K^mix = lambda X_{m2} + (1 - lambda) X_{m1}; the aligned score must rise."""
        lam = self.config.mix_lambda or self.uniform_per_sample(record.keys, generator)
        mixed = record.score_fn(record.queries, lam * record.keys + (1 - lam) * record.queries).float()
        return L.mixing_loss(scores, mixed, self.config.gamma1, steps_ok)

    # -- checkpoints: the networks live on the model; randomness comes from the trainer's generator
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def build_sam_lml_supervisor(config: SamLmlConfig, ctx: mmcore.BuildContext) -> SamLmlSupervisor:
    shapes = discover_records(ctx)
    if config.mi and config.decomposition and config.intra:
        for shape in shapes:
            if shape.kind == "intra" and shape.predictor_dim != shape.key_dim:
                raise mmcore.ConfigError(
                    f"$.attention_supervisors: sam_lml term mi (Eq. 12) applies the fusion's predictor to the "
                    f"keys of {shape.name!r} ({shape.key_dim} wide), but that predictor takes "
                    f"{shape.predictor_dim or 'no'} features; use the sam_lml fusion or set mi = false")
    return SamLmlSupervisor(config, shapes)

"""MultimodalModel: one encoder per modality and one fusion, with drops and presence masks."""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, Literal

import torch
from torch import Tensor, nn

from mmcore.interfaces import Encoder, Fusion
from mmcore.types import Batch, FusionOutput, ModelOutput

DropLevel = Literal["feature", "input"]
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class MultimodalModel(nn.Module):
    """Encoders + fusion. Balancers and supervisors that own modules register them in `extras`,
    so the optimizer, `.to(device)`, DDP and checkpoints see them."""

    def __init__(self, encoders: dict[str, Encoder], fusion: Fusion, modalities: Iterable[str]) -> None:
        super().__init__()
        self.modalities: tuple[str, ...] = tuple(modalities)
        self.encoders = nn.ModuleDict({m: encoders[m] for m in self.modalities})
        self.fusion = fusion
        self.extras = nn.ModuleDict()  # modules owned by balancers / supervisors, by namespace
        # features -> features between encoders and fusion (feature-level corruption); set by the trainer
        self.feature_transform: Callable[[dict[str, Tensor], Batch], dict[str, Tensor]] | None = None
        self._columns: dict[tuple[frozenset[str], str], Tensor] = {}

    # -- the two halves --------------------------------------------------------------------
    def encode(
        self,
        batch: Batch,
        active: Iterable[str] | None = None,
        drop: Iterable[str] = (),
        drop_at: DropLevel = "feature",
    ) -> dict[str, Tensor]:
        """Features per modality. Inactive modalities are not encoded (zeros); input-level drops
        run the encoder once on a zero input of batch size 1 and broadcast it."""
        active_set = set(self.modalities if active is None else active)
        dropped = set(drop)
        features: dict[str, Tensor] = {}
        for m in self.modalities:
            x, mask = batch.inputs[m], batch.masks.get(m)
            encoder = self.encoders[m]
            if m not in active_set or (m in dropped and drop_at == "feature"):
                features[m] = self._zeros_like_output(encoder, x)
            elif m in dropped:  # input level: encoder(0), shared by every sample
                features[m] = self._encode_zeros(encoder, x, mask)
            else:
                features[m] = encoder(x, mask)
        return features

    def fuse(
        self,
        features: dict[str, Tensor],
        present: Tensor,
        masks: dict[str, Tensor] | None = None,
        labels: Tensor | None = None,
        probe: bool = False,
    ) -> FusionOutput:
        """Run the fusion with absent modalities' features zeroed (one mechanism for missing data,
        feature drops, inactive modalities and resampling copies)."""
        weights = present.to(next(iter(features.values())).dtype)  # one conversion for every modality
        zeroed = {
            m: features[m] * weights[:, i].view(-1, *([1] * (features[m].dim() - 1)))
            for i, m in enumerate(self.modalities)
        }
        return self.fusion(zeroed, present, masks=masks, labels=labels if not probe else None, probe=probe)

    def forward(
        self,
        batch: Batch,
        active: Iterable[str] | None = None,
        drop: Iterable[str] = (),
        drop_at: DropLevel = "feature",
        labels: Tensor | None = None,
    ) -> ModelOutput:
        features = self.encode(batch, active=active, drop=drop, drop_at=drop_at)
        if self.feature_transform is not None:
            features = self.feature_transform(features, batch)
        present = self.presence(batch.present, active=active, drop=drop if drop_at == "feature" else ())
        return ModelOutput(features, self.fuse(features, present, batch.masks, labels=labels), present)

    def coalition_fuser(
        self, batch: Batch, drop_at: DropLevel = "feature", active: Iterable[str] | None = None
    ) -> Callable[[Iterable[str]], FusionOutput]:
        """`fuse_coalition(coalition)`: the fusion's output with the modalities outside the coalition
        muted, as `model(batch, drop=others, drop_at=...)` gives it, but every encoder runs at most
        twice in all — once on the real input, once muted (on zeros at batch size 1 for input-level
        drops; no pass at feature level) — and each coalition costs one fusion pass (side-effect
        free, `probe=True`). Gradients flow unless the caller disables them; the caller sets the
        mode (AGM's masked passes: eval mode with autograd on)."""
        active_set = set(self.modalities if active is None else active)
        cache: dict[str, dict[str, Tensor]] = {}

        def features(kind: str) -> dict[str, Tensor]:
            if kind not in cache:
                drop = () if kind == "real" else self.modalities
                cache[kind] = self.encode(batch, active=active_set, drop=drop, drop_at=drop_at)
            return cache[kind]

        def fuse_coalition(coalition: Iterable[str]) -> FusionOutput:
            members = set(coalition)
            muted = [m for m in self.modalities if m not in members]
            feats = {m: (features("muted") if m in muted else features("real"))[m] for m in self.modalities}
            if self.feature_transform is not None:
                feats = self.feature_transform(feats, batch)
            present = self.presence(batch.present, active=active_set, drop=muted if drop_at == "feature" else ())
            return self.fuse(feats, present, batch.masks, probe=True)

        return fuse_coalition

    # -- masks and parameter groups ----------------------------------------------------------
    def presence(self, present: Tensor, active: Iterable[str] | None = None, drop: Iterable[str] = ()) -> Tensor:
        """`present` AND the modalities that are active and not dropped, as bool [B, M]."""
        keep = frozenset(self.modalities if active is None else active) - set(drop)
        return present & self._presence_column(keep, present.device)

    def _presence_column(self, keep: frozenset[str], device: torch.device) -> Tensor:
        """Cached per (kept modalities, device): building it anew is a host-to-device copy that
        blocks on CUDA, once per forward and per probe."""
        key = (keep, str(device))
        if key not in self._columns:
            self._columns[key] = torch.tensor([m in keep for m in self.modalities], device=device)
        return self._columns[key]

    def coalition_presence(self, present: Tensor, coalition: Iterable[str]) -> Tensor:
        """Presence for a coalition: only its members stay (where the batch has them)."""
        return self.presence(present, active=coalition)

    @property
    def heads(self) -> nn.ModuleDict | None:
        return self.fusion.heads

    def encoder_params(self, modality: str) -> list[nn.Parameter]:
        return list(self.encoders[modality].parameters())

    def modality_params(self, modality: str) -> list[nn.Parameter]:
        """The encoder plus the fusion's per-modality parts, by module identity."""
        seen: set[int] = set()
        params: list[nn.Parameter] = []
        for module in [self.encoders[modality], *self.fusion.modality_modules(modality)]:
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        return params

    def named_modality_params(self) -> Iterator[tuple[str, list[nn.Parameter]]]:
        for m in self.modalities:
            yield m, self.modality_params(m)

    @staticmethod
    def _encode_zeros(encoder: Encoder, x: Tensor, mask: Tensor | None) -> Tensor:
        """encoder(0) once at batch size 1, broadcast to the batch. Its BatchNorm layers run in eval
        mode: the zero input is no sample of the batch, so it must neither update the running
        statistics nor need batch statistics (a batch of one has none)."""
        norms = [n for n in encoder.modules() if isinstance(n, _BATCH_NORMS) and n.training]
        one_mask = None if mask is None else torch.ones_like(mask[:1])
        for n in norms:
            n.eval()
        try:
            out = encoder(torch.zeros_like(x[:1]), one_mask)
        finally:
            for n in norms:
                n.train()
        return out.expand(x.shape[0], *out.shape[1:])

    @staticmethod
    def _zeros_like_output(encoder: Encoder, x: Tensor) -> Tensor:
        if encoder.sequence:
            return x.new_zeros(x.shape[0], x.shape[1], encoder.out_dim)
        return x.new_zeros(x.shape[0], encoder.out_dim)

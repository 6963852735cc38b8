"""modality_valuation: value each modality's contribution with Shapley values, then re-train the
low-contributing one (Wei, Feng, Wang, Hu, CVPR 2024; spec §4).

Each epoch after warm-up starts with a valuation of the train split at the current weights
(the official code valuates at the end of the previous epoch: the same weights), then plans the
epoch through TrainControl. A plan is a pure function of the weights, the run seed and the epoch,
and the core checkpoints it, so a resumed run trains the same resampled epochs.
"""
from __future__ import annotations

import zlib
from typing import Any

import torch
from torch import Tensor

import mmcore
from mmcore_modality_valuation import plans
from mmcore_modality_valuation.config import ModalityValuationConfig
from mmcore_modality_valuation.masking import mask_strong_inputs
from mmcore_modality_valuation.shapes import copy_counts, modality_gap, resample_probability
from mmcore_modality_valuation.value import valuate

KIND = "modality_valuation"


class ModalityValuation(mmcore.Balancer):
    def __init__(self, config: ModalityValuationConfig, seed: int) -> None:
        self.config, self.seed = config, seed
        self.diagnostics: dict[str, float] = {}  # this epoch's, logged with every step
        self.masked: list[str] = []  # modalities the mask strategy masks in this epoch

    # -- the epoch: valuate, then plan ------------------------------------------------------
    def on_epoch_start(self, epoch: int, control: mmcore.TrainControl) -> None:
        if epoch < self.config.warmup_epochs:
            control.plan_epoch(None)  # plain joint training
            self.diagnostics, self.masked = {}, []
            return
        generator = torch.Generator().manual_seed(zlib.crc32(f"{KIND}/{self.seed}/epoch{epoch}".encode()))
        if self.config.level == "sample":
            plan = self._sample_level(control, generator)
        else:
            plan = self._modality_level(control, generator)
        control.plan_epoch(plan)
        self.diagnostics["epoch_rows"] = len(plan) / control.num_samples("train")

    def _valuate(self, control: mmcore.TrainControl, subset: Tensor | None, generator: torch.Generator) -> Tensor:
        cfg = self.config
        rows, phi = valuate(control, subset, batch_size=cfg.batch_size or None, method=cfg.shapley_method,
                            samples=cfg.shapley_samples, generator=generator)
        self.diagnostics = {"evaluated": float(rows.numel())}
        self.diagnostics |= {f"phi/{m}": float(v) for m, v in zip(control.modalities, phi.mean(0).tolist())}
        if subset is not None:
            return phi  # in subset order
        table = torch.zeros(control.num_samples("train"), phi.shape[1])
        table[rows] = phi
        return table

    def _sample_level(self, control: mmcore.TrainControl, generator: torch.Generator) -> list[plans.Entry]:
        cfg, modalities = self.config, control.modalities
        phi = self._valuate(control, None, generator)
        counts = copy_counts(phi, cfg.copy_shape, cfg.copy_scale, cfg.rounding, generator)
        if cfg.strategy == "resample":
            self._record(modalities, copies=counts.sum(0))
            return plans.copies_plan(counts, modalities)
        selected, strong = plans.selected_strong(phi, counts)
        self._record(modalities, altered=torch.bincount(strong[selected], minlength=len(modalities)))
        return plans.altered_plan(cfg.strategy, selected, strong, modalities)

    def _modality_level(self, control: mmcore.TrainControl, generator: torch.Generator) -> list[plans.Entry]:
        cfg, modalities, rows = self.config, control.modalities, control.num_samples("train")
        subset = torch.randint(rows, (max(1, int(cfg.part_ratio * rows)),), generator=generator)  # with replacement
        gap = modality_gap(self._valuate(control, subset, generator))
        p = resample_probability(gap.d, cfg.probability_shape, cfg.alpha, cfg.norm_scale)
        extra = int(p * rows)  # the official code's int(p * N)
        self.diagnostics |= {"d": gap.d, "p": p} | {f"weak/{m}": float(k == gap.weak) for k, m in enumerate(modalities)}
        if cfg.strategy == "resample":
            self._record(modalities, copies=extra * torch.eye(len(modalities), dtype=torch.long)[gap.weak])
            return plans.extra_rows_plan(rows, torch.randint(rows, (extra,), generator=generator), modalities[gap.weak])
        # drop and mask alter rows in place, so here a row is drawn at most once
        selected = torch.zeros(rows, dtype=torch.bool)
        selected[torch.randperm(rows, generator=generator)[:extra]] = True
        self._record(modalities, altered=extra * torch.eye(len(modalities), dtype=torch.long)[gap.strong])
        return plans.altered_plan(cfg.strategy, selected, torch.full((rows,), gap.strong), modalities)

    def _record(self, modalities: tuple[str, ...], copies: Tensor | None = None, altered: Tensor | None = None) -> None:
        """Rows added that train m alone (resample), or rows whose strong modality m is dropped or
        masked (drop, mask); the mask strategy draws masks only for the latter's modalities."""
        zero = torch.zeros(len(modalities), dtype=torch.long)
        copies = zero if copies is None else copies
        altered = zero if altered is None else altered
        self.diagnostics |= {f"copies/{m}": float(n) for m, n in zip(modalities, copies.tolist())}
        self.diagnostics |= {f"altered/{m}": float(n) for m, n in zip(modalities, altered.tolist())}
        masking = self.config.strategy == "mask"
        self.masked = [m for m, n in zip(modalities, altered.tolist()) if n and masking]

    # -- the step -----------------------------------------------------------------------------
    def before_forward(self, state: mmcore.StepState) -> None:
        if self.masked:
            mask_strong_inputs(state, self.masked, self.config.mask_ratio)

    def before_backward(self, state: mmcore.StepState) -> None:
        if state.pass_index == 0:
            for name, value in self.diagnostics.items():
                state.metrics[f"balancer/{KIND}/{name}"] = value

    # -- checkpoints: the plan itself is the core's; these are the epoch's diagnostics ----------
    def state_dict(self) -> dict[str, Any]:
        return {"diagnostics": dict(self.diagnostics), "masked": list(self.masked)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.diagnostics = {k: float(v) for k, v in state["diagnostics"].items()}
        self.masked = list(state["masked"])


def build_modality_valuation(config: ModalityValuationConfig, ctx: mmcore.BuildContext) -> ModalityValuation:
    return ModalityValuation(config, ctx.seed)

"""`mie`: Modal-aware Interactive Enhancement (Jiang, Chi, Yang; arXiv 2407.04587; IGM, IJCAI 2025).

Training alternates stage-wise between modalities (schedule.py); in each step only the active
modality's encoder and head run and train (`state.active_modalities`), on its own head's loss:
mixup plus a SAM-style flat term (`sam_mode`). At every stage switch the best-on-validation weights
are reloaded, the optimizer and scheduler are reset, and the gradient-modification matrices T are
computed from the finished modality's head inputs (modification.py); during the next stage the
active head's Linear gradients are right-multiplied by T. Inference is the `late` fusion: the
average of the heads' probabilities.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import torch
from attrs import field, frozen
from attrs.validators import and_, deep_iterable, ge, gt, in_, instance_of, le, optional

import mmcore
from mmcore_mie.flat import flat_logits, float32_resolution
from mmcore_mie.mixup import draw_mix, mixed_batch, mixup_loss
from mmcore_mie.modification import input_covariances, modification_matrix, modify_gradients, paired_layers
from mmcore_mie.schedule import StageSchedule
from mmcore_mie.sharpness import sam_step

log = logging.getLogger("mmcore_mie")
REQUIRES = frozenset({"per_modality_heads", "unimodal_logits"})
SAM_MODES = ("paper", "head_only", "full")
PAPER_RHO = 1e-10  # paper §4.2.3: 1e-10 for audio/video; 1e-15 for image/text (set rho = 1e-15)
SAM_RHO = 0.05  # Foret et al.'s default, for the modes where the perturbation is real


def _positive_ints() -> Any:
    return deep_iterable(and_(instance_of(int), gt(0)))


@frozen(kw_only=True)
class MIEConfig:
    epoch_list: tuple[int, ...] = field(default=(), converter=tuple, validator=_positive_ints(), metadata={
        "help": "epochs per stage, repeated over the run (official CREMA-D: [25, 50]); "
                "empty = two rounds of equal stages (ours)"})
    order: tuple[str, ...] = field(default=(), converter=tuple, validator=deep_iterable(instance_of(str)), metadata={
        "help": "modality of stage 0, 1, ... (round robin); empty = data order"})
    tau: float = field(default=0.4, validator=[instance_of(float), gt(0.0)], metadata={
        "help": "scaling factor of T: the top direction is damped by exp(-tau) (paper: 0.4)"})
    covariance_batch_size: int = field(default=12, validator=and_(instance_of(int), ge(1)), metadata={
        "help": "batch size of the covariance pass (paper: 12)"})
    modify_gradients: bool = field(default=True, validator=instance_of(bool), metadata={
        "help": "apply T (false: the paper's 'w/o GM' ablation)"})
    mixup_alpha: float = field(default=1.0, validator=[instance_of(float), ge(0.0)], metadata={
        "help": "mixup Beta(a, a) on the active modality (official code: 1.0); 0 = off"})
    flat_ratio: float = field(default=0.3, validator=[instance_of(float), ge(0.0), le(1.0)], metadata={
        "help": "beta in (1 - beta) L_ori + beta L_flat, modes paper/head_only (official: 0.3)"})
    flat_targets: str = field(default="unmixed", validator=in_(("unmixed", "mixed")), metadata={
        "help": "labels of the flat term: unmixed (official code) | mixed (mixup targets)"})
    sam_mode: str = field(default="paper", validator=in_(SAM_MODES), metadata={
        "help": "paper: official flat term at the paper's rho (a no-op in fp32, warned); "
                "head_only: the same with a real rho; full: a SAM step on the active branch"})
    rho: float | None = field(default=None, validator=optional(and_(instance_of(float), ge(0.0))), metadata={
        "help": "perturbation radius; unset = 1e-10 (paper) for sam_mode paper, 0.05 otherwise"})
    perturbation_norm: str = field(default="global", validator=in_(("global", "per_tensor")), metadata={
        "help": "norm of the flat term's eps: global (paper Eq. 3) | per_tensor (official code)"})


class MIE(mmcore.Balancer):
    requires = REQUIRES

    def __init__(self, config: MIEConfig, schedule: StageSchedule) -> None:
        self.config, self.schedule = config, schedule
        self.owns_step = config.sam_mode == "full"
        self.rho = config.rho if config.rho is not None else (PAPER_RHO if config.sam_mode == "paper" else SAM_RHO)
        self.matrices: list[torch.Tensor] = []  # T per head Linear position, from `source`'s head
        self.source: str | None = None
        self.model: mmcore.MultimodalModel | None = None
        self.head_inputs: dict[str, torch.Tensor] = {}
        self.handles: list[Any] = []

    # -- attach: record each head's input (the flat term re-runs the head on it) ------------------
    def attach(self, model: mmcore.MultimodalModel) -> None:
        self.model = model
        for m in self.schedule.order:
            self.handles.append(model.heads[m].register_forward_pre_hook(self._recorder(m)))
        if self.config.sam_mode != "full":
            self._warn_below_resolution(model)

    def _recorder(self, modality: str) -> Callable[..., None]:
        def record(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            if module.training and torch.is_grad_enabled():
                self.head_inputs[modality] = inputs[0]
        return record

    def _warn_below_resolution(self, model: mmcore.MultimodalModel) -> None:
        resolution = min(float32_resolution(model.heads[m]) for m in self.schedule.order)
        if self.rho < resolution:
            log.warning("mie: rho = %g is below float32 resolution of the heads' weights (about %.1e for the median "
                        "|w|): theta + eps == theta, so the flat term is the loss at the unperturbed head. Use "
                        "sam_mode = \"full\" (or \"head_only\") for a real sharpness-aware step.", self.rho, resolution)

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    # -- stages ---------------------------------------------------------------------------------
    def on_epoch_end(self, epoch: int, metrics: dict[str, float], control: mmcore.TrainControl) -> None:
        if self.schedule.switches_after(epoch):
            control.restore("best")
            control.reset_optimizer()
            finished = self.schedule.modality(epoch)
            if self.config.modify_gradients:
                covariances = input_covariances(control, self.model, finished, self.config.covariance_batch_size)
                self.matrices = [modification_matrix(c, self.config.tau).float() for c in covariances]
                self.source = finished

    # -- the step -------------------------------------------------------------------------------
    def before_forward(self, state: mmcore.StepState) -> None:
        active = self.schedule.modality(state.epoch)
        state.active_modalities = (active,)
        stash = state.private("mie")
        if state.pass_index == 0:  # one draw per step; pass 1 (sam_mode full) mixes the same way
            device = state.batch.label.device
            stash["mix"] = draw_mix(self.config.mixup_alpha, state.batch.size, state.generator("mie/mixup"), device)
            state.metrics["balancer/mie/active"] = float(self.schedule.order.index(active))
        if self.config.mixup_alpha > 0:
            state.batch = mixed_batch(state.batch, active, *stash["mix"])

    def before_backward(self, state: mmcore.StepState) -> None:
        """The task loss becomes the active head's own: mixup, plus the flat term (paper/head_only)."""
        active = self.schedule.modality(state.epoch)
        lam, permutation = state.private("mie")["mix"]
        loss_ori = mixup_loss(state, state.pass_outputs[-1].fusion.unimodal_logits[active], lam, permutation)
        head_input = self.head_inputs.pop(active, None)
        if self.config.sam_mode == "full":
            state.losses["task"] = loss_ori
            return
        flat = flat_logits(self.model.heads[active], head_input, loss_ori, self.rho,
                           per_tensor=self.config.perturbation_norm == "per_tensor")
        if self.config.flat_targets == "mixed":
            loss_flat = mixup_loss(state, flat.logits, lam, permutation)
        else:
            loss_flat = state.task_loss(flat.logits, state.batch.label)
        beta = self.config.flat_ratio
        state.losses["task"] = (1 - beta) * loss_ori
        state.losses["mie/flat"] = beta * loss_flat
        state.metrics["balancer/mie/perturbed_fraction"] = flat.perturbed_fraction

    def after_backward(self, state: mmcore.StepState) -> None:
        self._modify(state)

    def step(self, closure: Callable[[], mmcore.StepState], finish: Callable[[], None],
             state: mmcore.StepState) -> None:
        sam_step(closure, state, self.rho)
        self._modify(state)
        finish()

    def _modify(self, state: mmcore.StepState) -> None:
        if self.matrices and self.source is not None:
            layers = paired_layers(state.model, self.source, self.schedule.modality(state.epoch))
            modify_gradients(layers, self.matrices)

    def state_dict(self) -> dict[str, Any]:
        return {"matrices": list(self.matrices), "source": self.source}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.matrices, self.source = list(state["matrices"]), state["source"]


def build_mie(config: MIEConfig, ctx: mmcore.BuildContext) -> MIE:
    order = config.order or tuple(ctx.modalities)
    if sorted(order) != sorted(ctx.modalities):
        raise mmcore.ConfigError(f"mie: order {list(order)} must list each modality of the run once "
                                 f"({', '.join(ctx.modalities)})")
    return MIE(config, StageSchedule.build(config.epoch_list, order, ctx.epochs))

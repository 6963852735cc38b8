"""Built-in optimizers (sgd, adam, adamw) and per-step schedulers (step, cosine)."""
from __future__ import annotations

import math

import torch
from attrs import field, frozen
from attrs.validators import ge, gt, instance_of

from mmcore.registry import BuildContext, ComponentRegistry


def _lr() -> float:
    return field(default=0.01, validator=gt(0.0), metadata={"help": "learning rate"})


def _weight_decay() -> float:
    return field(default=0.0, validator=ge(0.0), metadata={"help": "weight decay (L2 for sgd/adam, decoupled for adamw)"})


@frozen(kw_only=True)
class SGDConfig:
    lr: float = _lr()
    momentum: float = field(default=0.9, validator=ge(0.0), metadata={"help": "momentum"})
    weight_decay: float = _weight_decay()
    nesterov: bool = field(default=False, validator=instance_of(bool), metadata={"help": "Nesterov momentum"})


@frozen(kw_only=True)
class AdamConfig:
    lr: float = field(default=1e-3, validator=gt(0.0), metadata={"help": "learning rate"})
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"help": "Adam betas"})
    eps: float = field(default=1e-8, validator=gt(0.0), metadata={"help": "Adam epsilon"})
    weight_decay: float = _weight_decay()


def build_sgd(config: SGDConfig, ctx: BuildContext) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        ctx.params, lr=config.lr, momentum=config.momentum,
        weight_decay=config.weight_decay, nesterov=config.nesterov,
    )


def build_adam(config: AdamConfig, ctx: BuildContext) -> torch.optim.Optimizer:
    return torch.optim.Adam(ctx.params, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay)


def build_adamw(config: AdamConfig, ctx: BuildContext) -> torch.optim.Optimizer:
    return torch.optim.AdamW(ctx.params, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay)


@frozen(kw_only=True)
class StepLRConfig:
    step_epochs: int = field(default=30, validator=gt(0), metadata={"help": "decay the lr every this many epochs"})
    gamma: float = field(default=0.1, validator=gt(0.0), metadata={"help": "multiplicative decay"})
    warmup_steps: int = field(default=0, validator=ge(0), metadata={"help": "linear warm-up steps"})


@frozen(kw_only=True)
class CosineConfig:
    min_lr_ratio: float = field(default=0.0, validator=ge(0.0), metadata={"help": "final lr as a fraction of the initial"})
    warmup_steps: int = field(default=0, validator=ge(0), metadata={"help": "linear warm-up steps"})


def _warmup(step: int, warmup_steps: int) -> float:
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0


# Schedules follow training progress in epochs (`ctx.progress()`), not step counts, so epochs whose
# length an epoch plan changed (resampling methods) still decay on time. Warm-up counts steps.


def build_step(config: StepLRConfig, ctx: BuildContext) -> torch.optim.lr_scheduler.LRScheduler:
    def factor(step: int) -> float:
        epochs = ctx.progress()
        return _warmup(step, config.warmup_steps) * config.gamma ** math.floor(epochs / config.step_epochs)

    return torch.optim.lr_scheduler.LambdaLR(ctx.optimizer, factor)


def build_cosine(config: CosineConfig, ctx: BuildContext) -> torch.optim.lr_scheduler.LRScheduler:
    def factor(step: int) -> float:
        progress = min(1.0, ctx.progress() / ctx.epochs)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return _warmup(step, config.warmup_steps) * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)

    return torch.optim.lr_scheduler.LambdaLR(ctx.optimizer, factor)


def register(registry: ComponentRegistry) -> None:
    registry.optimizer("sgd", SGDConfig, build_sgd, help="stochastic gradient descent with momentum")
    registry.optimizer("adam", AdamConfig, build_adam, help="Adam")
    registry.optimizer("adamw", AdamConfig, build_adamw, help="AdamW (decoupled weight decay)")
    registry.scheduler("step", StepLRConfig, build_step, help="step decay every step_epochs, stepped per optimizer step")
    registry.scheduler("cosine", CosineConfig, build_cosine, help="cosine decay over the whole run, stepped per optimizer step")

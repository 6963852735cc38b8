"""Assembly: config + registry -> data, model, optimizer, scheduler, valuators, balancers, supervisors."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import attrs
import torch
import torch.nn.functional as F
from attrs import define, field
from torch import Tensor

from mmcore.data.base import DataBundle
from mmcore.errors import ConfigError, MMCoreError, PluginError
from mmcore.model import MultimodalModel
from mmcore.registry import BuildContext, ComponentRegistry

if TYPE_CHECKING:
    from mmcore.config import Component, RunConfig


def call_build(registry: ComponentRegistry, slot: str, component: Component, ctx: BuildContext, path: str) -> Any:
    """Build one component; a crash inside a plugin's build is reported with its distribution."""
    spec = registry.get(slot, component.kind)
    try:
        return spec.build(component.config, ctx)
    except MMCoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - the plugin's failure, named as such
        raise PluginError(spec.distribution, f"building {slot} {component.kind!r} at {path}: {type(exc).__name__}: {exc}") from exc


def build_data(config: RunConfig, registry: ComponentRegistry) -> DataBundle:
    ctx = BuildContext(modalities=config.data.modalities, registry=registry, seed=config.run.seed)
    return call_build(registry, "dataset", config.data, ctx, "$.data")


def base_context(config: RunConfig, registry: ComponentRegistry, data: DataBundle) -> BuildContext:
    info = data.info
    return BuildContext(
        modalities=info.modalities, task=info.task, num_outputs=info.num_outputs,
        input_shapes=dict(info.input_shapes), sequence=dict(info.sequence),
        registry=registry, seed=config.run.seed, epochs=config.run.epochs,
    )


def build_model(config: RunConfig, registry: ComponentRegistry, ctx: BuildContext) -> MultimodalModel:
    encoders = {}
    for m in ctx.modalities:
        encoders[m] = call_build(registry, "encoder", config.encoders[m], attrs.evolve(ctx, modality=m), f"$.encoders.{m}")
    ctx.feature_dims = {m: int(e.out_dim) for m, e in encoders.items()}
    ctx.feature_sequence = {m: bool(getattr(e, "sequence", False)) for m, e in encoders.items()}
    fusion = call_build(registry, "fusion", config.fusion, ctx, "$.fusion")
    fusion.modalities = tuple(ctx.modalities)
    return MultimodalModel(encoders, fusion, ctx.modalities)


@define
class Valuators:
    """Declared valuators by name, plus balancers' defaults, each run once per step."""

    registry: ComponentRegistry
    ctx: BuildContext
    declared: dict[str, Any] = field(factory=dict)
    defaults: dict[str, Any] = field(factory=dict)

    def resolve(self, name: str = "", kind: str = "shapley", **config: Any) -> str:
        """The key under which a balancer finds its values in `state.values`.

        A non-empty `name` must be a `[valuators.<name>]` table; otherwise a default valuator of
        `kind` with `config` is created once and shared by every balancer asking for the same one.
        """
        if name:
            if name not in self.declared:
                raise ConfigError(f"$.valuators: no valuator named {name!r}; declared: {', '.join(self.declared) or 'none'}")
            return name
        key = f"default:{kind}(" + ",".join(f"{k}={v}" for k, v in sorted(config.items())) + ")"
        if key not in self.defaults:
            spec = self.registry.get("valuator", kind)
            self.defaults[key] = spec.build(spec.config_cls(**config), self.ctx)
        return key

    def all(self) -> dict[str, Any]:
        return {**self.declared, **self.defaults}


def build_valuators(config: RunConfig, registry: ComponentRegistry, ctx: BuildContext) -> Valuators:
    valuators = Valuators(registry, ctx)
    for name, component in config.valuators.items():
        valuators.declared[name] = call_build(registry, "valuator", component, ctx, f"$.valuators.{name}")
    ctx.valuators = valuators.declared
    ctx.make_valuator = valuators.resolve
    return valuators


def build_balancers(config: RunConfig, registry: ComponentRegistry, ctx: BuildContext) -> list[Any]:
    return [
        call_build(registry, "balancer", c, ctx, f"$.balancers[{i}]") for i, c in enumerate(config.balancers)
    ]


def build_supervisors(config: RunConfig, registry: ComponentRegistry, ctx: BuildContext) -> list[Any]:
    return [
        call_build(registry, "attention_supervisor", c, ctx, f"$.attention_supervisors[{i}]")
        for i, c in enumerate(config.attention_supervisors)
    ]


def build_optimizer(config: RunConfig, registry: ComponentRegistry, ctx: BuildContext, model: MultimodalModel) -> tuple[Any, Any]:
    opt_ctx = attrs.evolve(ctx, params=[p for p in model.parameters()])
    optimizer = call_build(registry, "optimizer", config.optimizer, opt_ctx, "$.optimizer")
    scheduler = None
    if config.scheduler is not None:
        scheduler = call_build(registry, "scheduler", config.scheduler, attrs.evolve(ctx, optimizer=optimizer), "$.scheduler")
    return optimizer, scheduler


def make_task_loss(task: str) -> Callable[..., Tensor]:
    """The configured task loss: cross-entropy, binary cross-entropy on one logit, or L1 for regression
    (the MOSI/MOSEI convention)."""

    def task_loss(logits: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
        if task == "classification":
            return F.cross_entropy(logits.float(), y, reduction=reduction)
        if task == "binary":
            return F.binary_cross_entropy_with_logits(logits.float().squeeze(-1), y.float(), reduction=reduction)
        return F.l1_loss(logits.float().squeeze(-1), y.float(), reduction=reduction)

    return task_loss


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)

"""The `shapley` valuator kind: exact or Monte-Carlo Shapley values of the modalities, once per
step on pass 0, from head-only probes on the step's cached features (`value_modalities`)."""
from __future__ import annotations

from typing import Any, Sequence

import attrs
import torch
from attrs import field
from attrs.validators import ge, in_, instance_of

from mmcore.errors import ConfigError
from mmcore.registry import BuildContext, ComponentRegistry
from mmcore.types import ModalityValues, StepState
from mmcore.valuation import EMPTY_MODES, METHODS, resolve_method, value_modalities
from mmcore.value_functions import VALUE_FUNCTIONS, ValueFunction


@attrs.frozen(kw_only=True)
class ShapleyValuatorConfig:
    value: str = field(
        default="accuracy",
        validator=instance_of(str),
        metadata={"help": "value function: accuracy | true_class_prob | neg_loss | logits, or one a plugin registers"},
    )
    per: str = field(
        default="batch",
        validator=in_(("batch", "sample")),
        metadata={"help": "batch: values [M] (mean over samples); sample: values [B, M]"},
    )
    empty: str = field(
        default="zero",
        validator=in_(EMPTY_MODES),
        metadata={"help": "zero: v(empty coalition) = 0, never evaluated; evaluate: run the head with nothing present"},
    )
    method: str = field(
        default="auto",
        validator=in_(METHODS),
        metadata={"help": "exact (2^M - 1 head passes), permutation (Monte-Carlo), auto (exact for M <= 4)"},
    )
    samples: int = field(
        default=64, validator=[instance_of(int), ge(1)], metadata={"help": "random orderings per step (permutation)"}
    )
    seed: int = field(
        default=0, validator=instance_of(int), metadata={"help": "seed of the valuator's generator (permutation)"}
    )
    batch_coalitions: bool = field(
        default=True, validator=instance_of(bool),
        metadata={"help": "one fuse call for all coalitions (fusion rows independent in eval mode); false: one per coalition"},
    )


class ShapleyValuator:
    """Values the modalities once per step from pass 0's cached features (head passes only)."""

    def __init__(self, config: ShapleyValuatorConfig, value_fn: ValueFunction, modalities: Sequence[str]) -> None:
        self.config = config
        self.value_fn = value_fn
        self.method = resolve_method(config.method, len(modalities))
        # Owned and checkpointed, so a resumed run draws the same orderings.
        self.generator = torch.Generator().manual_seed(config.seed)

    def value(self, state: StepState) -> ModalityValues:
        if state.output is None:
            raise RuntimeError("the shapley valuator needs the step's forward output (state.output)")
        cfg, output = self.config, state.output
        return value_modalities(
            state.model, output.features, output.present, state.batch.masks, state.batch.label, self.value_fn,
            state.task_loss, per=cfg.per, empty=cfg.empty, method=self.method, samples=cfg.samples,
            generator=self.generator, batch_coalitions=cfg.batch_coalitions,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def lookup_value_function(name: str, registry: ComponentRegistry | None) -> ValueFunction:
    """A registered value function by name (the built-ins when no registry is at hand)."""
    known = registry.value_functions() if registry is not None else sorted(VALUE_FUNCTIONS)
    if name not in known:
        raise ConfigError(f"unknown value function {name!r}; registered: {', '.join(known)}")
    return registry.value_function_named(name) if registry is not None else VALUE_FUNCTIONS[name]


def build_shapley_valuator(config: ShapleyValuatorConfig, ctx: BuildContext) -> ShapleyValuator:
    return ShapleyValuator(config, lookup_value_function(config.value, ctx.registry), ctx.modalities)


def register(registry: ComponentRegistry) -> None:
    for name, fn in VALUE_FUNCTIONS.items():
        registry.value_function(name, fn)
    registry.valuator("shapley", ShapleyValuatorConfig, build_shapley_valuator,
                      help="Shapley values of the modalities from head-only probes on cached features")


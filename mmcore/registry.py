"""ComponentRegistry: (slot, kind) -> (config class, build function), filled by plugins."""
from __future__ import annotations

from typing import Any, Callable, Iterator

import attrs
from attrs import frozen

SLOTS = (
    "dataset",
    "encoder",
    "fusion",
    "valuator",
    "balancer",
    "attention_supervisor",
    "optimizer",
    "scheduler",
)

#: value_of functions for Shapley valuation: fn(logits, label, *, coalition, task_loss) -> [B] or [B, C]
ValueFunction = Callable[..., Any]


class DuplicateKindError(Exception):
    """Two plugins registered the same kind in one slot."""


@frozen
class KindSpec:
    slot: str
    kind: str
    config_cls: type
    build: Callable[..., Any]
    distribution: str  # who registered it ("mmcore" for built-ins)
    provides: frozenset[str] = frozenset()  # fusions: capabilities (see interfaces.CAPABILITIES)
    requires: frozenset[str] = frozenset()  # balancers / supervisors: capabilities the fusion must provide
    owns_step: bool | Callable[[Any], bool] = False  # balancers: owns the step (may depend on the config)
    help: str = ""

    def step_owner(self, config: Any) -> bool:
        return self.owns_step(config) if callable(self.owns_step) else bool(self.owns_step)


class ComponentRegistry:
    """Typed registration API handed to `mmcore_register_components(registry)`.

    Each slot method takes a kind name, a frozen attrs config class (fields carry
    `metadata={"help": ...}`) and a build function `build(config, ctx) -> component`.
    """

    def __init__(self) -> None:
        self._kinds: dict[tuple[str, str], KindSpec] = {}
        self._value_functions: dict[str, tuple[ValueFunction, str]] = {}
        self.errors: list[str] = []  # duplicates found while registering; reported, not fatal
        self.current_distribution = "mmcore"

    # -- registration, one method per slot -------------------------------------------------
    def dataset(self, kind: str, config_cls: type, build: Callable[..., Any], **facts: Any) -> None:
        self.add("dataset", kind, config_cls, build, **facts)

    def encoder(self, kind: str, config_cls: type, build: Callable[..., Any], **facts: Any) -> None:
        self.add("encoder", kind, config_cls, build, **facts)

    def fusion(self, kind: str, config_cls: type, build: Callable[..., Any], **facts: Any) -> None:
        self.add("fusion", kind, config_cls, build, **facts)

    def valuator(self, kind: str, config_cls: type, build: Callable[..., Any], **facts: Any) -> None:
        self.add("valuator", kind, config_cls, build, **facts)

    def balancer(self, kind: str, config_cls: type, build: Callable[..., Any], **facts: Any) -> None:
        self.add("balancer", kind, config_cls, build, **facts)

    def attention_supervisor(self, kind: str, config_cls: type, build: Callable[..., Any], **facts: Any) -> None:
        self.add("attention_supervisor", kind, config_cls, build, **facts)

    def optimizer(self, kind: str, config_cls: type, build: Callable[..., Any], **facts: Any) -> None:
        self.add("optimizer", kind, config_cls, build, **facts)

    def scheduler(self, kind: str, config_cls: type, build: Callable[..., Any], **facts: Any) -> None:
        self.add("scheduler", kind, config_cls, build, **facts)

    def value_function(self, name: str, fn: ValueFunction) -> None:
        if name in self._value_functions:
            other = self._value_functions[name][1]
            self.errors.append(
                f"value function {name!r} registered twice: by {other} and by {self.current_distribution}"
            )
            return
        self._value_functions[name] = (fn, self.current_distribution)

    def add(self, slot: str, kind: str, config_cls: type, build: Callable[..., Any], **facts: Any) -> None:
        """Register a kind. `facts` are KindSpec fields: provides=, requires=, owns_step=, help=."""
        if slot not in SLOTS:
            raise ValueError(f"unknown slot {slot!r}; slots: {', '.join(SLOTS)}")
        if not attrs.has(config_cls):
            raise TypeError(f"{slot} kind {kind!r}: config class {config_cls!r} must be an attrs class")
        key = (slot, kind)
        if key in self._kinds:
            other = self._kinds[key].distribution
            self.errors.append(
                f"{slot} kind {kind!r} registered twice: by {other} and by {self.current_distribution}; "
                f"keeping {other}'s"
            )
            return
        facts = {k: frozenset(v) if k in ("provides", "requires") else v for k, v in facts.items()}
        self._kinds[key] = KindSpec(slot, kind, config_cls, build, self.current_distribution, **facts)

    # -- lookup ------------------------------------------------------------------------------
    def get(self, slot: str, kind: str) -> KindSpec:
        return self._kinds[(slot, kind)]

    def has(self, slot: str, kind: str) -> bool:
        return (slot, kind) in self._kinds

    def kinds(self, slot: str) -> list[str]:
        return sorted(k for s, k in self._kinds if s == slot)

    def specs(self, slot: str | None = None) -> Iterator[KindSpec]:
        for (s, _), spec in sorted(self._kinds.items()):
            if slot is None or s == slot:
                yield spec

    def value_function_named(self, name: str) -> ValueFunction:
        return self._value_functions[name][0]

    def value_functions(self) -> list[str]:
        return sorted(self._value_functions)

    def kinds_of(self, distribution: str) -> list[str]:
        return [f"{s.slot}:{s.kind}" for s in self.specs() if s.distribution == distribution]


@attrs.define
class BuildContext:
    """What a build function may know about the run. Fields fill in as assembly proceeds:
    data facts first, then `modality` (encoder builds), `feature_dims` (fusion builds), then
    `model`, `valuators` and `make_valuator` (balancer and supervisor builds)."""

    modalities: tuple[str, ...] = ()
    task: str = "classification"  # "classification" | "binary" | "regression"
    num_outputs: int = 1  # classes, or 1 for binary and regression
    input_shapes: dict[str, tuple[int, ...]] = attrs.field(factory=dict)  # per sample, no batch dim
    sequence: dict[str, bool] = attrs.field(factory=dict)  # modality input is [T, D] with a mask
    modality: str | None = None
    feature_dims: dict[str, int] = attrs.field(factory=dict)
    feature_sequence: dict[str, bool] = attrs.field(factory=dict)
    registry: ComponentRegistry | None = None
    model: Any = None
    valuators: dict[str, Any] = attrs.field(factory=dict)
    make_valuator: Callable[..., Any] | None = None  # make_valuator(kind="shapley", **config) -> Valuator
    seed: int = 0
    task_loss: Callable[..., Any] | None = None  # the run's task loss, as StepState.task_loss (fusions' own objectives)
    params: Any = None  # optimizer builds: the parameters (or groups) to optimise
    optimizer: Any = None  # scheduler builds: the optimizer to schedule
    epochs: int = 1
    steps_per_epoch: int = 1  # of the plain train split; planned epochs may differ, see `progress`
    # epochs trained since the schedule began (fractional; TrainControl.reset_optimizer restarts it)
    progress: Callable[[], float] = lambda: 0.0

"""The shape of a run config: frozen attrs classes, one per TOML table.

Component tables (`[fusion]`, `[encoders.<m>]`, `[[balancers]]`, ...) are `Component(kind, config)`
where `config` is an instance of the kind's registered config class. Each slot field is typed
`Annotated[Component, Slot(...)]` so the converter's kind-dispatch hook knows which slot of the
registry to look the kind up in (mmcore/config.py); to type checkers it is plain `Component`.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Iterator

import attrs
from attrs import field, frozen
from attrs.validators import ge, gt, in_, instance_of, min_len, optional

from mmcore.data.corruption import CorruptionConfig
from mmcore.registry import ComponentRegistry, KindSpec

PRECISIONS = ("32", "bf16-mixed", "16-mixed")
SPLITS = ("train", "val", "test")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@frozen
class Slot:
    """Marker inside `Annotated[Component, Slot("balancer")]`: the registry slot of a table."""

    name: str


@frozen
class Component:
    """One component table: the registered `kind` and its structured config instance."""

    kind: str
    config: Any


EncoderTable = Annotated[Component, Slot("encoder")]
FusionTable = Annotated[Component, Slot("fusion")]
OptimizerTable = Annotated[Component, Slot("optimizer")]
SchedulerTable = Annotated[Component, Slot("scheduler")]
ValuatorTable = Annotated[Component, Slot("valuator")]
BalancerTable = Annotated[Component, Slot("balancer")]
SupervisorTable = Annotated[Component, Slot("attention_supervisor")]


def _check_device(_instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not _DEVICE.fullmatch(value):
        raise ValueError(f"'{attribute.name}' must be auto, cpu, cuda, cuda:N or mps (got {value!r})")


def _check_modalities(_instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError(f"'{attribute.name}' must list at least one modality")
    repeated = sorted({m for m in value if value.count(m) > 1})
    if repeated:
        raise ValueError(f"'{attribute.name}' lists {', '.join(map(repr, repeated))} more than once")


def _check_splits(_instance: Any, attribute: attrs.Attribute, value: dict[str, Any]) -> None:
    unknown = [split for split in value if split not in SPLITS]
    if unknown:
        raise ValueError(
            f"'{attribute.name}' is keyed by split ({', '.join(SPLITS)}); "
            f"unknown: {', '.join(map(repr, unknown))}"
        )


@frozen(kw_only=True)
class RunSettings:
    """The `[run]` table: how long and where to train, and what to log."""

    name: str = field(
        default="run",
        validator=min_len(1),
        metadata={"help": "run name; output goes to runs/<name> by default"},
    )
    seed: int = field(default=0, metadata={"help": "seed of every generator the trainer owns"})
    epochs: int = field(default=30, validator=ge(1), metadata={"help": "training epochs"})
    device: str = field(
        default="auto",
        validator=_check_device,
        metadata={"help": "auto (cuda if available) | cpu | cuda | cuda:N | mps"},
    )
    precision: str = field(
        default="32",
        validator=in_(PRECISIONS),
        metadata={"help": '"32" | "bf16-mixed" (bf16 autocast) | "16-mixed" (fp16 with a gradient scaler)'},
    )
    grad_accum: int = field(default=1, validator=ge(1), metadata={"help": "micro-batches per optimizer step"})
    channels_last: bool = field(
        default=False,
        validator=instance_of(bool),
        metadata={"help": "keep 4-D (conv) weights in channels_last memory format, so cuDNN runs NHWC kernels "
                          "without layout conversions (conv encoders on a GPU)"},
    )
    threads: int = field(
        default=0,
        validator=ge(0),
        metadata={"help": "CPU threads for torch (torch.set_num_threads); 0 = torch's default"},
    )
    log_every_steps: int = field(
        default=10,
        validator=ge(1),
        metadata={"help": "steps between logged training metrics (the only host sync)"},
    )
    checkpoint_every_steps: int = field(
        default=0,
        validator=ge(0),
        metadata={"help": "steps between mid-epoch checkpoints; 0 = at epoch ends only"},
    )
    clip_grad_norm: float | None = field(
        default=None,
        validator=optional(gt(0.0)),
        metadata={"help": "clip the global gradient norm; unset = no clipping"},
    )
    select_metric: str = field(
        default="",
        metadata={"help": "validation metric that picks the best checkpoint; empty = the task's primary"},
    )
    probe: bool = field(
        default=True,
        metadata={"help": "fit linear probes probe_acc/<m> on the best checkpoint's features at the end"},
    )
    value_every_epoch: bool = field(
        default=True, metadata={"help": "log Shapley shares value/<m> on validation every epoch"}
    )


@frozen(kw_only=True)
class DataSection:
    """The `[data]` table. In TOML its core keys (these fields but `config`) sit next to the
    dataset kind's own keys; the converter splits them and structures the rest into `config`."""

    kind: str = field(metadata={"help": "dataset kind"})
    config: Any = field(metadata={"help": "the dataset kind's config instance (its keys sit in [data] in TOML)"})
    modalities: tuple[str, ...] = field(
        validator=_check_modalities, metadata={"help": "modalities to use, in model order"}
    )
    batch_size: int = field(default=64, validator=ge(1), metadata={"help": "training batch size"})
    eval_batch_size: int | None = field(
        default=None,
        validator=optional(ge(1)),
        metadata={"help": "evaluation batch size; unset = batch_size"},
    )
    num_workers: int = field(default=0, validator=ge(0), metadata={"help": "data loader worker processes"})
    corruption: dict[str, CorruptionConfig] = field(
        factory=dict,
        validator=_check_splits,
        metadata={"help": "per-split missing/noise corruption, e.g. [data.corruption.test] missing_rate = 0.3"},
    )


#: `[data]` keys that belong to DataSection itself; every other key goes to the dataset kind.
DATA_CORE_KEYS = tuple(a.name for a in attrs.fields(DataSection) if a.name != "config")


@frozen(kw_only=True)
class RunConfig:
    """One run: the whole TOML file."""

    run: RunSettings = field(factory=RunSettings, metadata={"help": "[run] table"})
    data: DataSection = field(metadata={"help": "[data] table"})
    encoders: dict[str, EncoderTable] = field(metadata={"help": "[encoders.<modality>] tables, one per modality"})
    fusion: FusionTable = field(metadata={"help": "[fusion] table"})
    optimizer: OptimizerTable = field(metadata={"help": "[optimizer] table"})
    scheduler: SchedulerTable | None = field(
        default=None, metadata={"help": "[scheduler] table; unset = constant learning rate"}
    )
    valuators: dict[str, ValuatorTable] = field(
        factory=dict, metadata={"help": "[valuators.<name>] tables, referenced by name from balancers"}
    )
    balancers: tuple[BalancerTable, ...] = field(
        default=(), metadata={"help": "[[balancers]] tables, applied in order; none = plain joint training"}
    )
    attention_supervisors: tuple[SupervisorTable, ...] = field(
        default=(),
        metadata={"help": "[[attention_supervisors]] tables; need a fusion that provides attention"},
    )


# -- cross-component rules (run once the config is well-formed) -----------------------------
def check_config(config: RunConfig, registry: ComponentRegistry) -> list[str]:
    """Rules that span tables, every broken one reported: modalities and encoders match, at most
    one balancer owns the step (and it gets grad_accum 1 and no fp16 scaler), every `requires` is
    met by the fusion, and valuators named by balancers exist."""
    tables = list(_component_tables(config))
    specs = {path: registry.get(slot, c.kind) for path, slot, c in tables if registry.has(slot, c.kind)}
    problems = [
        f"{path}.kind: unknown {slot.replace('_', ' ')} kind {c.kind!r}"
        for path, slot, c in tables
        if path not in specs
    ]
    problems += _modality_problems(config)
    owners = [
        (f"$.balancers[{i}]", b.kind)
        for i, b in enumerate(config.balancers)
        if f"$.balancers[{i}]" in specs and specs[f"$.balancers[{i}]"].step_owner(b.config)
    ]
    problems += _step_owner_problems(config.run, owners)
    problems += _capability_problems(config, tables, specs, registry)
    problems += _valuator_reference_problems(config)
    return problems


def _component_tables(config: RunConfig) -> Iterator[tuple[str, str, Component]]:
    """(path, slot, table) for every component table, in file order."""
    for name, encoder in config.encoders.items():
        yield f"$.encoders.{name}", "encoder", encoder
    yield "$.fusion", "fusion", config.fusion
    yield "$.optimizer", "optimizer", config.optimizer
    if config.scheduler is not None:
        yield "$.scheduler", "scheduler", config.scheduler
    for name, valuator in config.valuators.items():
        yield f"$.valuators.{name}", "valuator", valuator
    for i, balancer in enumerate(config.balancers):
        yield f"$.balancers[{i}]", "balancer", balancer
    for i, supervisor in enumerate(config.attention_supervisors):
        yield f"$.attention_supervisors[{i}]", "attention_supervisor", supervisor


def _modality_problems(config: RunConfig) -> list[str]:
    listed = config.data.modalities
    problems = [
        f"$.data.modalities: modality {m!r} has no encoder; add an [encoders.{m}] table"
        for m in listed
        if m not in config.encoders
    ]
    problems += [
        f"$.encoders.{name}: no modality {name!r} in $.data.modalities"
        for name in config.encoders
        if name not in listed
    ]
    problems += [
        f"$.data.corruption.{split}.modalities: no modality {m!r} in $.data.modalities"
        for split, corruption in config.data.corruption.items()
        for m in corruption.modalities
        if m not in listed
    ]
    return problems


def _step_owner_problems(run: RunSettings, owners: list[tuple[str, str]]) -> list[str]:
    named = [f"{path} ({kind})" for path, kind in owners]
    problems = []
    if len(owners) > 1:
        listing = ", ".join(named[:-1]) + f" and {named[-1]}"
        problems.append(f"$.balancers: at most one balancer may own the optimizer step, but {listing} do")
    for who in named:
        if run.grad_accum > 1:
            problems.append(
                f"$.run.grad_accum: {who} owns the step, which needs grad_accum = 1 (got {run.grad_accum})"
            )
        if run.precision == "16-mixed":
            problems.append(
                f"$.run.precision: {who} owns the step, which rules out \"16-mixed\" "
                f"(fp16 with a gradient scaler); use \"bf16-mixed\" or \"32\""
            )
    return problems


def _capability_problems(
    config: RunConfig,
    tables: list[tuple[str, str, Component]],
    specs: dict[str, KindSpec],
    registry: ComponentRegistry,
) -> list[str]:
    fusion_spec = specs.get("$.fusion")
    if fusion_spec is None:
        return []
    problems = []
    for path, _slot, component in tables:
        spec = specs.get(path)
        for need in sorted(spec.requires - fusion_spec.provides) if spec else ():
            able = [s.kind for s in registry.specs("fusion") if need in s.provides]
            hint = f"fusions that do: {', '.join(able)}" if able else "no installed fusion does"
            problems.append(
                f"{path}: {component.kind} requires {need!r}, "
                f"which fusion {config.fusion.kind!r} does not provide; {hint}"
            )
    return problems


def _valuator_reference_problems(config: RunConfig) -> list[str]:
    """A balancer config's `valuator` field names a `[valuators.<name>]` table ("" = its default)."""
    defined = ", ".join(sorted(config.valuators)) or "(none)"
    problems = []
    for i, balancer in enumerate(config.balancers):
        name = getattr(balancer.config, "valuator", None)
        if isinstance(name, str) and name and name not in config.valuators:
            problems.append(
                f"$.balancers[{i}].valuator: no valuator {name!r} in [valuators]; defined: {defined}"
            )
    return problems

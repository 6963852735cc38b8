"""`mmcore kinds`: every kind with its config fields, defaults and help, from attrs metadata."""
from __future__ import annotations

from typing import Any, Callable

import attrs

from mmcore.errors import UsageError
from mmcore.interfaces import CAPABILITIES
from mmcore.registry import SLOTS, ComponentRegistry, KindSpec

#: Slots whose kinds provide or require capabilities; their listing ends with the vocabulary.
_CAPABILITY_SLOTS = ("fusion", "balancer", "attention_supervisor")
_EVERY_MODEL = "every model can drop modalities at input or feature level and honours per-sample `present` masks"


def describe_kinds(registry: ComponentRegistry, slot: str | None = None) -> str:
    """The text `mmcore kinds [SLOT]` prints. SLOT may also be spelt as its config table
    (`balancers`, `encoders`, `attention_supervisors`, `data`)."""
    slot = _slot_named(slot)
    lines: list[str] = []
    for s in [slot] if slot else SLOTS:
        specs = list(registry.specs(s))
        if not specs and slot is None:
            continue
        lines.append(f"[{s}]")
        lines.extend(line for spec in specs for line in _describe(spec))
        if not specs:
            lines.append("  (no kinds installed)")
        if s == "valuator":
            lines.append(f"  value functions (the `value` of a valuator): {', '.join(registry.value_functions())}")
        lines.append("")
    if slot in (None, *_CAPABILITY_SLOTS):
        lines.append("capabilities (fusions provide them; balancers and supervisors require them):")
        lines.extend(f"  {name}: {text}" for name, text in CAPABILITIES.items())
        lines.append(f"  {_EVERY_MODEL}")
    return "\n".join(lines).rstrip()


def _slot_named(name: str | None) -> str | None:
    if name is None or name in SLOTS:
        return name
    aliases = {"data": "dataset", **{f"{s}s": s for s in SLOTS}}
    if name in aliases:
        return aliases[name]
    raise UsageError(f"unknown slot {name!r}; slots: {', '.join(SLOTS)}")


def _describe(spec: KindSpec) -> list[str]:
    facts = []
    if spec.provides:
        facts.append(f"provides {', '.join(sorted(spec.provides))}")
    if spec.requires:
        facts.append(f"requires {', '.join(sorted(spec.requires))}")
    if spec.owns_step:
        facts.append("may own the step (depends on its config)" if callable(spec.owns_step) else "owns the step")
    head = f"  {spec.kind}  ({spec.distribution})"
    if spec.help:
        head += f"  {spec.help}"
    lines = [head] + ([f"      {'; '.join(facts)}"] if facts else [])
    for name, type_name, default, help_text in field_rows(spec.config_cls):
        shown = "(required)" if default is None else f"= {default}"
        lines.append(f"      {name}: {type_name} {shown}  {help_text}".rstrip())
    return lines


def field_rows(config_cls: type, show: Callable[[Any], str] = repr) -> list[tuple[str, str, str | None, str]]:
    """(name, type, default, help) for each field of an attrs config class, as `mmcore kinds` and the
    generated configuration reference show them; the default as `show` writes it, None when required."""
    return [
        (field.name, _type_name(field.type), _default_text(field, show), field.metadata.get("help", ""))
        for field in attrs.fields(config_cls)
    ]


def _default_text(field: attrs.Attribute, show: Callable[[Any], str]) -> str | None:
    default = field.default
    if default is attrs.NOTHING:
        return None
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        if default.takes_self:  # computed from the other fields: nothing to show without an instance
            return "(computed)"
        default = default.factory()
    return show(default)


def _type_name(annotation: Any) -> str:
    """`float`, `tuple[int, ...]`, `int | None`: the annotation as written (a string under
    `from __future__ import annotations`); generic aliases keep their arguments."""
    if annotation is None:
        return "any"
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return str(annotation).replace("typing.", "")

"""`mmcore kinds`: every kind with its config fields, defaults and help, from attrs metadata."""
from __future__ import annotations

import attrs

from mmcore.interfaces import CAPABILITIES
from mmcore.registry import SLOTS, ComponentRegistry, KindSpec


def describe_kinds(registry: ComponentRegistry, slot: str | None = None) -> str:
    if slot is not None and slot not in SLOTS:
        from mmcore.errors import UsageError

        raise UsageError(f"unknown slot {slot!r}; slots: {', '.join(SLOTS)}")
    lines: list[str] = []
    for s in [slot] if slot else SLOTS:
        specs = list(registry.specs(s))
        if not specs:
            continue
        lines.append(f"[{s}]")
        for spec in specs:
            lines.extend(_describe(spec))
        lines.append("")
    if slot in (None, "fusion", "balancer", "attention_supervisor"):
        lines.append("capabilities (fusions provide them; balancers and supervisors require them):")
        lines.extend(f"  {name}: {text}" for name, text in CAPABILITIES.items())
        lines.append("  every model can drop modalities at input or feature level and honours per-sample `present` masks")
    return "\n".join(lines).rstrip()


def _describe(spec: KindSpec) -> list[str]:
    facts = []
    if spec.provides:
        facts.append(f"provides {', '.join(sorted(spec.provides))}")
    if spec.requires:
        facts.append(f"requires {', '.join(sorted(spec.requires))}")
    if spec.owns_step:
        facts.append("owns the step" if not callable(spec.owns_step) else "may own the step")
    head = f"  {spec.kind}  ({spec.distribution})"
    if spec.help:
        head += f"  {spec.help}"
    lines = [head] + ([f"      {'; '.join(facts)}"] if facts else [])
    for field in attrs.fields(spec.config_cls):
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        shown = "(required)" if default is attrs.NOTHING else f"= {default!r}"
        type_name = getattr(field.type, "__name__", None) or str(field.type)
        lines.append(f"      {field.name}: {type_name} {shown}  {field.metadata.get('help', '')}".rstrip())
    return lines

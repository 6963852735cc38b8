"""The one cattrs converter that turns a raw TOML dict into a RunConfig (aesthetics-anchors §3).

Policy lives here, not in the config classes: scalars are strict (no "3" -> 3, no 3.7 -> 3, no
"pix" -> ("p", "i", "x")), unknown keys are errors with a did-you-mean hint, every attrs validator
runs and keeps its message, and each component slot has an exact-type kind-dispatch hook. No hook
stops at the first problem: each collects its problems in cattrs' exception groups, whose notes
carry the TOML key or index, and `problem_lines` flattens the tree into `$.path: message` lines.
cattrs' `transform_error` is not used: its `msg @ $.a['key']` form is not the `$.a.key: msg` form
users read, and its default formatter drops attrs validator messages.
"""
from __future__ import annotations

import collections.abc
import difflib
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Callable, Literal, Sequence

import attrs
from cattrs import Converter
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    IterableValidationError,
    IterableValidationNote,
)

from mmcore.config_schema import DATA_CORE_KEYS, Component, DataSection, Slot
from mmcore.registry import ComponentRegistry, KindSpec

_NO_VALUE = object()


class Problem(ValueError):
    """One user-facing problem; `value` (when given) is shown as "(got value)"."""

    def __init__(self, message: str, value: Any = _NO_VALUE, *, key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.value = value
        if key is not None:  # the problem sits at this key of the table being structured
            self.add_note(AttributeValidationNote(f"@ key {key!r}", key, None))


class UnknownKeyProblem(Problem):
    """A key no field takes; the closest of `valid_keys` is suggested when the line is written."""

    def __init__(self, key: str, valid_keys: Sequence[str]) -> None:
        super().__init__(f"unknown key {key!r}", key=key)
        self.key = key
        self.valid_keys = list(valid_keys)


# -- problem lines ---------------------------------------------------------------------------
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def problem_lines(exc: BaseException, path: str = "$") -> list[str]:
    """Flatten a structuring failure into `$.path: message (got value)` lines, in table order."""
    if isinstance(exc, (ClassValidationError, IterableValidationError)):
        noted, unnoted = exc.group_exceptions()
        lines: list[str] = []
        for sub, note in noted:
            step = note.name if isinstance(note, AttributeValidationNote) else note.index
            lines += problem_lines(sub, _join_path(path, step))
        for sub in unnoted:
            lines += problem_lines(sub, path)
        return lines
    return [f"{path}: {_describe(exc)}"]


def _join_path(path: str, step: str | int) -> str:
    if isinstance(step, int):
        return f"{path}[{step}]"
    return f"{path}.{step}" if _BARE_KEY.fullmatch(step) else f'{path}."{step}"'


def _describe(exc: BaseException) -> str:
    if isinstance(exc, UnknownKeyProblem):
        close = difflib.get_close_matches(exc.key, exc.valid_keys, n=1)
        return exc.message + (f"; did you mean {close[0]!r}?" if close else "")
    if not isinstance(exc, Problem):
        return _message_of(exc)
    if exc.value is _NO_VALUE or isinstance(exc.value, Mapping):  # a whole table is too long to echo
        return exc.message
    shown = repr(list(exc.value)) if isinstance(exc.value, tuple) else repr(exc.value)
    return exc.message if shown in exc.message else f"{exc.message} (got {shown})"


# -- the converter ---------------------------------------------------------------------------
def make_converter(registry: ComponentRegistry) -> Converter:
    """The one converter: strict hooks plus a kind-dispatch hook for every component slot."""
    converter = Converter(forbid_extra_keys=True, unstruct_collection_overrides={tuple: list})
    _register_strict_hooks(converter)
    structure_data_core = _attrs_structure_hook(converter, DataSection)

    def structure_component(obj: Any, annotated: Any) -> Component:
        if isinstance(obj, Component):
            return obj
        if not isinstance(obj, Mapping):
            raise Problem("expected a table with a 'kind' key", obj)
        slot = _slot_of(annotated)
        try:
            spec = _lookup_kind(registry, slot, obj)
        except Problem as exc:
            raise ClassValidationError(f"While structuring a {slot} table", [exc], Component) from None
        rest = {key: value for key, value in obj.items() if key != "kind"}
        return Component(spec.kind, _structure_kind_config(converter, spec, rest, ("kind",)))

    def structure_data(obj: Any, _: Any) -> DataSection:
        if isinstance(obj, DataSection):
            return obj
        if not isinstance(obj, Mapping):
            raise Problem("expected a table", obj)
        return _structure_data_table(converter, registry, structure_data_core, obj)

    # Exact-type predicates: a class-based hook would also capture subclasses (§3.4).
    converter.register_structure_hook_func(_is_component_type, structure_component)
    converter.register_structure_hook_func(lambda t: t is DataSection, structure_data)
    converter.register_unstructure_hook_func(
        _is_component_type, lambda c: {"kind": c.kind, **converter.unstructure(c.config)}
    )
    converter.register_unstructure_hook_func(lambda t: t is DataSection, lambda d: _unstructure_data(converter, d))
    return converter


def _is_component_type(t: Any) -> bool:
    if t is Component:
        return True
    metadata = getattr(t, "__metadata__", ())
    return getattr(t, "__origin__", None) is Component and any(isinstance(m, Slot) for m in metadata)


def _slot_of(annotated: Any) -> str:
    for marker in getattr(annotated, "__metadata__", ()):
        if isinstance(marker, Slot):
            return marker.name
    raise TypeError("a Component is structured through a slot type such as config_schema.FusionTable")


def _lookup_kind(registry: ComponentRegistry, slot: str, table: Mapping[str, Any]) -> KindSpec:
    """The KindSpec that a table's `kind` names, or a Problem at key 'kind'."""
    label = slot.replace("_", " ")
    installed = ", ".join(registry.kinds(slot)) or "(none)"
    if "kind" not in table:
        raise Problem(f"missing required key; installed {label} kinds: {installed}", key="kind")
    kind = table["kind"]
    if not isinstance(kind, str):
        raise Problem(f"expected a string naming the {label} kind", kind, key="kind")
    if not registry.has(slot, kind):
        hint = f"pip install mmcore-{kind.replace('_', '-')}?"
        raise Problem(f"unknown {label} kind {kind!r}; installed: {installed} ({hint})", key="kind")
    return registry.get(slot, kind)


def _structure_kind_config(
    converter: Converter, spec: KindSpec, table: Mapping[str, Any], sibling_keys: Sequence[str]
) -> Any:
    """Structure a table's kind-specific keys; typo hints also consider the table's other keys."""
    try:
        return converter.structure(table, spec.config_cls)
    except ClassValidationError as exc:
        for sub in exc.exceptions:
            if isinstance(sub, UnknownKeyProblem):
                sub.valid_keys.extend(sibling_keys)
        raise


def _structure_data_table(
    converter: Converter, registry: ComponentRegistry, structure_core: Callable[..., Any], table: Mapping[str, Any]
) -> DataSection:
    """`[data]` mixes DataSection's keys with the dataset kind's: split them, structure both
    halves and report their problems together, so all of them read `$.data.<key>`."""
    problems: list[Exception] = []
    spec, config = None, None
    try:
        spec = _lookup_kind(registry, "dataset", table)
    except Problem as exc:
        problems.append(exc)
    if spec is not None:
        clash = sorted(set(DATA_CORE_KEYS) & {a.name for a in attrs.fields(spec.config_cls)})
        if clash:  # a plugin bug: such fields could never be set from [data]
            message = f"dataset kind {spec.kind!r} has config fields named like [data] keys: {', '.join(clash)}"
            problems.append(Problem(message, key="kind"))
        own = {key: value for key, value in table.items() if key not in DATA_CORE_KEYS}
        try:
            config = _structure_kind_config(converter, spec, own, DATA_CORE_KEYS)
        except ClassValidationError as exc:
            problems.extend(exc.exceptions)
    core = {key: value for key, value in table.items() if key in DATA_CORE_KEYS and key != "kind"}
    section = None
    try:
        section = structure_core({**core, "kind": spec.kind if spec else "", "config": config}, DataSection)
    except ClassValidationError as exc:
        problems.extend(exc.exceptions)
    if problems:
        raise ClassValidationError("While structuring [data]", problems, DataSection)
    return section


def _unstructure_data(converter: Converter, data: DataSection) -> dict[str, Any]:
    """Flatten back into one `[data]` table: core keys, then the dataset kind's keys."""
    table = {name: converter.unstructure(getattr(data, name)) for name in DATA_CORE_KEYS}
    return {**table, **converter.unstructure(data.config)}


# -- strict structure hooks ------------------------------------------------------------------
_SCALARS: dict[type, tuple[str, Callable[[Any], bool]]] = {
    bool: ("expected a boolean (true or false)", lambda v: isinstance(v, bool)),
    int: ("expected an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    float: ("expected a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    str: ("expected a string", lambda v: isinstance(v, str)),
}
_SEQUENCES = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.Set)
_MAPPINGS = (dict, collections.abc.Mapping)


def _register_strict_hooks(converter: Converter) -> None:
    """Register the strict hooks. Later registrations win, so the exact ones come last."""

    def attrs_factory(cl: type) -> Callable[[Any, Any], Any]:
        return _attrs_structure_hook(converter, cl)

    converter.register_structure_hook_factory(attrs.has, attrs_factory)
    converter.register_structure_hook_func(
        lambda t: typing.get_origin(t) in _SEQUENCES, lambda o, t: _structure_sequence(converter, o, t)
    )
    converter.register_structure_hook_func(
        lambda t: typing.get_origin(t) in _MAPPINGS, lambda o, t: _structure_mapping(converter, o, t)
    )
    converter.register_structure_hook_func(_is_union, lambda o, t: _structure_union(converter, o, t))
    converter.register_structure_hook_func(lambda t: typing.get_origin(t) is Literal, _structure_literal)
    # By class: cattrs' own scalar hooks are class-registered and would win over predicates.
    # bool is registered too, so singledispatch never hands a bool field to the int hook.
    for scalar, (message, accepts) in _SCALARS.items():
        converter.register_structure_hook(scalar, _scalar_hook(scalar, message, accepts))


def _scalar_hook(scalar: type, message: str, accepts: Callable[[Any], bool]) -> Callable[[Any, Any], Any]:
    def structure(obj: Any, _: Any) -> Any:
        if not accepts(obj):
            raise Problem(message, obj)
        return scalar(obj)  # int -> float for float fields; identity otherwise

    return structure


def _is_union(t: Any) -> bool:
    return typing.get_origin(t) in (typing.Union, types.UnionType)


def _structure_union(converter: Converter, obj: Any, t: Any) -> Any:
    members = [m for m in typing.get_args(t) if m is not type(None)]
    if obj is None and len(members) < len(typing.get_args(t)):
        return None
    if len(members) == 1:  # Optional: keep the member's own detailed problems
        return converter.structure(obj, members[0])
    for member in members:
        try:
            return converter.structure(obj, member)
        except Exception:  # noqa: BLE001 - try the next member; all failing is the problem
            continue
    raise Problem(f"expected {' or '.join(_type_name(m) for m in members)}", obj)


def _structure_literal(obj: Any, t: Any) -> Any:
    allowed = typing.get_args(t)
    if any(obj == a and type(obj) is type(a) for a in allowed):
        return obj
    raise Problem(f"expected one of {', '.join(map(repr, allowed))}", obj)


def _structure_sequence(converter: Converter, obj: Any, t: Any) -> Any:
    if not isinstance(obj, (list, tuple)):
        raise Problem("expected an array", obj)
    args = typing.get_args(t)
    if typing.get_origin(t) is tuple and args and args[-1] is not Ellipsis:
        if len(obj) != len(args):
            raise Problem(f"expected an array of {len(args)} items", obj)
        item_types = list(args)
    else:
        item_types = [args[0] if args else Any] * len(obj)
    items, problems = [], []
    for index, (item, item_type) in enumerate(zip(obj, item_types)):
        try:
            items.append(converter.structure(item, item_type))
        except Exception as exc:  # noqa: BLE001 - every element's problem is reported
            exc.add_note(IterableValidationNote(f"@ index {index}", index, item_type))
            problems.append(exc)
    if problems:
        raise IterableValidationError(f"While structuring {_type_name(t)}", problems, t)
    origin = typing.get_origin(t)
    return {list: list, set: set, frozenset: frozenset, collections.abc.Set: frozenset}.get(origin, tuple)(items)


def _structure_mapping(converter: Converter, obj: Any, t: Any) -> dict[Any, Any]:
    if not isinstance(obj, Mapping):
        raise Problem("expected a table", obj)
    key_type, value_type = typing.get_args(t) or (Any, Any)
    result, problems = {}, []
    for key, value in obj.items():
        try:
            result[converter.structure(key, key_type)] = converter.structure(value, value_type)
        except Exception as exc:  # noqa: BLE001 - every entry's problem is reported
            exc.add_note(IterableValidationNote(f"@ key {key!r}", key, value_type))
            problems.append(exc)
    if problems:
        raise IterableValidationError(f"While structuring {_type_name(t)}", problems, t)
    return result


def _attrs_structure_hook(converter: Converter, cl: type) -> Callable[[Any, Any], Any]:
    """Structure an attrs class from a table, collecting unknown keys, missing keys, field
    problems and validator failures (with attrs' own messages) all together."""
    attrs.resolve_types(cl)
    fields = [a for a in attrs.fields(cl) if a.init]
    keys = [a.alias for a in fields]

    def structure(obj: Any, _: Any) -> Any:
        if isinstance(obj, cl):  # already built (defaults, programmatic configs) passes through
            return obj
        if not isinstance(obj, Mapping):
            raise Problem("expected a table", obj)
        unknown = [key for key in obj if key not in keys] if converter.forbid_extra_keys else []
        problems: list[Exception] = [UnknownKeyProblem(key, keys) for key in unknown]
        values = {}
        for a in fields:
            if a.alias not in obj:
                if a.default is attrs.NOTHING:
                    problems.append(Problem("missing required key", key=a.alias))
                continue
            try:
                values[a.alias] = converter.structure(obj[a.alias], a.type)
            except Exception as exc:  # noqa: BLE001 - every field's problem is reported
                exc.add_note(AttributeValidationNote(f"@ key {a.alias!r}", a.alias, a.type))
                problems.append(exc)
        instance = None
        if not problems:
            try:
                instance = _build_unvalidated(cl, values)
            except Exception as exc:  # noqa: BLE001 - e.g. __attrs_post_init__ checks
                problems.append(Problem(_message_of(exc)))
        problems += _validator_problems(cl, instance, values)
        if problems:
            raise ClassValidationError(f"While structuring {cl.__name__}", problems, cl)
        return instance

    return structure


def _build_unvalidated(cl: type, values: dict[str, Any]) -> Any:
    """Construct without running validators, so they can be run one by one afterwards. attrs'
    switch is process-wide: configs are parsed at start-up, not while other threads build attrs
    instances."""
    previous = attrs.validators.get_disabled()
    attrs.validators.set_disabled(True)
    try:
        return cl(**values)
    finally:
        attrs.validators.set_disabled(previous)


def _validator_problems(cl: type, instance: Any, values: dict[str, Any]) -> list[Exception]:
    """Run every field validator and keep each failure's message. Without an instance (other
    fields failed), run those of the fields that structured, best effort: a validator that
    needs the instance is skipped then."""
    problems: list[Exception] = []
    for a in attrs.fields(cl):
        if a.validator is None:
            continue
        if instance is None and (a.alias not in values or a.converter is not None):
            continue
        value = getattr(instance, a.name) if instance is not None else values[a.alias]
        try:
            a.validator(instance, a, value)
        except (ValueError, TypeError) as exc:
            problems.append(Problem(_message_of(exc), value, key=a.alias))
        except Exception as exc:  # noqa: BLE001
            if instance is not None:
                problems.append(Problem(_message_of(exc), value, key=a.alias))
    return problems


def _message_of(exc: BaseException) -> str:
    """The message alone: attrs' in_ and instance_of pass (message, attribute, ...) as args."""
    if exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc) or type(exc).__name__


def _type_name(t: Any) -> str:
    if t in _SCALARS:
        return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}[t]
    if typing.get_origin(t) in _SEQUENCES:
        return "an array"
    if typing.get_origin(t) in _MAPPINGS or attrs.has(t):
        return "a table"
    return getattr(t, "__name__", repr(t))

"""mmcore's built-in kinds, registered through the same hook third-party plugins use."""
from __future__ import annotations

from mmcore import data, valuator
from mmcore.builtin import attention, balancers, encoders, fusions, late, optim, resnet
from mmcore.data import formats
from mmcore.hookspecs import hookimpl
from mmcore.registry import ComponentRegistry


@hookimpl
def mmcore_register_components(registry: ComponentRegistry) -> None:
    for module in (data, formats, encoders, resnet, fusions, late, attention, valuator, optim, balancers):
        module.register(registry)

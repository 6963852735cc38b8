"""The built-in balancer `none`: plain joint training."""
from __future__ import annotations

from attrs import frozen

from mmcore.interfaces import Balancer
from mmcore.registry import BuildContext, ComponentRegistry


@frozen(kw_only=True)
class NoneConfig:
    """No options: the step is the plain joint-training step."""


class JointTraining(Balancer):
    """Changes nothing; listing it is the same as listing no balancer."""


def build_none(config: NoneConfig, ctx: BuildContext) -> JointTraining:
    return JointTraining()


def register(registry: ComponentRegistry) -> None:
    registry.balancer("none", NoneConfig, build_none, help="plain joint training (no balancing)")

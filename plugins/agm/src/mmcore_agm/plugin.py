"""Registers the `agm` balancer; this module is the entry point."""
import mmcore
from mmcore_agm.balancer import build_agm
from mmcore_agm.config import AGMConfig


@mmcore.hookimpl
def mmcore_register_components(registry: mmcore.ComponentRegistry) -> None:
    registry.balancer(
        "agm", AGMConfig, build_agm,
        help="AGM: Shapley-decomposed logits, each modality's backward scaled by kappa_m (any fusion)",
    )

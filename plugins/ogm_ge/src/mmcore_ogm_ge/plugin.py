"""Registers the `ogm_ge` balancer; this module is the entry point."""
import mmcore
from mmcore_ogm_ge.balancer import build_ogm_ge
from mmcore_ogm_ge.config import OGMGEConfig


@mmcore.hookimpl
def mmcore_register_components(registry: mmcore.ComponentRegistry) -> None:
    registry.balancer(
        "ogm_ge", OGMGEConfig, build_ogm_ge,
        help="OGM-GE: damps the leading modality's encoder gradients by 1 - tanh(alpha * rho), plus GE noise",
    )

"""Registers mmcore-pase's kinds; this module is the entry point."""
from __future__ import annotations

from typing import Any

import mmcore
from mmcore_pase.fusion import PaSEFusionConfig, build_pase_fusion
from mmcore_pase.sgm import KIND, SGMConfig, build_sgm


@mmcore.hookimpl
def mmcore_register_components(registry: mmcore.ComponentRegistry) -> None:
    registry.fusion("pase", PaSEFusionConfig, build_pase_fusion, provides={"labels_in_fusion"},
                    help="PaSE prototype-gated fusion with prototype calibration (PCL) and OT alignment (CAL) losses")
    registry.balancer(KIND, SGMConfig, build_sgm,
                      help="PaSE Shapley-based gradient modulation of encoders, on after a validation plateau")


@mmcore.hookimpl
def mmcore_validate_config(config: Any) -> list[str]:
    """The prototype-geometry utility reads the `pase` fusion's prototypes."""
    return [
        f"$.balancers[{i}].utility: 'proto_proxy' reads prototypes and needs fusion kind 'pase' "
        f"(got {config.fusion.kind!r})"
        for i, table in enumerate(config.balancers)
        if table.kind == KIND and table.config.utility == "proto_proxy" and config.fusion.kind != "pase"
    ]

"""Registers mmcore-mie's kind; this module is the entry point."""
import mmcore
from mmcore_mie.mie import REQUIRES, MIEConfig, build_mie


@mmcore.hookimpl
def mmcore_register_components(registry: mmcore.ComponentRegistry) -> None:
    registry.balancer("mie", MIEConfig, build_mie, requires=REQUIRES,
                      owns_step=lambda config: config.sam_mode == "full",
                      help="MIE: one modality per stage, flat gradient modification T = V S V^T from the previous "
                           "modality's head inputs, SAM-style flat loss (use fusion 'late')")

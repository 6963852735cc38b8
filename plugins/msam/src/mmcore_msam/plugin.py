"""Registers mmcore-msam's kinds; this module is the entry point."""
import mmcore
from mmcore_msam.msam import MSAMConfig, build_msam
from mmcore_msam.sam import SAMConfig, build_sam


@mmcore.hookimpl
def mmcore_register_components(registry: mmcore.ComponentRegistry) -> None:
    registry.balancer("sam", SAMConfig, build_sam, owns_step=True,
                      help="SAM (Foret et al.): update with the gradient at w + rho * g / |g| (one global norm)")
    registry.balancer("msam", MSAMConfig, build_msam, owns_step=True,
                      help="Modality-Aware SAM: sharpness-aware step on the Shapley-dominant modality's "
                           "share of the loss")

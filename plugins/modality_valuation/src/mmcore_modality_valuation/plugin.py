"""Registers mmcore-modality-valuation's kinds; this module is the entry point."""
import mmcore
from mmcore_modality_valuation.balancer import KIND, build_modality_valuation
from mmcore_modality_valuation.config import ModalityValuationConfig
from mmcore_modality_valuation.value import VALUE_FUNCTION, coalition_size_accuracy


@mmcore.hookimpl
def mmcore_register_components(registry: mmcore.ComponentRegistry) -> None:
    registry.value_function(VALUE_FUNCTION, coalition_size_accuracy)
    registry.balancer(KIND, ModalityValuationConfig, build_modality_valuation,
                      help="per-sample or subset Shapley valuation; re-trains each sample's low-contributing modality")

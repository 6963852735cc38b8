"""mmcore: balanced and robust multimodal learning. Plugins import only from here."""
from mmcore.hookspecs import hookimpl
from mmcore.interfaces import CAPABILITIES, AttentionSupervisor, Balancer, Encoder, Fusion, Stateful, Valuator
from mmcore.model import MultimodalModel
from mmcore.registry import BuildContext, ComponentRegistry
from mmcore.types import AttentionRecord, Batch, FusionOutput, ModalityValues, ModelOutput, StepState

__version__ = "0.1.0"

__all__ = [
    "CAPABILITIES",
    "AttentionRecord",
    "AttentionSupervisor",
    "Balancer",
    "Batch",
    "BuildContext",
    "ComponentRegistry",
    "Encoder",
    "Fusion",
    "FusionOutput",
    "ModalityValues",
    "ModelOutput",
    "MultimodalModel",
    "Stateful",
    "StepState",
    "Valuator",
    "hookimpl",
]

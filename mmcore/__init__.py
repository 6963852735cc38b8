"""mmcore: balanced and robust multimodal learning. Plugins import only from here."""
from mmcore.config import Component, RunConfig, load_config, parse_config
from mmcore.control import TrainControl
from mmcore.data.base import DataBundle, DataInfo
from mmcore.data.corruption import CorruptionConfig, corrupt_features, missing_masks
from mmcore.data.loading import PlannedDataset, TensorSplit, collate, make_loader
from mmcore.evaluate_run import evaluate_checkpoint, load_finished_run
from mmcore.errors import ConfigError, DataError, MMCoreError, NonFiniteLossError, PluginError
from mmcore.hookspecs import hookimpl
from mmcore.interfaces import CAPABILITIES, AttentionSupervisor, Balancer, Encoder, Fusion, Stateful, Valuator
from mmcore.metrics import MetricAccumulator, primary_metric
from mmcore.model import MultimodalModel
from mmcore.plugins import PluginHost
from mmcore.probe import linear_probe_accuracy
from mmcore.registry import BuildContext, ComponentRegistry
from mmcore.distributed import global_mean, global_sum, mean_over_ranks, sum_over_ranks
from mmcore.sharpness import Ascent, ascent_step, frozen_batchnorm_statistics, gradient_params, perturbed
from mmcore.trainer import Trainer
from mmcore.types import AttentionRecord, Batch, FusionOutput, ModalityValues, ModelOutput, StepState
from mmcore.valuation import eval_mode, shapley, value_modalities
from mmcore.valuator import ShapleyValuator, ShapleyValuatorConfig
from mmcore.value_functions import VALUE_FUNCTIONS

__version__ = "0.1.0"

__all__ = [
    "Ascent",
    "ascent_step",
    "frozen_batchnorm_statistics",
    "global_mean",
    "global_sum",
    "gradient_params",
    "evaluate_checkpoint",
    "load_finished_run",
    "mean_over_ranks",
    "perturbed",
    "sum_over_ranks",
    "CAPABILITIES",
    "VALUE_FUNCTIONS",
    "AttentionRecord",
    "AttentionSupervisor",
    "Balancer",
    "Batch",
    "BuildContext",
    "Component",
    "ComponentRegistry",
    "ConfigError",
    "CorruptionConfig",
    "DataBundle",
    "DataError",
    "DataInfo",
    "Encoder",
    "Fusion",
    "FusionOutput",
    "MMCoreError",
    "MetricAccumulator",
    "ModalityValues",
    "ModelOutput",
    "MultimodalModel",
    "NonFiniteLossError",
    "PlannedDataset",
    "PluginError",
    "PluginHost",
    "RunConfig",
    "ShapleyValuator",
    "ShapleyValuatorConfig",
    "Stateful",
    "StepState",
    "TensorSplit",
    "TrainControl",
    "Trainer",
    "Valuator",
    "collate",
    "corrupt_features",
    "eval_mode",
    "hookimpl",
    "linear_probe_accuracy",
    "load_config",
    "make_loader",
    "missing_masks",
    "parse_config",
    "primary_metric",
    "shapley",
    "value_modalities",
]

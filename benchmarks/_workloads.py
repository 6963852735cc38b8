"""The named cost-benchmark workloads (DESIGN.md section 9), shared by every script in benchmarks/.

A workload turns (number of modalities, device, smoke) into a raw run config (the same dict a TOML
file parses to) plus the plugin objects it needs, so a benchmark builds its Trainer exactly as
`mmcore run` would and times the real `Trainer.train_step`.

- **av-resnet**: ResNet-18 encoders on CREMA-D-shaped random tensors (audio spectrogram 1x257x188,
  one visual frame 3x224x224), 6 classes, batch 8 on CPU / 64 on a GPU. M = 3 adds a second frame,
  M = 4 a second spectrogram, each with its own ResNet-18. The tensors come from the benchmark-only
  dataset kind `av_tensors` registered by `BENCHMARK_DATA`.
- **mfeat**: the embedded UCI Multiple Features digits, views pix, fou, kar, fac (first M), `mlp`
  encoders with hidden [128, 64], concat fusion, batch 64.
"""
from __future__ import annotations

from typing import Any, Callable

import attrs
import torch
from attrs import validators as v
from torch.utils.data import Dataset

from mmcore.data.base import DataBundle, DataInfo
from mmcore.data.loading import TensorSplit
from mmcore.errors import ConfigError
from mmcore.hookspecs import hookimpl
from mmcore.registry import BuildContext, ComponentRegistry

AV_MODALITIES = ("audio", "visual", "visual2", "audio2")  # M = 2, 3, 4 take the first M
MFEAT_VIEWS = ("pix", "fou", "kar", "fac")
CREMAD_CLASSES = 6
SPECTROGRAM_SHAPE = (1, 257, 188)
FRAME_SHAPE = (3, 224, 224)
SMOKE_SPECTROGRAM_SHAPE = (1, 33, 24)
SMOKE_FRAME_SHAPE = (3, 32, 32)

_shape = [v.instance_of(tuple), v.deep_iterable(v.and_(v.instance_of(int), v.gt(0)))]


# -- the benchmark-only dataset kind `av_tensors` --------------------------------------------------
@attrs.frozen(kw_only=True)
class AVTensorsConfig:
    num_classes: int = attrs.field(default=CREMAD_CLASSES, validator=[v.instance_of(int), v.ge(2)],
                                   metadata={"help": "classes"})
    train_size: int = attrs.field(default=64, validator=[v.instance_of(int), v.ge(1)], metadata={"help": "train rows"})
    eval_size: int = attrs.field(default=8, validator=[v.instance_of(int), v.ge(1)],
                                 metadata={"help": "rows of val and test each"})
    pool_rows: int = attrs.field(default=16, validator=[v.instance_of(int), v.ge(1)],
                                 metadata={"help": "distinct random rows; row i of a split is pool row i % pool_rows"})
    spectrogram: tuple[int, ...] = attrs.field(default=SPECTROGRAM_SHAPE, converter=tuple, validator=_shape,
                                               metadata={"help": "per-sample shape of modalities named audio*"})
    frame: tuple[int, ...] = attrs.field(default=FRAME_SHAPE, converter=tuple, validator=_shape,
                                         metadata={"help": "per-sample shape of modalities named visual*"})
    seed: int = attrs.field(default=0, validator=v.instance_of(int), metadata={"help": "generation seed"})


class PooledSplit(Dataset[dict[str, Any]]):
    """`size` rows that reuse a small pool of precomputed rows: generating 224x224 frames per
    row would cost more than the steps being timed, and the values do not change the cost."""

    def __init__(self, pool: TensorSplit, size: int) -> None:
        self.pool, self.size = pool, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.pool[index % len(self.pool)], "index": int(index)}


def _shape_of(modality: str, config: AVTensorsConfig) -> tuple[int, ...]:
    if modality.startswith("audio"):
        return config.spectrogram
    if modality.startswith("visual"):
        return config.frame
    raise ConfigError(f"$.data.modalities: av_tensors names modalities audio* or visual*, got {modality!r}")


def build_av_tensors(config: AVTensorsConfig, ctx: BuildContext) -> DataBundle:
    modalities = tuple(ctx.modalities)
    shapes = {m: _shape_of(m, config) for m in modalities}
    generator = torch.Generator().manual_seed(config.seed)
    inputs = {m: torch.randn(config.pool_rows, *shapes[m], generator=generator) for m in modalities}
    labels = torch.randint(config.num_classes, (config.pool_rows,), generator=generator)
    pool = TensorSplit(inputs, labels, modalities)
    sizes = {"train": config.train_size, "val": config.eval_size, "test": config.eval_size}
    info = DataInfo(modalities=modalities, task="classification", num_outputs=config.num_classes,
                    input_shapes=shapes, sequence={m: False for m in modalities})
    return DataBundle(info=info, splits={name: PooledSplit(pool, size) for name, size in sizes.items()})


class _BenchmarkData:
    """Plugin object (pass it to PluginHost(modules=[...])) that registers `av_tensors`."""

    __name__ = "benchmarks.av_tensors"

    @hookimpl
    def mmcore_register_components(self, registry: ComponentRegistry) -> None:
        registry.dataset("av_tensors", AVTensorsConfig, build_av_tensors,
                         help="benchmark only: random CREMA-D-shaped spectrograms and frames")


BENCHMARK_DATA = _BenchmarkData()


# -- workload configs ------------------------------------------------------------------------------
def _run_table(name: str, device: str) -> dict[str, Any]:
    return {"name": name, "seed": 0, "epochs": 1, "device": device, "log_every_steps": 1_000_000, "probe": False}


def av_resnet_config(num_modalities: int, device: str = "cpu", smoke: bool = False) -> dict[str, Any]:
    """av-resnet with the first `num_modalities` of audio, visual, visual2, audio2."""
    names = list(AV_MODALITIES[:num_modalities])
    batch = 2 if smoke else (64 if device.startswith("cuda") else 8)
    data: dict[str, Any] = {"kind": "av_tensors", "modalities": names, "batch_size": batch,
                            "train_size": 4 * batch, "eval_size": batch, "pool_rows": min(4 * batch, 16)}
    if smoke:
        data |= {"spectrogram": list(SMOKE_SPECTROGRAM_SHAPE), "frame": list(SMOKE_FRAME_SHAPE)}
    return {
        "run": _run_table(f"av-resnet-m{num_modalities}", device),
        "data": data,
        "encoders": {m: {"kind": "resnet18"} for m in names},
        "fusion": {"kind": "concat"},
        "optimizer": {"kind": "sgd", "lr": 1e-3, "momentum": 0.9},
    }


def mfeat_config(num_modalities: int, device: str = "cpu", smoke: bool = False) -> dict[str, Any]:
    """mfeat with the first `num_modalities` of pix, fou, kar, fac."""
    names = list(MFEAT_VIEWS[:num_modalities])
    return {
        "run": _run_table(f"mfeat-m{num_modalities}", device),
        "data": {"kind": "mfeat", "modalities": names, "batch_size": 64},
        "encoders": {m: {"kind": "mlp", "hidden": [128, 64]} for m in names},
        "fusion": {"kind": "concat"},
        "optimizer": {"kind": "sgd", "lr": 0.01, "momentum": 0.9},
    }


@attrs.frozen
class Workload:
    name: str
    config: Callable[..., dict[str, Any]]  # (num_modalities, device=..., smoke=...) -> raw config
    max_modalities: int
    modules: tuple[Any, ...] = ()  # plugin objects the config's kinds need


WORKLOADS: dict[str, Workload] = {
    "av-resnet": Workload("av-resnet", av_resnet_config, len(AV_MODALITIES), (BENCHMARK_DATA,)),
    "mfeat": Workload("mfeat", mfeat_config, len(MFEAT_VIEWS)),
}

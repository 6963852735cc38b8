"""Loaders, evaluation passes and logging for the Trainer: everything outside the step."""
from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from mmcore.data.corruption import CorruptionConfig, corrupt_features, corrupt_split
from mmcore.data.loading import PlannedDataset, SeededItems, make_loader
from mmcore.metrics import MetricAccumulator, primary_metric
from mmcore.valuation import value_modalities
from mmcore.value_functions import accuracy

if TYPE_CHECKING:
    from mmcore.trainer import Trainer
    from mmcore.types import Batch, StepState


class Evaluator:
    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.primary, self.mode = primary_metric(trainer.task)
        self.logger: Any = None  # a RunLogger when the run has a directory

    # -- datasets and loaders ---------------------------------------------------------------
    def split(self, name: str, corruption: CorruptionConfig | None = None) -> Dataset[Any]:
        """A split with its configured (or the given) corruption applied at the data level."""
        dataset = self.trainer.data.splits[name]
        config = corruption if corruption is not None else self.trainer.config.data.corruption.get(name)
        if config is not None:
            dataset = corrupt_split(dataset, config, self.trainer.model.modalities, split=name,
                                    decode=self.trainer.data.on_device)
        return dataset

    def corruption(self, name: str) -> CorruptionConfig | None:
        return self.trainer.config.data.corruption.get(name)

    def train_loader(self, epoch: int, plan: list[Any] | None, num_workers: int | None = None) -> Any:
        """The training loader of `epoch` (worker processes: the config's unless `num_workers`)."""
        dataset = self.split("train")
        if plan is not None:
            dataset = PlannedDataset(dataset, self.trainer.model.modalities, plan)
        if self.trainer.data.augments:
            dataset = SeededItems(dataset, self.trainer.generators.derive(f"train-augment/epoch{epoch}"))
        data = self.trainer.config.data
        seed = self.trainer.generators.derive(f"train-order/epoch{epoch}")
        dist = self.trainer.dist
        workers = data.num_workers if num_workers is None else num_workers
        return make_loader(dataset, data.batch_size, shuffle=True, seed=seed, num_workers=workers,
                           rank=dist.rank, world_size=dist.world_size, pin_memory=self.pin_memory)

    def eval_loader(self, dataset: Dataset[Any], batch_size: int | None = None) -> Any:
        data = self.trainer.config.data
        size = batch_size or data.eval_batch_size or data.batch_size
        return make_loader(dataset, size, shuffle=False, seed=0, num_workers=data.num_workers,
                           pin_memory=self.pin_memory)

    @property
    def pin_memory(self) -> bool:
        """Loaders pin batches when the run trains on a CUDA device."""
        return self.trainer.device.type == "cuda"

    @contextlib.contextmanager
    def feature_corruption(self, config: CorruptionConfig | None) -> Iterator[None]:
        """Feature-level noise (SAM-LML Eq. 35) between encoders and fusion, for every pass.

        Always sets the transform (None for a clean split) and restores the enclosing one, so a
        validation pass inside a training epoch neither inherits nor removes the train corruption."""
        model = self.trainer.model
        enclosing = model.feature_transform
        if config is None or config.level != "feature" or config.noise_rate == 0:
            model.feature_transform = None
        else:
            model.feature_transform = lambda feats, batch: corrupt_features(
                feats, batch.index, config, model.modalities, masks=batch.masks
            )
        try:
            yield
        finally:
            model.feature_transform = enclosing

    # -- evaluation passes ----------------------------------------------------------------
    @contextlib.contextmanager
    def eval_mode(self) -> Iterator[None]:
        model = self.trainer.model
        flags = {name: m.training for name, m in model.named_modules()}
        model.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            for name, m in model.named_modules():
                m.train(flags[name])

    def map_split(self, split: str, fn: Callable[..., Any], subset: Any = None, batch_size: int | None = None) -> list[Any]:
        dataset = self.split(split)
        if subset is not None:
            dataset = Subset(dataset, [int(i) for i in subset])
        out = []
        with self.eval_mode(), self.feature_corruption(self.corruption(split)):
            for batch in self.eval_loader(dataset, batch_size):
                out.append(fn(self.trainer.to_device(batch), self.trainer.model))
        return out

    def evaluate(self, split: str, values: bool = False, corruption: CorruptionConfig | None = None) -> dict[str, float]:
        """Fused metrics, `<primary>/<m>` (the fusion with only m present) and optionally the
        Shapley shares `value/<m>` — every per-modality number from head passes on cached features."""
        t = self.trainer
        model, modalities = t.model, t.model.modalities
        fused = MetricAccumulator(t.task, t.ctx.num_outputs)
        alone = {m: MetricAccumulator(t.task, t.ctx.num_outputs) for m in modalities}
        value_total = torch.zeros(len(modalities), device=t.device)
        count = 0
        config = corruption if corruption is not None else self.corruption(split)
        with self.eval_mode(), self.feature_corruption(config), t.autocast():
            for batch in self.eval_loader(self.split(split, corruption)):
                batch = t.to_device(batch)
                out = model(batch)
                fused.update(out.logits.float(), batch.label, t.task_loss(out.logits, batch.label, reduction="sum"))
                for m in modalities:
                    only = model.fuse(out.features, model.coalition_presence(out.present, (m,)), batch.masks, probe=True)
                    alone[m].update(only.logits.float(), batch.label, t.task_loss(only.logits, batch.label, reduction="sum"))
                if values:
                    v = value_modalities(model, out.features, out.present, batch.masks, batch.label, accuracy, t.task_loss)
                    value_total += v.values.float() * batch.size
                    count += batch.size
        metrics = fused.compute()
        for m in modalities:
            metrics[f"{self.primary}/{m}"] = alone[m].compute()[self.primary]
        if values and count:
            shares = _shares(value_total / count)
            metrics |= {f"value/{m}": s for m, s in zip(modalities, shares.tolist())}
        return metrics

    def features(self, split: str) -> tuple[dict[str, Tensor], Tensor]:
        """Encoder features (pooled over time for sequences) and labels of a whole split, for probes."""
        parts = self.map_split(split, lambda b, model: (_pooled(model.encode(b), b.masks), b.label))
        feats = {m: torch.cat([p[0][m] for p in parts]).float().cpu() for m in self.trainer.model.modalities}
        return feats, torch.cat([p[1] for p in parts]).cpu()

    # -- logging ----------------------------------------------------------------------------
    def log(self, metrics: dict[str, float], split: str) -> None:
        t = self.trainer
        if self.logger is not None:
            self.logger.log(metrics, step=t.step, epoch=t.epoch, split=split)
        t.hook.mmcore_log_metrics(metrics=metrics, step=t.step, epoch=t.epoch, split=split)

    def log_train(self, state: StepState) -> None:
        t = self.trainer
        t.check_finite()
        named = {f"loss/{k}": v.detach().float() for k, v in state.losses.items()}
        named |= {k: torch.as_tensor(v).detach().float() for k, v in state.metrics.items()}
        values = torch.stack([v.reshape(()) .to(t.device) for v in named.values()]).tolist()  # one host sync
        metrics = dict(zip(named, values))
        metrics["lr"] = float(t.optimizer.param_groups[0]["lr"])
        self.log(metrics, "train")
        self._postfix = metrics.get("loss/task")

    def progress(self, loader: Iterable[Batch], epoch: int) -> Iterable[Batch]:
        if not self.trainer.show_progress or not sys.stderr.isatty():
            return loader
        from tqdm.auto import tqdm

        return tqdm(loader, desc=f"epoch {epoch + 1}/{self.trainer.config.run.epochs}", leave=False, dynamic_ncols=True)


def _shares(values: Tensor) -> Tensor:
    v = values.clamp_min(0)
    total = v.sum()
    return v / total if float(total) > 0 else torch.full_like(v, 1.0 / v.numel())


def _pooled(features: dict[str, Tensor], masks: dict[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for m, f in features.items():
        if f.dim() == 3:
            mask = masks.get(m)
            w = torch.ones(f.shape[:2], device=f.device) if mask is None else mask.float()
            f = (f * w.unsqueeze(-1)).sum(1) / w.sum(1, keepdim=True).clamp_min(1)
        out[m] = f
    return out

"""The Trainer: assembly, the epoch loop and the one training step (DESIGN.md section 4)."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from mmcore import build, distributed
from mmcore.config import dump_config
from mmcore.control import PlanEntry, TrainControl
from mmcore.data.transfer import DeviceTransfer
from mmcore.errors import ConfigError, NonFiniteLossError, PluginError
from mmcore.evaluation import Evaluator
from mmcore.generators import Generators
from mmcore.logging import RunLogger
from mmcore.run_state import RunState
from mmcore.types import Batch, StepState
from mmcore.valuation import averaged_over_ranks


class _Silent:
    """Stands in for pluggy's hook relay when no PluginHost is given."""

    def __getattr__(self, name: str) -> Any:
        return lambda **kwargs: []


class Trainer:
    def __init__(self, config: Any, registry: Any, run_dir: Path | None = None, hook: Any = None,
                 progress: bool = False, resume: bool = False) -> None:
        self.config, self.registry, self.hook = config, registry, hook or _Silent()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.show_progress = progress
        run = config.run
        self.dist = distributed.init_from_env()
        self.device = distributed.device_for(self.dist, build.resolve_device(run.device))
        if run.threads:
            torch.set_num_threads(run.threads)
        torch.manual_seed(run.seed)  # model init and dropout draw from the global generator, which is checkpointed
        self.generators = Generators(run.seed, rank=self.dist.rank, device=self.device)
        self.epoch, self.step, self.plan, self.loader_state = 0, 0, None, None
        self.epoch_batches = 0  # batches consumed in the current epoch (checkpointed: schedules read it)
        self.progress = 0.0  # epochs done, fractional; what the schedulers follow
        self.schedule_origin = 0.0  # progress when the current scheduler was built (reset_optimizer)
        self.frozen: set[str] = set()
        self.control = TrainControl(self)
        self._assemble()
        if self.dist.enabled:  # the same initial weights everywhere; from here each rank draws its own dropout
            torch.manual_seed(self.generators.derive(f"global@rank{self.dist.rank}"))
        self.evaluator = Evaluator(self)
        self.state = RunState(self)
        self.step_times: list[float] = []
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        self.config_toml = dump_config(config)
        if resume:
            self.state.resume()
        if self.run_dir is not None and self.dist.is_main:  # rank 0 alone writes the run directory
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.toml").write_text(self.config_toml)
            self.evaluator.logger = RunLogger(self.run_dir, resume_step=self.step if resume else None)

    def close(self) -> None:
        """Remove what balancers attached to the model (hooks) and close the run's logs."""
        for b in self.balancers:
            b.detach()
        if self.evaluator.logger is not None:
            self.evaluator.logger.close()

    # -- assembly -------------------------------------------------------------------------
    def _assemble(self) -> None:
        config, registry = self.config, self.registry
        self.data = build.build_data(config, registry)
        self.ctx = ctx = build.base_context(config, registry, self.data)
        self.task, self.task_loss = ctx.task, build.make_task_loss(ctx.task)
        ctx.task_loss = self.task_loss
        self.model = build.build_model(config, registry, ctx)
        ctx.model = self.model
        self.valuators = build.build_valuators(config, registry, ctx)
        self.balancers = build.build_balancers(config, registry, ctx)
        self.supervisors = build.build_supervisors(config, registry, ctx)
        for component in [*self.balancers, *self.supervisors]:
            component.attach(self.model)  # before the optimizer, so their modules are trained
        self._check_capabilities()
        self.model.to(self.device)
        self.transfer = DeviceTransfer(self.device, self.data.prepare)
        if self.config.run.channels_last:
            self.model.to(memory_format=torch.channels_last)  # 4-D weights only; other tensors keep theirs
        self.owner = next((b for b in self.balancers if b.owns_step), None)
        self.modulators = [b for b in self.balancers if not b.owns_step]
        self.labels_in_fusion = "labels_in_fusion" in type(self.model.fusion).provides
        self.steps_per_epoch = self._count_steps(len(self.data.splits["train"]))
        self.ctx.steps_per_epoch = self.steps_per_epoch
        self.ctx.progress = lambda: self.progress - self.schedule_origin
        self.optimizer, self.scheduler = build.build_optimizer(config, registry, self.ctx, self.model)
        self.scaler = torch.amp.GradScaler(self.device.type) if config.run.precision == "16-mixed" else None

    def _count_steps(self, rows: int) -> int:
        """Optimizer steps in an epoch of `rows` training rows, as train_epoch takes them: each
        rank's shard in batches (a short last batch included), k batches per step (a short tail
        of micro-batches still steps), so schedulers reach their end exactly at the last step."""
        world = self.dist.world_size
        shard = rows // world if world > 1 else rows  # ShuffleSampler drops the uneven tail across ranks
        batches = -(-shard // self.config.data.batch_size)
        return max(1, -(-batches // self.config.run.grad_accum))

    def _check_capabilities(self) -> None:
        provides = type(self.model.fusion).provides
        problems = [
            f"{type(c).__name__} requires {sorted(c.requires - provides)}, which fusion {self.config.fusion.kind!r} does not provide"
            for c in [*self.balancers, *self.supervisors] if not set(getattr(c, "requires", ())) <= provides
        ]
        for i, (b, table) in enumerate(zip(self.balancers, self.config.balancers)):
            spec = self.registry.get("balancer", table.kind)
            if bool(b.owns_step) != spec.step_owner(table.config):  # validation trusted the registration
                raise PluginError(spec.distribution, f"$.balancers[{i}]: {table.kind!r} registered owns_step="
                                  f"{spec.step_owner(table.config)} but its balancer says {bool(b.owns_step)}")
        if sum(1 for b in self.balancers if b.owns_step) > 1:
            problems.append("$.balancers: more than one balancer owns the step")
        if problems:
            raise ConfigError(problems)

    # -- the loop -----------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        self.hook.mmcore_train_start(trainer=self)
        self.state.start_clock()
        while self.epoch < self.config.run.epochs:
            self.train_epoch()
            metrics = self.evaluator.evaluate("val", values=self.config.run.value_every_epoch)
            self.evaluator.log(metrics, "val")
            if self.state.observe(metrics):
                self.state.save("best")  # before on_epoch_end, which may restore("best")
            for b in self.balancers:
                b.on_epoch_end(self.epoch, metrics, self.control)
            self.hook.mmcore_epoch_end(trainer=self, epoch=self.epoch, metrics=metrics)
            self.epoch, self.loader_state = self.epoch + 1, None
            self.state.save("last")
        return self.state.finish()

    def train_epoch(self) -> None:
        if self.loader_state is None:  # a fresh epoch; a resumed one has already planned
            self.epoch_batches = 0
            for b in self.balancers:
                b.on_epoch_start(self.epoch, self.control)
            self.hook.mmcore_epoch_start(trainer=self, epoch=self.epoch)
        loader = self.evaluator.train_loader(self.epoch, self.plan)
        if self.loader_state is not None:
            loader.load_state_dict(self.loader_state)
        self.model.train()
        k = self.config.run.grad_accum
        micro: list[Batch] = []
        last_log = (time.perf_counter(), self.step)  # timing restarts each epoch: validation is not a step
        with self.evaluator.feature_corruption(self.evaluator.corruption("train")):
            for batch in self.evaluator.progress(loader, self.epoch):
                micro.append(self.to_device(batch))
                self.count_batch(len(loader))
                if len(micro) < k:
                    continue
                state = self.train_step(micro)
                micro = []
                last_log = self._after_step(state, loader, last_log)
            if micro:  # a short tail still trains, with the accumulation scaled to its size
                self._after_step(self.train_step(micro), loader, last_log)

    def to_device(self, batch: Batch) -> Batch:
        """A loader's batch on the run's device, finished by the data's device transforms
        (`mmcore.data.transfer`: on a GPU the copy overlaps the step before)."""
        return self.transfer(batch)

    def count_batch(self, epoch_length: int) -> None:
        """One more batch of this epoch consumed: the progress schedulers follow, in epochs."""
        self.epoch_batches += 1
        self.progress = self.epoch + self.epoch_batches / max(1, epoch_length)

    def _after_step(self, state: StepState, loader: Any, last_log: tuple[float, int]) -> tuple[float, int]:
        self.step += 1
        run = self.config.run
        if self.step % run.log_every_steps == 0:
            self.evaluator.log_train(state)  # the one host sync of the step interval
            now = time.perf_counter()
            since, first_step = last_log
            self.step_times.append((now - since) / (self.step - first_step))  # steps timed, not log_every_steps
            last_log = (now, self.step)
        if run.checkpoint_every_steps and self.step % run.checkpoint_every_steps == 0:
            self.loader_state = loader.state_dict()
            self.state.save("last")
        return last_log

    # -- the step ----------------------------------------------------------------------------
    def train_step(self, micro_batches: list[Batch]) -> StepState:
        state = StepState(
            batch=micro_batches[0], model=self.model, control=self.control, task_loss=self.task_loss,
            generator=self.generators.get, autocast=self.autocast, epoch=self.epoch, step=self.step,
        )
        passes = iter(range(1_000_000))

        def closure() -> StepState:  # pass 0; a step owner may call it again
            state.pass_index = next(passes)
            self.optimizer.zero_grad(set_to_none=True)
            rows = sum(batch.size for batch in micro_batches)  # shapes only: no host sync
            for batch in micro_batches:
                state.batch = batch
                # each micro-batch weighs by its rows: the gradient of the mean loss over the step's
                # samples, as one big batch gives, even when the last batch of an epoch is short
                self._forward_backward(state, scale=batch.size / rows)
            return state

        def finish() -> None:  # once per step, on the gradient the update will use
            distributed.all_reduce_gradients(self.model, self.dist)  # no-op on one rank
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            for b in self.modulators:
                b.after_backward(state)
            if self.config.run.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.run.clip_grad_norm)
            self.hook.mmcore_before_optimizer_step(trainer=self, state=state)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            distributed.broadcast_buffers(self.model, self.dist)

        if self.owner is not None:
            self.owner.step(closure, finish, state)
        else:
            closure()
            finish()
        return state

    def _forward_backward(self, state: StepState, scale: float) -> None:
        for b in self.balancers:
            b.before_forward(state)
        with self.autocast():  # the forward and everything computed from it (losses, probes, balancers'
            self._forward_losses(state)  # extra passes) in the run's precision; the backward outside
        total = torch.stack([term.float() for term in state.losses.values()]).sum() * scale
        self.nonfinite |= ~torch.isfinite(total.detach())  # read back only at logging points
        (self.scaler.scale(total) if self.scaler is not None else total).backward()
        self.hook.mmcore_after_backward(trainer=self, state=state)

    def _forward_losses(self, state: StepState) -> None:
        batch = state.batch
        labels = batch.label if self.labels_in_fusion else None
        output = self.model(batch, active=state.active_modalities, labels=labels)
        if state.pass_index == 0:
            state.output = output
        state.pass_outputs.append(output)
        sample_loss = self.task_loss(output.logits, batch.label, reduction="none")
        state.sample_losses = {"task": sample_loss}
        state.losses = {"task": sample_loss.mean(), **output.fusion.aux_losses}
        for kind, supervisor in zip(self._supervisor_kinds(), self.supervisors):
            state.losses |= {f"{kind}/{name}": term for name, term in supervisor.losses(state).items()}
        if state.pass_index == 0:
            state.values = {name: averaged_over_ranks(v.value(state)) for name, v in self.valuators.all().items()}
        for b in self.balancers:
            b.before_backward(state)

    def _supervisor_kinds(self) -> list[str]:
        return [c.kind for c in self.config.attention_supervisors]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        precision = self.config.run.precision
        if precision == "32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def check_finite(self) -> None:
        if bool(self.nonfinite):  # host sync: only at logging and checkpoint points
            raise NonFiniteLossError(f"non-finite loss at epoch {self.epoch}, step {self.step}; "
                                     "the last good checkpoint is kept")

    # -- TrainControl's backing --------------------------------------------------------------
    def set_plan(self, plan: list[PlanEntry] | None) -> None:
        self.plan = plan

    def map_split(self, split: str, fn: Any, subset: Any = None, batch_size: int | None = None) -> list[Any]:
        return self.evaluator.map_split(split, fn, subset=subset, batch_size=batch_size)

    def set_frozen(self, modality: str, frozen: bool) -> None:
        for p in self.model.modality_params(modality):
            p.requires_grad_(not frozen)
        (self.frozen.add if frozen else self.frozen.discard)(modality)

    def reset_optimizer(self) -> None:
        self.schedule_origin = self.progress
        self.optimizer, self.scheduler = build.build_optimizer(self.config, self.registry, self.ctx, self.model)

    def restore_weights(self, tag: str) -> None:
        self.model.load_state_dict(self.state.weights(tag))

    def no_sync(self) -> contextlib.AbstractContextManager[Any]:
        """Gradients are averaged once, in `finish`, so backward passes never synchronise: a step
        owner's first pass is already per-rank (m-sharpness)."""
        return contextlib.nullcontext()

"""Split datasets held as tensors, epoch plans, collation into `Batch`, and resumable loaders."""
from __future__ import annotations

import warnings
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler
from torchdata.stateful_dataloader import StatefulDataLoader

from mmcore.types import Batch

# torchdata 0.11 calls a deprecated torch API on every iterator; the warning is not ours to act on
warnings.filterwarnings("ignore", message="'set_vital' is deprecated", category=UserWarning)

Sample = dict[str, Any]
PlanEntry = tuple[int, "Sequence[str] | None", "Mapping[str, Tensor] | None"]


class TensorSplit(Dataset[Sample]):
    """One split stored as whole tensors (row = sample), so items are views, never conversions.

    `inputs[m]` is [N, D] or [N, T, D]; `masks[m]` is bool [N, T] for sequence modalities;
    `extras[name]` is [N, ...]; `present` is bool [N, M] (default: every modality present).
    """

    def __init__(
        self,
        inputs: dict[str, Tensor],
        label: Tensor,
        modalities: Sequence[str],
        masks: dict[str, Tensor] | None = None,
        extras: dict[str, Tensor] | None = None,
        present: Tensor | None = None,
    ) -> None:
        self.modalities = tuple(modalities)
        missing = [m for m in self.modalities if m not in inputs]
        if missing:
            raise ValueError(f"TensorSplit: no inputs for modalities {missing}")
        num_rows = int(label.shape[0])
        self.inputs = {m: inputs[m] for m in self.modalities}
        self.label = label
        self.masks = dict(masks or {})
        self.extras = dict(extras or {})
        if present is None:
            present = torch.ones(num_rows, len(self.modalities), dtype=torch.bool)
        self.present = present
        for name, t in [*self.inputs.items(), *self.masks.items(), *self.extras.items(), ("present", present)]:
            if int(t.shape[0]) != num_rows:
                raise ValueError(f"TensorSplit: {name!r} has {t.shape[0]} rows, label has {num_rows}")

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def __getitem__(self, index: int) -> Sample:
        return {
            "inputs": {m: t[index] for m, t in self.inputs.items()},
            "present": self.present[index],
            "label": self.label[index],
            "index": int(index),
            "masks": {m: t[index] for m, t in self.masks.items()},
            "extras": {k: t[index] for k, t in self.extras.items()},
        }


class PlannedDataset(Dataset[Sample]):
    """An epoch plan over a split (TrainControl.plan_epoch): item j is `base[index_j]` with its
    presence ANDed with the entry's kept modalities and the entry's extras merged in.

    `entries` are (index, keep, extras): keep is a tuple of modality names (None = all), extras a
    dict of per-entry tensors (None = none). The item's "index" stays the base row, so per-sample
    state keyed on it is shared by every copy of that row.
    """

    def __init__(self, base: Dataset[Sample], modalities: Sequence[str], entries: Iterable[PlanEntry]) -> None:
        self.base = base
        self.modalities = tuple(modalities)
        entries = list(entries)
        self.rows = [int(index) for index, _, _ in entries]
        self.extras = [dict(extras or {}) for _, _, extras in entries]
        # Plans repeat a handful of keep sets many times: build each mask once and share it.
        masks: dict[tuple[str, ...] | None, Tensor] = {}
        self.keep = [self._keep_mask(keep, masks) for _, keep, _ in entries]

    def _keep_mask(self, keep: Sequence[str] | None, cache: dict[tuple[str, ...] | None, Tensor]) -> Tensor:
        key = None if keep is None else tuple(keep)
        if key not in cache:
            if key is None:
                cache[key] = torch.ones(len(self.modalities), dtype=torch.bool)
            else:
                unknown = [m for m in key if m not in self.modalities]
                if unknown:
                    raise ValueError(
                        f"plan keeps unknown modalities {unknown}; modalities: {', '.join(self.modalities)}"
                    )
                cache[key] = torch.tensor([m in key for m in self.modalities], dtype=torch.bool)
        return cache[key]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, j: int) -> Sample:
        item = dict(self.base[self.rows[j]])
        item["present"] = item["present"] & self.keep[j]
        item["extras"] = {**item.get("extras", {}), **self.extras[j]}
        return item


class SeededItems(Dataset[Sample]):
    """`base` whose item j loads with torch's global generator seeded from (`seed`, j), and restored
    afterwards. Random augmentation drawn from that generator (crops, flips, frame choice) becomes a
    function of the epoch's seed and the item's position: the same whatever the number of loader
    workers, the same after a mid-epoch resume, and apart from the draws the model makes (dropout)."""

    def __init__(self, base: Dataset[Sample], seed: int) -> None:
        self.base = base
        self.seed = seed

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, j: int) -> Sample:
        generator = torch.default_generator
        outer = generator.get_state()
        generator.manual_seed((self.seed * 1_000_003 + j) % (2**63 - 1))  # as Generators.derive mixes
        try:
            return self.base[j]
        finally:
            generator.set_state(outer)


def _stack_per_key(samples: list[Sample], field: str) -> dict[str, Tensor]:
    keys = samples[0].get(field, {}).keys()
    for s in samples:
        if s.get(field, {}).keys() != keys:
            raise ValueError(
                f"collate: samples disagree on {field} keys: {sorted(keys)} vs {sorted(s.get(field, {}).keys())}"
            )
    return {k: torch.stack([s[field][k] for s in samples]) for k in keys}


def collate(samples: list[Sample]) -> Batch:
    """Stack sample dicts into a `Batch`; masks and extras are stacked per key."""
    return Batch(
        inputs=_stack_per_key(samples, "inputs"),
        present=torch.stack([s["present"] for s in samples]),
        label=torch.stack([torch.as_tensor(s["label"]) for s in samples]),
        index=torch.tensor([int(s["index"]) for s in samples], dtype=torch.long),
        masks=_stack_per_key(samples, "masks"),
        extras=_stack_per_key(samples, "extras"),
    )


class ShuffleSampler(Sampler[int]):
    """A new random order of `range(size)` every epoch, drawn from `generator`, resumable mid-epoch.

    The order is drawn lazily, at the first index asked for: the loaders create and discard
    iterators (a worker-process loader makes two per epoch), and a discarded iterator must not
    advance the generator, or the order would depend on `num_workers`. An iterator's state is the
    generator state its order was drawn from plus the indices yielded, so a restored iterator
    redraws the same order, skips what was consumed, and leaves the generator exactly where an
    uninterrupted run leaves it: later epochs continue identically.
    """

    def __init__(self, size: int, generator: torch.Generator, rank: int = 0, world_size: int = 1) -> None:
        self.size = size
        self.generator = generator
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return self.size // self.world_size if self.world_size > 1 else self.size

    def shard(self, order: list[int]) -> list[int]:
        """Under DDP each rank takes every world_size-th position of the one shared order, with the
        tail dropped so every rank runs the same number of steps."""
        if self.world_size == 1:
            return order
        return order[: len(self) * self.world_size][self.rank :: self.world_size]

    def __iter__(self) -> _ShuffleIterator:
        return _ShuffleIterator(self)


class _ShuffleIterator(Iterator[int]):
    def __init__(self, sampler: ShuffleSampler) -> None:
        self.sampler = sampler
        self.order: list[int] | None = None
        self.drawn_from: Tensor | None = None
        self.yielded = 0

    def _draw(self) -> list[int]:
        self.drawn_from = self.sampler.generator.get_state()
        self.order = self.sampler.shard(torch.randperm(self.sampler.size, generator=self.sampler.generator).tolist())
        return self.order

    def __iter__(self) -> _ShuffleIterator:
        return self

    def __next__(self) -> int:
        order = self.order if self.order is not None else self._draw()
        if self.yielded >= len(order):
            raise StopIteration
        self.yielded += 1
        return order[self.yielded - 1]

    def state_dict(self) -> dict[str, Any]:
        start = self.drawn_from if self.order is not None else self.sampler.generator.get_state()
        return {"generator": start, "yielded": self.yielded}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.generator.set_state(state["generator"])
        self.order, self.drawn_from, self.yielded = None, None, int(state["yielded"])
        if self.yielded:
            self._draw()


# The loader's own generator only seeds worker processes; it is kept apart from the shuffling
# generator so that a resumed loader, which does not replay that draw, still shuffles identically.
_WORKER_SEED_SALT = 0x5EED


def make_loader(
    dataset: Dataset[Sample],
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> StatefulDataLoader:
    """A StatefulDataLoader over `collate`d batches whose order depends only on `seed` (not on
    `num_workers`), and whose state_dict / load_state_dict resume mid-epoch and across epochs."""
    generator = torch.Generator().manual_seed(seed)  # the same on every rank: one order, sharded
    sampler = ShuffleSampler(len(dataset), generator, rank, world_size) if shuffle else None  # type: ignore[arg-type]
    worker_generator = torch.Generator().manual_seed(seed + _WORKER_SEED_SALT)
    return StatefulDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        collate_fn=collate,
        generator=worker_generator,
        pin_memory=pin_memory,  # Batch.pin_memory: page-locked batches for asynchronous copies to a GPU
    )

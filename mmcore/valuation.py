"""Shapley values of modalities: exact enumeration and Monte-Carlo permutation sampling.

`shapley` is the shared math (M-SAM, PaSE, AGM and the valuation plugin all build on it; never copy
it). `value_modalities` values a batch by probing the fusion on cached encoder features — head
passes only, no encoder pass — in eval mode under `no_grad`; by default all coalitions share one
fuse call on the batch stacked once per coalition, so a step pays the per-call overhead once, not
2^M − 1 times. The `shapley` valuator kind wraps it for the step; the trainer reuses
`value_modalities` on validation batches.

Both estimators are linear in the coalition values: φ = W·v, with W[m, S] the weight coalition S's
value gets in modality m's Shapley value. So every shape of value (scalar, [B], [B, C]) and autograd
come for free from one tensordot.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from functools import lru_cache
from itertools import combinations
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from mmcore.distributed import mean_over_ranks, world_size
from mmcore.types import Batch, ModalityValues
from mmcore.value_functions import VALUE_FUNCTIONS, ValueFunction

Coalition = tuple[str, ...]
EMPTY_MODES = ("zero", "evaluate")
METHODS = ("exact", "permutation", "auto")
EXACT_UP_TO = 4  # "auto": 2^M − 1 head passes are cheaper than sampling up to here (specs §1.1)


# -- weights: which coalitions to evaluate and how each enters every φ_m ---------------------------
def _bits(mask: int, num_players: int) -> tuple[int, ...]:
    return tuple(i for i in range(num_players) if mask >> i & 1)


@lru_cache(maxsize=32)
def _exact_weights(num_players: int, include_empty: bool) -> tuple[tuple[tuple[int, ...], ...], Tensor]:
    """All coalitions (by size) and W[m, S] = w(|S|−1) if m ∈ S else −w(|S|), w(s) = s!(M−s−1)!/M!.
    Without the empty coalition its column is dropped: v(∅) = 0 contributes nothing."""
    first_size = 0 if include_empty else 1
    members = [c for size in range(first_size, num_players + 1) for c in combinations(range(num_players), size)]
    total = math.factorial(num_players)
    weights = torch.zeros(num_players, len(members), dtype=torch.float64)
    for column, coalition in enumerate(members):
        size = len(coalition)
        for m in range(num_players):
            if m in coalition:
                weights[m, column] = math.factorial(size - 1) * math.factorial(num_players - size) / total
            else:
                weights[m, column] = -math.factorial(size) * math.factorial(num_players - size - 1) / total
    return tuple(members), weights


def _permutation_weights(
    num_players: int, samples: int, generator: torch.Generator | None, include_empty: bool
) -> tuple[tuple[tuple[int, ...], ...], Tensor]:
    """Coalitions met along `samples` random orderings and W = the averaged marginal contributions.
    Each ordering telescopes to v(all) − v(∅), so the estimate is efficient by construction."""
    device = generator.device if generator is not None else "cpu"
    orders = torch.rand(samples, num_players, generator=generator, device=device).argsort(1).tolist()
    counts: dict[tuple[int, int], int] = {}
    for order in orders:  # host-side loop over orderings, not over samples of the batch
        before = 0
        for m in order:
            after = before | (1 << m)
            counts[(m, after)] = counts.get((m, after), 0) + 1
            if before or include_empty:
                counts[(m, before)] = counts.get((m, before), 0) - 1
            before = after
    masks = sorted({mask for _, mask in counts}, key=lambda k: (k.bit_count(), _bits(k, num_players)))
    column = {mask: j for j, mask in enumerate(masks)}
    weights = torch.zeros(num_players, len(masks), dtype=torch.float64)
    for (m, mask), count in counts.items():
        weights[m, column[mask]] = count / samples
    return tuple(_bits(k, num_players) for k in masks), weights


def resolve_method(method: str, num_modalities: int) -> str:
    """"auto" = exact enumeration for M ≤ 4, permutation sampling beyond."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        return "exact" if num_modalities <= EXACT_UP_TO else "permutation"
    return method


class CoalitionPlan(NamedTuple):
    """Which coalitions to evaluate (index tuples, in evaluation order) and W [M, K] (float64).
    `fixed`: the same for every call (exact enumeration), so device copies can be cached."""

    members: tuple[tuple[int, ...], ...]
    weights: Tensor
    fixed: bool


def coalition_plan(
    num_players: int, empty: str, method: str, samples: int, generator: torch.Generator | None
) -> CoalitionPlan:
    if empty not in EMPTY_MODES:
        raise ValueError(f"empty must be one of {EMPTY_MODES}, got {empty!r}")
    method = resolve_method(method, num_players)
    if method == "exact":
        return CoalitionPlan(*_exact_weights(num_players, empty == "evaluate"), fixed=True)
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    return CoalitionPlan(*_permutation_weights(num_players, samples, generator, empty == "evaluate"), fixed=False)


# -- the Shapley value ----------------------------------------------------------------------------
def shapley(
    value_of: Callable[[Coalition], Any],
    modalities: Sequence[str],
    empty: str = "zero",
    method: str = "exact",
    samples: int = 64,
    generator: torch.Generator | None = None,
) -> ModalityValues:
    """Shapley values of `modalities` for the coalition game `value_of`.

    `value_of(coalition)` gets a tuple of modality names in `modalities` order and returns a scalar,
    [B] or [B, C] tensor; it is called once per distinct coalition (results are cached in
    `coalitions`). Nothing is detached: the values are differentiable where `value_of` is.
    `empty="zero"` sets v(∅) = 0 without calling `value_of(())`; `"evaluate"` calls it.
    `method="exact"` enumerates all coalitions; `"permutation"` averages marginal contributions over
    `samples` random orderings drawn from `generator` (pass one for reproducible draws; None uses
    torch's global generator); `"auto"` picks exact for M ≤ 4.
    Returns values [M] for scalar values, [B, M] for [B], [M, B, C] for [B, C].
    """
    names = _check_names(modalities)
    plan = coalition_plan(len(names), empty, method, samples, generator)
    coalitions: dict[Coalition, Tensor] = {}
    for indices in plan.members:
        coalition = tuple(names[i] for i in indices)
        value = value_of(coalition)
        coalitions[coalition] = value if isinstance(value, Tensor) else torch.as_tensor(value)
    return ModalityValues(_combine(plan, torch.stack(list(coalitions.values()))), names, coalitions)


def _check_names(modalities: Sequence[str]) -> tuple[str, ...]:
    names = tuple(modalities)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"modalities must be non-empty and distinct, got {names}")
    return names


@lru_cache(maxsize=64)
def _placed(weights: Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    # Exact weights are fixed per M: copy them to the device once, not once per step.
    return _upload(weights.to(dtype), device)


def _combine(plan: CoalitionPlan, stacked: Tensor) -> Tensor:
    """φ = W·v for the coalition values stacked [K, *value shape] in `plan.members` order."""
    if not stacked.is_floating_point():
        stacked = stacked.float()
    if stacked.dim() > 3:
        raise ValueError(f"value_of must return a scalar, [B] or [B, C] tensor, got shape {tuple(stacked.shape[1:])}")
    weights = (_placed if plan.fixed else _placed.__wrapped__)(plan.weights, stacked.device, stacked.dtype)
    if stacked.dim() == 3:  # [K, B, C] -> [M, B, C]
        return (weights @ stacked.flatten(1)).view(-1, *stacked.shape[1:])
    phi = weights @ stacked  # [M] or [M, B]
    return phi.transpose(0, 1) if phi.dim() == 2 else phi  # [M, B] -> [B, M]


# -- valuing a model's modalities -----------------------------------------------------------------
@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode for `module` and all its submodules; afterwards every submodule gets back its own
    previous flag (a mixed train/eval tree stays mixed, which `module.train(flag)` would not)."""
    flags = [(sub, sub.training) for sub in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for sub, flag in flags:
            sub.training = flag


def _per_sample_or_batch(value: Tensor, per: str) -> Tensor:
    # Only per-sample scores are averaged; [B, C] attributions (logits) keep their samples.
    return value.mean(0) if per == "batch" and value.dim() == 1 else value


def _check_per(per: str) -> None:
    if per not in ("batch", "sample"):
        raise ValueError(f"per must be 'batch' or 'sample', got {per!r}")


def value_modalities(
    model: Any,
    features: dict[str, Tensor],
    present: Tensor,
    masks: dict[str, Tensor] | None,
    labels: Tensor,
    value_fn: ValueFunction,
    task_loss: Callable[..., Tensor],
    per: str = "batch",
    empty: str = "zero",
    method: str = "exact",
    samples: int = 64,
    generator: torch.Generator | None = None,
    batch_coalitions: bool = True,
) -> ModalityValues:
    """Shapley values of `model.modalities` from head-only probes on cached `features`.

    The probes run `model.fuse(features, coalition presence, masks, probe=True)` under `no_grad`
    with the fusion in eval mode (flags restored exactly), on detached features, so no encoder runs
    and nothing the step trains is touched. `present` is the presence the batch's forward saw
    (batch mask AND drops). `per="batch"` averages per-sample values over the batch (values [M]);
    `"sample"` keeps them ([B, M]); a [B, C] value function (logits) gives [M, B, C].
    `batch_coalitions=True` evaluates every coalition in ONE fuse call on K stacked copies of the
    batch (fusions treat rows independently in eval mode), giving the same values as one fuse call
    per coalition (`False`) at a fraction of the per-call overhead.
    """
    _check_per(per)
    names = _check_names(model.modalities)
    cached = {m: f.detach() for m, f in features.items()}
    if not batch_coalitions:
        return _value_each_coalition(model, cached, present, masks, labels, value_fn, task_loss, per,
                                     empty=empty, method=method, samples=samples, generator=generator)
    plan = coalition_plan(len(names), empty, method, samples, generator)
    with torch.no_grad(), eval_mode(model.fusion):
        values = _coalition_values(model, names, plan, cached, present, masks, labels, value_fn, task_loss)
        if per == "batch" and values.dim() == 2:  # [K, B] per-sample scores; [K, B, C] logits stay
            values = values.mean(1)
        coalitions = dict(zip(_coalition_names(names, plan.members), values.unbind(0)))
        return ModalityValues(_combine(plan, values), names, coalitions)


def _value_each_coalition(model: Any, cached: dict[str, Tensor], present: Tensor, masks: Any, labels: Tensor,
                          value_fn: ValueFunction, task_loss: Any, per: str, **shapley_options: Any) -> ModalityValues:
    """The reference path: one `model.fuse` probe per coalition."""

    def value_of(coalition: Coalition) -> Tensor:
        probe = model.fuse(cached, model.coalition_presence(present, coalition), masks, probe=True)
        value = value_fn(probe.logits, labels, coalition=coalition, task_loss=task_loss)
        return _per_sample_or_batch(value, per)

    with torch.no_grad(), eval_mode(model.fusion):
        return shapley(value_of, model.modalities, **shapley_options)


# The built-in value functions score every row on its own and ignore `coalition`, so one call
# scores all coalitions' rows at once; any other (a plugin's) is called once per coalition.
ROW_WISE_VALUE_FUNCTIONS = frozenset(VALUE_FUNCTIONS.values())


def _coalition_values(model: Any, names: tuple[str, ...], plan: CoalitionPlan, features: dict[str, Tensor],
                      present: Tensor, masks: dict[str, Tensor] | None, labels: Tensor, value_fn: ValueFunction,
                      task_loss: Callable[..., Tensor]) -> Tensor:
    """Per-sample values [K, B] (or [K, B, C]) of the plan's K coalitions from one fuse call on the
    batch stacked K times, copy k with presence = `present` AND coalition k."""
    count, batch = len(plan.members), present.shape[0]
    table = (_presence_table if plan.fixed else _presence_table.__wrapped__)(plan.members, len(names), present.device)
    stacked_present = (present.unsqueeze(0) & table.unsqueeze(1)).flatten(0, 1)
    stacked = {m: _repeat_rows(f, count) for m, f in features.items()}
    stacked_masks = None if masks is None else {m: _repeat_rows(t, count) for m, t in masks.items()}
    logits = model.fuse(stacked, stacked_present, stacked_masks, probe=True).logits
    if value_fn in ROW_WISE_VALUE_FUNCTIONS:
        values = value_fn(logits, _repeat_rows(labels, count), coalition=names, task_loss=task_loss)
        return values.view(count, batch, *values.shape[1:])
    blocks = logits.view(count, batch, *logits.shape[1:]).unbind(0)
    return torch.stack([
        value_fn(block, labels, coalition=coalition, task_loss=task_loss)
        for block, coalition in zip(blocks, _coalition_names(names, plan.members))
    ])


def _repeat_rows(t: Tensor, copies: int) -> Tensor:
    # [N, ...] -> [copies * N, ...]; expand + one copy is cheaper than Tensor.repeat
    return t.expand(copies, *t.shape).flatten(0, 1)


def _coalition_names(names: tuple[str, ...], members: tuple[tuple[int, ...], ...]) -> list[Coalition]:
    return [tuple(names[i] for i in indices) for indices in members]


@lru_cache(maxsize=64)
def _presence_table(members: tuple[tuple[int, ...], ...], num_players: int, device: torch.device) -> Tensor:
    """bool [K, M]: row k marks coalition k's members. Cached for exact plans, which repeat every
    step; sampled plans call `_presence_table.__wrapped__` and upload theirs without a sync."""
    rows = [[i in indices for i in range(num_players)] for indices in members]
    return _upload(torch.tensor(rows, dtype=torch.bool), device)


def _upload(host: Tensor, device: torch.device) -> Tensor:
    # A copy from pageable host memory waits for the GPU's queue to drain; a pinned one does not.
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


def naive_value_modalities(
    model: Any,
    batch: Batch,
    value_fn: ValueFunction,
    task_loss: Callable[..., Tensor],
    per: str = "batch",
    empty: str = "zero",
    method: str = "exact",
    samples: int = 64,
    generator: torch.Generator | None = None,
    drop_at: str = "feature",
) -> ModalityValues:
    """The same valuation, but re-running the whole model (encoders included) for every coalition
    via `model(batch, drop=<the others>, drop_at=drop_at)`, in eval mode under `no_grad`.

    Only the baseline for benchmarks/valuation_overhead.py: it costs an encoder pass per coalition,
    which `value_modalities` avoids. With the model in eval mode both give the same values.
    """
    _check_per(per)

    def value_of(coalition: Coalition) -> Tensor:
        dropped = [m for m in model.modalities if m not in coalition]
        output = model(batch, drop=dropped, drop_at=drop_at)
        value = value_fn(output.logits, batch.label, coalition=coalition, task_loss=task_loss)
        return _per_sample_or_batch(value, per)

    with torch.no_grad(), eval_mode(model):
        return shapley(value_of, model.modalities, empty=empty, method=method, samples=samples, generator=generator)


def averaged_over_ranks(values: ModalityValues) -> ModalityValues:
    """Per-batch values [M] (and the per-batch coalition values behind them) are batch statistics:
    under DDP the trainer replaces them by their mean over ranks, the global batch's values when
    the rank batches are equal. Per-sample and per-logit values stay each rank's own."""
    if values.values.dim() != 1 or world_size() == 1:
        return values
    reduced = values.values.detach().clone()
    coalitions = {c: v.detach().clone() for c, v in values.coalitions.items() if v.dim() == 0}
    mean_over_ranks([reduced, *coalitions.values()])
    return ModalityValues(reduced, values.modalities, values.coalitions | coalitions)

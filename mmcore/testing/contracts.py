"""Contract checks that any balancer, valuator or supervisor plugin — ours or a third party's —
runs in its own tests:

    @pytest.mark.parametrize("check", contract_checks("balancer", {"kind": "ogm_ge"}), ids=check_id)
    def test_contract(check):
        check()
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterable

import torch

from mmcore.checkpoint import flatten_state, unflatten_state
from mmcore.testing.toy import make_trainer, run_steps, toy_config

SLOT_TABLES = {"balancer": "balancers", "attention_supervisor": "attention_supervisors", "valuator": "valuators"}


def _config(slot: str, table: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
    config = dict(base or toy_config())
    if slot == "valuator":
        config["valuators"] = {"checked": table}
    else:
        config[SLOT_TABLES[slot]] = [*config.get(SLOT_TABLES[slot], []), table]
    return config


def _component(trainer: Any, slot: str) -> Any:
    if slot == "balancer":
        return trainer.balancers[-1]
    if slot == "attention_supervisor":
        return trainer.supervisors[-1]
    return trainer.valuators.declared["checked"]


def check_steps_are_finite(config: dict[str, Any], modules: Iterable[Any] = (), steps: int = 3) -> None:
    """Every pass of every step gives finite losses, and training moves the parameters."""
    trainer = make_trainer(config, modules=modules)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    _, states = run_steps(trainer, steps)
    for state in states:
        for name, loss in state.losses.items():
            assert torch.isfinite(loss).all(), f"loss {name!r} is not finite at step {state.step}"
    moved = any(not torch.equal(a, p) for a, p in zip(before, trainer.model.parameters()))
    assert moved, "no parameter changed after training steps"


def check_deterministic(config: dict[str, Any], modules: Iterable[Any] = (), steps: int = 3) -> None:
    """Two fresh runs with the same seed end with identical parameters."""
    finals = []
    for _ in range(2):
        trainer, _ = run_steps(config, steps, modules=modules)
        finals.append([p.detach().clone() for p in trainer.model.parameters()])
    for a, b in zip(*finals):
        assert torch.equal(a, b), "seeded runs differ: some randomness is not drawn from a trainer generator"


def check_state_round_trip(slot: str, config: dict[str, Any], modules: Iterable[Any] = (), steps: int = 3) -> None:
    """state_dict() survives the checkpoint format (safetensors + JSON) and load_state_dict()
    restores it into a fresh instance."""
    trainer, _ = run_steps(config, steps, modules=modules)
    component = _component(trainer, slot)
    if not hasattr(component, "state_dict"):
        return
    state = component.state_dict()
    tensors, meta = flatten_state(state)  # raises on anything that is neither tensor nor JSON
    restored = unflatten_state(tensors, meta)
    fresh = _component(make_trainer(config, modules=modules), slot)
    fresh.load_state_dict(restored)
    again_tensors, again_meta = flatten_state(fresh.state_dict())
    assert again_meta == meta, "load_state_dict(state_dict()) does not restore the same state"
    for key, value in tensors.items():
        assert torch.equal(again_tensors[key], value), f"state tensor {key!r} changed in the round trip"


def check_modules_on_device(config: dict[str, Any], modules: Iterable[Any] = ()) -> None:
    """Modules a component attaches live on the model (so they are trained and checkpointed) and
    on its device — also after a step, so a module created lazily in a hook (after the optimizer
    was built, hence never trained) is caught."""
    trainer, _ = run_steps(config, 1, modules=modules)
    devices = {t.device for t in [*trainer.model.parameters(), *trainer.model.buffers()]}
    assert devices == {trainer.device}, f"tensors on {devices}, model on {trainer.device}"
    trained = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    untrained = [n for n, p in trainer.model.named_parameters() if p.requires_grad and id(p) not in trained]
    assert not untrained, f"parameters outside the optimizer: {untrained[:5]}"


def check_detach_removes_hooks(config: dict[str, Any], modules: Iterable[Any] = ()) -> None:
    """After detach(), the model carries no hook the balancer installed."""
    trainer = make_trainer(config, modules=modules)
    component = trainer.balancers[-1]
    component.detach()
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in trainer.model.modules())
    tensor_hooks = [n for n, p in trainer.model.named_parameters() if getattr(p, "_backward_hooks", None)]
    assert hooks == 0 and not tensor_hooks, "detach() left hooks on the model"


def check_valuator_has_no_side_effects(config: dict[str, Any], modules: Iterable[Any] = ()) -> None:
    """A valuator leaves parameters, buffers and training flags exactly as it found them and
    returns values for every modality."""
    trainer, states = run_steps(config, 1, modules=modules)
    state, valuator = states[0], trainer.valuators.declared["checked"]
    snapshot = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    flags = [m.training for m in trainer.model.modules()]
    values = valuator.value(state)
    assert tuple(values.modalities) == trainer.model.modalities
    assert values.values.shape[0 if values.values.dim() != 2 else 1] == len(trainer.model.modalities)
    assert flags == [m.training for m in trainer.model.modules()], "training flags changed"
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, snapshot[k]), f"{k} changed while valuating"


def contract_checks(slot: str, table: dict[str, Any], config: dict[str, Any] | None = None,
                    modules: Iterable[Any] = ()) -> list[Callable[[], None]]:
    """The checks for one component table, each a zero-argument callable (pytest parametrize)."""
    modules = list(modules)
    full = _config(slot, table, config)
    checks = [
        functools.partial(check_steps_are_finite, full, modules),
        functools.partial(check_deterministic, full, modules),
        functools.partial(check_state_round_trip, slot, full, modules),
        functools.partial(check_modules_on_device, full, modules),
    ]
    if slot == "balancer":
        checks.append(functools.partial(check_detach_removes_hooks, full, modules))
    if slot == "valuator":
        checks.append(functools.partial(check_valuator_has_no_side_effects, full, modules))
    return checks


def check_id(check: Callable[[], None]) -> str:
    return getattr(check, "func", check).__name__

"""Dual-phase training: warm up until the validation metric plateaus, then switch SGM on.

The supplement: "If task performance on the validation set does not significantly improve for
several consecutive epochs, the model automatically transitions to the second phase". Our reading
(spec §3.6 [R]): no improvement larger than `min_delta` for `patience` epochs, after at least
`min_epochs` epochs. The official code switches at a fixed epoch instead (`switch_epoch`).
"""
from __future__ import annotations

import math
from typing import Any

from attrs import define


@define
class PhaseSwitch:
    patience: int
    min_delta: float
    min_epochs: int
    maximise: bool
    switch_epoch: int = -1  # >= 0: switch at this epoch whatever the metric does (official code)
    best: float | None = None
    bad_epochs: int = 0
    second_phase_from: int | None = None  # the first epoch trained in phase 2

    def __attrs_post_init__(self) -> None:
        if self.switch_epoch >= 0:
            self.second_phase_from = self.switch_epoch

    def in_second_phase(self, epoch: int) -> bool:
        return self.second_phase_from is not None and epoch >= self.second_phase_from

    def observe(self, epoch: int, value: float) -> bool:
        """Record epoch `epoch`'s validation metric; True when this observation triggers the switch
        (phase 2 then starts with the next epoch)."""
        if self.second_phase_from is not None:
            return False
        if self._improves(value):
            self.best, self.bad_epochs = float(value), 0
        else:
            self.bad_epochs += 1
        if epoch + 1 >= self.min_epochs and self.bad_epochs >= self.patience:
            self.second_phase_from = epoch + 1
            return True
        return False

    def _improves(self, value: float) -> bool:
        if value is None or math.isnan(value):  # nan never wins
            return False
        if self.best is None:
            return True
        gain = value - self.best if self.maximise else self.best - value
        return gain > self.min_delta

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs, "second_phase_from": self.second_phase_from}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = None if state["best"] is None else float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        self.second_phase_from = None if state["second_phase_from"] is None else int(state["second_phase_from"])

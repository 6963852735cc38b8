"""MIE's stage-wise alternation (official code; the paper's Algorithm 1 alternates over modalities
in an outer loop): stage k lasts `epoch_list[k]` epochs (the list repeats when the run is longer)
and trains modality `order[k mod M]` alone — round robin for M ≥ 3.

A pure function of the epoch, so a resumed run knows its stage without saved state.
"""
from __future__ import annotations

from attrs import frozen


@frozen
class StageSchedule:
    lengths: tuple[int, ...]  # epochs per stage, cycled
    order: tuple[str, ...]  # modalities, round robin
    epochs: int  # of the whole run

    @classmethod
    def build(cls, epoch_list: tuple[int, ...], order: tuple[str, ...], epochs: int) -> StageSchedule:
        """An empty `epoch_list` means two rounds over the modalities in equal stages (ours)."""
        lengths = epoch_list or (max(1, epochs // (2 * len(order))),)
        return cls(tuple(lengths), tuple(order), epochs)

    def stage(self, epoch: int) -> int:
        stage, start = 0, 0
        while start + self.lengths[stage % len(self.lengths)] <= epoch:
            start += self.lengths[stage % len(self.lengths)]
            stage += 1
        return stage

    def modality(self, epoch: int) -> str:
        return self.order[self.stage(epoch) % len(self.order)]

    def switches_after(self, epoch: int) -> bool:
        """True when `epoch` is the last of its stage and another epoch follows."""
        return epoch + 1 < self.epochs and self.stage(epoch + 1) != self.stage(epoch)

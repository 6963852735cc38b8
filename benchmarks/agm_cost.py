"""What AGM costs per training step, against joint training, on the av-resnet workload.

Variants (each its own Trainer from the workload's config, as `mmcore run` builds it, timed on real
`Trainer.train_step` calls, alternating in rounds within one process, median step times):

- joint:       no balancer;
- agm:         the plugin defaults, the official math: masked passes muted at the input, in eval
               mode with autograd on, exact Shapley over the coalitions, conditional clipping;
- agm_feature: drop_at = "feature" (muted encoders are not run at all).

Target (spec §3.9): <= 2.2x with the official math (the official code measures 3.28x). The floor
is about 2x: the train-mode pass plus one eval-mode pass per real modality, all carrying
gradients. A muted encoder runs once, at batch size 1, on zeros (its output is the same for every
sample in eval mode), and the all-muted coalition is never run (v(empty) = 0).

Each step is timed on two clocks: wall time, and this process's CPU time. On a shared CPU machine
other processes inflate wall times unevenly; with `--threads 1` the CPU time counts only this
step's own work (nothing spin-waits), so it is the primary clock there. The JSON keeps every sample
and the load average before and after.

    python benchmarks/agm_cost.py --threads 1 --out plugins/agm/results/cost.json
    python benchmarks/agm_cost.py --smoke     # tiny shapes, one round (tests)
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared runner, as a script
from _balancer_cost import main  # noqa: E402

VARIANTS: dict[str, list[dict[str, Any]]] = {
    "joint": [],
    "agm": [{"kind": "agm"}],
    "agm_feature": [{"kind": "agm", "drop_at": "feature"}],
}
TARGETS = {"agm/joint": 2.2}  # ratio <= bound


if __name__ == "__main__":
    main(VARIANTS, TARGETS, __doc__)

"""What OGM-GE costs per training step, against joint training, on the av-resnet workload.

Variants (each its own Trainer from the workload's config, as `mmcore run` builds it, timed on real
`Trainer.train_step` calls, alternating in rounds within one process, median step times):

- joint:       no balancer;
- ogm_ge:      the plugin defaults (all encoder parameters, GE noise);
- ogm_ge_conv: scope = "conv", the official code's scope (conv weights only);
- ogm:         ge = false (scaling only, no noise draw).

Target (spec §2.9): no worse than the official code's 1.06x on CPU, where drawing the GE noise
(22 M Gaussian samples for two ResNet-18s) is most of the added cost.

Each step is timed on two clocks: wall time, and this process's CPU time. On a shared CPU machine
other processes inflate wall times unevenly; with `--threads 1` the CPU time counts only this
step's own work (nothing spin-waits), so it is the primary clock there. The JSON keeps every sample
and the load average before and after.

    python benchmarks/ogm_ge_cost.py --threads 1 --out plugins/ogm_ge/results/cost.json
    python benchmarks/ogm_ge_cost.py --smoke     # tiny shapes, one round (tests)
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared runner, as a script
from _balancer_cost import main  # noqa: E402

VARIANTS: dict[str, list[dict[str, Any]]] = {
    "joint": [],
    "ogm_ge": [{"kind": "ogm_ge"}],
    "ogm_ge_conv": [{"kind": "ogm_ge", "scope": "conv"}],
    "ogm": [{"kind": "ogm_ge", "ge": False}],
}
TARGETS = {"ogm_ge/joint": 1.06, "ogm_ge_conv/joint": 1.06}  # ratio <= bound


if __name__ == "__main__":
    main(VARIANTS, TARGETS, __doc__)

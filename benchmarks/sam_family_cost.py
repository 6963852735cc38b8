"""Step cost of the SAM family on the av-resnet workload (DESIGN.md §9): two ResNet-18 encoders on
CREMA-D-shaped tensors (audio 1x257x188, one 3x224x224 frame), 6 classes, batch 8 on CPU.

Variants, each its own Trainer built from the workload's config (same seed, same initial weights),
timed on real `Trainer.train_step` calls:

- joint: the workload as named (concat fusion, no balancer);
- sam, msam: + the step owner (two forward/backward passes; msam adds the per-step Shapley
  valuation, head passes only, and one kept gradient);
- joint_late: joint training with mie's architecture (`late` fusion, heads 256 -> 64 -> C);
- mie_paper/<m>, mie_full/<m>: mie while modality m's stage trains (only m's branch runs, so the
  audio and the visual stage cost differently); "mie_*" ratios average the two stages, as a
  schedule with equal stage lengths would.

Variants alternate in rounds within one process (each round starts with a different variant),
after warm-up steps; we report median step times and their ratios against joint training (and
msam against sam: the target is msam <= 1.05 x sam). Because a difference of two noisy step medians
hides a small addition, msam's own additions (the valuation and keeping and mixing g₀) are also
timed on their own.

    python benchmarks/sam_family_cost.py --out runs/sam_family_cost.json
    python benchmarks/sam_family_cost.py --smoke          # tiny shapes, one round (tests)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _workloads, when run as a script
from _workloads import WORKLOADS  # noqa: E402

from mmcore import Batch, PluginHost, Trainer  # noqa: E402
from mmcore.bench.timing import measure_steps, prepared_batches  # noqa: E402
from mmcore.testing import make_trainer  # noqa: E402
from mmcore_msam.msam import mix_gradients  # noqa: E402

LATE = {"kind": "late", "hidden": [256, 64]}
MODALITIES = ("audio", "visual")


def _mie(mode: str, first: str) -> list[dict[str, Any]]:
    return [{"kind": "mie", "sam_mode": mode, "order": [first, *(m for m in MODALITIES if m != first)]}]


VARIANTS: dict[str, tuple[dict[str, Any] | None, list[dict[str, Any]]]] = {  # fusion (None: concat), balancers
    "joint": (None, []),
    "sam": (None, [{"kind": "sam"}]),
    "msam": (None, [{"kind": "msam"}]),
    "joint_late": (LATE, []),
    **{f"mie_{mode}/{m}": (LATE, _mie(mode, m)) for mode in ("paper", "full") for m in MODALITIES},
}
TARGET = ("msam/sam", 1.05)


def build_trainers(smoke: bool) -> dict[str, Trainer]:
    workload = WORKLOADS["av-resnet"]
    host = PluginHost(autoload=False, modules=[*workload.modules, "mmcore_msam.plugin", "mmcore_mie.plugin"])
    trainers = {}
    for name, (fusion, balancers) in VARIANTS.items():
        config = workload.config(len(MODALITIES), device="cpu", smoke=smoke)
        config["balancers"] = balancers
        if fusion is not None:
            config["fusion"] = fusion
        trainers[name] = make_trainer(config, host=host)
        trainers[name].model.train()
    return trainers



def measure(trainers: dict[str, Trainer], batches: list[Batch], rounds: int, steps: int,
            warmup: int) -> dict[str, list[float]]:
    """Wall seconds per step of each variant, alternating in rounds (mmcore.bench.timing)."""
    times = measure_steps(trainers, batches, rounds, steps, warmup)
    return {name: clocks["wall"] for name, clocks in times.items()}


def msam_extras(trainer: Trainer, batch: Batch, repeats: int) -> dict[str, float]:
    """What msam adds to a sam step, timed on its own (a difference of two noisy step medians
    hides it): the Shapley valuation (head passes on cached features) and keeping and mixing g₀."""
    state = trainer.train_step([batch])
    valuator = next(iter(trainer.valuators.all().values()))
    params = [p for p in trainer.model.parameters() if p.grad is not None]
    nu = torch.tensor(0.7)

    def valuation() -> None:
        valuator.value(state)

    def keep_and_mix() -> None:
        mix_gradients(params, [p.grad.clone() for p in params], nu)

    timed = {}
    for name, fn in (("valuation", valuation), ("keep_and_mix", keep_and_mix)):
        fn()  # warm
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - started)
        timed[name] = 1e3 * statistics.median(samples)
    return timed


def ratios(step_ms: dict[str, float]) -> dict[str, float]:
    out = {f"{name}/joint": ms / step_ms["joint"] for name, ms in step_ms.items() if name != "joint"}
    for mode in ("paper", "full"):
        mean = statistics.fmean(step_ms[f"mie_{mode}/{m}"] for m in MODALITIES)
        out[f"mie_{mode}/joint"] = mean / step_ms["joint"]
        out[f"mie_{mode}/joint_late"] = mean / step_ms["joint_late"]
    out["msam/sam"] = step_ms["msam"] / step_ms["sam"]
    return out


def machine() -> dict[str, Any]:
    cpu = platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "loadavg": list(os.getloadavg())}


def markdown(result: dict[str, Any]) -> str:
    lines = ["| variant | median step ms | / joint |", "|---|---|---|"]
    for name, ms in result["step_ms"].items():
        ratio = "1.00" if name == "joint" else f"{result['ratios'][f'{name}/joint']:.2f}"
        lines.append(f"| {name} | {ms:.0f} | {ratio} |")
    r = result["ratios"]
    extra = result["msam_added_ms"]
    added = extra["valuation"] + extra["keep_and_mix"]
    lines.append(f"\nmsam's additions timed on their own: valuation {extra['valuation']:.1f} ms + keeping and mixing "
                 f"g0 {extra['keep_and_mix']:.1f} ms = {added:.0f} ms, i.e. msam/sam = "
                 f"{1 + added / result['step_ms']['sam']:.3f} against the median sam step")
    lines.append(f"msam/sam (step medians) = {r['msam/sam']:.3f} (target <= {TARGET[1]}); "
                 f"mie_paper/joint = {r['mie_paper/joint']:.2f}, mie_full/joint = {r['mie_full/joint']:.2f} "
                 f"(stage mean; vs joint_late: {r['mie_paper/joint_late']:.2f}, {r['mie_full/joint_late']:.2f})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, one round: checks the script runs")
    parser.add_argument("--rounds", type=int, default=None, help="alternation rounds (default 7; smoke 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared CPU)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON results here")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    rounds = args.rounds or (1 if args.smoke else 7)
    try:
        trainers = build_trainers(args.smoke)
        batches = prepared_batches(trainers["joint"], 2)
        times = measure(trainers, batches, rounds=rounds, steps=1, warmup=1)
        extras = msam_extras(trainers["msam"], batches[0], repeats=1 if args.smoke else 5)
        described = machine()
    finally:
        torch.set_num_threads(threads)  # when called in-process, leave the caller's setting
    step_ms = {name: 1e3 * statistics.median(ts) for name, ts in times.items()}
    result = {"workload": "av-resnet", "batch_size": batches[0].size, "rounds": rounds, "step_ms": step_ms,
              "ratios": ratios(step_ms), "target": {"ratio": TARGET[0], "bound": TARGET[1],
                                                   "met": ratios(step_ms)[TARGET[0]] <= TARGET[1]},
              "msam_added_ms": extras,
              "samples_ms": {name: [1e3 * t for t in ts] for name, ts in times.items()},
              "machine": described, "smoke": args.smoke}
    print(markdown(result))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

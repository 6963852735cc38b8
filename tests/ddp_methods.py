"""Configs of the DDP rank-equality tests, and their torchrun worker.

    torchrun --nproc-per-node 2 tests/ddp_methods.py OUT_DIR METHOD [METHOD ...]

trains each method's config with the per-rank batch (half the global batch) and writes every
rank's final weights to OUT_DIR/<method>.rank<r>.safetensors. The test trains the same configs on
one process with the global batch and compares.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

GLOBAL_BATCH = 16
# MLP encoders without dropout or BatchNorm: nothing random or batch-coupled outside the methods
MLP = {"kind": "mlp", "hidden": [16, 8]}
SEQUENCE = {"kind": "sequence", "d_model": 8, "layers": 1, "heads": 2, "ff_multiplier": 2, "dropout": 0.0}

# name: the tables that replace the base config's
METHODS: dict[str, dict[str, Any]] = {
    "joint": {},
    "ogm_ge": {"balancers": [{"kind": "ogm_ge", "alpha": 0.8}]},  # GE noise on: drawn the same on every rank
    "agm": {"balancers": [{"kind": "agm", "alpha": 1.0}]},
    # mixup pairs samples within a rank's batch, and the flat term's head ascent (head_only, full)
    # is per rank like SAM's: off, and the paper's rho
    "mie": {"fusion": {"kind": "late", "hidden": [8]}, "balancers": [{"kind": "mie", "mixup_alpha": 0.0}]},
    "pase": {"fusion": {"kind": "pase"}, "balancers": [{"kind": "pase_sgm", "switch_epoch": 0}]},
    # `resample` grows the epoch by a data-dependent count; a row count that is not a multiple of
    # the world size loses its tail under DDP (as with any sharded sampler): a fixed-size strategy
    "modality_valuation": {"balancers": [{"kind": "modality_valuation", "level": "sample", "strategy": "drop",
                                          "warmup_epochs": 0}]},
    "pase_permutation": {"fusion": {"kind": "pase"},  # Monte-Carlo Shapley values: the same orderings everywhere
                         "valuators": {"values": {"kind": "shapley", "method": "permutation", "samples": 4,
                                                  "value": "true_class_prob"}},
                         "balancers": [{"kind": "pase_sgm", "valuator": "values", "switch_epoch": 0}]},
    "sam_lml": {"encoders": {"a": SEQUENCE, "b": SEQUENCE}, "fusion": {"kind": "sam_lml", "d_model": 8},
                # its noise keys and mixing weights are per-sample regularisation draws, per rank like
                # dropout: the deterministic terms (and mixing at a fixed lambda)
                "attention_supervisors": [{"kind": "sam_lml", "noise": False, "augmented_noise": False,
                                           "decomposition": False, "mix_lambda": 0.5}]},
    # the SAM family: the first backward is per rank (documented exception)
    "sam": {"balancers": [{"kind": "sam", "rho": 0.5}]},
}
SAM_FAMILY = ("sam",)


def config(method: str, batch_size: int) -> dict[str, Any]:
    """Two epochs of four global batches; one step for the SAM family (compared with a step by hand)."""
    one_step = method in SAM_FAMILY
    data = {"kind": "synthetic", "modalities": ["a", "b"], "batch_size": batch_size,
            "train_size": GLOBAL_BATCH if one_step else 4 * GLOBAL_BATCH, "val_size": 16, "test_size": 16,
            "num_classes": 3, "dim": 6, "signal": [1.0, 0.4]}
    if method == "sam_lml":
        data |= {"seq_len": 5}
    base = {
        "run": {"name": f"ddp-{method}", "seed": 3, "epochs": 1 if one_step else 2, "device": "cpu", "probe": False,
                "log_every_steps": 1_000_000},
        "data": data,
        "encoders": {"a": dict(MLP), "b": dict(MLP)},
        "fusion": {"kind": "concat"},
        "optimizer": {"kind": "sgd", "lr": 0.1},
    }
    return base | METHODS[method]


def train(method: str, batch_size: int) -> dict[str, Any]:
    """Final weights of one run without a run directory (on however many ranks this process has)."""
    from mmcore.testing import make_trainer

    trainer = make_trainer(config(method, batch_size))
    try:
        trainer.fit()
    finally:
        trainer.close()
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def main(out: Path, methods: list[str]) -> None:
    import torch.distributed as dist
    from safetensors.torch import save_file

    for method in methods:
        weights = train(method, GLOBAL_BATCH // int(os.environ["WORLD_SIZE"]))
        save_file({k: v.contiguous() for k, v in weights.items()}, out / f"{method}.rank{dist.get_rank()}.safetensors")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])

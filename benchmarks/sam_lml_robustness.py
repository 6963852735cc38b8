"""SAM-LML robustness: supervised against unsupervised attention over missing and noise rates.

The paper's protocols (Appendix A.5): for each rate the same corruption is put on the train,
validation and test splits, a run is trained (model selection on validation) and its test accuracy
kept. Missing rate (Eq. 34: every sample keeps one modality; 0.7 with three modalities leaves one
each) and feature-level noise rate (Eq. 35, Gaussian by default; Laplace, erasing or mixed with
--noise, §A.14), rates 0.1-0.7 plus the clean 0.0, 3 seeds, on configs/sam_lml_synthetic.toml
(three sequence modalities of unequal signal). The variants differ only in the
[[attention_supervisors]] table. This is `mmcore robustness train` with these settings; it writes
robustness.{json,md,png} to --out, the run directories to --runs (finished ones are reused).

    python benchmarks/sam_lml_robustness.py --out plugins/sam_lml/results
    python benchmarks/sam_lml_robustness.py --smoke --out /tmp/smoke --runs /tmp/smoke/runs
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Sequence

import torch

import mmcore
from mmcore_sam_lml.report import write_report
from mmcore_sam_lml.robustness import PAPER_RATES, train_sweep

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "sam_lml_synthetic.toml"
VARIANTS = {"supervised": [], "unsupervised": ["attention_supervisors=[]"]}
SMOKE = ["run.epochs=1", "data.train_size=64", "data.val_size=32", "data.test_size=32"]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for robustness.{json,md,png}")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "sam_lml_robustness", help="run directories")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0, *PAPER_RATES])
    parser.add_argument("--noise", nargs="+", default=["gaussian"], choices=("gaussian", "laplace", "erasing", "mixed"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--smoke", action="store_true", help="one seed, rate 0.5, one tiny epoch")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (tiny models: 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds, rates = (args.seeds[:1], [0.5]) if args.smoke else (args.seeds, args.rates)
    base = [*(SMOKE if args.smoke else []), *args.overrides]
    groups = [("missing", ""), *(("noise", kind) for kind in args.noise)]
    started = time.perf_counter()
    host = mmcore.PluginHost(load_only=["mmcore-sam-lml"])
    records = train_sweep(CONFIG, VARIANTS, groups, rates, seeds, args.runs, host, base_overrides=base)
    report = write_report(records, "acc", args.out)
    print(report["markdown"])
    print(f"{len(records)} results in {time.perf_counter() - started:.0f} s; written: {', '.join(report['files'])}")
    return report


if __name__ == "__main__":
    main()

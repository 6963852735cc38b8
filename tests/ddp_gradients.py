"""Run by tests/test_distributed.py under torchrun (2 gloo ranks): all_reduce_gradients when ranks
disagree on which parameters have gradients. Rank 0 fills `a`, rank 1 fills `b`, nobody fills `c`;
each rank writes what it ends with."""
import sys

import torch
from safetensors.torch import save_file
from torch import nn

from mmcore import distributed


def main(out: str) -> None:
    info = distributed.init_from_env()
    model = nn.ParameterDict({name: nn.Parameter(torch.zeros(3)) for name in "abc"})
    mine = model["a"] if info.rank == 0 else model["b"]
    mine.grad = torch.full((3,), 2.0 + info.rank)
    distributed.all_reduce_gradients(model, info)
    grads = {name: p.grad for name, p in model.items() if p.grad is not None}
    save_file(grads, f"{out}/rank{info.rank}.safetensors")


if __name__ == "__main__":
    main(sys.argv[1])

"""`run.channels_last`: conv weights live in channels_last memory format, the gradients equal the
default layout's to float rounding, and checkpoints store contiguous tensors."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from mmcore.checkpoint import load_checkpoint
from mmcore.plugins import PluginHost
from mmcore.testing import make_trainer, run_steps

_spec = importlib.util.spec_from_file_location(
    "_workloads", Path(__file__).resolve().parents[1] / "benchmarks" / "_workloads.py")
workloads = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(workloads)


def _trainer(channels_last: bool):
    """av-resnet at a small size: two ResNet-18s on 1x64x48 spectrograms and 3x64x64 frames, batch 8
    (the smoke size's batch of 2 leaves BatchNorm normalising two values on 1x1 maps, where float
    rounding differences of the two layouts' kernels are amplified beyond any tolerance)."""
    config = workloads.av_resnet_config(2, smoke=True)
    config["run"] |= {"channels_last": channels_last}
    config["data"] |= {"batch_size": 8, "train_size": 32, "eval_size": 8, "frame": [3, 64, 64],
                       "spectrogram": [1, 64, 48]}
    return make_trainer(config, host=PluginHost(modules=[workloads.BENCHMARK_DATA]))


def test_channels_last_computes_the_default_layouts_gradients():
    default, channels_last = _trainer(False), _trainer(True)
    convs = [p for p in channels_last.model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert sum(not p.is_contiguous() for p in convs) > len(convs) // 2  # NHWC, not NCHW
    batch = next(iter(default.evaluator.train_loader(0, None)))
    batch = batch.replace(inputs={m: x.double() for m, x in batch.inputs.items()})
    grads = []
    for trainer in (default, channels_last):  # in float64, where the layouts' different summation
        trainer.model.double().train()  # orders cannot hide a real difference (BatchNorm sums cancel)
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in trainer.model.parameters()
                   if p.dim() == 4) or trainer is default
        trainer.task_loss(trainer.model(batch).logits, batch.label).backward()
        grads.append({n: p.grad for n, p in trainer.model.named_parameters()})
    for name, grad in grads[0].items():
        assert torch.allclose(grad, grads[1][name], rtol=1e-9, atol=1e-12), name


def test_channels_last_checkpoints_are_contiguous(tmp_path):
    trainer = _trainer(True)
    trainer.run_dir = tmp_path
    run_steps(trainer, 2)
    trainer.state.save("last")
    saved = load_checkpoint(tmp_path / "checkpoints" / "last").model_state
    for name, tensor in trainer.model.state_dict().items():
        assert saved[name].is_contiguous() and torch.equal(saved[name], tensor), name

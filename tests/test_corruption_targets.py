"""Corruption restricted to some modalities (`CorruptionConfig.modalities`), and the in-process
evaluation of a finished run under corruption (`mmcore.evaluate_run.evaluate_checkpoint`)."""
from __future__ import annotations

import pytest
import torch

from mmcore.config import parse_config
from mmcore.data.corruption import CorruptedDataset, CorruptionConfig, corrupt_features, split_missing_masks
from mmcore.data.synthetic import SyntheticConfig, build_synthetic
from mmcore.errors import ConfigError, UsageError
from mmcore.evaluate_run import evaluate_checkpoint, load_finished_run
from mmcore.plugins import PluginHost
from mmcore.registry import BuildContext
from mmcore.testing import toy_config
from mmcore.trainer import Trainer


def test_targeted_missing_masks_drop_only_the_named_modality_at_the_exact_rate():
    config = CorruptionConfig(missing_rate=0.3, modalities=("b",), seed=5)
    kept = split_missing_masks(200, config, 3, "test", names=("a", "b", "c"))
    assert bool(kept[:, 0].all()) and bool(kept[:, 2].all())
    assert int((~kept[:, 1]).sum()) == 60  # exactly round(0.3 * 200), no keep-one rule needed
    assert torch.equal(kept, split_missing_masks(200, config, 3, "test", names=("a", "b", "c")))
    everything = split_missing_masks(200, CorruptionConfig(missing_rate=0.3, seed=5), 3, "test", names=("a", "b", "c"))
    assert bool(everything.any(dim=1).all()) and int((~everything).sum()) == 180  # all columns: the old rule
    with pytest.raises(ValueError, match="'z'"):
        split_missing_masks(10, CorruptionConfig(missing_rate=0.3, modalities=("z",)), 2, names=("a", "b"))


def test_targeted_noise_leaves_the_other_modalities_untouched():
    x, index = torch.randn(6, 4), torch.arange(6)
    config = CorruptionConfig(noise_rate=0.5, modalities=("a",))
    out = corrupt_features({"a": x, "b": x}, index, config, ("a", "b"))
    assert torch.equal(out["b"], x)
    assert torch.equal(out["a"], corrupt_features({"a": x}, index, CorruptionConfig(noise_rate=0.5), ("a",))["a"])
    base = build_synthetic(SyntheticConfig(dim=3, train_size=12), BuildContext(modalities=("a", "b"))).splits["train"]
    noisy = CorruptedDataset(base, CorruptionConfig(noise_rate=0.5, level="input", modalities=("b",)), ("a", "b"))
    assert torch.equal(noisy[3]["inputs"]["a"], base[3]["inputs"]["a"])
    assert not torch.equal(noisy[3]["inputs"]["b"], base[3]["inputs"]["b"])


def test_a_run_config_rejects_corruption_of_an_unknown_modality():
    host = PluginHost(autoload=False)
    raw = toy_config(data={"corruption": {"test": {"missing_rate": 0.2, "modalities": ["a", "z"]}}})
    with pytest.raises(ConfigError) as error:
        parse_config(raw, host.registry)
    assert error.value.problems == ["$.data.corruption.test.modalities: no modality 'z' in $.data.modalities"]


def test_evaluate_checkpoint_scores_a_finished_run_in_process(tmp_path):
    host = PluginHost(autoload=False)
    raw = toy_config(run={"epochs": 2}, data={"signal": [3.0, 3.0]})
    trainer = Trainer(parse_config(raw, host.registry), host.registry, run_dir=tmp_path / "run")
    summary = trainer.fit()
    trainer.close()
    clean = evaluate_checkpoint(tmp_path / "run", host.registry, split="test")
    assert clean["acc"] == pytest.approx(summary["test"]["acc"])
    only_b_missing = evaluate_checkpoint(tmp_path / "run", host.registry, values=False,
                                         corruption=CorruptionConfig(missing_rate=1.0, modalities=("b",)))
    # with b missing everywhere, the fusion sees a alone: fused accuracy equals the a-only accuracy
    assert only_b_missing["acc"] == pytest.approx(clean["acc/a"])
    reloaded = load_finished_run(tmp_path / "run", host.registry, "last")
    assert reloaded.run_dir is None  # evaluating it writes nothing
    with pytest.raises(UsageError, match="config.toml is missing"):
        evaluate_checkpoint(tmp_path, host.registry)
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.toml").write_text((tmp_path / "run" / "config.toml").read_text())
    with pytest.raises(UsageError, match="no checkpoints/best"):
        evaluate_checkpoint(tmp_path / "unfinished", host.registry)

"""Every configs/<dataset>/<method>.toml assembles against a small fixture of its dataset's layout:
its data, encoders, fusion and balancers fit together (configs whose plugin is not installed are
skipped). benchmarks/_format_fixtures.py writes the fixtures; frames are shrunk to 32 x 32."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from format_helpers import fixture_data, host

from mmcore.config import parse_config
from mmcore.data import formats
from mmcore.errors import ConfigError
from mmcore.registry import ComponentRegistry
from mmcore.trainer import Trainer

CONFIG_ROOT = Path(__file__).resolve().parents[2] / "configs"
_FORMATS = ComponentRegistry()
formats.register(_FORMATS)
DATASET_CONFIGS = sorted(p for p in CONFIG_ROOT.glob("*/*.toml") if p.parent.name in _FORMATS.kinds("dataset"))


@pytest.fixture(scope="module")
def fixture_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("datasets")


@pytest.mark.parametrize("path", DATASET_CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_ROOT)))
def test_dataset_config_assembles_on_fixture_data(path, fixture_folder):
    raw = tomllib.loads(path.read_text())
    assert raw["data"]["kind"] == path.parent.name  # configs/<dataset kind>/<method>.toml
    raw["data"].update(fixture_data(path.parent.name, raw["data"], fixture_folder), batch_size=4, num_workers=0)
    raw["run"].update(device="cpu", epochs=1, threads=1)
    try:
        config = parse_config(raw, host().registry)
    except ConfigError as error:
        if any("pip install mmcore-" in line for line in error.problems):
            pytest.skip(f"its plugin is not installed: {error.problems[0]}")
        raise
    trainer = Trainer(config, host().registry)
    batch = next(iter(trainer.evaluator.eval_loader(trainer.data.splits["test"], batch_size=2)))
    with trainer.evaluator.eval_mode():
        output = trainer.model(trainer.to_device(batch))
    assert output.logits.shape == (batch.size, trainer.ctx.num_outputs)

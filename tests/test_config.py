"""Config layer: TOML -> RunConfig, every problem at once as `$.path: message` lines."""
from __future__ import annotations

import copy
import tomllib
from typing import Literal

import pytest
from attrs import field, frozen
from attrs.validators import and_, ge, gt, le

from mmcore.config import (
    Component,
    DataSection,
    RunConfig,
    RunSettings,
    apply_overrides,
    check_config,
    config_to_dict,
    dump_config,
    load_config,
    parse_config,
)
from mmcore.data.corruption import CorruptionConfig
from mmcore.errors import ConfigError
from mmcore.registry import ComponentRegistry


# -- toy kinds ---------------------------------------------------------------------------------
@frozen(kw_only=True)
class ToyDataConfig:
    root: str = field(default="", metadata={"help": "data directory"})
    size: int = field(default=100, validator=ge(1), metadata={"help": "samples"})


@frozen(kw_only=True)
class MLPConfig:
    hidden: int = field(default=32, validator=ge(1), metadata={"help": "width"})
    dropout: float = field(default=0.0, validator=and_(ge(0.0), le(1.0)), metadata={"help": "dropout"})


@frozen(kw_only=True)
class ConcatConfig:
    hidden: int = field(default=0, validator=ge(0), metadata={"help": "head width"})


@frozen(kw_only=True)
class CrossAttentionConfig:
    heads: int = field(default=4, validator=ge(1), metadata={"help": "attention heads"})


@frozen(kw_only=True)
class SGDConfig:
    lr: float = field(default=0.1, validator=gt(0.0), metadata={"help": "learning rate"})
    momentum: float = field(default=0.0, metadata={"help": "momentum"})


@frozen(kw_only=True)
class AdamWConfig:
    lr: float = field(default=1e-3, validator=gt(0.0), metadata={"help": "learning rate"})
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"help": "betas"})
    variant: Literal["plain", "amsgrad"] = field(default="plain", metadata={"help": "variant"})


@frozen(kw_only=True)
class CosineConfig:
    warmup_epochs: int = field(default=0, validator=ge(0), metadata={"help": "warm-up"})


@frozen(kw_only=True)
class ShapleyConfig:
    value: str = field(default="accuracy", metadata={"help": "value function"})
    samples: int | str = field(default="exact", metadata={"help": "permutations, or exact"})


@frozen(kw_only=True)
class NoneConfig:
    pass


@frozen(kw_only=True)
class OGMConfig:
    alpha: float = field(default=0.8, validator=ge(0.0), metadata={"help": "modulation strength"})
    valuator: str = field(default="", metadata={"help": "[valuators] name; empty = own default"})


@frozen(kw_only=True)
class MSAMConfig:
    rho: float = field(default=0.05, validator=ge(0.0), metadata={"help": "radius"})


@frozen(kw_only=True)
class MIEConfig:
    sam: bool = field(default=False, metadata={"help": "faithful SAM mode (owns the step)"})


@frozen(kw_only=True)
class SAMLMLConfig:
    weight: float = field(default=1.0, validator=ge(0.0), metadata={"help": "loss weight"})


def _build(config, ctx):  # never called: the config layer only structures
    raise AssertionError


@pytest.fixture(scope="module")
def registry() -> ComponentRegistry:
    r = ComponentRegistry()
    r.dataset("toy", ToyDataConfig, _build)
    r.encoder("mlp", MLPConfig, _build)
    r.fusion("concat", ConcatConfig, _build)
    r.fusion("cross_attention", CrossAttentionConfig, _build, provides={"attention"})
    r.optimizer("sgd", SGDConfig, _build)
    r.optimizer("adamw", AdamWConfig, _build)
    r.scheduler("cosine", CosineConfig, _build)
    r.valuator("shapley", ShapleyConfig, _build)
    r.balancer("none", NoneConfig, _build)
    r.balancer("ogm_ge", OGMConfig, _build)
    r.balancer("msam", MSAMConfig, _build, owns_step=True)
    r.balancer("mie", MIEConfig, _build, owns_step=lambda config: config.sam)
    r.attention_supervisor("sam_lml", SAMLMLConfig, _build, requires={"attention"})
    return r


VALID = """
[run]
name = "toy"
epochs = 3
clip_grad_norm = 1.0

[data]
kind = "toy"
size = 10
modalities = ["pix", "fou"]
batch_size = 16

[data.corruption.test]
missing_rate = 0.3

[encoders.pix]
kind = "mlp"
hidden = 8

[encoders.fou]
kind = "mlp"

[fusion]
kind = "cross_attention"

[optimizer]
kind = "adamw"
betas = [0.8, 0.9]

[scheduler]
kind = "cosine"

[valuators.shap]
kind = "shapley"
samples = 16

[[balancers]]
kind = "ogm_ge"
alpha = 0.5
valuator = "shap"

[[balancers]]
kind = "msam"

[[attention_supervisors]]
kind = "sam_lml"
"""


def problems_of(text: str, registry: ComponentRegistry, overrides: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, registry, source="config.toml", overrides=overrides)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def edited(old: str, new: str, text: str = VALID) -> str:
    assert old in text
    return text.replace(old, new, 1)


# -- valid configs -----------------------------------------------------------------------------
def test_valid_config_structures_every_table(registry):
    config = parse_config(VALID, registry)
    assert config.run == RunSettings(name="toy", epochs=3, clip_grad_norm=1.0)
    assert config.data == DataSection(
        kind="toy",
        config=ToyDataConfig(size=10),
        modalities=("pix", "fou"),
        batch_size=16,
        corruption={"test": CorruptionConfig(missing_rate=0.3)},
    )
    assert config.encoders == {
        "pix": Component("mlp", MLPConfig(hidden=8)),
        "fou": Component("mlp", MLPConfig()),
    }
    assert config.fusion == Component("cross_attention", CrossAttentionConfig())
    assert config.optimizer == Component("adamw", AdamWConfig(betas=(0.8, 0.9)))
    assert config.scheduler == Component("cosine", CosineConfig())
    assert config.valuators == {"shap": Component("shapley", ShapleyConfig(samples=16))}
    assert config.balancers == (
        Component("ogm_ge", OGMConfig(alpha=0.5, valuator="shap")),
        Component("msam", MSAMConfig()),
    )
    assert config.attention_supervisors == (Component("sam_lml", SAMLMLConfig()),)


def test_optional_tables_default(registry):
    minimal = """
[data]
kind = "toy"
modalities = ["pix"]
[encoders.pix]
kind = "mlp"
[fusion]
kind = "concat"
[optimizer]
kind = "sgd"
"""
    config = parse_config(minimal, registry)
    assert config.run == RunSettings()
    run = config.run
    assert (run.name, run.epochs, run.device, run.precision, run.grad_accum) == ("run", 30, "auto", "32", 1)
    assert config.data.batch_size == 64 and config.data.eval_batch_size is None and config.data.corruption == {}
    assert config.scheduler is None and config.valuators == {}
    assert config.balancers == () and config.attention_supervisors == ()


def test_round_trip_through_dump_and_dict(registry):
    config = parse_config(VALID, registry)
    text = dump_config(config)
    assert parse_config(text, registry) == config
    assert parse_config(config_to_dict(config), registry) == config
    dumped = tomllib.loads(text)
    # every default is filled in; None (unset) values are left out because TOML has no null
    assert dumped["run"]["grad_accum"] == 1 and "clip_grad_norm" in dumped["run"]
    assert "eval_batch_size" not in dumped["data"]
    assert dumped["data"]["corruption"]["test"]["noise"] == "gaussian"
    assert dumped["data"]["size"] == 10 and dumped["data"]["root"] == ""
    assert dumped["balancers"] == [
        {"kind": "ogm_ge", "alpha": 0.5, "valuator": "shap"},
        {"kind": "msam", "rho": 0.05},
    ]
    assert config_to_dict(config)["data"]["eval_batch_size"] is None


def test_programmatic_components_pass_through(registry):
    config = parse_config(VALID, registry)
    raw = config_to_dict(config)
    raw["fusion"] = Component("cross_attention", CrossAttentionConfig(heads=2))
    assert parse_config(raw, registry).fusion == Component("cross_attention", CrossAttentionConfig(heads=2))
    assert check_config(config, registry) == []


# -- one broken thing each ---------------------------------------------------------------------
def test_unknown_kind_lists_installed_kinds_and_pip_hint(registry):
    text = edited('kind = "msam"', 'kind = "m_sam"')
    assert problems_of(text, registry) == [
        "$.balancers[1].kind: unknown balancer kind 'm_sam'; installed: mie, msam, none, ogm_ge "
        "(pip install mmcore-m-sam?)"
    ]


def test_misspelt_key_suggests_the_closest(registry):
    text = edited("alpha = 0.5", "alpa = 0.5")
    assert problems_of(text, registry) == ["$.balancers[0].alpa: unknown key 'alpa'; did you mean 'alpha'?"]
    text = edited("epochs = 3", "epohcs = 3\nzzz = 1")
    assert problems_of(text, registry) == [
        "$.run.epohcs: unknown key 'epohcs'; did you mean 'epochs'?",
        "$.run.zzz: unknown key 'zzz'",
    ]


def test_data_table_keys_are_split_between_section_and_dataset_kind(registry):
    # a typo of a core key and of a dataset key are both reported under $.data
    text = edited("batch_size = 16", "bach_size = 16\nsise = 3")
    assert problems_of(text, registry) == [
        "$.data.bach_size: unknown key 'bach_size'; did you mean 'batch_size'?",
        "$.data.sise: unknown key 'sise'; did you mean 'size'?",
    ]
    text = edited("size = 10", "size = 0\nnum_workers = -1")
    assert problems_of(text, registry) == [
        "$.data.size: 'size' must be >= 1: 0",
        "$.data.num_workers: 'num_workers' must be >= 0: -1",
    ]


def test_wrong_types_name_the_value(registry):
    text = edited("epochs = 3", 'epochs = "3"\nprobe = 1\nseed = 2.0')
    text = edited('modalities = ["pix", "fou"]', 'modalities = "pix"', text)
    text = edited("hidden = 8", "hidden = 8.5", text)
    assert problems_of(text, registry) == [
        "$.run.seed: expected an integer (got 2.0)",
        "$.run.epochs: expected an integer (got '3')",
        "$.run.probe: expected a boolean (true or false) (got 1)",
        "$.data.modalities: expected an array (got 'pix')",
        "$.encoders.pix.hidden: expected an integer (got 8.5)",
    ]


def test_plugin_config_types_are_strict(registry):
    text = edited("betas = [0.8, 0.9]", 'betas = [0.8]\nvariant = "fancy"')
    text = edited("samples = 16", "samples = [1]", text)
    assert problems_of(text, registry) == [
        "$.optimizer.betas: expected an array of 2 items (got [0.8])",
        "$.optimizer.variant: expected one of 'plain', 'amsgrad' (got 'fancy')",
        "$.valuators.shap.samples: expected an integer or a string (got [1])",
    ]
    text = edited("betas = [0.8, 0.9]", 'betas = [0.8, "x"]')
    assert problems_of(text, registry) == ["$.optimizer.betas[1]: expected a number (got 'x')"]
    config = parse_config(edited("betas = [0.8, 0.9]", "betas = [1, 0.9]"), registry)
    assert config.optimizer.config.betas == (1.0, 0.9) and type(config.optimizer.config.betas[0]) is float


def test_out_of_range_values_keep_the_validator_message(registry):
    text = edited("alpha = 0.5", "alpha = -1.0")
    text = edited("epochs = 3", 'epochs = 0\nprecision = "fp16"\ndevice = "gpu"', text)
    text = edited("clip_grad_norm = 1.0", "clip_grad_norm = 0", text)
    assert problems_of(text, registry) == [
        "$.run.epochs: 'epochs' must be >= 1: 0",
        "$.run.device: 'device' must be auto, cpu, cuda, cuda:N or mps (got 'gpu')",
        "$.run.precision: 'precision' must be in ('32', 'bf16-mixed', '16-mixed') (got 'fp16')",
        "$.run.clip_grad_norm: 'clip_grad_norm' must be > 0.0: 0.0",
        "$.balancers[0].alpha: 'alpha' must be >= 0.0: -1.0",
    ]


def test_device_forms(registry):
    for device in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert parse_config(edited("epochs = 3", f'device = "{device}"'), registry).run.device == device


def test_missing_kind_and_missing_required_keys(registry):
    text = edited('[fusion]\nkind = "cross_attention"', "[fusion]\nheads = 2")
    assert problems_of(text, registry) == [
        "$.fusion.kind: missing required key; installed fusion kinds: concat, cross_attention"
    ]
    text = edited('modalities = ["pix", "fou"]\n', "")
    text = edited('[optimizer]\nkind = "adamw"\nbetas = [0.8, 0.9]\n', "", text)
    assert problems_of(text, registry) == [
        "$.data.modalities: missing required key",
        "$.optimizer: missing required key",
    ]
    assert problems_of(edited('kind = "mlp"\nhidden = 8', "hidden = 8"), registry) == [
        "$.encoders.pix.kind: missing required key; installed encoder kinds: mlp"
    ]
    assert problems_of(edited('[fusion]\nkind = "cross_attention"', "[fusion]\nkind = 3"), registry) == [
        "$.fusion.kind: expected a string naming the fusion kind (got 3)"
    ]


def test_tables_of_the_wrong_shape(registry):
    raw = tomllib.loads(VALID)
    raw["scheduler"], raw["x"], raw["run"] = "cosine", {}, 3
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, registry)
    assert caught.value.problems == [
        "$.x: unknown key 'x'",
        "$.run: expected a table (got 3)",
        "$.scheduler: expected a table with a 'kind' key (got 'cosine')",
    ]
    with pytest.raises(ConfigError) as caught:
        parse_config([VALID], registry)
    assert caught.value.problems == ["$: expected a table (got list)"]


def test_modality_without_encoder_and_encoder_without_modality(registry):
    text = edited('modalities = ["pix", "fou"]', 'modalities = ["pix", "aud"]')
    assert problems_of(text, registry) == [
        "$.data.modalities: modality 'aud' has no encoder; add an [encoders.aud] table",
        "$.encoders.fou: no modality 'fou' in $.data.modalities",
    ]


def test_modalities_non_empty_and_unique(registry):
    assert problems_of(edited('["pix", "fou"]', "[]"), registry) == [
        "$.data.modalities: 'modalities' must list at least one modality (got [])"
    ]
    assert problems_of(edited('["pix", "fou"]', '["pix", "fou", "pix"]'), registry) == [
        "$.data.modalities: 'modalities' lists 'pix' more than once (got ['pix', 'fou', 'pix'])"
    ]


def test_at_most_one_step_owner_named_both(registry):
    text = VALID + '\n[[balancers]]\nkind = "mie"\nsam = true\n'
    assert problems_of(text, registry) == [
        "$.balancers: at most one balancer may own the optimizer step, but $.balancers[1] (msam) and "
        "$.balancers[2] (mie) do"
    ]
    # ownership may depend on the config: mie without its SAM mode leaves the step alone
    config = parse_config(VALID + '\n[[balancers]]\nkind = "mie"\n', registry)
    assert config.balancers[2] == Component("mie", MIEConfig(sam=False))


def test_step_owner_rejects_grad_accum_and_fp16_scaler(registry):
    text = edited("epochs = 3", 'epochs = 3\ngrad_accum = 2\nprecision = "16-mixed"')
    assert problems_of(text, registry) == [
        "$.run.grad_accum: $.balancers[1] (msam) owns the step, which needs grad_accum = 1 (got 2)",
        '$.run.precision: $.balancers[1] (msam) owns the step, which rules out "16-mixed" '
        '(fp16 with a gradient scaler); use "bf16-mixed" or "32"',
    ]
    without_owner = edited('[[balancers]]\nkind = "msam"\n', "", text)
    assert parse_config(without_owner, registry).run.grad_accum == 2


def test_supervisor_needs_a_fusion_that_provides_attention(registry):
    text = edited('[fusion]\nkind = "cross_attention"', '[fusion]\nkind = "concat"')
    assert problems_of(text, registry) == [
        "$.attention_supervisors[0]: sam_lml requires 'attention', which fusion 'concat' does not provide; "
        "fusions that do: cross_attention"
    ]


def test_balancer_valuator_reference_must_exist(registry):
    text = edited('valuator = "shap"', 'valuator = "shapley"')
    assert problems_of(text, registry) == [
        "$.balancers[0].valuator: no valuator 'shapley' in [valuators]; defined: shap"
    ]


def test_toml_syntax_error_names_file_line_and_column(registry, tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[run]\nname = "toy"\nepochs = = 3\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, registry)
    assert caught.value.problems == [f"{path}:3:10: Invalid value"]
    assert problems_of("[run]\nseed = [1,\n", registry) == ["config.toml:3:1: Invalid value at end of document"]


def test_unreadable_file(registry, tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml", registry)
    assert caught.value.problems == [f"{tmp_path / 'absent.toml'}: cannot read config (No such file or directory)"]
    assert caught.value.exit_code == 2


def test_several_problems_reported_together(registry):
    text = edited("epochs = 3", "epochs = 3\nseeed = 1")
    text = edited("batch_size = 16", 'batch_size = "16"', text)
    text = edited('[encoders.fou]\nkind = "mlp"', '[encoders.fou]\nkind = "resnet18"', text)
    text = edited("alpha = 0.5", "alpha = -0.5", text)
    text = edited("missing_rate = 0.3", "missing_rate = 1.5", text)
    assert problems_of(text, registry) == [
        "$.run.seeed: unknown key 'seeed'; did you mean 'seed'?",
        "$.data.batch_size: expected an integer (got '16')",
        "$.data.corruption.test.missing_rate: 'missing_rate' must be <= 1.0: 1.5",
        "$.encoders.fou.kind: unknown encoder kind 'resnet18'; installed: mlp (pip install mmcore-resnet18?)",
        "$.balancers[0].alpha: 'alpha' must be >= 0.0: -0.5",
    ]


def test_corruption_tables_by_split(registry):
    train = '[data.corruption.train]\nnoise_rate = 0.5\nnoise = "laplace"'
    text = edited("missing_rate = 0.3", f"missing_rate = 0.3\n{train}")
    config = parse_config(text, registry)
    assert config.data.corruption == {
        "test": CorruptionConfig(missing_rate=0.3),
        "train": CorruptionConfig(noise_rate=0.5, noise="laplace"),
    }
    assert problems_of(edited("[data.corruption.test]", "[data.corruption.tset]"), registry) == [
        "$.data.corruption: 'corruption' is keyed by split (train, val, test); unknown: 'tset'"
    ]
    assert problems_of(edited("missing_rate = 0.3", "missing_rat = 0.3"), registry) == [
        "$.data.corruption.test.missing_rat: unknown key 'missing_rat'; did you mean 'missing_rate'?"
    ]


# -- overrides -------------------------------------------------------------------------------
def test_overrides_are_typed_toml_literals(registry):
    config = parse_config(
        VALID,
        registry,
        overrides=(
            "run.epochs=7",
            "optimizer.lr=1e-3",
            'data.modalities=["fou","pix"]',
            "run.device=cuda:1",  # not a TOML literal: taken as a string
            "run.probe=false",
            "balancers.0.alpha=0.25",
            "data.corruption.val.noise_rate=0.1",
        ),
    )
    assert config.run.epochs == 7 and config.run.device == "cuda:1" and config.run.probe is False
    assert config.optimizer.config.lr == 0.001
    assert config.data.modalities == ("fou", "pix")
    assert config.balancers[0].config.alpha == 0.25
    assert config.data.corruption["val"] == CorruptionConfig(noise_rate=0.1)


def test_overrides_create_tables_and_append_array_entries(registry):
    raw = {"run": {"epochs": 1}, "balancers": [{"kind": "ogm_ge"}]}
    overrides = [
        "balancers.1.kind=none",  # index == length appends
        "scheduler.kind=cosine",  # a missing table is created
        "run.name=a b",
        "attention_supervisors.0.kind=x",  # a missing level indexed next is created as an array
    ]
    assert apply_overrides(raw, overrides) == {
        "run": {"epochs": 1, "name": "a b"},
        "balancers": [{"kind": "ogm_ge"}, {"kind": "none"}],
        "scheduler": {"kind": "cosine"},
        "attention_supervisors": [{"kind": "x"}],
    }
    assert raw == {"run": {"epochs": 1}, "balancers": [{"kind": "ogm_ge"}]}  # input untouched


def test_override_values_are_validated_like_the_file(registry):
    assert problems_of(VALID, registry, overrides=("run.epochs=three", "balancers.0.alpha=-2")) == [
        "$.run.epochs: expected an integer (got 'three')",
        "$.balancers[0].alpha: 'alpha' must be >= 0.0: -2.0",
    ]


def test_malformed_overrides_are_named(registry):
    overrides = ("run.epochs", "run..x=1", "run.epochs.x=1", "balancers.5.alpha=1", "balancers.a.alpha=1")
    assert problems_of(VALID, registry, overrides=overrides) == [
        "override 'run.epochs': expected KEY=VALUE with a dotted key, e.g. run.epochs=3",
        "override 'run..x=1': expected KEY=VALUE with a dotted key, e.g. run.epochs=3",
        "override 'run.epochs.x=1': $.run.epochs is 3, not a table or an array",
        "override 'balancers.5.alpha=1': $.balancers has 2 entries; "
        "index 5 is out of range (at most 2, which appends)",
        "override 'balancers.a.alpha=1': $.balancers is an array; expected an index, not 'a'",
    ]


def test_parse_config_leaves_its_dict_alone(registry):
    raw = tomllib.loads(VALID)
    before = copy.deepcopy(raw)
    parse_config(raw, registry, overrides=("run.epochs=9",))
    assert raw == before


def test_check_config_reports_unknown_kinds_of_programmatic_configs(registry):
    config = parse_config(VALID, registry)
    broken = RunConfig(
        run=config.run,
        data=config.data,
        encoders=config.encoders,
        fusion=Component("perceiver", CrossAttentionConfig()),
        optimizer=config.optimizer,
    )
    assert check_config(broken, registry) == ["$.fusion.kind: unknown fusion kind 'perceiver'"]


def test_validators_still_run_when_another_field_has_the_wrong_type(registry):
    text = edited("epochs = 3", 'epochs = 0\nseed = "x"')
    assert problems_of(text, registry) == [
        "$.run.seed: expected an integer (got 'x')",
        "$.run.epochs: 'epochs' must be >= 1: 0",
    ]


def test_unknown_dataset_kind_still_checks_the_core_data_keys(registry):
    text = edited('kind = "toy"', 'kind = "cremad"')
    text = edited("batch_size = 16", "batch_size = 0", text)
    assert problems_of(text, registry) == [
        "$.data.kind: unknown dataset kind 'cremad'; installed: toy (pip install mmcore-cremad?)",
        "$.data.batch_size: 'batch_size' must be >= 1: 0",
    ]

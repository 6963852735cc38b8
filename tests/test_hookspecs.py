"""Hookspecs are prefixed, documented in their docstrings and in docs/hooks.md (datasette's
test_plugin_hooks_are_documented), and fire in the order docs/hooks.md promises."""
import inspect
import re
from pathlib import Path

import pytest

import mmcore
from mmcore import hookspecs
from mmcore.config import parse_config
from mmcore.plugins import PluginHost
from mmcore.testing import make_trainer, toy_config
from mmcore.trainer import Trainer

HOOKS_MD = Path(__file__).parents[1] / "docs" / "hooks.md"
SPECS = {name: fn for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, "mmcore_spec")}


def signature(fn):
    return f"{fn.__name__}({', '.join(inspect.signature(fn).parameters)})"


def test_every_hookspec_is_found():
    assert len(SPECS) >= 11
    host = PluginHost(autoload=False)
    assert {name for name in vars(host.pm.hook) if not name.startswith("_")} == set(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_has_prefix_and_docstring(name):
    assert name.startswith("mmcore_")
    doc = inspect.getdoc(SPECS[name])
    assert doc and doc.strip(), f"{name} has no docstring"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_is_documented_with_its_signature(name):
    headings = re.findall(r"^## (.+)$", HOOKS_MD.read_text(), flags=re.M)
    assert signature(SPECS[name]) in headings, f"docs/hooks.md needs a section '## {signature(SPECS[name])}'"


def test_docs_document_no_hook_that_does_not_exist():
    documented = re.findall(r"^## (mmcore_\w+)\(", HOOKS_MD.read_text(), flags=re.M)
    assert sorted(documented) == sorted(SPECS)


def _snippets():
    return re.findall(r"```python\n(.*?)```", HOOKS_MD.read_text(), flags=re.S)


def test_hooks_md_example_runs(capsys):
    snippet = next(s for s in _snippets() if "mmcore_epoch_end" in s)
    namespace = {}
    exec(compile(snippet, str(HOOKS_MD), "exec"), namespace)

    class Plugin:  # the snippet's module-level function, registered as a plugin object would be
        mmcore_epoch_end = staticmethod(namespace["mmcore_epoch_end"])

    host = PluginHost(autoload=False, modules=[Plugin()])
    host.hook.mmcore_epoch_end(trainer=None, epoch=2, metrics={"acc": 0.5})
    assert capsys.readouterr().out == "epoch 2: val acc 0.500\n"


def test_hooks_md_command_example_adds_a_working_command(tmp_path, monkeypatch, capsys):
    snippet = next(s for s in _snippets() if "mmcore_add_commands" in s)
    (tmp_path / "sweep_plugin.py").write_text(snippet)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MMCORE_DISABLE_PLUGIN_AUTOLOAD", "1")  # an installed plugin may own the name
    from mmcore.cli import main

    assert main(["-p", "sweep_plugin", "robustness", "runs/x"]) == 0
    assert capsys.readouterr().out == "runs/x\n"


class Lifecycle:
    """Records every hook call, to compare with the order docs/hooks.md gives."""

    def __init__(self):
        self.calls = []

    def _add(self, call):
        self.calls.append(call)

    @mmcore.hookimpl
    def mmcore_train_start(self, trainer):
        self._add("train_start")

    @mmcore.hookimpl
    def mmcore_epoch_start(self, epoch):
        self._add(f"epoch_start {epoch}")

    @mmcore.hookimpl
    def mmcore_after_backward(self, state):
        self._add("after_backward")

    @mmcore.hookimpl
    def mmcore_before_optimizer_step(self, state):
        self._add("before_optimizer_step")

    @mmcore.hookimpl
    def mmcore_log_metrics(self, split):
        self._add(f"log {split}")

    @mmcore.hookimpl
    def mmcore_epoch_end(self, epoch):
        self._add(f"epoch_end {epoch}")

    @mmcore.hookimpl
    def mmcore_save_checkpoint(self, checkpoint):
        self._add("save_checkpoint")
        checkpoint["lifecycle"] = {"calls": len(self.calls)}

    @mmcore.hookimpl
    def mmcore_load_checkpoint(self, checkpoint):
        self._add(f"load_checkpoint {checkpoint['lifecycle']}")

    @mmcore.hookimpl
    def mmcore_train_end(self, summary):
        self._add(f"train_end best_epoch={summary['best_epoch']}")


def test_hooks_fire_in_the_documented_order(tmp_path):
    recorder = Lifecycle()
    config = toy_config(run={"epochs": 1, "log_every_steps": 2}, data={"train_size": 32})  # two steps
    trainer = make_trainer(config, modules=[recorder], run_dir=tmp_path / "run")
    trainer.fit()
    trainer.close()
    step = ["after_backward", "before_optimizer_step"]
    assert recorder.calls == [
        "train_start", "epoch_start 0", *step, *step, "log train",
        "log val", "save_checkpoint", "epoch_end 0", "save_checkpoint",
        "log test", "train_end best_epoch=0",
    ]
    # a resume hands back what the last save (call 11) added
    resumed = Lifecycle()
    host = PluginHost(autoload=False, modules=[resumed])
    Trainer(parse_config(config, host.registry), host.registry, run_dir=tmp_path / "run", hook=host.hook,
            resume=True).close()
    assert resumed.calls == ["load_checkpoint {'calls': 11}"]

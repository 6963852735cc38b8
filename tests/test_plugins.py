"""PluginHost: built-ins through the same hook, entry-point discovery from installed-looking
distributions (tests/fixtures/dists/*: a *.dist-info with METADATA and entry_points.txt next to the
module), failures reported by distribution, the env switches, `-p`, and `mmcore plugins`."""
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import torch
from attrs import frozen

import mmcore
import mmcore.builtin.plugin
from mmcore.cli import main
from mmcore.config import parse_config
from mmcore.errors import PluginError
from mmcore.plugins import PluginHost
from mmcore.testing import run_steps, toy_config

FIXTURES = Path(__file__).parent / "fixtures"
PLUGINS_MD = Path(__file__).parents[1] / "docs" / "plugins.md"

pytest_plugins = ["pytester"]  # runs the docs' example package's own tests
GOOD, BROKEN, DUP = "mmcore-fixture-good", "mmcore-fixture-broken", "mmcore-fixture-dup"
RAISING = "mmcore-fixture-raising"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("MMCORE_DISABLE_PLUGIN_AUTOLOAD", "MMCORE_LOAD_PLUGINS", "MMCORE_BLOCK_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.syspath_prepend(str(FIXTURES))  # mmcore_fixture_kinds, for -p


def install(monkeypatch, *sites):
    """Put fixture distributions on sys.path, where importlib.metadata finds their entry points."""
    for site in sites:
        monkeypatch.syspath_prepend(str(FIXTURES / "dists" / site))


def fixture_dists(host):
    """The fixture distributions a host loaded (other installed plugins may be present too)."""
    return sorted(e["name"] for e in host.plugins_info() if e["name"].startswith("mmcore-fixture-"))


def test_builtins_register_through_the_same_hook():
    host = PluginHost(autoload=False)
    impls = host.pm.hook.mmcore_register_components.get_hookimpls()
    assert impls[0].plugin is mmcore.builtin.plugin
    for slot, kind in [("encoder", "mlp"), ("fusion", "concat"), ("balancer", "none"), ("optimizer", "sgd"),
                       ("dataset", "mfeat"), ("valuator", "shapley")]:
        assert host.registry.get(slot, kind).distribution == "mmcore"
    assert host.problems() == []
    assert host.plugins_info() == []
    (builtin,) = host.plugins_info(include_builtin=True)
    assert builtin["name"] == "mmcore" and builtin["version"] == mmcore.__version__
    assert builtin["hooks"] == ["mmcore_register_components"]
    assert "balancer:none" in builtin["kinds"] and "fusion:concat" in builtin["kinds"]


def test_entry_point_plugin_adds_a_working_balancer_kind(monkeypatch):
    install(monkeypatch, "good")
    host = PluginHost()
    assert host.problems() == []
    assert host.registry.get("balancer", "fixture_scale").distribution == GOOD
    (entry,) = [e for e in host.plugins_info() if e["name"] == GOOD]
    assert entry == {"name": GOOD, "version": "0.3.0", "kinds": ["balancer:fixture_scale"],
                     "hooks": ["mmcore_register_components", "mmcore_train_end"]}
    # the kind is usable from a config: it doubles the task loss before backward
    _, (state,) = run_steps(toy_config(balancers=[{"kind": "fixture_scale", "factor": 2.0}]), 1, host=host)
    assert torch.equal(state.losses["task"], state.sample_losses["task"].mean() * 2.0)
    # and its observer hook is wired
    import mmcore_fixture_good

    host.hook.mmcore_train_end(trainer=None, summary={"best_epoch": 3})
    assert mmcore_fixture_good.train_ends[-1] == {"best_epoch": 3}


def test_failed_import_is_reported_by_distribution_and_the_rest_work(monkeypatch):
    install(monkeypatch, "good", "broken")
    host = PluginHost()
    (line,) = [p for p in host.problems() if BROKEN in p]
    assert line.startswith(f"plugin {BROKEN} failed: import of mmcore_fixture_broken raised ModuleNotFoundError")
    assert host.registry.has("balancer", "fixture_scale")
    assert fixture_dists(host) == [GOOD]


def test_duplicate_kind_names_both_distributions_and_keeps_the_first(monkeypatch):
    install(monkeypatch, "good", "dup")
    host = PluginHost()
    problems = host.problems()
    assert "balancer kind 'none' registered twice: by mmcore and by mmcore-fixture-dup; keeping mmcore's" in problems
    (clash,) = [p for p in problems if "'fixture_scale'" in p]
    assert GOOD in clash and DUP in clash
    assert host.registry.get("balancer", "none").distribution == "mmcore"  # no plugin replaces a built-in
    assert host.registry.get("balancer", "fixture_dup_only").distribution == DUP


def test_registration_that_raises_is_reported_and_rolled_back(monkeypatch):
    install(monkeypatch, "good", "raising")
    host = PluginHost()
    assert f"plugin {RAISING} failed: mmcore_register_components raised RuntimeError: registration exploded" \
        in host.problems()
    assert not host.registry.has("balancer", "fixture_half_registered")  # no half of its kinds stays
    assert host.registry.has("balancer", "fixture_scale")


def test_disable_autoload_keeps_builtins_and_p_modules(monkeypatch):
    install(monkeypatch, "good", "broken")
    monkeypatch.setenv("MMCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    host = PluginHost(modules=["mmcore_fixture_kinds"])
    assert fixture_dists(host) == [] and host.problems() == []
    assert not host.registry.has("balancer", "fixture_scale")
    assert host.registry.has("balancer", "none")
    assert host.registry.get("balancer", "fixture_owner").distribution == "mmcore_fixture_kinds"


def test_load_plugins_loads_only_the_named_distributions(monkeypatch):
    install(monkeypatch, "good", "broken", "dup", "raising")
    monkeypatch.setenv("MMCORE_LOAD_PLUGINS", "MMCore_Fixture_Good")  # names are compared in PEP 503 form
    host = PluginHost()
    assert [e["name"] for e in host.plugins_info()] == [GOOD]
    assert host.problems() == []  # the broken ones were never imported
    monkeypatch.setenv("MMCORE_LOAD_PLUGINS", f"{GOOD},mmcore-not-installed")
    assert "plugin mmcore-not-installed failed: named in MMCORE_LOAD_PLUGINS but not installed" \
        in PluginHost().problems()


def test_block_plugins_by_distribution_or_entry_point_name(monkeypatch):
    install(monkeypatch, "good", "broken", "dup")
    monkeypatch.setenv("MMCORE_BLOCK_PLUGINS", f"{BROKEN}, fixture_dup")
    host = PluginHost()
    assert fixture_dists(host) == [GOOD]
    assert host.problems() == []


def test_constructor_arguments_override_the_environment(monkeypatch):
    install(monkeypatch, "good", "dup")
    monkeypatch.setenv("MMCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("MMCORE_BLOCK_PLUGINS", GOOD)
    assert fixture_dists(PluginHost(autoload=True, block=[DUP])) == [GOOD]
    assert fixture_dists(PluginHost(autoload=True, load_only=[DUP], block=[])) == [DUP]


@pytest.mark.parametrize("argv", [["-p", "mmcore_fixture_kinds", "kinds", "balancer"],
                                  ["kinds", "balancer", "-p", "mmcore_fixture_kinds"]])
def test_p_registers_an_unpackaged_module(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "  fixture_owner  (mmcore_fixture_kinds)  owns the step (test fixture)" in out
    assert "      owns the step" in out


def test_p_with_a_module_that_cannot_be_imported_exits_2(capsys):
    assert main(["-p", "mmcore_no_such_module", "plugins"]) == 2
    assert capsys.readouterr().err == (
        "error: -p mmcore_no_such_module: import of mmcore_no_such_module raised ModuleNotFoundError: "
        "No module named 'mmcore_no_such_module'\n"
    )


def test_plugins_command_prints_json(monkeypatch, capsys):
    install(monkeypatch, "good", "dup")
    assert main(["plugins"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert all(set(e) == {"name", "version", "kinds", "hooks"} for e in listed)
    assert {GOOD, DUP} <= {e["name"] for e in listed} and "mmcore" not in {e["name"] for e in listed}
    assert main(["plugins", "--all"]) == 0
    assert "mmcore" in {e["name"] for e in json.loads(capsys.readouterr().out)}
    assert main(["plugins", "--hook", "mmcore_train_end"]) == 0
    assert [e["name"] for e in json.loads(capsys.readouterr().out) if e["name"].startswith("mmcore-fixture")] == [GOOD]


@frozen
class NoOptions:
    pass


def test_misspelt_hook_unmarked_hook_and_bad_signature_are_reported():
    class Misspelt:
        @mmcore.hookimpl
        def mmcore_trian_start(self, trainer):
            pass

    class Unmarked:
        def mmcore_register_components(self, registry):
            registry.balancer("never_registered", NoOptions, lambda config, ctx: None)

    class BadSignature:
        @mmcore.hookimpl
        def mmcore_epoch_end(self, trainer, epoch, metric):
            pass

    host = PluginHost(autoload=False, modules=[Misspelt(), Unmarked(), BadSignature()])
    name = f"{__name__}.test_misspelt_hook_unmarked_hook_and_bad_signature_are_reported.<locals>"
    problems = host.problems()
    assert f"plugin {name}.Misspelt failed: mmcore_trian_start is not an mmcore hook (misspelt?); it is never called" \
        in problems
    assert f"plugin {name}.Unmarked failed: mmcore_register_components lacks the @mmcore.hookimpl marker; " \
        "it is never called" in problems
    (bad,) = [p for p in problems if "BadSignature" in p]
    assert "PluginValidationError" in bad and "'metric'" in bad and "\n" not in bad
    assert not host.registry.has("balancer", "never_registered")
    assert host.pm.hook.mmcore_epoch_end.get_hookimpls() == []  # the invalid plugin is not half-registered


def test_two_instances_of_one_plugin_class_both_register():
    class Registers:
        @mmcore.hookimpl
        def mmcore_register_components(self, registry):
            registry.balancer("twice", NoOptions, lambda config, ctx: mmcore.Balancer())

    host = PluginHost(autoload=False, modules=[Registers(), Registers()])
    (clash,) = host.problems()
    assert clash.startswith("balancer kind 'twice' registered twice")
    assert host.registry.has("balancer", "twice")


def test_hookimpl_may_take_fewer_arguments_than_its_spec():
    seen = []

    class NoArguments:
        @mmcore.hookimpl
        def mmcore_register_components(self):
            seen.append("called")

    host = PluginHost(autoload=False, modules=[NoArguments()])
    assert seen == ["called"] and host.problems() == []


def test_validate_config_collects_problems_and_names_a_crashing_plugin():
    class Picky:
        @mmcore.hookimpl
        def mmcore_validate_config(self, config):
            return [f"$.run.epochs: picky wants 3 epochs (got {config.run.epochs})"] if config.run.epochs != 3 else None

    class Crashing:
        @mmcore.hookimpl
        def mmcore_validate_config(self, config):
            raise KeyError("oops")

    picky = PluginHost(autoload=False, modules=[Picky()])
    config = parse_config(toy_config(), picky.registry)
    assert picky.validate_config(config) == ["$.run.epochs: picky wants 3 epochs (got 1)"]
    crashing = PluginHost(autoload=False, modules=[Crashing()])
    with pytest.raises(PluginError) as raised:
        crashing.validate_config(config)
    assert str(raised.value) == (f"plugin {__name__}.test_validate_config_collects_problems_and_names_a_crashing_plugin"
                                 ".<locals>.Crashing: mmcore_validate_config raised KeyError: 'oops'")


# -- docs/plugins.md: its example package is written out, installed, tested and run ------------
_BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)
_FILE_LINE = re.compile(r"# (plugins/\S+)( \(continued\))?\n")


def write_plugins_md_files(root):
    """Each python/toml block of docs/plugins.md is a file named by its first line (or continues one)."""
    files, consoles = {}, []
    for language, body in _BLOCK.findall(PLUGINS_MD.read_text()):
        if language == "console":
            consoles.append(body)
        if language not in ("python", "toml"):
            continue
        named = _FILE_LINE.match(body)
        assert named, f"docs/plugins.md: a {language} block does not start with its file: {body[:80]!r}"
        path, continued = named.group(1), named.group(2)
        files[path] = files[path] + "\n\n" + body[named.end():] if continued else body
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return files, consoles


def install_editable(project):
    """What `pip install -e` leaves behind for importlib.metadata: a dist-info next to the sources."""
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    dist_info = project / "src" / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    points = meta["entry-points"]["mmcore"]
    (dist_info / "entry_points.txt").write_text("[mmcore]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
    return project / "src"


def console_sessions(consoles):
    """`$ mmcore ...` lines and the output the docs show for each."""
    for block in consoles:
        for session in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, output = session.partition("\n")
            yield shlex.split(command), output.rstrip("\n")


def test_plugins_md_example_package(pytester, monkeypatch, capsys):
    files, consoles = write_plugins_md_files(pytester.path)
    assert {"plugins/share_scale/src/mmcore_share_scale/plugin.py", "plugins/share_scale/pyproject.toml",
            "plugins/share_scale/tests/test_share_scale.py"} <= set(files)
    monkeypatch.syspath_prepend(str(install_editable(pytester.path / "plugins" / "share_scale")))
    monkeypatch.setenv("MMCORE_LOAD_PLUGINS", "mmcore-share-scale")  # other installed plugins stay out
    monkeypatch.chdir(pytester.path)
    sessions = list(console_sessions(consoles))
    assert len(sessions) >= 3
    for argv, shown in sessions:
        assert argv[0] == "mmcore"
        code = main(argv[1:])
        printed = capsys.readouterr()
        assert (printed.out + printed.err).rstrip("\n") == shown, shlex.join(argv)
        assert code == (2 if shown.startswith("error: ") else 0)
    result = pytester.runpytest_inprocess("plugins/share_scale/tests", "-p", "no:cacheprovider", "-W", "ignore")
    result.assert_outcomes(passed=21)

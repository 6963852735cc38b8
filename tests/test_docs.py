"""The docs: `mkdocs build --strict` passes (no broken link, no page missing from the site), every
hook is in the built hooks reference under its exact signature, every kind that mmcore and this
repository's plugins register is documented, and the lifecycle figure shows every hook.

tests/test_hookspecs.py checks docs/hooks.md itself (headings, examples, the order hooks fire in).
"""
import html
import inspect
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import attrs
import pytest

import mmcore
from mmcore import hookspecs
from mmcore.plugins import PluginHost

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "docs" / "tooling"))
from config_reference import kind_anchor, repo_distributions  # noqa: E402

HOOKSPECS = {name: fn for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, "mmcore_spec")}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-4000:]
    return out


class Headings(HTMLParser):
    """The text of every <h2> of a page (without the permalink's pilcrow)."""

    def __init__(self):
        super().__init__()
        self.h2, self._inside, self._link = [], False, False

    def handle_starttag(self, tag, attrs):
        if tag == "h2":
            self._inside, self.h2 = True, [*self.h2, ""]
        self._link = self._link or (self._inside and tag == "a")

    def handle_endtag(self, tag):
        self._inside = self._inside and tag != "h2"
        self._link = self._link and tag != "a"

    def handle_data(self, data):
        if self._inside and not self._link:
            self.h2[-1] += data


def signature(fn):
    return f"{fn.__name__}({', '.join(inspect.signature(fn).parameters)})"


def test_every_hook_is_in_the_built_hooks_reference_with_its_signature(site):
    parser = Headings()
    parser.feed((site / "hooks" / "index.html").read_text())
    documented = {h.strip() for h in parser.h2 if h.strip().startswith("mmcore_")}
    assert documented == {signature(fn) for fn in HOOKSPECS.values()}


def _page_of(distribution, shipped):
    """The site page of a plugin distribution: its README, as a method page or the example's page."""
    path = shipped[distribution]
    return f"{'methods' if path.parent.name == 'plugins' else 'examples'}/{path.name}/index.html"


@pytest.fixture(scope="module")
def shipped_registry():
    """The kinds of mmcore and of every plugin this repository ships (each must be installed)."""
    shipped = repo_distributions(ROOT)
    registry = PluginHost(load_only=list(shipped), block=[]).registry
    installed = {spec.distribution for spec in registry.specs()}
    assert set(shipped) <= installed, f"not installed: {sorted(set(shipped) - installed)}"
    return shipped, registry


def test_every_registered_kind_is_documented(site, shipped_registry):
    """In the configuration reference under its own anchor, and (plugin kinds) on its plugin's page.
    Kinds of plugins installed from elsewhere are not this repository's to document."""
    shipped, registry = shipped_registry
    reference = (site / "configuration" / "index.html").read_text()
    missing = []
    for spec in registry.specs():
        if f'id="{kind_anchor(spec.slot, spec.kind)}"' not in reference:
            missing.append(f"{spec.slot} {spec.kind}: no entry in the configuration reference")
        page = _page_of(spec.distribution, shipped) if spec.distribution != "mmcore" else None
        if page and f"<code>{html.escape(spec.kind)}</code>" not in (site / page).read_text():
            missing.append(f"{spec.slot} {spec.kind} ({spec.distribution}): not mentioned on {page}")
    assert not missing, "\n".join(missing)


def test_reference_gives_every_field_with_its_help(site, shipped_registry):
    reference = (site / "configuration" / "index.html").read_text()
    for spec in shipped_registry[1].specs():
        for field in attrs.fields(spec.config_cls):
            assert f"<tr><td><code>{field.name}</code></td>" in reference, f"{spec.kind}.{field.name}"
            assert html.escape(field.metadata.get("help", "")) in reference, f"{spec.kind}.{field.name}"


def test_method_pages_are_the_plugin_readmes_with_working_links(site):
    for readme in sorted(ROOT.glob("plugins/*/README.md")):
        page = (site / "methods" / readme.parent.name / "index.html").read_text()
        title = readme.read_text().splitlines()[0].lstrip("# ").strip()
        assert f">{html.escape(title)}<" in page
    robustness = site / "repo" / "plugins" / "sam_lml" / "results" / "robustness.png"
    assert robustness.read_bytes() == (ROOT / "plugins" / "sam_lml" / "results" / "robustness.png").read_bytes()
    home = (site / "index.html").read_text()
    assert 'href="methods/ogm_ge/"' in home and 'href="plugins/"' in home  # README links, rewritten


def test_concepts_page_shows_the_step_from_design_md(site):
    design = (ROOT / "docs" / "DESIGN.md").read_text()
    step = re.search(r"### The step.*?```\n(.*?)```", design, flags=re.S).group(1)
    page = (site / "concepts" / "index.html").read_text()
    assert html.escape(step.splitlines()[0], quote=False) in page
    assert "include-code" not in page


def test_lifecycle_figure_shows_every_hook_and_balancer_method(tmp_path):
    figure = tmp_path / "lifecycle.svg"
    subprocess.run([sys.executable, str(ROOT / "docs" / "figures" / "lifecycle.py"), "--out", str(figure)],
                   check=True, capture_output=True, timeout=120)
    text = html.unescape(figure.read_text())
    # detach() is left out: the Trainer never calls it (the contract checks do)
    methods = [m for m in vars(mmcore.Balancer) if not m.startswith("_") and callable(getattr(mmcore.Balancer, m))]
    for name in [*HOOKSPECS, *(m for m in methods if m != "detach"), "value", "losses"]:
        assert f"{name}(" in text, f"docs/figures/lifecycle.py does not draw {name}"

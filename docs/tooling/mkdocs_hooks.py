"""MkDocs hooks (mkdocs.yml `hooks:`): the pages that are generated, not written.

- `index.md` is the repository's README.md, `methods/<name>.md` each plugins/<name>/README.md
  (readme_pages.py), and the Methods section of the navigation lists them;
- `configuration.md` is rendered from the attrs metadata of the installed kinds (config_reference.py);
- `<!-- include-code FILE "HEADING" -->` in a page is replaced by the first code block under that
  heading of docs/FILE, so a page can show a block whose source of truth is elsewhere.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from config_reference import render as render_configuration
from readme_pages import page_markdown, readme_pages

_INCLUDE = re.compile(r'<!-- include-code (\S+) "([^"]+)" -->')
_NAV_METHODS = "Methods"


def _root(config: Any) -> Path:
    return Path(config.config_file_path).resolve().parent


def on_config(config: Any) -> Any:
    """Fill the `Methods: []` entry of the navigation with the plugin README pages."""
    methods = [{p.title: p.uri} for p in readme_pages(_root(config)) if p.uri.startswith("methods/")]
    for entry in config.nav or []:
        if isinstance(entry, dict) and _NAV_METHODS in entry:
            entry[_NAV_METHODS] = methods
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    root = _root(config)
    pages = readme_pages(root)
    assets: set[str] = set()
    for page in pages:
        files.append(File.generated(config, page.uri, content=page_markdown(page, root, pages, assets.add)))
    for path in sorted(assets):
        files.append(File.generated(config, f"repo/{path}", abs_src_path=str(root / path)))
    files.append(File.generated(config, "configuration.md", content=render_configuration(root)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    docs = Path(config.docs_dir)
    return _INCLUDE.sub(lambda m: _first_code_block(docs / m.group(1), m.group(2), page.file.src_uri), markdown)


def _first_code_block(path: Path, heading: str, where: str) -> str:
    text = path.read_text()
    start = text.find(f"\n{heading}")
    block = re.search(r"^```[^\n]*\n.*?^```$", text[start:], flags=re.M | re.S) if start >= 0 else None
    if block is None:
        raise ValueError(f"{where}: include-code found no code block under {heading!r} in {path}")
    return block.group(0)


def on_serve(server: Any, config: Any, builder: Any) -> Any:
    """`mkdocs serve` rebuilds when a README changes. (Config classes are imported once: restart
    `mkdocs serve` to see a changed help text in the configuration reference.)"""
    root = _root(config)
    for readme in [root / "README.md", *root.glob("plugins/*/README.md")]:
        server.watch(str(readme))
    return server

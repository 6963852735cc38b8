"""MkDocs hooks (mkdocs.yml `hooks:`): the pages that are generated, not written.

- `index.md` is the repository's README.md, `methods/<name>.md` each plugins/<name>/README.md
  (readme_pages.py), and the Methods section of the navigation lists them;
- `configuration.md` is rendered from the attrs metadata of the installed kinds (config_reference.py);
- `<!-- include-code FILE "HEADING" -->` in a page is replaced by the first code block under that
  heading of docs/FILE, and `<!-- include-section FILE "HEADING" -->` by the text of that section
  (up to the next heading of its level or above), so a page can show text whose source of truth is
  elsewhere (DESIGN.md);
- lists are read as GitHub reads them (gfm_lists.py), since the READMEs are written for GitHub.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from config_reference import render as render_configuration
from gfm_lists import gfm_lists
from readme_pages import page_markdown, readme_pages

_INCLUDE = re.compile(r'<!-- include-(code|section) (\S+) "([^"]+)" -->')
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

    def include(m: re.Match) -> str:
        what, path, heading = m.group(1), docs / m.group(2), m.group(3)
        body = _section(path.read_text(), heading)
        if body is None:
            raise ValueError(f"{page.file.src_uri}: include-{what}: no heading {heading!r} in {path}")
        block = re.search(r"^```[^\n]*\n.*?^```$", body, flags=re.M | re.S) if what == "code" else None
        if what == "code" and block is None:
            raise ValueError(f"{page.file.src_uri}: include-code: no code block under {heading!r} in {path}")
        return block.group(0) if block else body.strip()

    return gfm_lists(_INCLUDE.sub(include, markdown))


def _section(text: str, heading: str) -> str | None:
    """The text under the first line that starts with `heading`, up to the next heading of its level
    or above (outside code blocks); None when there is no such line."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        return None
    level, fenced, body = len(heading) - len(heading.lstrip("#")), False, []
    for line in lines[start + 1:]:
        fenced = fenced != line.startswith("```")
        if not fenced and re.match(rf"#{{1,{level}}} ", line):
            break
        body.append(line)
    return "".join(body)


def on_serve(server: Any, config: Any, builder: Any) -> Any:
    """`mkdocs serve` rebuilds when a README changes. (Config classes are imported once: restart
    `mkdocs serve` to see a changed help text in the configuration reference.)"""
    root = _root(config)
    for readme in [root / "README.md", *root.glob("plugins/*/README.md")]:
        server.watch(str(readme))
    return server

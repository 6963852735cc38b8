"""The repository's README and every plugin's README, served as docs pages without a copy.

The files stay where they are (one source of truth, read on GitHub too); at build time their
relative links are rewritten for the site: a link to another README becomes a link to its page, a
link to a page under docs/ stays a page link, and a link to any other file of the repository (a
results figure, a JSON table) is served under `repo/<path>`. A link to a file that does not exist is
left as it is, so `mkdocs build --strict` reports it.
"""
from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Callable

import attrs

# Inline links and images, [text](target) / ![alt](target); reference-style links are not used here.
_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")
_FENCE = re.compile(r"^(```|~~~)")


@attrs.frozen
class Page:
    src: Path  # the file in the repository
    uri: str  # its page in the site, relative to docs/
    title: str


def readme_pages(root: Path) -> list[Page]:
    """README.md as the home page, then one page per plugins/<name>/README.md."""
    pages = [Page(root / "README.md", "index.md", "Home")]
    for readme in sorted(root.glob("plugins/*/README.md")):
        pages.append(Page(readme, f"methods/{readme.parent.name}.md", _title(readme)))
    return pages


def _title(readme: Path) -> str:
    first = readme.read_text().splitlines()[0]
    return first.lstrip("# ").strip()


def page_markdown(page: Page, root: Path, pages: list[Page], add_asset: Callable[[str], None]) -> str:
    """The page's Markdown with its links pointing into the site; other repository files it links
    are passed to `add_asset(repo_relative_path)` to be served."""
    by_source = {p.src.resolve(): p.uri for p in pages}
    here = page.src.parent
    text = _rewrite_links(page.src.read_text(), lambda target: _site_target(target, here, root, by_source, page.uri, add_asset))
    edit = page.src.relative_to(root).as_posix()
    return f"<!-- generated from {edit}: edit that file, not this page -->\n{text}"


def _rewrite_links(text: str, rewrite: Callable[[str], str]) -> str:
    out, fenced = [], False
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
        out.append(line if fenced else _LINK.sub(lambda m: m.group(1) + rewrite(m.group(2)) + m.group(3), line))
    return "".join(out)


def _site_target(target: str, here: Path, root: Path, by_source: dict[Path, str], page_uri: str,
                 add_asset: Callable[[str], None]) -> str:
    if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):  # http:, mailto:, an anchor
        return target
    path, _, anchor = target.partition("#")
    resolved = (here / path).resolve()
    docs = (root / "docs").resolve()
    if resolved in by_source:
        site = by_source[resolved]
    elif resolved.is_relative_to(docs) and resolved.exists():
        site = resolved.relative_to(docs).as_posix()
    elif resolved.is_file() and resolved.is_relative_to(root.resolve()):
        site = "repo/" + resolved.relative_to(root.resolve()).as_posix()
        add_asset(resolved.relative_to(root.resolve()).as_posix())
    else:
        return target  # not found: the strict build names the page and the link
    link = posixpath.relpath(site, posixpath.dirname(page_uri) or ".")
    return link + (f"#{anchor}" if anchor else "")

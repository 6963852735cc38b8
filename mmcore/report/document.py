"""A small document model written out as Markdown and as standalone HTML: headings, paragraphs,
tables and images, which is all results pages need. Paragraph and cell text may use `code` spans;
nothing else of Markdown is interpreted (HTML output escapes everything else)."""
from __future__ import annotations

import html
import re
from typing import Any, Sequence

from attrs import define, field

_CODE = re.compile(r"`([^`]+)`")


@define
class Document:
    title: str
    blocks: list[tuple[Any, ...]] = field(factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", str(level), text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(("table", [str(c) for c in header], [[str(c) for c in row] for row in rows]))

    def image(self, path: str, alt: str) -> None:
        """`path` relative to where the page is written."""
        self.blocks.append(("image", path, alt))

    def to_markdown(self) -> str:
        parts = [f"# {self.title}"]
        for kind, *content in self.blocks:
            if kind == "heading":
                parts.append(f"{'#' * int(content[0])} {content[1]}")
            elif kind == "paragraph":
                parts.append(content[0])
            elif kind == "code":
                parts.append(f"```\n{content[0]}\n```")
            elif kind == "table":
                header, rows = content
                lines = [_md_row(header), "|" + "---|" * len(header), *(_md_row(r) for r in rows)]
                parts.append("\n".join(lines))
            elif kind == "image":
                parts.append(f"![{content[1]}]({content[0]})")
        return "\n\n".join(parts) + "\n"

    def to_html(self) -> str:
        body = [f"<h1>{_inline(self.title)}</h1>"]
        for kind, *content in self.blocks:
            if kind == "heading":
                body.append(f"<h{content[0]}>{_inline(content[1])}</h{content[0]}>")
            elif kind == "paragraph":
                body.append(f"<p>{_inline(content[0])}</p>")
            elif kind == "code":
                body.append(f"<pre><code>{html.escape(content[0])}</code></pre>")
            elif kind == "table":
                header, rows = content
                head = "".join(f"<th>{_inline(c)}</th>" for c in header)
                cells = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
            elif kind == "image":
                body.append(f'<p><img src="{html.escape(content[0])}" alt="{html.escape(content[1])}"></p>')
        return _PAGE.format(title=html.escape(self.title), body="\n".join(body))


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _inline(text: str) -> str:
    return _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", html.escape(text, quote=False))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
img {{ max-width: 100%; }}
code, pre {{ background: #f4f4f4; }}
</style></head>
<body>
{body}
</body></html>
"""

"""Lists as GitHub renders them, for Python-Markdown.

The READMEs and DESIGN.md are written for GitHub: a list may follow its introducing line directly,
and a nested list is indented by two or three spaces (the parent item's text column). Python-Markdown
needs a blank line before a list and four spaces for nesting, and otherwise runs the items into the
paragraph. This rewrites both cases, outside code blocks, so the site shows what GitHub shows.
"""
from __future__ import annotations

import re

_ITEM = re.compile(r"^( *)([-*+]|\d+[.)]) \S")


def gfm_lists(markdown: str) -> str:
    out: list[str] = []
    fenced, in_list, previous = False, False, "\n"
    for line in markdown.splitlines(keepends=True):
        fence = line.lstrip().startswith("```")
        item = None if fenced or fence else _ITEM.match(line)
        if item and not item.group(1):  # a top-level item
            if previous.strip() and not in_list and not previous.lstrip().startswith(("|", "#", "<")):
                out.append("\n")  # GitHub starts a list right under a paragraph line
            in_list = True
        elif item and in_list and len(item.group(1)) < 4:  # nested at the parent's text column
            line = "    " + line.lstrip(" ")
        elif not fenced and line.strip() and not line.startswith(" ") and not previous.strip():
            in_list = False  # a new block at the left margin ends the list
        fenced = fenced != fence
        out.append(line)
        previous = line
    return "".join(out)

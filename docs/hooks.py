"""MkDocs hook: read lists and tables the way GitHub does, so a page renders the same on the site and on GitHub.

Python-Markdown starts a list only after a blank line and nests only at four spaces; GitHub also takes a
list straight after a paragraph line and nests (or continues an item after a blank line) at two. The
benchmark reports under docs/benchmarks/ are written by scripts in GitHub's style, so each page's Markdown
is adjusted before it is rendered: a blank line goes before a list that follows a paragraph, and a nested
item's or an item's later paragraph's indent of two or three spaces is doubled. In a table, GitHub needs a
pipe inside code escaped (`cpu\\|cuda`) and shows it plain; Python-Markdown would show the backslash, so
the escape is dropped there (it does not split cells inside code).
"""

from __future__ import annotations

import re

ITEM = re.compile(r"^( *)([-*+] |\d+\. )")
CODE = re.compile(r"`[^`]*`")


def on_page_markdown(markdown: str, **kwargs) -> str:
    lines: list[str] = []
    fenced = in_list = after_blank_in_list = later_paragraph = False
    previous = ""
    for line in markdown.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if fenced or line.lstrip().startswith("```"):
            lines.append(line)
            previous = line
            continue
        if line.startswith("|"):
            line = CODE.sub(lambda code: code.group(0).replace("\\|", "|"), line)
        item = ITEM.match(line)
        indent = len(line) - len(line.lstrip(" "))
        if not line.strip():
            after_blank_in_list = in_list or after_blank_in_list
            in_list = False
        elif item:
            if 0 < indent < 4 and (in_list or after_blank_in_list):
                line = " " * (indent * 2) + line[indent:]
            elif not indent and previous.strip() and not previous.startswith(("|", "#")) \
                    and (later_paragraph or not (in_list or after_blank_in_list)):
                lines.append("")
            in_list, after_blank_in_list, later_paragraph = True, False, False
        elif 0 < indent < 4 and after_blank_in_list:
            line = " " * (indent * 2) + line[indent:]  # a later paragraph of the item above
            in_list, after_blank_in_list, later_paragraph = True, False, True
        elif not indent:
            after_blank_in_list = later_paragraph = False
        lines.append(line)
        previous = line
    return "\n".join(lines)

"""mkdocs hooks for the documentation site (mkdocs.yml): pages that are generated from the code at
build time, so they cannot go stale.

- ``<!-- config-flags -->`` in a page becomes the table of every ``grokinterp train`` config flag,
  taken from the CLI's own parser: each flag with its aliases, what it sets (the field's
  documentation) and nanda-p113's value.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's grokinterp, as mkdocstrings reads it

MARKER = "<!-- config-flags -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def config_flags_table() -> str:
    """The Markdown table of the config flags of ``grokinterp train`` (shown: nanda-p113's values)."""
    from grokinterp.cli import build_parser

    parser = build_parser(["train"])
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    train = subparsers.choices["train"]
    group = next(g for g in train._action_groups if (g.title or "").startswith("config"))
    rows = ["| flag | what it sets | nanda-p113 |", "|---|---|---|"]
    for action in group._group_actions:
        text = action.help or ""
        value = ""
        if text.endswith("]") and " [" in text:
            text, value = text[:-1].rsplit(" [", 1)
        flags = ", ".join(f"`{s}`" for s in action.option_strings)
        rows.append(f"| {flags} | {_cell(text)} | {_cell(value) and f'`{_cell(value)}`'} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace the markers of generated content in a page's Markdown."""
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, config_flags_table())
    return markdown

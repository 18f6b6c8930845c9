"""A griffe extension for the documentation site (mkdocs.yml): the package's docstrings use two
reStructuredText forms that Markdown reads otherwise, and this turns them into fenced code blocks
before mkdocstrings renders them:

- a paragraph ending in ``::`` followed by an indented block (a literal block);
- ``>>>`` lines (doctest examples), with their ``...`` continuations.

The docstrings themselves stay as they are (plain text that reads well in ``help()``).
"""

from __future__ import annotations

import re

import griffe

_CODE_HINT = re.compile(r"^\s*(import |from \S+ import |\w[\w.\[\]\"', ]* = |\w[\w.]*\(|#)")


def _fence(lines: list[str], lang: str) -> list[str]:
    return [f"```{lang}", *lines, "```"]


def _literal_blocks(lines: list[str]) -> list[str]:
    """``text::`` + blank line + indented lines -> ``text:`` + a fenced block."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::") and not line.strip().startswith(">>>"):
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            indent = len(lines[j]) - len(lines[j].lstrip()) if j < len(lines) else 0
            base = len(line) - len(line.lstrip())
            if j < len(lines) and indent > base:
                block = []
                k = j
                while k < len(lines) and (not lines[k].strip() or len(lines[k]) - len(lines[k].lstrip()) >= indent):
                    block.append(lines[k][indent:])
                    k += 1
                while block and not block[-1].strip():
                    block.pop()
                head = line.rstrip()[:-1]  # "Layout::" -> "Layout:"; a lone "::" -> ""
                if head.strip() in ("", ":"):
                    head = ""
                lang = "python" if any(_CODE_HINT.match(b) for b in block if b.strip()) else "text"
                out += [head, "", *_fence(block, lang), ""] if head else ["", *_fence(block, lang), ""]
                i = k
                continue
        out.append(line)
        i += 1
    return out


def _doctests(lines: list[str]) -> list[str]:
    """Runs of ``>>>`` / ``...`` lines -> one fenced ``pycon`` block each."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith(">>>"):
            indent = len(lines[i]) - len(lines[i].lstrip())
            block = []
            while i < len(lines) and lines[i].lstrip().startswith((">>>", "...")):
                block.append(lines[i][indent:])
                i += 1
            out += ["", *_fence(block, "pycon"), ""]
            continue
        out.append(lines[i])
        i += 1
    return out


def convert(text: str) -> str:
    """The docstring ``text`` with its literal blocks and doctest lines fenced."""
    lines = text.splitlines()
    if not any(line.rstrip().endswith("::") or line.lstrip().startswith(">>>") for line in lines):
        return text
    return "\n".join(_doctests(_literal_blocks(lines)))


class RstBlocks(griffe.Extension):
    """Fence the reST literal blocks and doctest lines of every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)

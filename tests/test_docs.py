"""The documentation holds: the site builds with ``mkdocs build --strict``, every relative link of the
README and docs/ resolves (files and #anchors), every ``grokinterp ...`` command in their code blocks
parses with the CLI's own parser, and the README quickstart runs as written on a smaller p."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").rglob("*.md"))
QUICKSTART = "## Quickstart"
# The quickstart trains the fast preset at p = 113 (a few minutes); here at p = 23 with 60% of the
# pairs, where its default seeds grokked at epoch 260-300 of the preset's 3,000 (a wide margin).
SMALL_P = ["--p", "23", "--train-frac", "0.6"]
# Quickstart lines that are not grokinterp commands, and what stands in for running them.
NOT_RUN = ("source .venv/bin/activate", ".venv/bin/pip install jupyterlab", ".venv/bin/jupyter lab ")

FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def code_blocks(markdown: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in order."""
    return FENCE.findall(markdown)


def prose(markdown: str) -> str:
    """``markdown`` without fenced blocks and inline code (where a link is not a link)."""
    text = FENCE.sub("", markdown)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension (mkdocs) gives a heading."""
    text = re.sub(r"`|\*\*|\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    """The #anchors of a Markdown page: one per heading (duplicates get _1, _2 as in mkdocs), and the
    dotted path of every object an API page renders with ``::: module`` (mkdocstrings)."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        if line.startswith("::: "):
            out.add(line[4:].strip())
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            out.add(s if n == 0 else f"{s}_{n}")
            seen[s] = n + 1
    return out


def relative_links(page: Path) -> list[str]:
    """Targets of the Markdown links and images of ``page`` that stay in the repository."""
    return [t for t in LINK.findall(prose(page.read_text())) if not re.match(r"^[a-z][a-z+.-]*:", t)]


def broken_links(page: Path) -> list[str]:
    """The links of ``page`` whose file or #anchor does not exist."""
    bad = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            bad.append(f"{target} (no file {file})")
        elif (
            anchor
            and file.suffix == ".md"
            and not any(anchor == a or anchor.startswith(f"{a}.") for a in anchors(file))
        ):
            bad.append(f"{target} (no heading #{anchor} in {file.name})")
    return bad


def commands(block: str) -> list[list[str]]:
    """The ``grokinterp`` command lines of a shell block, as argv lists (after the program name):
    continuation lines joined, comments, ``$ `` prompts, environment assignments, redirections and
    ``&&`` chains handled."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.strip().removeprefix("$ ")
        for part in re.split(r"\s*&&\s*", line):
            words = shlex.split(part, comments=True)
            while words and re.match(r"^[A-Z_]+=", words[0]):
                words = words[1:]
            if words and words[0] == "grokinterp":
                words = words[1:]
                if ">" in words:
                    words = words[: words.index(">")]
                out.append(words)
    return out


def shell_blocks(markdown: str) -> list[str]:
    """The blocks of a page that show commands: bash, sh, console and unlabelled ones."""
    return [body for lang, body in code_blocks(markdown) if lang in ("bash", "sh", "console", "shell", "")]


def section(markdown: str, heading: str) -> str:
    """The text of the section whose heading starts with ``heading``, up to the next one of its level."""
    m = re.search(rf"^{re.escape(heading)}[^\n]*\n", markdown, flags=re.MULTILINE)
    assert m, f"no section {heading!r}"
    body = markdown[m.end() :]
    end = re.search(r"^## ", body, flags=re.MULTILINE)
    return body[: end.start()] if end else body


def test_helpers_find_links_commands_and_anchors(tmp_path):
    page = tmp_path / "a.md"
    page.write_text(
        "# Top `x`\n\n## Clock and pizza: Zhong et al.'s models\n\n[ok](a.md#top-x) ![img](b.png) "
        "[web](https://x.org) `[no](c.md)`\n\n```bash\ngrokinterp plot R --out f  # c\n"
        "OMP_NUM_THREADS=1 grokinterp train --p 23 \\\n  --out r > log && grokinterp analyze r\n"
        "$ grokinterp presets\nls\n```\n[bad](a.md#nope)\n"
    )
    assert anchors(page) == {"top-x", "clock-and-pizza-zhong-et-als-models"}
    api = tmp_path / "api.md"
    api.write_text("# API\n\n::: grokinterp.io.runs\n")
    assert anchors(api) == {"api", "grokinterp.io.runs"}
    assert relative_links(page) == ["a.md#top-x", "b.png", "a.md#nope"]
    assert broken_links(page) == [f"b.png (no file {tmp_path / 'b.png'})", "a.md#nope (no heading #nope in a.md)"]
    (block,) = shell_blocks(page.read_text())
    assert commands(block) == [
        ["plot", "R", "--out", "f"],
        ["train", "--p", "23", "--out", "r"],
        ["analyze", "r"],
        ["presets"],
    ]


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_every_shown_command_parses():
    from grokinterp.cli import CLIError, build_parser

    shown, failed = 0, []
    for page in [README, *PAGES]:
        for block in shell_blocks(page.read_text()):
            for argv in commands(block):
                shown += 1
                where = f"{page.relative_to(ROOT)}: grokinterp {shlex.join(argv)}"
                try:
                    build_parser(argv).parse_args(argv)
                except CLIError as e:  # the parser's one-line error
                    failed.append(f"{where}: {e}")
                except SystemExit as e:  # --help and --version exit 0
                    if e.code != 0 or not {"--help", "-h", "--version"} & set(argv):
                        failed.append(where)
    assert not failed, "commands the CLI does not parse:\n" + "\n".join(failed)
    assert shown >= 80, f"only {shown} commands found: the extractor is broken"


def test_every_python_block_compiles():
    """The python blocks of the README and docs/ are Python (docs/guide/python-api.md's also run:
    tests/test_readme_api.py; the README quickstart's: below)."""
    failed = []
    for page in [README, *PAGES]:
        for i, (lang, body) in enumerate(code_blocks(page.read_text())):
            if lang == "python":
                try:
                    compile(body, f"{page.name} block {i + 1}", "exec")
                except SyntaxError as e:
                    failed.append(f"{page.relative_to(ROOT)}: {e}")
    assert not failed, "\n".join(failed)


def test_docstring_literal_blocks_and_doctests_are_fenced():
    """scripts/griffe_rst_blocks.py (the site's griffe extension) fences what Markdown would misread."""
    spec = importlib.util.spec_from_file_location("griffe_rst_blocks", ROOT / "scripts" / "griffe_rst_blocks.py")
    if importlib.util.find_spec("griffe") is None:
        pytest.skip("griffe not installed (pip install -e '.[docs]')")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = "Layout::\n\n    ENS/\n      seed=0/\n\nAfter.\n\n>>> x = 1\n>>> f(x)\nEnd."
    assert module.convert(text).splitlines() == [
        "Layout:",
        "",
        "```text",
        "ENS/",
        "  seed=0/",
        "```",
        "",
        "After.",
        "",
        "",
        "```pycon",
        ">>> x = 1",
        ">>> f(x)",
        "```",
        "",
        "End.",
    ]
    assert module.convert("Quick start::\n\n    import grokinterp\n").splitlines()[2] == "```python"
    assert module.convert("plain text: no blocks") == "plain text: no blocks"


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed (pip install -e '.[docs]')"
)
def test_site_builds_strict_and_offline(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert not re.search(r"^(WARNING|ERROR)", log, flags=re.MULTILINE), log
    # Every page of the nav is there, the API reference shows the docstrings, nothing is fetched.
    for page in ("index.html", "measures.html", "run-directories.html", "guide/python-api.html", "api/analysis.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "analysis.html").read_text()
    from grokinterp.analysis.measures import compute_all_measures

    first_line = compute_all_measures.__doc__.strip().splitlines()[0]
    assert "compute_all_measures" in api and first_line.split("``")[0].strip() in api
    # The hook's table of config flags (scripts/mkdocs_hooks.py) is in the training guide.
    training = (site / "guide" / "training.html").read_text()
    assert "<!-- config-flags -->" not in training and "<code>--stop-acc</code>" in training
    index = (site / "index.html").read_text()
    assert "fonts.googleapis" not in index and "fonts.gstatic" not in index


@pytest.mark.slow  # about 40 s: trains, analyses, plots and reports a p = 23 run
def test_readme_quickstart_runs_as_written(tmp_path, capsys, monkeypatch):
    import torch

    import grokinterp
    from grokinterp.cli import main

    text = section(README.read_text(), QUICKSTART)
    blocks = code_blocks(text)
    assert [lang for lang, _ in blocks] == ["bash", "bash", "python", ""], "the quickstart's blocks changed"
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ran = []
        for _lang, body in blocks[:2]:
            for line in body.splitlines():
                line = line.split("  #")[0].strip()
                if not line.startswith("grokinterp "):
                    assert line.startswith(NOT_RUN), f"a quickstart line the test does not know: {line}"
                    if line.startswith(".venv/bin/jupyter lab "):
                        assert (ROOT / line.split()[-1]).is_file(), line
                    continue
                argv = shlex.split(line)[1:]
                if "--preset" in argv:
                    argv += SMALL_P
                assert main(argv) == 0, f"grokinterp {shlex.join(argv)}: {capsys.readouterr().err}"
                ran.append(argv[0])
        assert ran == ["train", "analyze", "plot", "report"]
        exec(compile(blocks[2][1], "README.md quickstart python", "exec"), {"__name__": "readme"})

        # The shown error is the CLI's own line.
        (shown,) = [body for lang, body in blocks if lang == ""]
        prompt, expected = shown.strip().splitlines()
        capsys.readouterr()
        assert main(shlex.split(prompt.removeprefix("$ "))[1:]) == 2
        assert capsys.readouterr().err.strip() == expected
    finally:
        torch.set_num_threads(threads)

    # What the quickstart promises, checked from the files: a grokked model (test accuracy of the last
    # checkpoint recomputed here), its analysis, its figures and its report.
    run = grokinterp.load_run(tmp_path / "runs" / "fast")
    summary = json.loads((run.path / "summary.json").read_text())
    model = run.model()
    with torch.no_grad():
        preds = model(run.dataset.tokens[run.dataset.test_indices])[:, -1].argmax(-1)
    acc = (preds == run.dataset.labels[run.dataset.test_indices]).float().mean().item()
    assert acc >= 0.99, f"the fast preset at p=23 did not grok within {run.config.epochs} epochs (test acc {acc})"
    assert summary["grokking_epoch"] is not None
    analysis = json.loads((run.path / "analysis.json").read_text())
    assert analysis["key_frequencies"]
    figures = {p.stem for p in (tmp_path / "figures" / "fast").iterdir()}
    assert {"loss", "restricted_excluded", "embedding_spectrum", "neuron_heatmaps"} <= figures
    report = (tmp_path / "runs" / "fast.html").read_text()
    assert "<html" in report.lower() and len(report) > 100_000

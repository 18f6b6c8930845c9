"""The documentation's Python API page (docs/guide/python-api.md, linked from the README) runs as
written, and the API says what it holds: ``dir()`` lists it, counts are ints."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "guide" / "python-api.md"
SECTION = "# Python API"


def python_blocks(markdown: str, section: str = SECTION) -> list[str]:
    """The fenced ```python blocks of ``section`` (up to the next heading of its level or above), in
    order; [] when the text has no such section."""
    markdown = "\n" + markdown
    start = markdown.find(f"\n{section}\n")
    if start < 0:
        return []
    body = markdown[start + len(section) + 2 :]
    level = len(section) - len(section.lstrip("#"))
    end = re.search(rf"^#{{1,{level}}} ", body, flags=re.MULTILINE)
    body = body[: end.start()] if end else body
    return re.findall(r"^```python\n(.*?)^```", body, flags=re.MULTILINE | re.DOTALL)


def run_blocks(blocks: list[str], workdir: Path) -> dict:
    """Execute ``blocks`` in order in one namespace, with cwd ``workdir`` (which sees the repository's
    checkpoints/ through a link, so files the snippets write stay out of the repository)."""
    link = workdir / "checkpoints"
    if not link.exists():
        link.symlink_to(ROOT / "checkpoints", target_is_directory=True)
    namespace: dict = {"__name__": "readme"}
    old = Path.cwd()
    os.chdir(workdir)
    try:
        for i, code in enumerate(blocks):
            exec(compile(code, f"{PAGE.name} block {i + 1}", "exec"), namespace)
    finally:
        os.chdir(old)
    return namespace


def test_python_blocks_are_found():
    text = "# x\n\n## Python API\n\n```python\na = 1\n```\n\ntext\n\n```bash\nls\n```\n\n```python\nb = a\n```\n\n## Next\n\n```python\nc = 2\n```\n"
    assert python_blocks(text, "## Python API") == ["a = 1\n", "b = a\n"]
    assert python_blocks("# x\n## Other\n```python\nx = 1\n```\n", "## Python API") == []
    page = "# Python API\n\n```python\na = 1\n```\n\n## Part\n\n```python\nb = a\n```\n\n# Other\n\n```python\nc = 2\n```\n"
    assert python_blocks(page, "# Python API") == ["a = 1\n", "b = a\n"]


@pytest.mark.slow  # about 20 s: several passes over the shipped run's 12,769 inputs
def test_python_api_page_runs(tmp_path):
    blocks = python_blocks(PAGE.read_text())
    assert len(blocks) >= 5, f"{PAGE} lost its python blocks"
    assert "guide/python-api.md" in (ROOT / "README.md").read_text(), "the README no longer points to the page"
    ns = run_blocks(blocks, tmp_path)
    from grokinterp.analysis.interventions import InterventionResult

    results = [v for v in ns.values() if isinstance(v, InterventionResult)]
    assert results, "the section shows no intervention"
    assert all(r.change.test_loss == pytest.approx(r.after.test_loss - r.before.test_loss) for r in results)


def test_dir_lists_the_api():
    import grokinterp
    import grokinterp.analysis

    names = dir(grokinterp)
    for name in ("load_run", "analyze_run", "train", "explore", "interventions", "io", "analysis", "viz"):
        assert name in names
    assert grokinterp.interventions is grokinterp.analysis.interventions
    for name in ("remove_frequencies", "keep_frequencies", "ablate_cluster", "direct_logit_attribution"):
        assert name in dir(grokinterp.analysis)
        assert name in dir(grokinterp.interventions)


def test_n_key_freqs_is_an_int():
    """compute_all_measures counts key frequencies as an int, and measures.csv reads back as int
    (also the shipped run's, written as 4.0 before the fix)."""
    import torch

    import grokinterp
    from grokinterp.analysis.measures import compute_all_measures
    from grokinterp.config import RunConfig
    from grokinterp.models import build_model
    from grokinterp.tasks import make_dataset

    cfg = RunConfig(p=23, d_model=32, n_heads=4, d_head=8, d_mlp=48, device="cpu")
    torch.manual_seed(0)
    out = compute_all_measures(build_model(cfg).eval(), make_dataset(23, "add", cfg.layout, 0.5, 0), key_freqs=[2, 5])
    assert type(out["n_key_freqs"]) is int and out["n_key_freqs"] == 2
    table = grokinterp.load_run(ROOT / "checkpoints" / "nanda-p113").measures
    assert str(table["n_key_freqs"].dtype) == "int64"
    assert table["n_key_freqs"].iloc[-1] == 4

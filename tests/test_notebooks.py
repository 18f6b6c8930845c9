"""The notebooks run top to bottom (nbclient, cwd = notebooks/) and print sensible values."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = ("explore_circuits", "progress_measures", "train_your_own", "explore_division", "explore_groups")


def _same_python(argv0: str) -> bool:
    # jupyter_client runs this very interpreter for a spec whose argv[0] is plain "python".
    if argv0 in ("python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])):
        return True
    return Path(argv0).resolve() == Path(sys.executable).resolve()


@pytest.fixture
def kernel_name(tmp_path, monkeypatch) -> str:
    """'python3', made to run this interpreter (the venv's): if the installed spec points
    elsewhere, a spec in a temporary JUPYTER_PATH takes precedence (nothing is installed)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
        if _same_python(spec.argv[0]):
            return "python3"
    except NoSuchKernel:
        pass
    kdir = tmp_path / "jupyter" / "kernels" / "python3"
    kdir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (kdir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "python3"


def _execute(name: str, kernel_name: str, with_nb: bool = False):
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name=kernel_name, resources={"metadata": {"path": str(NB_DIR)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", out
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                text.append(out["text"])
    return ("".join(text), nb) if with_nb else "".join(text)


def _key_freqs(text: str) -> list[int]:
    m = re.search(r"key frequencies: \[([\d, ]*)\]", text)
    assert m, text
    return [int(k) for k in m.group(1).split(",") if k.strip()]


def test_notebooks_are_paired():
    for name in NOTEBOOKS:
        assert (NB_DIR / f"{name}.py").is_file() and (NB_DIR / f"{name}.ipynb").is_file()
        nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
        assert nb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
        assert "import grokinterp" in (NB_DIR / f"{name}.py").read_text()


@pytest.mark.slow
def test_explore_circuits(kernel_name):
    text = _execute("explore_circuits", kernel_name)
    keys = _key_freqs(text)
    assert keys  # the shipped run: [9, 38, 45, 55]
    hurt = re.search(r"frequencies whose removal hurts most: \[([\d, ]*)\]", text)
    assert hurt and [int(k) for k in hurt.group(1).split(",")] == keys
    assert "restricted loss" in text and "excluded loss" in text
    # The interventions that prove each step ran and gave the paper's picture (the shipped run's numbers).
    assert re.search(r"remove frequencies \[9\] in W_E: test loss 0\.07\d+ -> 6\.1\d", text), text
    assert "MLP layer 0 replaced by key frequencies" in text and "largest direct contribution" in text


def test_explore_circuits_exercises_are_checked():
    """Every exercise of explore_circuits (marked ✏️ in a markdown cell) is followed by a code cell
    that checks the answer with an assert (as ARENA does)."""
    cells = jupytext_cells(NB_DIR / "explore_circuits.py")
    exercises = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and "✏️ **Exercise" in c.source]
    assert len(exercises) >= 5
    for i in exercises:
        code = next(c for c in cells[i + 1 :] if c.cell_type == "code")
        assert "assert " in code.source, code.source[:200]


def jupytext_cells(path: Path) -> list:
    """The cells of a jupytext percent-format notebook."""
    jupytext = pytest.importorskip("jupytext")
    return jupytext.read(path).cells


def test_notebook_runtime_is_part_of_setup():
    """nbclient and ipykernel come with the dev install that scripts/setup.sh makes."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any("notebooks" in dep for dep in extras["dev"])
    names = {re.split(r"[<>=;\[ ]", dep)[0] for dep in extras["notebooks"]}
    assert {"nbclient", "ipykernel", "nbformat", "jupytext"} <= names
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert (
        "pip install -q -e '.[dev]'" in setup
        and "import grokinterp, torch, transformer_lens, nbclient, ipykernel" in setup
    )


@pytest.mark.slow
def test_progress_measures(kernel_name):
    before = sorted(p.name for p in (ROOT / "checkpoints" / "nanda-p113").iterdir())
    text = _execute("progress_measures", kernel_name)
    assert _key_freqs(text)
    bounds = re.search(r"phase boundaries: \[(\d+), (\d+), (\d+)\]", text)
    assert bounds, text
    b1, b2, b3 = map(int, bounds.groups())
    assert 0 < b1 < b2 < b3
    assert re.search(r"wrote fig7_restricted_excluded\.(pdf|html)", text)
    assert sorted(p.name for p in (ROOT / "checkpoints" / "nanda-p113").iterdir()) == before


@pytest.mark.slow
def test_train_your_own(kernel_name):
    text = _execute("train_your_own", kernel_name)
    assert _key_freqs(text)
    acc = float(re.search(r"final test accuracy: ([\d.]+)", text).group(1))
    assert acc > 0.9


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_outputs_render_without_javascript(name):
    """The stored notebook (scripts/execute_notebooks.py) keeps a PNG beside every plotly figure
    and its progress bars read 100% in text (what a viewer without widgets shows)."""
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    figures = bars = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "application/vnd.plotly.v1+json" in data:
                figures += 1
                assert "image/png" in data, f"{name}: a plotly figure without a static image"
            if "application/vnd.jupyter.widget-view+json" in data and "%|" in data.get("text/plain", ""):
                bars += 1
                assert re.search(r"(^|\s)100%\|", data["text/plain"]), data["text/plain"]
    assert figures > 0, f"{name}: no stored figures; run scripts/execute_notebooks.py"
    if name in ("train_your_own", "explore_division", "progress_measures", "explore_groups"):
        assert bars > 0, f"{name}: no stored progress bar"
    assert (NB_DIR / f"{name}.ipynb").stat().st_size < 5e6


@pytest.mark.slow
def test_explore_division(kernel_name):
    import time

    start = time.perf_counter()
    text, nb = _execute("explore_division", kernel_name, with_nb=True)
    elapsed = time.perf_counter() - start
    assert "basis: Z_30 via discrete log" in text
    assert _key_freqs(text)
    acc = float(re.search(r"final test accuracy: ([\d.]+)", text).group(1))
    assert acc > 0.99
    assert re.search(r"restricted loss [\d.e+-]+ \| excluded loss [\d.]+", text)
    assert "Explorer(" in text or any(
        "Explorer(" in out.get("data", {}).get("text/plain", "") for c in nb.cells for out in c.get("outputs", [])
    )
    assert elapsed < 180, f"explore_division took {elapsed:.0f} s (goal < 60 s on a quiet machine)"


@pytest.mark.slow
def test_explore_groups(kernel_name):
    text = _execute("explore_groups", kernel_name)
    assert "sum of dim^2 / kappa: 60 = |G|" in text
    keys = re.search(r"key irreps: \[(.*)\] \(logit_trace rule\)", text)
    assert keys and keys.group(1), text
    assert float(re.search(r"final test accuracy: ([\d.]+)", text).group(1)) > 0.99
    fve = re.search(r"FVE by the key irreps: W_a ([\d.]+)%", text)
    assert fve and float(fve.group(1)) > 90  # the embedding lives in the key irreps once grokked
    res, exc = re.search(r"restricted loss ([\d.e+-]+) \| excluded loss ([\d.]+)", text).groups()
    assert float(res) < 1e-2 < 1 < float(exc)
    assert "A5 is not a cyclic group: no Fourier basis" in text

"""Re-execute the notebooks and store their outputs: ``python scripts/execute_notebooks.py [NAME ...]``.

For each ``notebooks/NAME.py`` (the jupytext source of truth): convert it to ``NAME.ipynb``, run it
top to bottom with nbclient (cwd = notebooks/, widget state stored, so the progress widgets read
100% where widgets render), then give each finished tqdm widget a text/plain fallback with its
final bar (a viewer without widgets shows that, not the 0% it was displayed with), and write the
notebook. The notebooks call ``grokinterp.explorer.use_static_images()``, so every plotly figure
keeps a PNG beside its interactive JSON.
"""

from __future__ import annotations

import argparse
import html
import sys
import time
from pathlib import Path

try:
    import jupytext
    import nbclient
    import nbformat
except ImportError as e:  # the 'notebooks' extra (in 'dev', installed by scripts/setup.sh)
    sys.exit(f"execute_notebooks: {e.name} is missing; install the notebook runtime: pip install -e '.[notebooks]'")

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _tqdm_text(model_id: str, state: dict) -> str | None:
    """The final text of a tqdm notebook bar (an HBox of HTML, FloatProgress, HTML), or None."""
    box = state.get(model_id, {}).get("state", {})
    if box.get("_model_name") != "HBoxModel":
        return None
    kids = [state.get(c.replace("IPY_MODEL_", ""), {}).get("state", {}) for c in box.get("children", [])]
    if len(kids) != 3 or kids[1].get("_model_name") != "FloatProgressModel":
        return None
    value, top = kids[1].get("value", 0), kids[1].get("max", 0) or 1
    filled = round(10 * min(1.0, value / top))
    left, right = html.unescape(kids[0].get("value", "")), html.unescape(kids[2].get("value", ""))
    return f"{left}|{'█' * filled}{' ' * (10 - filled)}| {right}".strip()


def fix_progress_text(nb) -> int:
    """Replace the text/plain of stored tqdm widgets by their final bar; returns how many."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    n = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view and (text := _tqdm_text(view["model_id"], state)):
                out["data"]["text/plain"] = text
                n += 1
    return n


def execute(name: str, timeout: int = 600) -> Path:
    src, dst = NB_DIR / f"{name}.py", NB_DIR / f"{name}.ipynb"
    nb = jupytext.read(src)
    nb.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    client = nbclient.NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(NB_DIR)}},
        store_widget_state=True,
    )
    start = time.perf_counter()
    client.execute()
    bars = fix_progress_text(nb)
    nbformat.write(nb, dst)
    print(f"{dst.name}: {time.perf_counter() - start:.1f} s, {dst.stat().st_size / 1e6:.2f} MB, {bars} progress bars")
    return dst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook names (default: every notebooks/*.py)")
    args = parser.parse_args(argv)
    names = args.names or sorted(p.stem for p in NB_DIR.glob("*.py"))
    for name in names:
        execute(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``grokinterp report RUN --out report.html``: the checkpoint explorer as one self-contained HTML file.

The file holds plotly.js (inlined: no network, no CDN), the figures of every checkpoint of the run
(``grokinterp.viz.explorer.Explorer``: embedding spectrum, neuron clusters and heatmaps, attention, and
the progress-measure curves with a cursor) and a small vanilla-JS slider that switches between
them (``grokinterp.viz.report_page``). plotly.js and the heatmaps (8 bits of their range) are
stored deflated and base64-encoded (inflated in the page), the plot template and every repeated
layout once, numbers to 4 significant digits: the shipped 32-checkpoint p=113 run makes a file
of about 5 MB. Curves fill their column with the legend below; heatmap grids span the page at
their own size (whole pixels per cell).

The page reads an optional URL fragment: ``report.html#checkpoint=N`` (an index into the
checkpoints; negative counts from the end, ``last`` is the last) or ``#epoch=E`` (the checkpoint
nearest epoch E) sets the slider at load; moving the slider updates the fragment, so a link shows
the same checkpoint.

>>> from grokinterp.viz.report import write_report
>>> write_report("checkpoints/nanda-p113", "report.html")
"""

from __future__ import annotations

import base64
import functools
import html
import json
import logging
import math
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from grokinterp.io.runs import Run
    from grokinterp.viz.explorer import Explorer

__all__ = [
    "DEFAULT_MAX_CHECKPOINTS",
    "build_report",
    "check_out_path",
    "is_run_file",
    "packed_plotlyjs",
    "select_epochs",
    "write_report",
]

log = logging.getLogger(__name__)

#: At most this many checkpoints go into a report by default (evenly spread, first and last kept).
DEFAULT_MAX_CHECKPOINTS = 64
#: Significant digits of the numbers stored in the page (heatmaps: 8 bits of their range).
DIGITS = 4


def is_run_file(path: str | Path) -> bool:
    """Whether ``path`` names a file of a run directory (config.json, metrics.jsonl, a checkpoint,
    an LLC estimate, ...): a path no report or figure may be written to, even with ``--force``."""
    from grokinterp import constants as C

    path = Path(path).absolute()
    folder = path.parent
    if (folder / C.CONFIG_FILE).is_file() and path.name in C.RUN_FILES:
        return True
    return folder.name in (C.CHECKPOINT_DIR, C.LLC_DIR) and (folder.parent / C.CONFIG_FILE).is_file()


def check_out_path(out: str | Path, force: bool = False) -> Path:
    """``out`` as a file path that can be written: not a folder, not under a file, not a run's
    file, and not an existing file unless ``force`` (``ValueError`` with one line otherwise).
    Missing parent folders are fine (they are created)."""
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name such as {out / 'report.html'}")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"--out {out}: {parent} is a file, not a folder")
            break
    if is_run_file(out):
        raise ValueError(f"--out {out} is a file of the run in {out.parent}; choose a path outside the run's files")
    if (out.exists() or out.is_symlink()) and not force:
        raise ValueError(f"--out {out} already exists; pass --force to replace it, or choose another file")
    return out


def select_epochs(epochs: list[int], max_checkpoints: int | None) -> list[int]:
    """At most ``max_checkpoints`` of ``epochs``, evenly spread by index, first and last kept."""
    n = len(epochs)
    if max_checkpoints is None or n <= max_checkpoints:
        return list(epochs)
    if max_checkpoints < 2:
        raise ValueError(f"max_checkpoints must be at least 2 (got {max_checkpoints})")
    idx = sorted({round(i * (n - 1) / (max_checkpoints - 1)) for i in range(max_checkpoints)})
    return [epochs[i] for i in idx]


# ----------------------------------------------------------------------------------------------
# Compact figure JSON
# ----------------------------------------------------------------------------------------------


def _round(x: Any) -> Any:
    """Floats to ``DIGITS`` significant digits, recursively (NaN/inf to None: JSON has neither)."""
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        return float(f"{x:.{DIGITS}g}")
    if isinstance(x, list):
        return [_round(v) for v in x]
    if isinstance(x, dict):
        if "bdata" in x:  # plotly's typed-array encoding: keep
            return x
        return {k: _round(v) for k, v in x.items()}
    return x


def _quantise(z: Any) -> dict[str, Any]:
    """A 2D array as 8 bits of its range: {"q8": base64 of the zlib-deflated bytes (255 =
    missing), "shape", "lo", "hi"}; the page inflates them (``DecompressionStream``) and turns
    them back into rows of numbers."""
    import numpy as np

    a = np.asarray(_plain(z), dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected a 2D heatmap, got shape {a.shape}")
    ok = np.isfinite(a)
    lo = float(a[ok].min()) if ok.any() else 0.0
    hi = float(a[ok].max()) if ok.any() else 0.0
    span = hi - lo if hi > lo else 1.0
    q = np.full(a.shape, 255, dtype=np.uint8)
    q[ok] = np.rint((a[ok] - lo) / span * 254).astype(np.uint8)
    packed = base64.b64encode(zlib.compress(q.tobytes(), 9)).decode("ascii")
    return {"q8": packed, "shape": list(a.shape), "lo": _round(lo), "hi": _round(hi)}


_DTYPES = {"f8": "<f8", "f4": "<f4", "i1": "i1", "u1": "u1", "i2": "<i2", "u2": "<u2", "i4": "<i4", "u4": "<u4"}


def _plain(z: Any) -> Any:
    """plotly's {"dtype", "bdata", "shape"} typed-array JSON as nested lists (else unchanged)."""
    if isinstance(z, dict) and "bdata" in z:
        import numpy as np

        a = np.frombuffer(base64.b64decode(z["bdata"]), dtype=_DTYPES[z["dtype"]])
        if "shape" in z:
            shape = [int(s) for s in str(z["shape"]).split(",")]
            a = a.reshape(shape)
        return a
    return z


#: Top margin of a figure in the page: room for plotly's toolbar above the plot (the title is
#: HTML above the figure); heatmap grids keep their subplot titles' room below it.
TOOLBAR_ROOM = 30
#: A figure's title took this much of its top margin (the template's 70 px less the toolbar's).
_TITLE_ROOM = 64


class _Encoder:
    """Figures to compact JSON dicts: the layout template stored once (by reference), and every
    layout that repeats (the same panel at many checkpoints) too; the title and the caption
    (``layout.meta``) taken out for the page's HTML; curves fill their column with the legend
    below the plot; heatmap grids keep their own size in px (whole pixels per cell: stretched,
    they turn to moire and their subplot titles collide), heatmaps quantised and deflated."""

    def __init__(self) -> None:
        self.templates: list[Any] = []
        self.layouts: list[Any] = []
        self._index: dict[str, int] = {}
        self._layout_index: dict[str, int] = {}

    def _template_ref(self, template: Any) -> int:
        if isinstance(template, dict):
            template = dict(template)
            lay = dict(template.get("layout", {}))
            lay.pop("width", None)
            template["layout"] = lay
        key = json.dumps(template, sort_keys=True)
        if key not in self._index:
            self._index[key] = len(self.templates)
            self.templates.append(template)
        return self._index[key]

    def _layout_ref(self, layout: dict[str, Any]) -> int:
        key = json.dumps(layout, sort_keys=True, separators=(",", ":"))
        if key not in self._layout_index:
            self._layout_index[key] = len(self.layouts)
            self.layouts.append(layout)
        return self._layout_index[key]

    def encode(self, fig: go.Figure) -> dict[str, Any]:
        """One figure as a compact dict: {"data", "layout": {"$ref": i}, "title_html", "caption",
        "wide"} (``DATA.layouts[i]`` in the page)."""
        import plotly.io as pio

        from grokinterp.viz.style import figure_caption

        caption = figure_caption(fig)
        d = json.loads(pio.to_json(fig, validate=False))
        layout = d.setdefault("layout", {})
        layout.pop("meta", None)
        if caption:
            d["caption"] = caption
        if "template" in layout:
            layout["template"] = {"$ref": self._template_ref(layout["template"])}
        # The title goes above the plot as HTML (it wraps; a narrow column clips a plotly title).
        title = layout.pop("title", None)
        text = title.get("text") if isinstance(title, dict) else title
        if text:
            d["title_html"] = text
        margin = layout.setdefault("margin", {})
        heatmaps = [t for t in d.get("data", []) if t.get("type") == "heatmap"]
        if heatmaps and layout.get("width"):  # a grid laid out in px: drawn at its own size
            d["wide"] = True
            layout["autosize"] = False
            margin["t"] = max(TOOLBAR_ROOM, int(margin.get("t", 70)) - (_TITLE_ROOM if text else 0))
            layout["height"] = int(layout.get("height") or 500) - (_TITLE_ROOM if text else 0)
        else:
            layout.pop("width", None)
            layout["autosize"] = True
            margin["t"] = TOOLBAR_ROOM
            for trace in d.get("data", []):  # the bands are labelled I, II, III; the caption names them
                if trace.get("legendgroup") == "phase":
                    trace["showlegend"] = False
            if _has_legend(d) and not heatmaps:  # below the plot: the plot keeps the column's width
                layout["legend"] = {**layout.get("legend", {}), **_LEGEND_BELOW}
                layout["height"] = 470
                margin["r"] = 20
        for trace in d.get("data", []):
            if trace.get("type") == "heatmap" and "z" in trace:
                trace["z"] = _quantise(trace["z"])
                for ax in ("x", "y"):
                    if ax in trace:
                        trace[ax] = _as_list(trace[ax])
        d = _round(d)
        d["layout"] = {"$ref": self._layout_ref(d["layout"])}
        return d


#: The report's legend: one row (or a few) below the x axis title.
_LEGEND_BELOW = {"orientation": "h", "x": 0, "xanchor": "left", "y": -0.2, "yanchor": "top", "traceorder": "normal"}


def _all_captioned(name: str, curves: dict[str, Any], panels: dict[str, list[Any]]) -> bool:
    figs = [curves[name]["fig"]] if name in curves else panels.get(name, [])
    return bool(figs) and all(f is not None and f.get("caption") for f in figs)


def _has_legend(d: dict[str, Any]) -> bool:
    if d.get("layout", {}).get("showlegend") is False:
        return False
    named = [t for t in d.get("data", []) if t.get("name") and t.get("showlegend", True) is not False]
    return len(named) > 1 or bool(d.get("layout", {}).get("showlegend"))


def _as_list(x: Any) -> Any:
    """A plotly typed array (or list) as a plain list (short axes of heatmaps)."""
    x = _plain(x)
    return x.tolist() if hasattr(x, "tolist") else x


def _cursor_index(layout: dict[str, Any]) -> int | None:
    from grokinterp.viz.explorer import CURSOR_NAME

    shapes = layout.get("shapes", [])
    return next((i for i, s in enumerate(shapes) if s.get("name") == CURSOR_NAME), None)


# ----------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------


def _verdict(analysis: dict[str, Any]) -> str | None:
    """The clock/pizza verdict text of an analysis.json dict ("clock", or "no verdict: why"); None
    when the run has no clock/pizza entry."""
    from grokinterp.analysis.run_analysis import clock_pizza_verdict

    cp = analysis.get("clock_pizza")
    return clock_pizza_verdict(cp)[1] if cp else None


def _run_facts(ex: Explorer) -> list[str]:
    cfg = ex.run.config
    a = ex.run.analysis or {}
    arch = "MLP" if getattr(cfg, "arch", "transformer") == "mlp" else "transformer"
    irreps = a.get("irreps") or {}
    task = f"{cfg.op} ({cfg.p} elements)" if irreps.get("defined") else f"{cfg.op} mod {cfg.p}"
    facts = [
        task,
        f"{arch}, {cfg.n_layers} layer{'s' if cfg.n_layers != 1 else ''}",
        f"train fraction {cfg.train_frac:g}",
    ]
    if cfg.preset:
        facts.insert(0, f"preset {cfg.preset}")
    verdict = _verdict(a)
    if verdict is not None and not verdict.startswith("no verdict"):
        facts.append(f"clock/pizza: {verdict}")
    basis = a.get("basis") or {}
    if basis.get("name") and basis.get("family") != "none":
        facts.append(f"basis {basis['name']}")
    if a.get("key_freqs"):
        rule = (a.get("key_frequencies") or {}).get("rule")
        facts.append(
            "key frequencies " + ", ".join(str(k) for k in a["key_freqs"]) + (f" ({rule} rule)" if rule else "")
        )
    if irreps.get("defined"):
        facts.append("key irreps " + (", ".join(irreps.get("key_irreps") or []) or "none"))
    bounds = (a.get("phases") or {}).get("boundaries")
    if bounds and any(b is not None for b in bounds):
        facts.append("phase boundaries " + ", ".join("–" if b is None else str(b) for b in bounds))
    return facts


@functools.lru_cache(maxsize=1)
def packed_plotlyjs() -> str:
    """plotly.js (plotly.py's own copy) deflated (zlib) and base64-encoded: 2.0 MB in the page
    instead of 4.8 MB; the page inflates it with ``DecompressionStream`` and runs it."""
    import plotly.offline

    return base64.b64encode(zlib.compress(plotly.offline.get_plotlyjs().encode("utf-8"), 9)).decode("ascii")


def build_report(
    run: Run | str | Path,
    *,
    layer: int | None = None,
    max_checkpoints: int | None = DEFAULT_MAX_CHECKPOINTS,
    progress: bool = False,
    explorer: Explorer | None = None,
) -> str:
    """The report page of ``run`` as one HTML string (see the module docstring)."""
    from tqdm.auto import tqdm

    from grokinterp import __version__
    from grokinterp.progress import progress_enabled
    from grokinterp.viz.explorer import PANELS, Explorer, summary_text

    ex = explorer if explorer is not None else Explorer(run, layer=layer)
    epochs = select_epochs(ex.epochs, max_checkpoints)
    names = ex.panel_names()
    kinds = {n: k for n, _, k in PANELS}
    enc = _Encoder()

    curves: dict[str, Any] = {}
    for name, fig in ex.curves(epochs[0]).items():
        d = enc.encode(fig)
        curves[name] = {"fig": d, "cursor": _cursor_index(enc.layouts[d["layout"]["$ref"]])}
    panels: dict[str, list[Any]] = {n: [] for n in names if kinds[n] == "model"}
    summaries = []
    for epoch in tqdm(epochs, desc="report", unit="ckpt", disable=not progress_enabled(progress)):
        figs = ex.model_figures(epoch)
        for n in panels:
            panels[n].append(enc.encode(figs[n]) if n in figs else None)
        summaries.append(summary_text(ex, epoch))
    data = {
        "epochs": epochs,
        "order": names,
        "kinds": {n: kinds[n] for n in names},
        # the figures' own captions are shown; the panel's line only where a figure has none
        "captions": {n: c for n, c in ex.captions().items() if n in names and not _all_captioned(n, curves, panels)},
        "curves": curves,
        "panels": panels,
        "summaries": summaries,
        "templates": enc.templates,
        "layouts": enc.layouts,
    }
    if len(epochs) < len(ex.epochs):
        ex_notes = [f"{len(epochs)} of the run's {len(ex.epochs)} checkpoints (evenly spread)."]
    else:
        ex_notes = []
    verdict = _verdict(ex.run.analysis or {})
    if verdict is not None and verdict.startswith("no verdict"):  # said where it is read, with why
        ex_notes.insert(0, f"Clock/pizza (Zhong et al. 2023): {verdict.rstrip('.')}.")
    notes = ex.notes + ex_notes
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    title = f"grokinterp report: {ex.run.path.name}"
    from grokinterp.viz.report_page import PAGE, SCRIPT

    return PAGE.format(
        title=html.escape(title),
        heading=html.escape(str(ex.run.path)),
        facts=html.escape(" · ".join(_run_facts(ex))),
        notes="".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes),
        n_max=len(epochs) - 1,
        version=html.escape(__version__),
        plotlyjs=packed_plotlyjs(),
        data=payload,
        script=SCRIPT,
    )


def write_report(
    run: Run | str | Path,
    out: str | Path,
    *,
    layer: int | None = None,
    max_checkpoints: int | None = DEFAULT_MAX_CHECKPOINTS,
    progress: bool = False,
    force: bool = False,
) -> Path:
    """Write the report of ``run`` to ``out`` (one self-contained HTML file) and return its path.
    ``out`` must not be a folder, lie under a file, be a run's file, or exist without ``force``
    (``ValueError``, ``check_out_path``); it is written atomically."""
    from grokinterp.io.files import atomic_write_text

    out = check_out_path(out, force=force)
    page = build_report(run, layer=layer, max_checkpoints=max_checkpoints, progress=progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    from grokinterp.io.lock import hold

    with hold(out.parent):  # a report written into a run directory: its lock, as every writer
        atomic_write_text(out, page)
    log.info("wrote %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return out

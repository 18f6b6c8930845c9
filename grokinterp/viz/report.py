"""``grokinterp report RUN --out report.html``: the checkpoint explorer as one self-contained HTML file.

The file holds plotly.js (inlined: no network, no CDN), the figures of every checkpoint of the run
(``grokinterp.viz.explorer.Explorer``: embedding spectrum, neuron clusters and heatmaps, attention, and
the progress-measure curves with a cursor) and a small vanilla-JS slider that switches between
them. Heatmaps are stored as 8-bit quantised base64 (decoded in the page), the plot template once,
so the shipped 32-checkpoint p=113 run makes a file of about 10 MB.

The page reads an optional URL fragment: ``report.html#checkpoint=N`` (an index into the
checkpoints; negative counts from the end, ``last`` is the last) or ``#epoch=E`` (the checkpoint
nearest epoch E) sets the slider at load; moving the slider updates the fragment, so a link shows
the same checkpoint.

>>> from grokinterp.viz.report import write_report
>>> write_report("checkpoints/nanda-p113", "report.html")
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from grokinterp.io.runs import Run
    from grokinterp.viz.explorer import Explorer

__all__ = ["DEFAULT_MAX_CHECKPOINTS", "build_report", "check_out_path", "is_run_file", "select_epochs", "write_report"]

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
    """A 2D array as 8 bits of its range: {"q8": base64 bytes (255 = missing), "shape", "lo",
    "hi"}; the page turns it back into rows of numbers."""
    import numpy as np

    a = np.array(_plain(z), dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected a 2D heatmap, got shape {a.shape}")
    ok = np.isfinite(a)
    lo = float(a[ok].min()) if ok.any() else 0.0
    hi = float(a[ok].max()) if ok.any() else 0.0
    span = hi - lo if hi > lo else 1.0
    q = np.full(a.shape, 255, dtype=np.uint8)
    q[ok] = np.rint((a[ok] - lo) / span * 254).astype(np.uint8)
    return {"q8": base64.b64encode(q.tobytes()).decode("ascii"), "shape": list(a.shape), "lo": lo, "hi": hi}


_DTYPES = {"f8": "<f8", "f4": "<f4", "i1": "i1", "u1": "u1", "i2": "<i2", "u2": "<u2", "i4": "<i4", "u4": "<u4"}


def _plain(z: Any) -> Any:
    """plotly's {"dtype", "bdata", "shape"} typed-array JSON as nested lists (else unchanged)."""
    if isinstance(z, dict) and "bdata" in z:
        import numpy as np

        a = np.frombuffer(base64.b64decode(z["bdata"]), dtype=_DTYPES[z["dtype"]])
        if "shape" in z:
            shape = [int(s) for s in str(z["shape"]).split(",")]
            a = a.reshape(shape)
        return a.tolist()
    return z


class _Encoder:
    """Figures to compact JSON dicts: the layout template stored once (by reference), widths left
    to the page (figures fill their column), heatmaps quantised."""

    def __init__(self) -> None:
        self.templates: list[Any] = []
        self._index: dict[str, int] = {}

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

    def encode(self, fig: go.Figure) -> dict[str, Any]:
        import plotly.io as pio

        d = json.loads(pio.to_json(fig, validate=False))
        layout = d.setdefault("layout", {})
        if "template" in layout:
            layout["template"] = {"$ref": self._template_ref(layout["template"])}
        layout.pop("width", None)
        layout["autosize"] = True
        # The title goes above the plot as HTML (it wraps; a narrow column clips a plotly title).
        title = layout.pop("title", None)
        text = title.get("text") if isinstance(title, dict) else title
        if text:
            d["title_html"] = text
        margin = layout.setdefault("margin", {})
        margin["t"] = 30
        heatmaps = [t for t in d.get("data", []) if t.get("type") == "heatmap"]
        if heatmaps:  # a grid of square panels in a ~560 px column (plots sizes them for 900 px)
            cols = min(len(heatmaps), 4)
            layout["height"] = int(540 / cols * math.ceil(len(heatmaps) / cols) + 130)
        for trace in d.get("data", []):
            if trace.get("type") == "heatmap" and "z" in trace:
                trace["z"] = _quantise(trace["z"])
                for ax in ("x", "y"):
                    if ax in trace:
                        trace[ax] = _plain(trace[ax])
        return _round(d)


def _cursor_index(fig_json: dict[str, Any]) -> int | None:
    from grokinterp.viz.explorer import CURSOR_NAME

    shapes = fig_json.get("layout", {}).get("shapes", [])
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
    facts = [
        f"{cfg.op} mod {cfg.p}",
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
    bounds = (a.get("phases") or {}).get("boundaries")
    if bounds and any(b is not None for b in bounds):
        facts.append("phase boundaries " + ", ".join("–" if b is None else str(b) for b in bounds))
    return facts


def build_report(
    run: Run | str | Path,
    *,
    layer: int | None = None,
    max_checkpoints: int | None = DEFAULT_MAX_CHECKPOINTS,
    progress: bool = False,
    explorer: Explorer | None = None,
) -> str:
    """The report page of ``run`` as one HTML string (see the module docstring)."""
    import plotly.offline
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
        curves[name] = {"fig": d, "cursor": _cursor_index(d)}
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
        "captions": {n: c for n, c in ex.captions().items() if n in names},
        "curves": curves,
        "panels": panels,
        "summaries": summaries,
        "templates": enc.templates,
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
    return _PAGE.format(
        title=html.escape(title),
        heading=html.escape(str(ex.run.path)),
        facts=html.escape(" · ".join(_run_facts(ex))),
        notes="".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes),
        n_max=len(epochs) - 1,
        version=html.escape(__version__),
        plotlyjs=plotly.offline.get_plotlyjs(),
        data=payload,
        script=_SCRIPT,
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


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="grokinterp {version}">
<title>{title}</title>
<style>
  body {{ font-family: Arial, "Liberation Sans", Helvetica, sans-serif; margin: 0; color: #222; background: #fafafa; }}
  header {{ padding: 10px 18px 4px; }}
  h1 {{ font-size: 18px; margin: 0 0 4px; }}
  .facts {{ color: #555; font-size: 13px; margin: 0; }}
  .note {{ color: #8a4b00; font-size: 13px; margin: 4px 0; }}
  #controls {{ position: sticky; top: 0; z-index: 10; background: #fff; border-bottom: 1px solid #ddd;
    padding: 8px 18px; display: flex; flex-wrap: wrap; align-items: center; gap: 10px; }}
  #controls button {{ font-size: 14px; min-width: 34px; }}
  #checkpoint-slider {{ flex: 1 1 420px; }}
  #epoch-label {{ font-weight: bold; min-width: 190px; }}
  #summary {{ flex-basis: 100%; font-size: 12.5px; color: #333; }}
  main {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 10px; padding: 10px 18px; }}
  .panel {{ background: #fff; border: 1px solid #e3e3e3; border-radius: 4px; padding: 4px; min-width: 0; }}
  .panel .caption {{ font-size: 12.5px; color: #555; margin: 2px 6px; }}
  .panel .title {{ font-size: 15px; text-align: center; margin: 4px 6px 0; }}
  footer {{ font-size: 12px; color: #777; padding: 6px 18px 16px; }}
</style>
<script>{plotlyjs}</script>
</head>
<body>
<header>
  <h1>{heading}</h1>
  <p class="facts">{facts}</p>
  {notes}
</header>
<div id="controls">
  <button id="prev" title="previous checkpoint (left arrow)">&#9664;</button>
  <input type="range" id="checkpoint-slider" min="0" max="{n_max}" step="1" value="{n_max}"
         aria-label="checkpoint">
  <button id="next" title="next checkpoint (right arrow)">&#9654;</button>
  <button id="play" title="play through the checkpoints">play</button>
  <span id="epoch-label"></span>
  <div id="summary"></div>
</div>
<main id="panels"></main>
<footer>Written by grokinterp {version}. Open link fragments <code>#checkpoint=N</code> (index, negative
from the end) or <code>#epoch=E</code> to start at a checkpoint. Heatmap values are stored to 8 bits of
their range.</footer>
<script type="application/json" id="report-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""

_SCRIPT = r"""
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const N = DATA.epochs.length;
  const slider = document.getElementById("checkpoint-slider");
  const label = document.getElementById("epoch-label");
  const summary = document.getElementById("summary");
  const main = document.getElementById("panels");
  const CONFIG = {responsive: true, displaylogo: false};
  const divs = {}, titles = {};
  let current = -1;

  function decodeZ(z) {
    const bin = atob(z.q8), rows = z.shape[0], cols = z.shape[1];
    const step = (z.hi - z.lo) / 254, out = new Array(rows);
    for (let i = 0; i < rows; i++) {
      const row = new Array(cols);
      for (let j = 0; j < cols; j++) {
        const v = bin.charCodeAt(i * cols + j);
        row[j] = v === 255 ? null : z.lo + v * step;
      }
      out[i] = row;
    }
    return out;
  }

  function materialise(fig) {
    const f = JSON.parse(JSON.stringify(fig));
    const t = f.layout && f.layout.template;
    if (t && t["$ref"] !== undefined) f.layout.template = JSON.parse(JSON.stringify(DATA.templates[t["$ref"]]));
    for (const tr of f.data || []) if (tr.z && tr.z.q8 !== undefined) tr.z = decodeZ(tr.z);
    return f;
  }

  for (const name of DATA.order) {
    const box = document.createElement("section");
    box.className = "panel";
    box.id = "panel-" + name;
    const cap = document.createElement("div");
    cap.className = "caption";
    cap.textContent = DATA.captions[name] || name;
    const title = document.createElement("div");
    title.className = "title";
    const div = document.createElement("div");
    div.className = "figure";
    box.appendChild(cap);
    box.appendChild(title);
    box.appendChild(div);
    main.appendChild(box);
    divs[name] = div;
    titles[name] = title;
  }
  // Titles are plotly's pseudo-HTML (<sub>, <sup>, <br>) written by grokinterp.plots.
  function setTitle(name, fig) { titles[name].innerHTML = (fig && fig.title_html) || ""; }
  for (const [name, c] of Object.entries(DATA.curves)) {
    const f = materialise(c.fig);
    setTitle(name, c.fig);
    Plotly.newPlot(divs[name], f.data, f.layout, CONFIG);
  }

  function render(i) {
    i = Math.max(0, Math.min(N - 1, i | 0));
    if (i === current) return;
    current = i;
    const epoch = DATA.epochs[i];
    slider.value = String(i);
    slider.setAttribute("value", String(i));
    label.textContent = "epoch " + epoch + "  (checkpoint " + (i + 1) + "/" + N + ")";
    summary.textContent = DATA.summaries[i];
    for (const [name, c] of Object.entries(DATA.curves)) {
      if (c.cursor === null) continue;
      const upd = {};
      upd["shapes[" + c.cursor + "].x0"] = epoch;
      upd["shapes[" + c.cursor + "].x1"] = epoch;
      Plotly.relayout(divs[name], upd);
    }
    for (const [name, figs] of Object.entries(DATA.panels)) {
      const fig = figs[i];
      setTitle(name, fig);
      if (!fig) { Plotly.purge(divs[name]); divs[name].textContent = "not drawn at this checkpoint"; continue; }
      const f = materialise(fig);
      Plotly.react(divs[name], f.data, f.layout, CONFIG);
    }
    document.body.setAttribute("data-checkpoint", String(i));
    document.body.setAttribute("data-epoch", String(epoch));
  }

  function fromHash() {
    const h = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    if (h.has("epoch")) {
      const e = Number(h.get("epoch"));
      let best = 0;
      DATA.epochs.forEach((x, j) => { if (Math.abs(x - e) < Math.abs(DATA.epochs[best] - e)) best = j; });
      return best;
    }
    if (h.has("checkpoint")) {
      const v = h.get("checkpoint");
      if (v === "last") return N - 1;
      const k = parseInt(v, 10);
      if (!isNaN(k)) return k < 0 ? N + k : k;
    }
    return N - 1;
  }

  function go(i, updateHash) {
    render(i);
    if (updateHash) history.replaceState(null, "", "#checkpoint=" + current);
  }

  let pending = null;
  slider.addEventListener("input", () => {
    const i = Number(slider.value);
    if (pending !== null) cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => { pending = null; go(i, true); });
  });
  document.getElementById("prev").addEventListener("click", () => go(current - 1, true));
  document.getElementById("next").addEventListener("click", () => go(current + 1, true));
  let timer = null;
  const playButton = document.getElementById("play");
  playButton.addEventListener("click", () => {
    if (timer) { clearInterval(timer); timer = null; playButton.textContent = "play"; return; }
    if (current >= N - 1) go(0, true);
    playButton.textContent = "pause";
    timer = setInterval(() => {
      if (current >= N - 1) { clearInterval(timer); timer = null; playButton.textContent = "play"; return; }
      go(current + 1, true);
    }, 900);
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.target === slider) return;
    if (ev.key === "ArrowLeft") go(current - 1, true);
    if (ev.key === "ArrowRight") go(current + 1, true);
  });
  window.addEventListener("hashchange", () => render(fromHash()));
  render(fromHash());
  document.body.setAttribute("data-ready", "1");
})();
"""

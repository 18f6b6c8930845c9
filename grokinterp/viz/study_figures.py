"""The figures and the HTML page of a study: an ensemble folder analysed as one (``grokinterp.analysis.study``).

Three figures show the spread over seeds: the grokking epoch of every seed (``grokking_epochs``),
how many seeds use each key frequency (``key_frequencies``), and the train and test loss of every
seed with the median and the 25-75% quantile band over seeds (``loss_bands``).
``write_study_figures`` writes them (``grokinterp plot ENS``) through
``grokinterp.viz.export.export_figures``; ``write_study_report`` writes one self-contained HTML page
with the per-seed table and the three figures (``grokinterp report ENS``; plotly.js inlined).
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from grokinterp.analysis.study import Study, member_curves, quantile_bands
from grokinterp.viz.export import export_figures, write_captions
from grokinterp.viz.style import COLORS, OKABE_ITO, StyleArg, get_style, new_figure, plain_text, style_figure

__all__ = [
    "FIGURE_NAMES",
    "build_study_report",
    "grokking_epochs_figure",
    "key_frequency_figure",
    "loss_band_figure",
    "study_figures",
    "study_table_rows",
    "write_study_figures",
    "write_study_report",
]

log = logging.getLogger(__name__)

#: The study's figure names (file names without extension), in order.
FIGURE_NAMES = ("grokking_epochs", "key_frequencies", "loss_bands")


def _fmt(x: Any, spec: str = ".3g") -> str:
    return "n/a" if x is None else format(x, spec)


def grokking_epochs_figure(study: Study, *, style: StyleArg = None) -> go.Figure:
    """The grokking epoch of every seed (a dot), the median (line) and 25-75% quantiles (band) over
    the seeds that grokked; a seed that did not grok is a cross at its final epoch."""
    style = get_style(style)
    agg = study.aggregates()
    q = agg["grokking_epoch"]
    n, n_grok = agg["n_members"], agg["n_grokked"]
    title = f"Grokking epoch per seed<br><sup>{n_grok} of {n} grokked"
    title += f"; median {q['median']:.0f}, 25-75% quantiles {q['q25']:.0f}-{q['q75']:.0f}</sup>" if q else "</sup>"
    fig = new_figure(title, style, xaxis_title="seed", yaxis_title="epoch", height=420,
                     caption=plain_text(title) + ". Crosses: seeds that did not grok, at their last epoch.")  # fmt: skip
    if q:
        fig.add_hrect(
            y0=q["q25"], y1=q["q75"], fillcolor=OKABE_ITO["sky blue"], opacity=0.25, line_width=0, layer="below"
        )
        fig.add_hline(y=q["median"], line_color=OKABE_ITO["black"], line_dash="dash", line_width=style.line_width)
    seeds = [str(m.seed) for m in study.members]
    grok = [m for m in study.members if m.grokking_epoch is not None]
    rest = [m for m in study.members if m.grokking_epoch is None]
    fig.add_trace(go.Scatter(x=[str(m.seed) for m in grok], y=[m.grokking_epoch for m in grok], mode="markers",
                             name="grokking epoch", marker={"size": 1.5 * style.marker_size, "color": COLORS["test"]}))  # fmt: skip
    if rest:
        fig.add_trace(go.Scatter(x=[str(m.seed) for m in rest], y=[m.final_epoch for m in rest], mode="markers",
                                 name="not grokked (last epoch)",
                                 marker={"size": 1.5 * style.marker_size, "symbol": "x", "color": COLORS["other"]}))  # fmt: skip
    if q:  # legend entries for the median line and the band
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="median",
                                 line={"color": OKABE_ITO["black"], "dash": "dash"}))  # fmt: skip
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="25-75% quantiles",
                                 line={"color": OKABE_ITO["sky blue"], "width": 8}, opacity=0.4))  # fmt: skip
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=seeds)
    fig.update_yaxes(rangemode="tozero")
    return style_figure(fig, style)


def key_frequency_figure(study: Study, *, style: StyleArg = None) -> go.Figure:
    """How many seeds have each frequency among their key frequencies (bars, every k from 1 to the
    largest key)."""
    style = get_style(style)
    counts = study.key_freq_counts()
    top = max(counts, default=0)
    ks = list(range(1, top + 1))
    n = len(study.members)
    title = f"Key frequencies over {n} seeds"
    fig = new_figure(title, style, xaxis_title="frequency k", yaxis_title="seeds with k as a key frequency",
                     height=380, caption=title + ": the number of seeds whose key frequencies include k.")  # fmt: skip
    fig.add_trace(go.Bar(x=ks, y=[counts.get(k, 0) for k in ks], marker_color=COLORS["key"], name="seeds",
                         text=[str(counts[k]) if counts.get(k) else "" for k in ks], textposition="outside"))  # fmt: skip
    fig.update_xaxes(tickmode="linear", dtick=1 if top <= 30 else 5)
    fig.update_yaxes(range=[0, max(counts.values(), default=1) * 1.2], dtick=1 if n <= 12 else None)
    fig.update_layout(showlegend=False, bargap=0.2)
    return style_figure(fig, style)


def loss_band_figure(folder: str | Path, study: Study, *, style: StyleArg = None) -> go.Figure:
    """Train and test loss of every seed (thin lines), their median over seeds (thick) and the 25-75%
    quantile band, against the epoch (log loss axis). A seed that stopped early counts at its last
    value after it stopped (``quantile_bands``)."""
    style = get_style(style)
    title = f"Loss over {len(study.members)} seeds: median and 25-75% band"
    fig = new_figure(title, style, xaxis_title="epoch", yaxis_title="loss", height=480,
                     caption=title + "; thin lines: each seed. A seed that stopped early (converged) counts "
                     "at its last value after it stopped.")  # fmt: skip
    for split in ("train", "test"):
        color = COLORS[split]
        curves = member_curves(folder, study, f"{split}_loss")
        for seed, (epochs, values) in curves.items():
            fig.add_trace(go.Scatter(x=epochs, y=values, mode="lines", line={"color": color, "width": 0.7},
                                     opacity=0.3, name=f"{split} seed {seed}", showlegend=False,
                                     legendgroup=split, hoverinfo="name+x+y"))  # fmt: skip
        band = quantile_bands(curves, hold=[m.seed for m in study.members if m.status == "stopped_early"])
        fig.add_trace(go.Scatter(x=band["epoch"], y=band["q75"], mode="lines", line={"width": 0},
                                 showlegend=False, legendgroup=split, hoverinfo="skip"))  # fmt: skip
        fig.add_trace(go.Scatter(x=band["epoch"], y=band["q25"], mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=_rgba(color, 0.25), name=f"{split} 25-75%", legendgroup=split,
                                 hoverinfo="skip"))  # fmt: skip
        fig.add_trace(go.Scatter(x=band["epoch"], y=band["q50"], mode="lines", name=f"{split} median",
                                 line={"color": color, "width": 2 * style.line_width}, legendgroup=split,
                                 customdata=band["n"], hovertemplate="epoch %{x}: %{y:.3g} (%{customdata} seeds)"))  # fmt: skip
    fig.update_yaxes(type="log", exponentformat="power")
    return style_figure(fig, style)


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def study_figures(folder: str | Path, study: Study, *, style: StyleArg = None) -> dict[str, go.Figure]:
    """{name: figure} of the study of ensemble folder ``folder`` (``FIGURE_NAMES``)."""
    return {
        "grokking_epochs": grokking_epochs_figure(study, style=style),
        "key_frequencies": key_frequency_figure(study, style=style),
        "loss_bands": loss_band_figure(folder, study, style=style),
    }


def write_study_figures(
    folder: str | Path,
    study: Study,
    out: str | Path,
    fmt: str = "png",
    *,
    style: StyleArg = None,
    column: str | None = None,
) -> list[Path]:
    """Write the study's figures to ``out/NAME.fmt`` (and captions.md in paper style); returns the paths."""
    st = get_style(style, column)
    figs = study_figures(folder, study, style=st)
    paths = export_figures(figs, out, fmt, scale=st.png_scale)
    if st.paper:
        write_captions(figs, paths, out)
    return paths


# ---- the HTML page -------------------------------------------------------------------------------

#: Columns of the per-seed table: (header, function of a ``MemberSummary``).
_COLUMNS = (
    ("seed", lambda m: str(m.seed)),
    ("status", lambda m: f"{m.status.replace('_', ' ')} at {m.final_epoch}"),
    ("grokking epoch", lambda m: _fmt(m.grokking_epoch, "d") if m.grokking_epoch is not None else "not grokked"),
    ("phase ends (I, II, III)", lambda m: ", ".join("–" if b is None else str(b) for b in m.phase_boundaries)),
    ("key frequencies", lambda m: ", ".join(map(str, m.key_freqs)) + (f" ({m.key_rule})" if m.key_rule else "")),
    ("neurons explained", lambda m: _fmt(m.frac_explained, ".1%")),
    ("clock / pizza", lambda m: m.verdict_text),
    ("train loss", lambda m: _fmt(m.final.get("train_loss"), ".2e")),
    ("test loss", lambda m: _fmt(m.final.get("test_loss"), ".2e")),
    ("test acc", lambda m: _fmt(m.final.get("test_acc"), ".3f")),
)


def study_table_rows(study: Study) -> list[list[str]]:
    """The per-seed table (header row first) of the report, as text."""
    return [[h for h, _ in _COLUMNS]] + [[f(m) for _, f in _COLUMNS] for m in study.members]


def _phase_notes(study: Study) -> list[str]:
    """Why phase ends were not reached, once per distinct reason, with the seeds."""
    names = ("memorisation", "circuit formation", "cleanup")
    seen: dict[str, list[int]] = {}
    for m in study.members:
        for name, why in zip(names, m.phase_reasons, strict=False):
            if why:
                seen.setdefault(f"end of {name} not reached: {why}", []).append(m.seed)
    return [f"{text} (seeds {', '.join(map(str, seeds))})" for text, seeds in seen.items()]


def _facts(study: Study) -> list[str]:
    agg = study.aggregates()
    q = agg["grokking_epoch"]
    facts = [f"{agg['n_members']} seeds, {agg['n_grokked']} grokked"]
    if q:
        facts.append(f"grokking epoch median {q['median']:.0f} (25-75% {q['q25']:.0f}-{q['q75']:.0f}, "
                     f"range {q['min']:.0f}-{q['max']:.0f})")  # fmt: skip
    keys = sorted(study.key_freq_counts().items(), key=lambda kv: (-kv[1], kv[0]))
    if keys:
        facts.append("key frequencies (seeds): " + ", ".join(f"{k} ({n})" for k, n in keys[:10]))
    facts.append("verdicts: " + ", ".join(f"{v} {n}" for v, n in agg["verdict_counts"].items()))
    return facts


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
  body {{ font-family: Arial, "Liberation Sans", Helvetica, sans-serif; margin: 0 auto; max-width: 1360px;
          padding: 12px 20px; color: #222; background: #fafafa; }}
  h1 {{ font-size: 20px; margin: 4px 0; }}
  h2 {{ font-size: 16px; margin: 18px 0 6px; }}
  p, li {{ font-size: 14px; }}
  table {{ border-collapse: collapse; font-size: 13px; background: #fff; width: 100%; }}
  th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
  td {{ white-space: nowrap; }}
  td:nth-child(7) {{ white-space: normal; }}
  th {{ background: #eee; }}
  .figs {{ display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 12px; }}
  .figs .wide {{ grid-column: 1 / span 2; }}
  .fig {{ background: #fff; border: 1px solid #ddd; }}
  .note {{ color: #555; font-size: 13px; }}
</style>
<script>{plotly}</script>
</head>
<body>
<h1>{title}</h1>
<ul>{facts}</ul>
<h2>Per seed</h2>
<table>{table}</table>
<ul class="note">{notes}</ul>
<h2>Spread over seeds</h2>
<div class="figs">
<div class="fig">{fig0}</div>
<div class="fig">{fig1}</div>
<div class="fig wide">{fig2}</div>
</div>
<p class="note">Written by grokinterp {version} from {study_file}; each seed's own report: grokinterp report ENS/seed=S.</p>
</body>
</html>
"""


def build_study_report(folder: str | Path, study: Study) -> str:
    """The study's HTML page: facts, the per-seed table and the three figures (plotly.js inlined,
    opens offline)."""
    from plotly.offline import get_plotlyjs

    from grokinterp import __version__
    from grokinterp import constants as C

    figs = study_figures(folder, study)
    for fig in figs.values():  # as wide as the page's grid cell (the template's 900 px would overflow)
        fig.layout.template.layout.width = None
        fig.update_layout(width=None, autosize=True, legend={"orientation": "h", "yanchor": "top", "y": -0.22})
    parts = [fig.to_html(full_html=False, include_plotlyjs=False, config={"responsive": True}) for fig in figs.values()]
    rows = study_table_rows(study)
    table = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in rows[0]) + "</tr>"
    table += "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return _PAGE.format(
        title=html.escape(f"Study of {Path(folder).name}: {len(study.members)} seeds"),
        plotly=get_plotlyjs(),
        facts="".join(f"<li>{html.escape(f)}</li>" for f in _facts(study)),
        table=table,
        notes="".join(f"<li>{html.escape(n)}</li>" for n in _phase_notes(study)),
        fig0=parts[0],
        fig1=parts[1],
        fig2=parts[2],
        version=__version__,
        study_file=html.escape(str(Path(folder) / C.STUDY_FILE)),
    )


def write_study_report(folder: str | Path, study: Study, out: str | Path, *, force: bool = False) -> Path:
    """Write ``build_study_report`` to ``out`` atomically (``check_out_path``'s rules: not a folder,
    not a run's file, not an existing file without ``force``); returns the path."""
    from grokinterp.io.files import atomic_write_text
    from grokinterp.viz.report import check_out_path

    out = check_out_path(out, force=force)
    page = build_study_report(folder, study)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page)
    log.info("wrote %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return out

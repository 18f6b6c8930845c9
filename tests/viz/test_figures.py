"""Figures (grokinterp.viz): traces carry the run's numbers, and batch export writes real files."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from grokinterp import viz
from grokinterp.analysis import measures
from grokinterp.analysis.phases import PAPER_PHASES, PHASE_NAMES
from grokinterp.config import RunConfig
from grokinterp.io.runs import load_run
from grokinterp.viz import export
from tests.conftest import png_pixels, train_one_thread

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "checkpoints" / "nanda-p113"
HAVE_CHROMIUM = shutil.which("chromium") is not None or viz.find_browser() is not None
needs_chromium = pytest.mark.skipif(not HAVE_CHROMIUM, reason="no chromium installed (apt-get install -y chromium)")


# ----------------------------------------------------------------------------------------------
# Fixtures: a small p=23 run, trained once per module (about 2 s)
# ----------------------------------------------------------------------------------------------


#: The figures of a mod-p run: every figure but the group tasks' own.
MOD_P_FIGURES = [n for n in viz.FIGURE_NAMES if n not in viz.GROUP_FIGURES]


@pytest.fixture(scope="module")
def raw_run_dir(tmp_path_factory) -> Path:
    """A p=23 run directory with 7 checkpoints, not analysed."""
    path = tmp_path_factory.mktemp("plots") / "r"
    cfg = RunConfig(p=23, epochs=300, lr=3e-3, wd=3.0, train_frac=0.5, checkpoint_every=50, device="cpu")
    train_one_thread(cfg, path)
    return path


@pytest.fixture(scope="module")
def run_dir(raw_run_dir, tmp_path_factory) -> Path:
    """The same run, analysed (measures.csv, analysis.json)."""
    from grokinterp.analysis.run_analysis import analyze_run

    path = tmp_path_factory.mktemp("plots_analysed") / "r"
    shutil.copytree(raw_run_dir, path)
    analyze_run(path, progress=False)
    return path


@pytest.fixture(scope="module")
def run(run_dir):
    return load_run(run_dir)


@pytest.fixture(scope="module")
def model(run):
    return run.model()


@pytest.fixture(scope="module")
def clusters(run, model):
    return measures.neuron_frequency_clusters(measures.neuron_acts(model, run.dataset), threshold=0.5)


def _trace(fig: go.Figure, name: str):
    hits = [t for t in fig.data if t.name == name]
    assert hits, f"no trace {name!r} in {[t.name for t in fig.data]}"
    return hits[0]


def _phase_traces(fig: go.Figure) -> list:
    return [t for t in fig.data if t.legendgroup == "phase"]


# ----------------------------------------------------------------------------------------------
# Over-training figures
# ----------------------------------------------------------------------------------------------


def test_template_is_shared(run):
    fig = viz.plot_loss(run)
    assert fig.layout.template.layout.font.family == viz.FONT
    assert fig.layout.template.layout.plot_bgcolor == "white"
    assert fig.layout.template.layout.width == viz.WIDTH
    assert "grokinterp" in __import__("plotly.io").io.templates


def test_plot_loss_values_and_log_axis(run):
    fig = viz.plot_loss(run)
    m = run.metrics
    np.testing.assert_allclose(_trace(fig, "train loss").y, m["train_loss"])
    np.testing.assert_allclose(_trace(fig, "test loss").x, m["epoch"])
    np.testing.assert_allclose(_trace(fig, "test loss").y, m["test_loss"])
    assert fig.layout.yaxis.type == "log"


def test_phase_bands_shaded_and_named():
    shipped = load_run(SHIPPED)  # read only
    fig = viz.plot_loss(shipped)
    phases = shipped.analysis["phases"]["phases"]
    named = _phase_traces(fig)
    assert [t.meta["phase"] for t in named] == list(PHASE_NAMES)
    assert [[t.meta["start"], t.meta["end"]] for t in named] == [phases[n] for n in PHASE_NAMES]
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert [(r.x0, r.x1) for r in rects] == [tuple(phases[n]) for n in PHASE_NAMES]
    # explicit boundaries, and none
    fig = viz.plot_loss(shipped, phases=PAPER_PHASES)
    assert [(s.x0, s.x1) for s in fig.layout.shapes] == [(0, 1400), (1400, 9400), (9400, 14000)]
    assert not viz.plot_loss(shipped, phases=False).layout.shapes


def test_unfinished_phases_are_skipped(run):
    spans = viz.phase_spans({"phases": {"memorisation": [0, 60], "circuit formation": [60, None]}})
    assert spans == {"memorisation": (0, 60)}


def test_plot_accuracy(run):
    fig = viz.plot_accuracy(run)
    np.testing.assert_allclose(_trace(fig, "train accuracy").y, run.metrics["train_acc"])
    np.testing.assert_allclose(_trace(fig, "test accuracy").y, run.metrics["test_acc"])


def test_plot_accuracy_skips_rows_without_accuracy(run):
    """Imported demo runs log losses every epoch but accuracies only at checkpoints."""
    import pandas as pd

    class Gappy:
        metrics = run.metrics.copy()

    Gappy.metrics.loc[1::2, "test_acc"] = float("nan")
    fig = viz.plot_accuracy(Gappy(), phases=False)
    kept = Gappy.metrics.dropna(subset=["test_acc"])
    np.testing.assert_allclose(_trace(fig, "test accuracy").x, kept["epoch"])
    np.testing.assert_allclose(_trace(fig, "test accuracy").y, kept["test_acc"])
    assert len(_trace(fig, "train accuracy").y) == len(run.metrics)
    Gappy.metrics = pd.DataFrame({"epoch": [0, 1], "train_loss": [1.0, 0.5], "test_loss": [1.0, 0.9]})
    assert len(viz.plot_accuracy(Gappy(), phases=False).data[0].x) == 0


def test_plot_restricted_excluded_names_variants(run):
    fig = viz.plot_restricted_excluded(run)
    t = run.measures
    r = _trace(fig, "restricted loss (logit level, all pairs)")
    e = _trace(fig, "excluded loss (logit level, train)")
    np.testing.assert_allclose(r.x, t["epoch"])
    np.testing.assert_allclose(r.y, t["restricted_loss"])
    np.testing.assert_allclose(e.y, t["excluded_loss"])
    np.testing.assert_allclose(_trace(fig, "train loss").y, run.metrics["train_loss"])
    assert fig.layout.yaxis.type == "log"
    neuron = viz.plot_restricted_excluded_neuron(run)
    np.testing.assert_allclose(_trace(neuron, "excluded loss (neuron level, train)").y, t["excluded_loss_neuron"])
    np.testing.assert_allclose(_trace(neuron, "restricted loss (neuron level, test)").y, t["restricted_loss_neuron"])


def test_plot_gini_weight_norm_and_others(run):
    t = run.measures
    fig = viz.plot_gini(run)
    np.testing.assert_allclose(_trace(fig, "Gini of W_E frequency norms").y, t["gini_W_E"])
    np.testing.assert_allclose(_trace(fig, "Gini of W_L frequency norms").y, t["gini_W_L"])
    fig = viz.plot_weight_norm(run)
    np.testing.assert_allclose(_trace(fig, "sum of squared weights").y, t["sum_sq_weights"])
    fig = viz.plot_frac_neurons_explained(run)
    np.testing.assert_allclose(fig.data[0].y, t["frac_neurons_explained"])
    fig = viz.plot_cos_apb_c(run)
    for k in run.analysis["key_freqs"]:  # p = 23: the unit-norm projection / sqrt(23^3 / 2)
        np.testing.assert_allclose(_trace(fig, f"k = {k}").y, t[f"cos_apb_c_k{k}"] / math.sqrt(23**3 / 2))


def test_cos_apb_c_reads_in_logits(run_dir, tmp_path):
    """Logits A_k cos(w_k(a+b-c)) give amplitude A_k, in logits: from the measure
    (``cos_apb_minus_c_amplitudes``) and on the figure, which draws the coefficients measures.csv
    holds (the demo's projection on the unit-norm grid, A_k sqrt(p^3/2): 28,000 on the shipped
    run, drawn as "logit units" before)."""
    p, amps = 23, {3: 5.0, 7: 2.5, 11: 0.75}
    r = torch.arange(p, dtype=torch.float64)
    a, b, c = torch.meshgrid(r, r, r, indexing="ij")
    L = sum(A * torch.cos(2 * math.pi * k * (a + b - c) / p) for k, A in amps.items())
    keys = list(amps)
    got = measures.cos_apb_minus_c_amplitudes(L.reshape(p * p, p), p, keys)
    np.testing.assert_allclose(got.numpy(), list(amps.values()), rtol=1e-9)
    coef = measures.cos_apb_minus_c_coefficients(L.reshape(p * p, p), p, keys)
    path = tmp_path / "r"
    shutil.copytree(run_dir, path)
    table = load_run(path).measures
    table = table.drop(columns=[col for col in table.columns if col.startswith("cos_apb_c_k")])
    for k, value in zip(keys, coef.tolist(), strict=True):
        table[f"cos_apb_c_k{k}"] = value
    table.to_csv(path / "measures.csv", index=False)
    fig = viz.plot_cos_apb_c(load_run(path), style="paper")
    for k, A in amps.items():
        np.testing.assert_allclose(_trace(fig, f"k = {k}").y, A, rtol=1e-9)
    assert fig.layout.yaxis.title.text == "amplitude (logits)"


def test_unanalysed_run(raw_run_dir):
    raw = load_run(raw_run_dir)
    fig = viz.plot_loss(raw)  # fine without measures: no phase bands
    assert not fig.layout.shapes and not _phase_traces(fig)
    with pytest.raises(ValueError, match="analyze_run"):
        viz.plot_gini(raw)


# ----------------------------------------------------------------------------------------------
# One-model figures
# ----------------------------------------------------------------------------------------------


def test_spectra(run, model):
    """One bar per frequency: cos and sin side by side (named), the constant at k = 0, key
    frequencies marked, regular ticks."""
    from grokinterp.analysis.fourier import basis_names

    p = run.config.p
    names = basis_names(p)
    values = measures.embedding_spectrum(model, p).detach().numpy()
    fig = viz.plot_embedding_spectrum(values, names, key_freqs=[2])
    cos, sin = _trace(fig, "cos"), _trace(fig, "sin")
    n_k = (p - 1) // 2
    assert list(cos.x) == list(sin.x) == list(range(1, n_k + 1))
    np.testing.assert_allclose(cos.y, values[1::2], rtol=1e-6)
    np.testing.assert_allclose(sin.y, values[2::2], rtol=1e-6)
    np.testing.assert_allclose(_trace(fig, "const").y, values[:1], rtol=1e-6)
    assert cos.marker.color == viz.COLORS["cos"] != sin.marker.color == viz.COLORS["sin"]
    key = _trace(fig, "key frequency")
    assert list(key.x) == [2] and list(key.text) == ["2"]
    assert list(fig.layout.xaxis.tickvals) == list(range(n_k + 1))  # every k (0: const) for small p
    wl = measures.wl_spectrum(model).detach().numpy()
    fig = viz.plot_wl_spectrum(wl, names)
    np.testing.assert_allclose(_trace(fig, "cos").y, wl[1::2], rtol=1e-6)
    tex = viz.plot_embedding_spectrum(values, names, tex=True)
    assert tex.layout.xaxis.title.text.startswith("$") and not fig.layout.xaxis.title.text.startswith("$")
    assert not viz.plot_embedding_spectrum(values, names, tex=True, style="paper").layout.xaxis.title.text.startswith(
        "$"
    )


def test_spectrum_ticks_are_regular():
    from grokinterp.analysis.fourier import basis_names

    for p, step in ((23, 1), (53, 5), (113, 10)):
        names = basis_names(p)
        fig = viz.plot_embedding_spectrum(np.ones(p), names, key_freqs=[9, 38, 45, 55] if p == 113 else None)
        ticks = list(fig.layout.xaxis.tickvals)
        assert np.all(np.diff(ticks) == step), (p, ticks)
        assert not fig.layout.xaxis.ticktext  # numbers, no "cos k" labels to collide


def test_cluster_figures(clusters):
    fig = viz.plot_cluster_sizes(clusters)
    sizes = clusters.cluster_sizes()
    assert sum(fig.data[0].y) == len(clusters.labels)
    for label, count in zip(fig.data[0].x, fig.data[0].y, strict=True):
        k = -1 if label == "unexplained" else int(label.split()[-1])
        assert sizes[k] == count
    fig = viz.plot_fraction_explained_hist(clusters)
    alive = clusters.best_freq >= 0
    np.testing.assert_allclose(fig.data[0].x, clusters.best_frac[alive].numpy())
    assert fig.data[1].x == (clusters.threshold, clusters.threshold)


def test_neuron_heatmaps(run, model, clusters):
    acts = measures.neuron_acts(model, run.dataset)
    fig = viz.plot_neuron_heatmaps(acts, clusters, n_per_cluster=2, order="grid")
    ks = [k for k in clusters.cluster_sizes() if k >= 0]
    assert len(fig.data) == sum(min(2, clusters.cluster_sizes()[k]) for k in ks) > 0
    n = int(fig.data[0].name.split()[-1])
    assert clusters.labels[n] == min(ks)
    np.testing.assert_allclose(np.array(fig.data[0].z), acts[:, :, n].numpy(), rtol=1e-6)


def test_attention(run, model):
    to_a, _ = measures.attention_to_a_b(model, run.dataset)
    fig = viz.plot_attention(to_a)
    assert len(fig.data) == model.cfg.n_heads
    for h, trace in enumerate(fig.data):
        assert trace.name == f"head {h}"
        np.testing.assert_allclose(np.array(trace.z), to_a[h].numpy(), rtol=1e-6)


def test_per_frequency_excluded_loss(run):
    table = run.measures
    last = table.iloc[-1]
    keys = run.analysis["key_freqs"]
    for source in (run, table, last.to_dict()):
        # keys come from the run's typed analysis; a bare table or row is given them
        fig = viz.plot_per_frequency_excluded_loss(source, key_freqs=None if source is run else keys)
        key = _trace(fig, "key frequencies")
        other = _trace(fig, "other frequencies")
        assert list(key.x) == keys
        np.testing.assert_allclose(key.y, [last[f"excluded_loss_k{k}"] for k in keys])
        assert sorted([*key.x, *other.x]) == list(range(1, (run.config.p - 1) // 2 + 1))
        assert fig.layout.yaxis.type == "log"
    fig = viz.plot_per_frequency_excluded_loss(run, epoch=100, key_freqs=[1, 3])
    assert list(_trace(fig, "key frequencies").x) == [1, 3]
    assert "epoch 100" in fig.layout.title.text


def test_make_all_figures(run):
    figs = viz.make_all_figures(run, epoch=100)
    # at epoch 100 no neuron is explained by one frequency yet: no heatmaps, and the reason
    assert list(figs) == [n for n in viz.FIGURE_NAMES if n not in figs.skipped]
    assert set(figs.skipped) <= {"neuron_heatmaps", "neuron_fourier", *viz.GROUP_FIGURES}
    # the last checkpoint: all but the group tasks' figures, which say why they are not drawn
    last = viz.make_all_figures(run)
    assert list(last) == MOD_P_FIGURES
    assert all(last.skipped[n].startswith("no irrep measures: op 'add' is not a group task") for n in viz.GROUP_FIGURES)
    assert all(isinstance(f, go.Figure) for f in figs.values())
    assert "epoch 100" in figs["per_frequency_excluded_loss"].layout.title.text
    # the over-training heatmaps: W_E per frequency at every checkpoint, excluded loss per frequency
    spectrum = figs["embedding_spectrum_over_training"].data[0]
    assert list(spectrum.x) == run.checkpoint_epochs
    from grokinterp.analysis.bases import task_basis
    from grokinterp.analysis.spectra import embedding_freq_norms

    last = embedding_freq_norms(run.model(), task_basis(run.dataset.op, run.config.p)).numpy()
    np.testing.assert_allclose(np.array(spectrum.z)[:, -1], last, rtol=1e-5)
    excluded = figs["excluded_loss_over_training"].data[0]
    np.testing.assert_allclose(np.array(excluded.z, dtype=float)[2], np.log10(run.measures["excluded_loss_k3"]))


# ----------------------------------------------------------------------------------------------
# Paper style
# ----------------------------------------------------------------------------------------------

PT = 72 / viz.PX_PER_IN  # points per plotly px in PDF/SVG
#: Colours a curve or bar may have in either style: Okabe-Ito, and the neutral const bar.
CURVE_COLORS = {c.upper() for c in viz.OKABE_ITO.values()} | {"#777777"}


def _fonts(fig: go.Figure):
    """(where, font) of every font a figure sets, with the effective tick size of log axes."""
    lay = fig.layout
    yield "layout", lay.font.family, lay.font.size
    yield "legend", lay.legend.font.family or lay.font.family, lay.legend.font.size or lay.font.size
    for key in lay.to_plotly_json():
        if key.startswith(("xaxis", "yaxis")):
            ax = lay[key]
            growth = viz.LOG_TICK_GROWTH if ax.type == "log" and ax.exponentformat == "power" else 1.0
            yield f"{key} ticks", ax.tickfont.family, ax.tickfont.size * growth
            yield f"{key} title", ax.title.font.family, ax.title.font.size
        if key.startswith("coloraxis") and lay[key].colorbar:
            bar = lay[key].colorbar
            yield f"{key} ticks", bar.tickfont.family, bar.tickfont.size
    for ann in lay.annotations:
        yield f"annotation {ann.text!r}", ann.font.family, ann.font.size
    for t in fig.data:
        if "textfont" in t and t.text is not None:
            yield f"{t.name} text", t.textfont.family, t.textfont.size


def _texts(fig: go.Figure) -> list[str]:
    """Every string drawn in a figure (titles, axis titles, names, annotations, tick text)."""
    import json

    out: list[str] = []

    def walk(x):
        if isinstance(x, str):
            out.append(x)
        elif isinstance(x, dict):
            for k, v in x.items():
                if k not in ("meta", "hovertemplate", "template", "z", "x", "y"):
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(json.loads(fig.to_json()))
    return out


def _check_paper_figure(name: str, fig: go.Figure, style=viz.PAPER) -> None:
    lay = fig.layout
    assert not lay.title.text, f"{name}: a title in paper style"
    assert viz.figure_caption(fig), f"{name}: no caption"
    width_in = lay.width / viz.PX_PER_IN
    allowed = [viz.COLUMN_WIDTHS[style.column]] if style.column else list(viz.COLUMN_WIDTHS.values())
    assert any(abs(width_in - w) < 0.01 for w in allowed), f"{name}: {width_in} in wide"
    for where, family, size in _fonts(fig):
        assert family in (None, viz.FONT), f"{name} {where}: font {family!r}"
        assert size is not None and 8 - 1e-6 <= size * PT <= 10 + 1e-6, f"{name} {where}: {size * PT:.2f} pt"
    for text in _texts(fig):
        assert "$" not in text and "\\(" not in text, f"{name}: MathJax in {text!r}"
    for t in fig.data:
        colors = []
        if "line" in t and isinstance(t.line.color, str):
            colors.append(t.line.color)
        if "marker" in t and isinstance(t.marker.color, str):
            colors.append(t.marker.color)
        if "marker" in t and isinstance(t.marker.color, tuple):
            colors += [c for c in t.marker.color if isinstance(c, str)]
        if t.legendgroup == "phase":
            continue
        for c in colors:
            assert c.upper() in CURVE_COLORS, f"{name}: trace {t.name!r} colour {c} is not Okabe-Ito"
    for shape in lay.shapes:  # phase bands: neutral grey, never a curve's hue
        if shape.type == "rect" and shape.fillcolor:
            r, g, b = (int(shape.fillcolor[i : i + 2], 16) for i in (1, 3, 5))
            assert r == g == b and shape.fillcolor.upper() not in CURVE_COLORS, f"{name}: band {shape.fillcolor}"


def test_paper_style_every_figure(run):
    """Every figure make_all_figures returns, in paper style: no title (a caption instead), 3.25 or
    6.75 in wide, one font family at 8-10 pt (log ticks as large as linear ones), Okabe-Ito curves,
    grey phase bands, no MathJax."""
    figs = viz.make_all_figures(run, style="paper")
    assert {"loss", "embedding_spectrum", "neuron_heatmaps", "attention"} <= set(figs)
    for name, fig in figs.items():
        _check_paper_figure(name, fig)
    assert figs["loss"].layout.width == round(3.25 * viz.PX_PER_IN)
    assert figs["neuron_heatmaps"].layout.width == round(6.75 * viz.PX_PER_IN)
    assert figs["loss"].layout.legend.orientation == "h"  # legend below, the plot keeps its width
    forced = viz.make_all_figures(run, style="paper", column="single")
    for name, fig in forced.items():
        _check_paper_figure(name, fig, viz.PAPER.with_column("single"))


def test_screen_style_fixes(run):
    """Both styles: Okabe-Ito curves on grey bands, one x range for per-epoch and per-checkpoint
    figures, log ticks the size of linear ones; titles only in screen style."""
    last = max(run.metrics["epoch"].max(), run.measures["epoch"].max())
    for builder in (viz.plot_loss, viz.plot_gini, viz.plot_frac_neurons_explained, viz.plot_cos_apb_c):
        for style in ("screen", "paper"):
            fig = builder(run, style=style)
            assert list(fig.layout.xaxis.range) == [0, last], builder.__name__
            assert bool(fig.layout.title.text) == (style == "screen")
    fig = viz.plot_loss(run)
    assert {t.line.color for t in fig.data if t.legendgroup != "phase"} == {viz.COLORS["train"], viz.COLORS["test"]}
    assert all(len({c[1:3], c[3:5], c[5:7]}) == 1 for c in viz.PHASE_COLORS.values())  # greys
    assert fig.layout.yaxis.tickfont.size * viz.LOG_TICK_GROWTH == pytest.approx(fig.layout.xaxis.tickfont.size)
    frac = viz.plot_frac_neurons_explained(run)
    assert max(len(t.name) for t in frac.data) < 30  # a short legend keeps the plot wide
    assert "logit" in viz.plot_cos_apb_c(run).layout.yaxis.title.text


def test_heatmaps_whole_pixels_per_cell(run, model, clusters):
    """Every (a, b) cell is a whole number of pixels (>= 2 here), so high frequencies show no
    moire; zsmooth off; each neuron panel has a colour bar."""
    acts = measures.neuron_acts(model, run.dataset)
    p = run.config.p
    for style in ("screen", "paper"):
        fig = viz.plot_neuron_heatmaps(acts, clusters, style=style)
        lay = fig.layout
        pw = lay.width - lay.margin.l - lay.margin.r
        ph = lay.height - lay.margin.t - lay.margin.b
        for i, trace in enumerate(fig.data):
            assert trace.zsmooth is False
            suffix = "" if i == 0 else str(i + 1)
            cell_x = (lay[f"xaxis{suffix}"].domain[1] - lay[f"xaxis{suffix}"].domain[0]) * pw / p
            cell_y = (lay[f"yaxis{suffix}"].domain[1] - lay[f"yaxis{suffix}"].domain[0]) * ph / p
            assert cell_x == pytest.approx(round(cell_x), abs=1e-6) and cell_x >= 2
            assert cell_y == pytest.approx(cell_x, abs=1e-6)
            assert lay[trace.coloraxis].colorbar.thickness > 0  # a colour bar per neuron
    to_a, _ = measures.attention_to_a_b(model, run.dataset)
    att = viz.plot_attention(to_a, style="paper")
    assert att.layout.coloraxis.colorbar.title.text == "attention"


def test_never_grokking_run_skips_neuron_heatmaps(run_dir, tmp_path, caplog):
    """At initialisation no neuron is explained by one frequency: no placeholder heatmap; the
    reason is logged and written to captions.md."""
    with caplog.at_level(logging.INFO, logger="grokinterp.viz.figures"):
        figs = viz.make_all_figures(load_run(run_dir), epoch=0, style="paper")
    assert "neuron_heatmaps" not in figs and "no MLP neuron" in figs.skipped["neuron_heatmaps"]
    assert any("skipping neuron_heatmaps" in r.getMessage() for r in caplog.records)
    paths = viz.export_figures(figs, tmp_path, "html")
    text = viz.write_captions(figs, paths, tmp_path, figs.skipped).read_text()
    for path in paths:
        assert f"## {path.name}" in text
    assert "`neuron_heatmaps`: no MLP neuron" in text
    assert "restricted loss (logit level, all pairs)" in text  # the variant is named


def _pdf_size_in(data: bytes) -> tuple[float, float]:
    import re

    box = re.search(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", data)
    assert box, "no MediaBox"
    return float(box.group(1)) / 72, float(box.group(2)) / 72


@needs_chromium
@pytest.mark.slow
def test_paper_pdfs(run_dir, tmp_path):
    """The PDFs are vector, at the column widths (kaleido writes 96 px per inch), with one embedded
    font family, and captions.md has an entry per file."""
    import re

    out = tmp_path / "paper"
    paths = viz.write_all_figures(run_dir, out, fmt="pdf", style="paper")
    captions = (out / "captions.md").read_text()
    for path in paths:
        data = path.read_bytes()
        width, height = _pdf_size_in(data)
        assert any(abs(width - w) < 0.01 for w in viz.COLUMN_WIDTHS.values()), (path.name, width)
        fonts = {f.split(b"+")[-1] for f in re.findall(rb"/BaseFont\s*/([A-Za-z0-9+-]+)", data)}
        assert fonts and len(fonts) == 1, (path.name, fonts)  # text, not outlines or one raster
        assert f"## {path.name}" in captions
    assert not (out / "loss.png").exists()


def _pdf_page_boxes(data: bytes) -> tuple[list[float], list[tuple[float, float, float, float]], list]:
    """(MediaBox, the page box of each filled rectangle, of each clip rectangle) of a one-page
    Chromium PDF: the first content stream read with a small interpreter of q/Q/cm/re/f/W (enough
    to follow where the figure's own rectangles land on the page)."""
    import re
    import zlib

    box = [float(v) for v in re.search(rb"/MediaBox\s*\[([^\]]*)\]", data).group(1).split()]
    stream = zlib.decompress(re.search(rb"stream\r?\n(.*?)endstream", data, re.S).group(1))
    ctm, stack, operands, last, fills, clips = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0), [], [], None, [], []

    def page_box(x, y, w, h):
        a, b, c, d, e, f = ctm
        pts = [(a * px + c * py + e, b * px + d * py + f) for px in (x, x + w) for py in (y, y + h)]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return min(xs), min(ys), max(xs), max(ys)

    for tok in stream.split():
        try:
            operands.append(float(tok))
            continue
        except ValueError:
            pass
        if tok == b"q":
            stack.append(ctm)
        elif tok == b"Q":
            ctm = stack.pop()
        elif tok == b"cm":
            a, b, c, d, e, f = operands[-6:]
            A, B, C, D, E, F = ctm
            ctm = (a * A + b * C, a * B + b * D, c * A + d * C, c * B + d * D, e * A + f * C + E, e * B + f * D + F)
        elif tok == b"re":
            last = (tuple(operands[-4:]), page_box(*operands[-4:]))
        elif tok in (b"f", b"f*") and last:
            fills.append(last)
        elif tok in (b"W", b"W*") and last:
            clips.append(last[1])
        operands = []
    return box, fills, clips


@needs_chromium
@pytest.mark.slow
def test_paper_figures_fit_their_box(tmp_path):
    """The shipped run's paper figures are whole in their files: in the PDF the figure's own box
    (its W x H px background) is the page, at 0.75 pt per px, and no clip cuts into it (kaleido's
    print margins shrank every figure by 3-6 % and cut its bottom 12 px: the legends of the
    6.75 in figures were halved); in the PNG nothing touches the edges while the legend's text is
    there, at the bottom."""
    from grokinterp.analysis import spectra
    from grokinterp.analysis.checkpoint_views import view_settings
    from grokinterp.analysis.fourier import basis_names

    run = load_run(SHIPPED)
    model, settings = run.model(), view_settings(run)
    names, keys = basis_names(settings.basis.m), settings.key_freqs
    figs = {
        "loss": viz.plot_loss(run, style="paper"),
        "embedding_spectrum": viz.plot_embedding_spectrum(
            spectra.embedding_spectrum(model, settings.basis), names, keys, style="paper"
        ),
        "wl_spectrum": viz.plot_wl_spectrum(spectra.wl_spectrum(model, settings.basis), names, keys, style="paper"),
        "per_frequency_excluded_loss": viz.plot_per_frequency_excluded_loss(run, style="paper"),
    }
    figs = {name: viz.style_figure(fig, "paper") for name, fig in figs.items()}
    pdfs = export.export_figures(figs, tmp_path / "pdf", "pdf")
    pngs = export.export_figures(figs, tmp_path / "png", "png")
    for (name, fig), pdf, png in zip(figs.items(), pdfs, pngs, strict=True):
        w, h = fig.layout.width, fig.layout.height
        page, fills, clips = _pdf_page_boxes(pdf.read_bytes())
        assert page == pytest.approx([0, 0, w * 0.75, h * 0.75], abs=0.5), name  # Chromium rounds the page
        own = [where for (x, y, fw, fh), where in fills if (x, y, fw, fh) == (0, 0, w, h)]
        assert own, f"{name}: no {w} x {h} background in the PDF"
        assert own[0] == pytest.approx(page, abs=0.5), f"{name}: the figure lands at {own[0]} on a page {page}"
        x0, y0, x1, y1 = clips[0]
        assert x0 <= 0.5 and y0 <= 0.5 and x1 >= page[2] - 0.5 and y1 >= page[3] - 0.5, f"{name}: clipped to {clips[0]}"
        px = png_pixels(png.read_bytes())[..., :3].astype(int)
        assert px.shape[:2] == (h, w), name
        ink = np.abs(px - px[0, 0]).sum(-1) > 60
        edge = np.concatenate([ink[:2].ravel(), ink[-2:].ravel(), ink[:, :2].ravel(), ink[:, -2:].ravel()])
        assert not edge.any(), f"{name}: something is cut at the edge of the PNG"
        if fig.layout.legend.yref == "container":  # paper legend below: its text in the bottom rows
            assert ink[-30:].any(), f"{name}: no legend text at the bottom"


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------


def _check_file(path: Path, fmt: str) -> None:
    data = path.read_bytes()
    assert len(data) > 5_000, f"{path.name}: only {len(data)} bytes"
    if fmt == "png":
        assert data.startswith(b"\x89PNG")
    elif fmt == "pdf":
        assert data.startswith(b"%PDF")
    elif fmt == "svg":
        assert b"<svg" in data[:2000]


@needs_chromium
@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["png", "pdf", "svg"])
def test_write_all_figures_static(run_dir, tmp_path, fmt):
    out = tmp_path / "figs"
    paths = viz.write_all_figures(run_dir, out, fmt=fmt)
    assert [p.name for p in paths] == [f"{n}.{fmt}" for n in MOD_P_FIGURES]
    for path in paths:
        _check_file(path, fmt)
    if fmt == "png":
        # look at one: the loss figure has the template's size and is not one flat colour
        px = png_pixels((out / "loss.png").read_bytes())
        assert px.shape[:2] == (viz.HEIGHT, viz.WIDTH)
        rgb = px[..., :3].reshape(-1, 3)
        assert rgb.std() > 20
        assert len(np.unique(rgb, axis=0)) > 50
        non_white = (rgb < 240).any(1).mean()
        assert 0.02 < non_white < 0.8


def test_write_all_figures_analyses_first(raw_run_dir, tmp_path):
    path = tmp_path / "r"
    shutil.copytree(raw_run_dir, path)
    paths = viz.write_all_figures(path, tmp_path / "figs", fmt="html")
    assert (path / "measures.csv").is_file() and (path / "analysis.json").is_file()
    assert len(paths) == len(MOD_P_FIGURES)


def test_html_fallback_without_chromium(run_dir, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(export, "find_browser", lambda: None)  # looked up there by write_all_figures
    with caplog.at_level(logging.WARNING, logger="grokinterp.viz.export"):
        paths = viz.write_all_figures(run_dir, tmp_path / "figs", fmt="png")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "apt-get install -y chromium" in warnings[0].getMessage()
    assert [p.suffix for p in paths] == [".html"] * len(MOD_P_FIGURES)
    assert (tmp_path / "figs" / "plotly.min.js").is_file()  # offline: plotly.js next to the files
    html = paths[0].read_text()
    assert 'src="plotly.min.js"' in html and "cdn.plot.ly" not in html
    assert "$" not in viz.make_all_figures(load_run(run_dir))["per_frequency_excluded_loss"].layout.xaxis.title.text


def test_html_format(run_dir, tmp_path):
    paths = viz.write_all_figures(run_dir, tmp_path / "figs", fmt="html")
    assert all(p.suffix == ".html" and p.stat().st_size > 1000 for p in paths)


def test_bad_format(run_dir, tmp_path):
    with pytest.raises(ValueError, match="format"):
        viz.export_figures({}, tmp_path, fmt="gif")


@pytest.mark.slow
def test_cli_plot(run_dir, tmp_path):
    from grokinterp.cli import main

    out = tmp_path / "out"
    assert main(["plot", str(run_dir), "--out", str(out), "--format", "svg"]) == 0
    suffix = ".svg" if HAVE_CHROMIUM else ".html"
    files = sorted(out.glob(f"*{suffix}"))
    assert len(files) == len(MOD_P_FIGURES)
    if HAVE_CHROMIUM:
        _check_file(out / "loss.svg", "svg")


# ----------------------------------------------------------------------------------------------
# Issue 18: no verdict where it does not apply, the analysis' own reasons, every attention layer
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def untrained_run_dir(tmp_path_factory) -> Path:
    """A p=23 run of 20 epochs (far from generalising: the recipe needs about 600), analysed with
    threshold 1.0, so that no neuron is explained and no clustered key frequency exists although
    the task has its Fourier basis."""
    from grokinterp.analysis.run_analysis import analyze_run

    path = tmp_path_factory.mktemp("untrained") / "r"
    cfg = RunConfig(p=23, epochs=20, lr=3e-3, wd=3.0, train_frac=0.5, checkpoint_every=10, device="cpu")
    train_one_thread(cfg, path)
    analyze_run(path, progress=False, threshold=1.0)
    return path


def test_no_verdict_for_a_model_that_has_not_generalised(untrained_run_dir, tmp_path):
    """Every output of a model that learned nothing says "no verdict" and why (analysis.json's own
    reason), never "clock": the figure, its caption and captions.md."""
    run = load_run(untrained_run_dir)
    cp = run.analysis["clock_pizza"]
    assert run.analysis["final"]["test_acc"] < 0.99 and cp["verdict"] is None
    why = (cp.get("verdict_reason") or cp["reason"]).removeprefix("no verdict: ")
    fig = viz.plot_clock_pizza(run, style="paper")
    caption = viz.figure_caption(fig)
    assert "Final checkpoint: no verdict: " in caption and why.rstrip(".") in caption
    assert "Final checkpoint: clock" not in caption
    notes = " ".join(a.text.replace("<br>", " ") for a in fig.layout.annotations)
    assert "no verdict" in notes and "0.99" in notes
    figs = viz.make_all_figures(run, style="paper")
    paths = viz.export_figures(figs, tmp_path, "html")
    text = viz.write_captions(figs, paths, tmp_path, figs.skipped).read_text()
    assert "Final checkpoint: no verdict" in text and "Final checkpoint: clock" not in text
    assert "formed the Fourier circuit" not in text  # no interpretation of a model that learned nothing


def test_not_drawn_reasons_come_from_the_analysis(untrained_run_dir, tmp_path):
    """The task has a basis but no key frequency (threshold 1.0): the figures say the analysis'
    reason, not "no Fourier basis", their captions do not describe curves that are not there, and
    the cos(w(a+b-c)) figure, left out, is listed with its reason."""
    run = load_run(untrained_run_dir)
    a = run.analysis
    assert a["basis"]["family"] != "none" and a["key_freqs"] == []
    reason = a["not_defined"]["restricted_loss"]
    assert reason.startswith("no key frequencies by the clustered rule")
    fig = viz.plot_restricted_excluded(run, style="paper")
    assert [t.name for t in fig.data] == ["train loss", "test loss"]
    notes = " ".join(ann.text.replace("<br>", " ") for ann in fig.layout.annotations)
    assert "no key frequencies by the clustered rule" in notes and "no Fourier basis" not in notes
    caption = viz.figure_caption(fig)
    assert "projected onto the key frequencies" not in caption
    assert f"Not drawn: the restricted and excluded loss, not defined for this run ({reason}" in caption
    neuron = viz.figure_caption(viz.plot_restricted_excluded_neuron(run))
    assert "neurons are projected" not in neuron and reason in neuron
    figs = viz.make_all_figures(run, style="paper")
    assert "cos_apb_c" not in figs and figs.skipped["cos_apb_c"] == a["not_defined"]["cos_sim_cos_apb_c"]
    paths = viz.export_figures(figs, tmp_path, "html")
    text = viz.write_captions(figs, paths, tmp_path, figs.skipped).read_text()
    assert f"- `cos_apb_c`: {a['not_defined']['cos_sim_cos_apb_c']}" in text
    assert "restricted loss (logit level, all pairs)" not in text  # no caption names an undrawn curve
    assert "key frequencies labelled" not in text


def test_cli_plot_lists_the_figures_left_out(untrained_run_dir, tmp_path, capsys):
    from grokinterp.cli import main

    assert main(["plot", str(untrained_run_dir), "--out", str(tmp_path / "f"), "--format", "html"]) == 0
    out = capsys.readouterr().out
    why = load_run(untrained_run_dir).analysis["not_defined"]["cos_sim_cos_apb_c"]
    assert f"  not drawn: cos_apb_c: {why}" in out and "  not drawn: neuron_heatmaps: no MLP neuron" in out


@pytest.fixture(scope="module")
def two_layer():
    """A 2-layer transformer with the "a op b =" layout, trained 10 epochs (its attention is
    uneven enough to tell the positions apart)."""
    cfg = RunConfig(p=23, epochs=10, n_layers=2, layout="a op b =", normalization_type="LN", act_fn="gelu",
                    freeze_biases=False, train_frac=0.5, device="cpu")  # fmt: skip
    result = train_one_thread(cfg)
    result.model.eval()
    from grokinterp.tasks import make_dataset

    return result.model, make_dataset(cfg.p, cfg.op, cfg.layout, cfg.train_frac, cfg.data_seed)


def test_attention_of_every_layer_with_a_caption_from_the_data(two_layer):
    """Every layer's heads are drawn (the a share of each, as attention_to_a_b gives it per layer),
    and the caption names where the "=" token's attention goes, by the layout's token labels, with
    the means of the numbers drawn: for "a op b =" "the rest goes to b" is false."""
    from grokinterp.analysis.attention import attention_to_a_b
    from grokinterp.analysis.checkpoint_views import attention_from_last, position_labels

    model, ds = two_layer
    assert position_labels(ds.layout) == ("a", "op", "b", "=") and position_labels("a b =") == ("a", "b", "=")
    assert position_labels("a b") == ("a", "b")  # a layout without "=": the last token is b
    att = attention_from_last(model, ds)
    assert att.shape == (2, model.cfg.n_heads, 4, ds.p, ds.p)
    np.testing.assert_allclose(att.sum(2).numpy(), 1.0, rtol=1e-5)  # each row of the pattern sums to 1
    fig = viz.plot_attention(att, positions=position_labels(ds.layout))
    assert [t.name for t in fig.data] == [f"layer {li}, head {h}" for li in (0, 1) for h in range(model.cfg.n_heads)]
    for li in (0, 1):
        to_a, to_b = attention_to_a_b(model, ds, layer=li)  # an independent path: one layer, a and b
        np.testing.assert_allclose(att[li, :, 0].numpy(), to_a.numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(att[li, :, 2].numpy(), to_b.numpy(), rtol=1e-5, atol=1e-7)
        for h in range(model.cfg.n_heads):
            np.testing.assert_allclose(np.array(fig.data[li * model.cfg.n_heads + h].z), to_a[h].numpy(), rtol=1e-5)
    caption = viz.figure_caption(fig)
    assert "the rest goes to b" not in caption and "layers 0, 1" in caption
    means = att.double().mean(dim=(-2, -1))
    for li in (0, 1):
        head0 = ", ".join(f"{lab} {float(v):.2f}" for lab, v in zip(("a", "op", "b", "="), means[li, 0], strict=True)
                          if float(v) >= 0.005)  # fmt: skip
        assert f"layer {li}: head 0 {head0};" in caption


def test_clock_pizza_draws_circularity_from_the_table(run):
    """The clock/pizza figure draws the three measures of measures.csv, circularity among them,
    point for point (the independent values: the table itself)."""
    fig = viz.plot_clock_pizza(run)
    table = run.measures
    for column, name in (("gradient_symmetricity", "gradient symmetricity"), ("circularity", "circularity")):
        trace = _trace(fig, name)
        expected = table[column].to_numpy()
        assert np.allclose(np.asarray(trace.y, dtype=float), expected[np.isfinite(expected)])
    assert _trace(fig, "circularity").line.dash == "dot"

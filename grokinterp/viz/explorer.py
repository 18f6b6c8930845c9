"""A checkpoint explorer: every per-model figure of a run at any checkpoint, behind one slider.

>>> ex = grokinterp.explore("checkpoints/nanda-p113")   # in Jupyter: a slider over the checkpoints
>>> ex                                                  # displays the widget
>>> figs = ex.figures(ex.epochs[5])                     # {panel name: plotly Figure} at one epoch
>>> ex.show(1400)                                       # the same figures, displayed statically

At each checkpoint the explorer draws, with the figure functions of ``grokinterp.viz``, the arrays
that ``grokinterp.analysis.checkpoint_views.checkpoint_view`` computes in the task's own basis
(``grokinterp.analysis.bases``), the same as ``make_all_figures``:

- the progress-measure curves (loss, restricted/excluded loss, the cos(w(a+b-c)) coefficients of
  the logits) with a vertical cursor at the checkpoint;
- the embedding W_E in the Fourier basis, the neuron-frequency clusters (sizes), the
  activations of the cleanest neuron of each cluster (ordered by phase) and the clusters in the
  2D Fourier basis;
- over training, as heatmaps (frequency x epoch, with the cursor): the W_E norm of each frequency
  and the excluded loss of each single frequency;
- the attention from "=" to a, per head (transformers only).

For a task without a Fourier basis only the curves (and attention) are drawn, and
``Explorer.notes`` says why the Fourier panels are absent. ``grokinterp report`` writes the same
panels for every checkpoint into one self-contained HTML file (``grokinterp.viz.report``).
"""

from __future__ import annotations

import copy
import logging
import math
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from grokinterp.analysis.checkpoint_views import ViewSettings
    from grokinterp.io.runs import Run

__all__ = ["CURSOR_NAME", "PANELS", "Explorer", "explore", "use_static_images"]

log = logging.getLogger(__name__)

#: Name of the cursor shape on the over-training curves (the report moves it by this name).
CURSOR_NAME = "checkpoint cursor"

#: Panels in display order: (name, caption, kind). "curve": over training, with a cursor; "model":
#: drawn from the checkpoint's weights.
PANELS: tuple[tuple[str, str, str], ...] = (
    ("loss", "Train and test loss; the cursor marks the checkpoint", "curve"),
    ("embedding_spectrum", "Embedding W_E in the task's Fourier basis (key frequencies marked)", "model"),
    ("restricted_excluded", "Restricted and excluded loss (logit level)", "curve"),
    ("cluster_sizes", "Neuron-frequency clusters at this checkpoint", "model"),
    ("cos_apb_c", "Logits along cos(ω(φa+φb−φc)) of the key frequencies", "curve"),
    (
        "neuron_heatmaps",
        "Activations of the cleanest neuron of each cluster, a and b ordered by phase k·a mod m",
        "model",
    ),
    ("neuron_fourier", "Neuron clusters in the 2D Fourier basis: % of variance per term", "model"),
    (
        "embedding_spectrum_over_training",
        "Embedding W_E per frequency over training; the cursor marks the checkpoint",
        "curve",
    ),
    ("excluded_loss_over_training", "Excluded loss of each single frequency over training (log10)", "curve"),
    ("attention", "Attention from the last token to a, per head of every layer", "model"),
    (
        "irrep_spectrum_over_training",
        "A group task's W_a: fraction of variance per irrep over training; the cursor marks the checkpoint",
        "curve",
    ),
    ("irrep_restricted_excluded", "Restricted and excluded loss in the irrep basis (neuron level)", "curve"),
)

#: The panels drawn from a checkpoint's weights (``model_figures``).
MODEL_PANELS = tuple(name for name, _, kind in PANELS if kind == "model")

#: Scalars of measures.csv shown beside the slider (when the run has them).
SUMMARY_COLUMNS = (
    "train_loss",
    "test_loss",
    "train_acc",
    "test_acc",
    "restricted_loss",
    "excluded_loss",
    "frac_neurons_explained",
    "cos_sim_cos_apb_c",
    "gini_W_E",
    "fve_W_a",
    "fve_mlp",
    "restricted_loss_irrep",
    "excluded_loss_irrep",
    "sum_sq_weights",
)


def _load(run: Run | str | Path) -> Run:
    from grokinterp.io.runs import Run, load_run

    return run if isinstance(run, Run) else load_run(run)


class Explorer:
    """The figures of a run at any of its checkpoints (cached), and a Jupyter widget over them.

    ``run``: a ``Run`` or a run directory; it is analysed first (``analyze_run``, which writes
    measures.csv and analysis.json into it) when it has no measures.csv and ``analyse`` is True.
    ``layer``: the MLP layer of the neuron panels (default: the analysis's layer). ``cache``: how
    many checkpoints' figures to keep.
    """

    def __init__(
        self, run: Run | str | Path, *, layer: int | None = None, analyse: bool = True, cache: int = 64
    ) -> None:
        self.run = _load(run)
        if not self.run.checkpoint_epochs:
            from grokinterp.errors import RunDirError

            raise RunDirError(f"{self.run.path}: no checkpoints to explore")
        n = self.run.config.n_layers
        if layer is not None and not -n <= layer < n:
            raise ValueError(f"layer {layer} does not exist: the model has {n} MLP layer(s) (0..{n - 1})")
        if analyse:
            from grokinterp.analysis.checkpoint_views import ensure_analysed

            ensure_analysed(self.run, stale=False)
        self._layer = layer
        self._cache: dict[int, dict[str, go.Figure]] = {}
        self._cache_size = max(1, cache)
        self._widget = None

    def __repr__(self) -> str:
        e = self.epochs
        return f"Explorer({str(self.run.path)!r}, {len(e)} checkpoints, epochs {e[0]}..{e[-1]})"

    # ------------------------------------------------------------------------------------------
    # Data
    # ------------------------------------------------------------------------------------------

    @property
    def epochs(self) -> list[int]:
        """The run's checkpoint epochs, in order (the slider's positions)."""
        return self.run.checkpoint_epochs

    @cached_property
    def table(self):
        """measures.csv (None if the run is not analysed)."""
        return self.run.measures

    @cached_property
    def _settings(self) -> ViewSettings:
        """What every checkpoint's view shares: the basis, key frequencies, threshold, layer."""
        from grokinterp.analysis.checkpoint_views import view_settings

        return view_settings(self.run, self._layer)

    @cached_property
    def _has_attention(self) -> bool:
        from grokinterp.analysis.attention import has_attention

        return has_attention(self._model)

    @cached_property
    def _model(self):
        from grokinterp.models import build_model

        model = build_model(self.run.config)
        model.eval()
        return model

    def _load_weights(self, epoch: int):
        from grokinterp.io.files import load_tensors
        from grokinterp.io.rundir import checkpoint_path
        from grokinterp.models import load_weights

        path = checkpoint_path(self.run.path, epoch)
        tensors, _ = load_tensors(path)
        load_weights(self._model, tensors, path)
        return self._model

    def resolve(self, epoch: int | None = None, index: int | None = None) -> int:
        """The checkpoint epoch of ``epoch`` (must exist) or of ``index`` into ``epochs`` (negative
        counts from the end); default the last."""
        epochs = self.epochs
        if index is not None:
            if not -len(epochs) <= index < len(epochs):
                raise IndexError(f"checkpoint index {index} out of range (0..{len(epochs) - 1})")
            return epochs[index]
        return self.run.resolve_epoch(epoch)

    @property
    def notes(self) -> list[str]:
        """Why some panels are absent for this run (one line each)."""
        basis = self._settings.basis
        out = []
        if not basis.defined:
            out.append(
                f"No Fourier panels (embedding spectrum, neuron clusters, heatmaps and Fourier terms, "
                f"restricted/excluded loss, the over-training heatmaps, cos(w(a+b-c)) fit): {basis.reason}."
            )
        if not self._has_attention:
            out.append("No attention panel: this architecture (an MLP) has no attention.")
        irreps = self._irreps
        if self.table is not None and not irreps.get("defined"):
            out.append(f"No irrep panels: {irreps.get('reason', 'not a group task').rstrip('.')}.")
        elif self.table is not None and not irreps.get("key_irreps"):
            out.append(f"No key irreps: {irreps['key_rule']['why']}; the restricted/excluded loss is not defined.")
        if self.table is not None and basis.defined and not self._has_cos_fit:
            from grokinterp.viz.curves import not_drawn_reason

            why = not_drawn_reason(self.run, "cos_apb_c_k*", "cos_sim_cos_apb_c", "key_freqs")
            out.append(f"No cos(w(a+b-c)) panel: {why.rstrip('.')}.")
        if self.table is None:
            out.append("The run is not analysed (no measures.csv): only the loss curves are drawn.")
        return out

    def panel_names(self) -> list[str]:
        """The panels this run gets, in display order."""
        names = ["loss"]
        if self.table is not None and self._settings.basis.defined:
            names += ["embedding_spectrum", "restricted_excluded", "cluster_sizes", "neuron_heatmaps", "neuron_fourier"]
            names += ["embedding_spectrum_over_training", "excluded_loss_over_training"]
            if self._has_cos_fit:
                names.append("cos_apb_c")
        if self._has_attention:
            names.append("attention")
        if self.table is not None and self._irreps.get("defined"):
            names += ["irrep_spectrum_over_training", "irrep_restricted_excluded"]
        order = [n for n, _, _ in PANELS]
        return sorted(names, key=order.index)

    def captions(self) -> dict[str, str]:
        """{panel name: caption} of every panel (``PANELS``)."""
        return {n: c for n, c, _ in PANELS}

    def summary(self, epoch: int) -> dict[str, float | int | str | None]:
        """The scalars of measures.csv at ``epoch`` (None where not defined) and the phase."""
        out: dict[str, float | int | str | None] = {"epoch": int(epoch)}
        t = self.table
        if t is not None:
            hit = t[t["epoch"] == epoch]
            for col in SUMMARY_COLUMNS:
                if col in t and not hit.empty:
                    v = float(hit.iloc[0][col])
                    out[col] = None if math.isnan(v) else v
        else:
            m = self.run.metrics
            hit = m[m["epoch"] == epoch] if "epoch" in m else m.iloc[:0]
            for col in ("train_loss", "test_loss", "train_acc", "test_acc"):
                if col in m and not hit.empty:
                    v = float(hit.iloc[0][col])
                    out[col] = None if math.isnan(v) else v
        out["phase"] = self.phase_of(epoch)
        return out

    def phase_of(self, epoch: int) -> str | None:
        """The phase (analysis.json) the epoch lies in, or None."""
        phases = (self.run.analysis or {}).get("phases", {}).get("phases", {})
        for name, span in phases.items():
            start, end = span
            if start is not None and end is not None and start <= epoch < end:
                return name
        return None

    # ------------------------------------------------------------------------------------------
    # Figures
    # ------------------------------------------------------------------------------------------

    @property
    def _irreps(self) -> dict[str, Any]:
        """analysis.json's ``irreps`` entry ({} before an analysis)."""
        return (self.run.analysis or {}).get("irreps") or {}

    @property
    def _has_cos_fit(self) -> bool:
        t = self.table
        return t is not None and any(c.startswith("cos_apb_c_k") for c in t.columns)

    @cached_property
    def _curves(self) -> dict[str, go.Figure]:
        """The over-training figures, without a cursor (drawn once)."""
        from grokinterp.analysis.checkpoint_views import embedding_spectrum_over_training
        from grokinterp.viz.curves import plot_cos_apb_c, plot_loss, plot_restricted_excluded
        from grokinterp.viz.training_heatmaps import (
            plot_embedding_spectrum_over_training,
            plot_excluded_loss_over_training,
        )

        figs = {"loss": plot_loss(self.run)}
        if self.table is not None and self._settings.basis.defined:
            figs["restricted_excluded"] = plot_restricted_excluded(self.run)
            keys = self._settings.key_freqs
            figs["embedding_spectrum_over_training"] = plot_embedding_spectrum_over_training(
                embedding_spectrum_over_training(self.run), keys
            )
            figs["excluded_loss_over_training"] = plot_excluded_loss_over_training(self.table, keys)
            if self._has_cos_fit:
                figs["cos_apb_c"] = plot_cos_apb_c(self.run)
        if self.table is not None and self._irreps.get("defined"):
            from grokinterp.viz.irrep_figures import (
                irrep_curves,
                plot_irrep_restricted_excluded,
                plot_irrep_spectrum_over_training,
            )

            curves = irrep_curves(self.table, self._irreps)
            figs["irrep_spectrum_over_training"] = plot_irrep_spectrum_over_training(curves)
            figs["irrep_restricted_excluded"] = plot_irrep_restricted_excluded(curves)
        return figs

    def curves(self, epoch: int | None = None) -> dict[str, go.Figure]:
        """The over-training figures with a dashed vertical cursor (shape named ``CURSOR_NAME``) at
        ``epoch``; without ``epoch``, no cursor."""
        out = {}
        for name, base in self._curves.items():
            fig = copy.deepcopy(base)
            if epoch is not None:
                add_cursor(fig, epoch)
            out[name] = fig
        return out

    def model_figures(self, epoch: int) -> dict[str, go.Figure]:
        """The figures drawn from the weights at ``epoch`` (embedding spectrum, cluster sizes,
        neuron heatmaps, attention), as far as they are defined for this run: the
        ``CheckpointView`` of the checkpoint, drawn."""
        from grokinterp.analysis.checkpoint_views import checkpoint_view
        from grokinterp.viz.model_figures import checkpoint_figures

        model = self._load_weights(self.resolve(epoch))
        view = checkpoint_view(model, self.run.dataset, self._settings, fourier=self.table is not None)
        return checkpoint_figures(view, MODEL_PANELS)

    def figures(self, epoch: int | None = None) -> dict[str, go.Figure]:
        """Every panel at ``epoch`` (default: the last checkpoint) as {name: Figure}, in display
        order (``panel_names``); cached per checkpoint."""
        epoch = self.resolve(epoch)
        if epoch not in self._cache:
            figs = {**self.curves(epoch), **self.model_figures(epoch)}
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[epoch] = figs
        figs = self._cache[epoch]
        return {n: figs[n] for n in self.panel_names() if n in figs}

    def show(self, epoch: int | None = None) -> None:
        """Display every panel at ``epoch`` (default the last) with plotly's default renderer (in a
        notebook: static outputs that need no widget)."""
        from IPython.display import display

        epoch = self.resolve(epoch)
        display(_summary_markdown(self, epoch))
        for fig in self.figures(epoch).values():
            fig.show()

    # ------------------------------------------------------------------------------------------
    # Jupyter widget
    # ------------------------------------------------------------------------------------------

    @property
    def widget(self):
        """The ipywidgets explorer (built on first use): a slider over the checkpoints, a play
        button, a summary line and one output area per panel."""
        if self._widget is None:
            self._widget = _build_widget(self)
        return self._widget

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.widget._repr_mimebundle_(include=include, exclude=exclude)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data["text/plain"] = repr(self) + " (a slider over the checkpoints; needs a live Jupyter kernel)"
        return bundle


def add_cursor(fig: go.Figure, epoch: float) -> go.Figure:
    """Add a dashed vertical line at ``epoch`` over the whole plot (shape name ``CURSOR_NAME``):
    black on curves, white on the over-training heatmaps (their low values are dark)."""
    on_heatmap = any(t.type == "heatmap" for t in fig.data)
    fig.add_shape(
        type="line",
        x0=epoch,
        x1=epoch,
        xref="x",
        y0=0,
        y1=1,
        yref="paper",
        line=dict(color="#ffffff" if on_heatmap else "#111111", width=2, dash="dash"),
        layer="above",
        name=CURSOR_NAME,
    )
    return fig


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4):
            return f"{v:.3g}"
        return f"{v:.3f}"
    return str(v)


SUMMARY_LABELS = {
    "train_loss": "train loss",
    "test_loss": "test loss",
    "train_acc": "train acc",
    "test_acc": "test acc",
    "restricted_loss": "restricted loss",
    "excluded_loss": "excluded loss",
    "frac_neurons_explained": "neurons explained",
    "cos_sim_cos_apb_c": "cos sim of logits with cos(w(a+b-c))",
    "gini_W_E": "Gini W_E",
    "fve_W_a": "W_a FVE (key irreps)",
    "fve_mlp": "MLP FVE (key irreps)",
    "restricted_loss_irrep": "restricted loss (irreps)",
    "excluded_loss_irrep": "excluded loss (irreps)",
    "sum_sq_weights": "sum sq. weights",
}


def summary_text(ex: Explorer, epoch: int) -> str:
    """One line: the epoch, its phase and the scalars of measures.csv at that checkpoint."""
    s = ex.summary(epoch)
    parts = [f"epoch {epoch}"]
    if s.get("phase"):
        parts[0] += f" ({s['phase']})"
    parts += [f"{SUMMARY_LABELS[k]} {_fmt(s[k])}" for k in SUMMARY_COLUMNS if k in s]
    return " · ".join(parts)


def _summary_markdown(ex: Explorer, epoch: int):
    from IPython.display import Markdown

    return Markdown("**" + summary_text(ex, epoch) + "**")


def _display_data(fig: go.Figure) -> dict[str, Any]:
    """A display_data output of ``fig`` for an Output widget, from the default plotly renderers
    that make a mime bundle, without static images (``use_static_images``): the widget redraws
    on every slider move, a PNG per figure would only slow it down."""
    import plotly.io as pio
    from plotly.io._base_renderers import MimetypeRenderer

    static = ("png", "jpeg", "jpg", "svg", "pdf", "webp")
    names = [r for r in str(pio.renderers.default or "").split("+") if r and r not in static]
    renderers = [pio.renderers[r] for r in names if r in pio.renderers]
    renderers = [r for r in renderers if isinstance(r, MimetypeRenderer)] or [pio.renderers["plotly_mimetype"]]
    data: dict[str, Any] = {"text/plain": f"<plotly figure: {fig.layout.title.text or 'untitled'}>"}
    for r in renderers:
        data.update(r.to_mimebundle(fig.to_dict()))
    return {"output_type": "display_data", "data": data, "metadata": {}}


def _build_widget(ex: Explorer):
    try:
        import ipywidgets as w
    except ImportError as e:  # pragma: no cover - notebooks extra
        raise ImportError(
            "the explorer widget needs ipywidgets (pip install 'grokinterp[notebooks]'); "
            "outside Jupyter use `grokinterp report RUN --out report.html`"
        ) from e

    epochs = ex.epochs
    slider = w.SelectionSlider(
        options=[(str(e), i) for i, e in enumerate(epochs)],
        value=len(epochs) - 1,
        description="epoch",
        continuous_update=False,
        layout=w.Layout(width="70%"),
        style={"description_width": "initial"},
    )
    play = w.Play(min=0, max=len(epochs) - 1, step=1, interval=1500, value=len(epochs) - 1)
    w.jslink((play, "value"), (slider, "index"))
    info = w.HTML()
    notes = w.HTML("<br>".join(f"<i>{n}</i>" for n in ex.notes))
    names = ex.panel_names()
    captions = ex.captions()
    outs = {n: w.Output() for n in names}

    def render(i: int) -> None:
        epoch = epochs[i]
        info.value = f"<b>checkpoint {i + 1}/{len(epochs)}</b> · {summary_text(ex, epoch)}"
        figs = ex.figures(epoch)
        for n, out in outs.items():
            # Set the Output widget's state rather than capturing with `with out:`: no output
            # redirection (which races in nbclient and in callbacks), one state update per panel.
            out.outputs = (_display_data(figs[n]),) if n in figs else ()

    slider.observe(lambda ch: render(ch["new"]), names="value")
    render(slider.value)
    boxes = [w.VBox([w.HTML(f"<b>{captions[n]}</b>"), outs[n]]) for n in names]
    return w.VBox([w.HBox([play, slider]), info, notes, *boxes])


def explore(run: Run | str | Path, *, layer: int | None = None) -> Explorer:
    """A checkpoint explorer for ``run`` (a ``Run`` or a run directory): in Jupyter, the returned
    ``Explorer`` displays as a slider over the checkpoints that redraws the embedding spectrum,
    the neuron clusters and heatmaps, the attention and a cursor on the progress-measure curves.
    ``layer``: the MLP layer of the neuron panels."""
    return Explorer(run, layer=layer)


def use_static_images(enable: bool = True) -> str:
    """Make plotly figures in a notebook store a static PNG beside the interactive figure, so the
    saved notebook renders where no JavaScript runs (a repository viewer, a PDF export).

    With a Chromium (``export.find_browser``) and ``enable``: one persistent kaleido browser (local
    MathJax or none, never a CDN) and the renderer "plotly_mimetype+png"; otherwise
    "plotly_mimetype". Returns the renderer set."""
    import plotly.io as pio

    from grokinterp.viz.export import find_browser, find_mathjax

    browser = find_browser() if enable else None
    if browser is None:
        if enable:
            log.warning("no Chromium found: figures are stored without a static image")
        pio.renderers.default = "plotly_mimetype"
        return pio.renderers.default
    import warnings

    import kaleido

    # plotly passes its (empty) kaleido options on every figure; the server has its own.
    warnings.filterwarnings("ignore", message="The kopts argument is ignored if using a server")
    mathjax = find_mathjax()
    kaleido.start_sync_server(path=browser, mathjax=mathjax.as_uri() if mathjax else False, silence_warnings=True)
    pio.renderers.default = "plotly_mimetype+png"
    return pio.renderers.default

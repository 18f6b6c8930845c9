"""What the figures of one checkpoint draw, computed in one place.

The batch figures (``grokinterp.viz.make_all_figures``) and the checkpoint explorer
(``grokinterp.viz.explorer``) draw the same per-checkpoint arrays: the embedding and W_L spectra in
the task's Fourier basis, the neuron-frequency clusters of one MLP layer, the activations of its
neurons over the task grid and the attention from the last token ("=") to every position, for
every layer and head (``attention_from_last``). ``checkpoint_view`` computes them for
one model (one forward pass for the clusters and the activations) and returns a frozen
``CheckpointView``; the figure functions only draw it. ``embedding_spectrum_over_training`` reads
the W_E spectrum of every checkpoint of a run (the over-training heatmap).

>>> run = grokinterp.load_run("checkpoints/nanda-p113")
>>> view = checkpoint_view(run.model(), run.dataset, view_settings(run))
>>> view.clusters.cluster_sizes(), view.attention.shape  # (layers, heads, positions, p, p)

``ensure_analysed`` is the batch decision the figure writers share: analyse a run (``analyze_run``)
before drawing it when it has no measures.csv, or when the run went on after its last analysis.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor, nn

from grokinterp.analysis.attention import has_attention
from grokinterp.analysis.bases import TaskBasis, task_basis, task_grid
from grokinterp.analysis.clusters import DEFAULT_THRESHOLD, NeuronClusters, best_layer
from grokinterp.analysis.fourier import basis_names
from grokinterp.analysis.measures import layer_clusters
from grokinterp.analysis.neuron_fourier import FourierTerms, fourier_terms
from grokinterp.analysis.run_analysis import Analysis, analyze_run
from grokinterp.analysis.spectra import embedding_freq_norms, embedding_spectrum, wl_spectrum
from grokinterp.forward import FinalCache, final_position_cache
from grokinterp.tasks import Dataset

if TYPE_CHECKING:
    from grokinterp.io.runs import Run

__all__ = [
    "MAX_TERM_FREQS",
    "CheckpointView",
    "SpectrumOverTraining",
    "ViewSettings",
    "attention_from_last",
    "checkpoint_view",
    "embedding_spectrum_over_training",
    "ensure_analysed",
    "position_labels",
    "term_freqs",
    "view_settings",
]

#: At most this many frequencies get their own rows in the neuron Fourier terms (the rest: "other").
MAX_TERM_FREQS = 8

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViewSettings:
    """What the views of every checkpoint of a run share: the task's ``basis``, the run's
    ``key_freqs`` and cluster ``threshold`` (analysis.json; none and ``DEFAULT_THRESHOLD`` for a
    run not analysed), the MLP ``layer`` of the neuron arrays (None: the layer with the most
    neurons explained at each checkpoint) and the names of the grid's axes (``("a", "b")`` for
    addition, ``("φa", "φb")`` otherwise)."""

    basis: TaskBasis
    key_freqs: tuple[int, ...]
    threshold: float
    layer: int | None
    axis_names: tuple[str, str]


def view_settings(run: Run, layer: int | None = None) -> ViewSettings:
    """The ``ViewSettings`` of ``run``: ``layer`` if given, else the layer of the run's key
    frequencies (analysis.json), else None."""
    dataset = run.dataset
    analysis = Analysis.load(run.path)
    kf = None if analysis is None else analysis.key_frequencies
    if layer is None and kf is not None and kf.layer is not None:
        layer = kf.layer
    return ViewSettings(
        basis=task_basis(dataset.op, dataset.p),
        key_freqs=() if analysis is None else tuple(analysis.key_freqs),
        threshold=DEFAULT_THRESHOLD if analysis is None else analysis.threshold,
        layer=layer,
        axis_names=("a", "b") if dataset.op == "add" else ("φa", "φb"),
    )


@dataclass(frozen=True)
class CheckpointView:
    """The arrays the figures of one checkpoint draw; None where they are not defined or were not
    asked for.

    ``basis_names``: the names of the Fourier components (``fourier.basis_names``);
    ``embedding_spectrum`` / ``wl_spectrum``: the norm of each component of W_E and of
    W_L = W_out W_U (``spectra``); ``layer``: the MLP layer of ``clusters`` (its neuron-frequency
    clusters) and ``neuron_acts`` (its post-activations over the task grid, (m, m, d_mlp));
    ``attention``: the attention from the last position to every position, per layer and head,
    (layers, heads, positions, p, p) over the (a, b) grid (``attention_from_last``), with
    ``positions`` the token label of each position (``position_labels``); ``attention_to_a``:
    its layer-0 share on a, (heads, p, p). None for a model without attention. ``neuron_terms``:
    the energy of each neuron of ``layer`` in the 2D Fourier terms of ``term_freqs``
    (``neuron_fourier.fourier_terms``, centred; (t, t, d_mlp))."""

    settings: ViewSettings
    basis_names: tuple[str, ...] | None = None
    embedding_spectrum: tuple[float, ...] | None = None
    wl_spectrum: tuple[float, ...] | None = None
    layer: int | None = None
    clusters: NeuronClusters | None = None
    neuron_acts: Float[Tensor, "m m d_mlp"] | None = None
    neuron_terms: FourierTerms | None = None
    attention_to_a: Float[Tensor, "heads p p"] | None = None
    attention: Float[Tensor, "layers heads pos p p"] | None = None
    positions: tuple[str, ...] = ()

    @property
    def fourier(self) -> bool:
        """Whether the Fourier arrays (spectra, clusters, neuron activations) were computed."""
        return self.clusters is not None


def checkpoint_view(
    model: nn.Module, dataset: Dataset, settings: ViewSettings, *, fourier: bool = True
) -> CheckpointView:
    """The ``CheckpointView`` of ``model`` on ``dataset``: the Fourier arrays when the task has a
    basis and ``fourier`` is True (one forward pass for the clusters of every layer and the
    activations of ``settings.layer``, default the layer with the most neurons explained), and
    the attention when the model has attention."""
    arrays = {}
    cache = None
    with torch.no_grad():
        basis = settings.basis
        if fourier and basis.defined:
            cache = final_position_cache(model, dataset.tokens)  # one forward pass for all
            layers = layer_clusters(model, dataset, settings.threshold, cache=cache)
            layer = best_layer(layers) if settings.layer is None else settings.layer
            grid = task_grid(dataset)  # = measures.neuron_acts(model, dataset, layer), from the same pass
            acts = grid.values(cache.posts[layer]).reshape(grid.m, grid.m, -1)
            arrays = dict(
                basis_names=tuple(basis_names(basis.m)),
                embedding_spectrum=tuple(embedding_spectrum(model, basis).cpu().tolist()),
                wl_spectrum=tuple(wl_spectrum(model, basis).cpu().tolist()),
                layer=layer,
                clusters=layers[layer],
                neuron_acts=acts,
                neuron_terms=fourier_terms(acts, term_freqs(settings.key_freqs, layers[layer])),
            )
        if has_attention(model):
            att = attention_from_last(model, dataset, cache=cache)
            arrays.update(attention=att, attention_to_a=att[0, :, 0], positions=position_labels(dataset.layout))
    return CheckpointView(settings, **arrays)


def term_freqs(key_freqs: Sequence[int], clusters: NeuronClusters, limit: int = MAX_TERM_FREQS) -> list[int]:
    """The frequencies the neuron Fourier terms list (in increasing order): the run's key
    frequencies and those of the checkpoint's clusters, the largest clusters first where there are
    more than ``limit``."""
    sizes = clusters.cluster_sizes()
    by_size = sorted((k for k in sizes if k >= 0), key=lambda k: (-sizes[k], k))
    chosen = list(dict.fromkeys([*map(int, key_freqs), *by_size]))[:limit]
    return sorted(chosen)


@dataclass(frozen=True)
class SpectrumOverTraining:
    """The strength of each frequency k = 1..m//2 of W_E (``spectra.embedding_freq_norms``, in the
    task's basis) at every checkpoint: ``norms`` (checkpoints, m//2), rows in ``epochs`` order."""

    epochs: tuple[int, ...]
    norms: Float[Tensor, "checkpoints k"]


def embedding_spectrum_over_training(run: Run, epochs: Sequence[int] | None = None) -> SpectrumOverTraining:
    """The W_E frequency norms of ``run`` at ``epochs`` (default: every checkpoint): loads each
    checkpoint's weights on the CPU. Raises ``ValueError`` with the reason when the task has no
    Fourier basis."""
    basis = task_basis(run.dataset.op, run.dataset.p)
    if not basis.defined:
        raise ValueError(f"no Fourier basis for op {run.dataset.op!r} at p={run.dataset.p}: {basis.reason}")
    epochs = tuple(run.checkpoint_epochs if epochs is None else (int(e) for e in epochs))
    with torch.no_grad():
        rows = [embedding_freq_norms(run.model(e), basis).double().cpu() for e in epochs]
    return SpectrumOverTraining(epochs, torch.stack(rows))


def position_labels(layout: str) -> tuple[str, ...]:
    """The token label of each position of a token layout: ``("a", "b", "=")`` for "a b =",
    ``("a", "op", "b", "=")`` for "a op b =" (the layout's own words, so a new layout names its
    positions)."""
    return tuple(layout.split())


@torch.no_grad()
def attention_from_last(
    model: nn.Module, dataset: Dataset, *, cache: FinalCache | None = None
) -> Float[Tensor, "layers heads pos p p"]:
    """The attention paid by the last position to every position (itself included), per layer and
    head, over the (a, b) grid: shape (n_layers, n_heads, n_ctx, p, p), float32 on the CPU; pairs
    missing from the dataset (b = 0 for ``div``) are NaN. Each (layer, head, a, b) sums to 1 over
    the positions (the demo's ``cache["pattern", layer][:, :, -1, :]``). ``cache``: the model's
    ``final_position_cache`` on every row of ``dataset`` when the caller has it (default: one
    forward pass here)."""
    if not has_attention(model):
        raise ValueError("attention_from_last needs a transformer; GrokMLP has no attention")
    cache = cache if cache is not None else final_position_cache(model, dataset.tokens)
    pat = torch.stack(cache.patterns, 1).float().cpu()  # (rows, layers, heads, pos)
    p = dataset.p
    full = pat.new_full((p * p, *pat.shape[1:]), float("nan"))
    full[dataset.a * p + dataset.b] = pat
    return full.reshape(p, p, *pat.shape[1:]).permute(2, 3, 4, 0, 1).contiguous()


def ensure_analysed(run: Run, *, stale: bool = True) -> bool:
    """Analyse ``run`` (``analyze_run``: measures.csv and analysis.json) before its figures are
    drawn, and return whether it did: when it has no measures.csv, or, with ``stale``, when the
    run went on after its last analysis (``Run.stale_reason``; one warning), so that no figure
    draws stale measures."""
    if stale:
        if (reason := run.stale_reason) is None:
            return False
        log.warning("%s: %s; analysing the run first", run.path, reason)
    else:
        if run.measures is not None:
            return False
        log.info("%s: no measures.csv; analysing the run first", run.path)
    analyze_run(run.path, progress=False)
    return True

"""Every progress measure of one model: the orchestrator ``compute_all_measures`` and the public
names of the measure modules (re-exported here so notebooks keep working).

The measures are those of Nanda et al. 2023 ("Progress measures for grokking via mechanistic
interpretability", arXiv 2301.05217) and of the TransformerLens Grokking demo, defined in
docs/measures.md, and live in one module per concept:

- ``grokinterp.analysis.bases``: the Fourier basis of each task (Z_p, Z_{p-1} through the discrete
  log, ...) and the (phi_a, phi_b) grid; a task without one gets no Fourier measure, with the reason;
- ``grokinterp.forward``: the forward passes (``final_position_cache``, ``all_logits``);
- ``grokinterp.analysis.spectra``: W_E and W_L spectra, Gini coefficients, weight norms;
- ``grokinterp.analysis.clusters``: neuron-frequency clustering of every MLP layer, key-frequency
  rules;
- ``grokinterp.analysis.ablations``: restricted / excluded loss (logit and neuron level, per
  frequency) and the cos(w(phi_a + phi_b - phi_c)) coefficients;
- ``grokinterp.analysis.attention``: attention from "=" to a and b.

Every Fourier measure is computed in the task's own basis or is NaN (not defined); the reason is
``task_basis(op, p).reason``. Plain losses and accuracies always use every row of the dataset.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor, nn

from grokinterp.analysis.ablations import (
    GridLogits,
    GridNeurons,
    Split,
    cos_apb_minus_c_amplitudes,
    cos_apb_minus_c_coefficients,
    cos_apb_minus_c_norm,
    cosine_similarity_to_cos_apb_minus_c,
    excluded_loss,
    excluded_loss_neuron,
    grid_logits,
    per_frequency_excluded_loss,
    restricted_loss,
    restricted_loss_neuron,
    restricted_losses,
)
from grokinterp.analysis.attention import attention_to_a_b, has_attention
from grokinterp.analysis.bases import task_basis, task_grid
from grokinterp.analysis.clusters import (
    DEFAULT_THRESHOLD,
    KeyFrequencies,
    KeyRule,
    NeuronClusters,
    auto_key_rule,
    best_layer,
    clusters_and_apb,
    embedding_key_frequencies,
    fraction_neurons_explained,
    key_frequencies,
    logit_key_frequencies,
    neuron_frequency_clusters,
)
from grokinterp.analysis.spectra import (
    W_L,
    embedding_freq_norms,
    embedding_spectrum,
    gini,
    gini_W_E,
    gini_W_L,
    sum_squared_weights,
    wl_freq_norms,
    wl_spectrum,
)
from grokinterp.forward import FinalCache, all_logits, final_position_cache, split_metrics
from grokinterp.tasks import Dataset

__all__ = [
    "DEFAULT_THRESHOLD",
    "FOURIER_MEASURES",
    "W_L",
    "FinalCache",
    "GridLogits",
    "GridNeurons",
    "KeyFrequencies",
    "NeuronClusters",
    "Split",
    "all_logits",
    "attention_to_a_b",
    "compute_all_measures",
    "cos_apb_minus_c_amplitudes",
    "cos_apb_minus_c_coefficients",
    "cos_apb_minus_c_norm",
    "cosine_similarity_to_cos_apb_minus_c",
    "embedding_freq_norms",
    "embedding_spectrum",
    "excluded_loss",
    "excluded_loss_neuron",
    "final_position_cache",
    "fraction_neurons_explained",
    "gini",
    "gini_W_E",
    "gini_W_L",
    "grid_logits",
    "key_frequencies",
    "layer_clusters",
    "loss_and_accuracy",
    "neuron_acts",
    "neuron_frequency_clusters",
    "per_frequency_excluded_loss",
    "restricted_loss",
    "restricted_loss_neuron",
    "select_key_frequencies",
    "sum_squared_weights",
    "wl_freq_norms",
    "wl_spectrum",
]

#: Scalar columns that are Fourier measures: NaN (not defined) for a task without a basis.
FOURIER_MEASURES = (
    "gini_W_E",
    "gini_W_L",
    "frac_neurons_explained",
    "restricted_loss",
    "restricted_loss_train",
    "excluded_loss",
    "restricted_loss_neuron",
    "excluded_loss_neuron",
    "cos_sim_cos_apb_c",
    "n_key_freqs",
)


@torch.no_grad()
def neuron_acts(model: nn.Module, dataset: Dataset, layer: int = -1) -> Float[Tensor, "m m d_mlp"]:
    """Post-activation neurons of MLP layer ``layer`` (default the last) at the final position on
    the task grid: shape (m, m, d_mlp), cell (phi_a, phi_b) (for addition the (a, b) grid, as the
    demo's ``cache["post", 0, "mlp"][:, -1, :]``). Hooks the caller attached are honoured."""
    grid = task_grid(dataset)
    cache = final_position_cache(model, dataset.tokens)
    post = cache.posts[layer]
    return grid.values(post).reshape(grid.m, grid.m, -1)


def loss_and_accuracy(logits: Float[Tensor, "n p"], dataset: Dataset) -> dict[str, float]:
    """float64 cross-entropy and accuracy on the train split, the test split and all rows (the
    paper's loss curves): keys ``{train,test,all}_{loss,acc}``. Every row of the dataset counts."""
    logits = logits.reshape(len(dataset.labels), -1)[:, : dataset.p]
    splits = {"train": dataset.train_indices, "test": dataset.test_indices, "all": None}
    return split_metrics(logits, dataset.labels.to(logits.device), splits)


def layer_clusters(
    model: nn.Module, dataset: Dataset, threshold: float = DEFAULT_THRESHOLD, *, cache: FinalCache | None = None
) -> list[NeuronClusters]:
    """Neuron-frequency clusters of every MLP layer on the task grid (``ValueError`` with the reason
    for a task without a basis)."""
    grid = task_grid(dataset)
    cache = cache or final_position_cache(model, dataset.tokens)
    m = grid.m
    return [
        clusters_and_apb(grid.values(post).reshape(m, m, -1), threshold, i)[0]  # as compute_all_measures
        for i, post in enumerate(cache.posts)
    ]


def select_key_frequencies(
    model: nn.Module,
    dataset: Dataset,
    *,
    rule: KeyRule = "auto",
    layer: int | None = None,
    given: Sequence[int] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    layers: list[NeuronClusters] | None = None,
) -> tuple[KeyFrequencies, dict[str, KeyFrequencies], list[NeuronClusters]]:
    """Key frequencies of a model by ``rule`` ("given" when ``given`` is passed), the keys of every
    rule, and the clusters of every layer. ``layer``: the layer of the neuron rules (default the
    one with the most neurons explained). ``rule="auto"``: the rule of the model's architecture
    (``clusters.auto_key_rule``: "logits" for a transformer with two or more layers, else
    "clustered")."""
    basis = task_basis(dataset.op, dataset.p)
    if not basis.defined:
        raise ValueError(f"no key frequencies for op {dataset.op!r} at p={dataset.p}: {basis.reason}")
    layers = layers if layers is not None else layer_clusters(model, dataset, threshold)
    n = len(layers)
    if layer is not None and not -n <= layer < n:
        raise ValueError(f"layer {layer} does not exist: the model has {n} MLP layer(s) (0..{n - 1})")
    L = best_layer(layers) if layer is None else layer % n
    cl = layers[L]
    keys_c = cl.key_freqs
    n_c = int(torch.isin(cl.labels, torch.tensor(keys_c, dtype=torch.int64)).sum()) if keys_c else 0
    keys_p = cl.key_freqs_paper_code
    n_p = int(torch.isin(cl.best_freq, torch.tensor(keys_p, dtype=torch.int64)).sum()) if keys_p else 0
    keys_e, note_e = embedding_key_frequencies(embedding_freq_norms(model, basis))
    keys_l, note_l = logit_key_frequencies(logit_frequency_energy(model, dataset))
    by_rule = {
        "clustered": KeyFrequencies(tuple(keys_c), "clustered", basis.name, L, n_c, cl.d_mlp),
        "paper_code": KeyFrequencies(tuple(keys_p), "paper_code", basis.name, L, n_p, cl.d_mlp),
        "embedding": KeyFrequencies(tuple(keys_e), "embedding", basis.name, note=note_e),
        "logits": KeyFrequencies(tuple(keys_l), "logits", basis.name, note=note_l),
    }
    if not keys_c:
        by_rule["clustered"] = KeyFrequencies(
            (), "clustered", basis.name, L, 0, cl.d_mlp, note=f"no neuron of layer {L} explained at {threshold:g}"
        )
    if given is not None:
        keys_g = sorted({int(k) for k in given})
        for k in keys_g:
            if not 1 <= k <= basis.n_freqs:
                raise ValueError(f"key frequency {k} is outside 1..{basis.n_freqs} for {basis.name}")
        chosen = KeyFrequencies(tuple(keys_g), "given", basis.name)
        by_rule["given"] = chosen
    else:
        if rule == "auto":
            rule = auto_key_rule("transformer" if has_attention(model) else "mlp", n)[0]
        if rule not in by_rule:
            raise ValueError(f"rule must be auto or one of {', '.join(by_rule)} (got {rule!r})")
        chosen = by_rule[rule]
    return chosen, by_rule, layers


@torch.no_grad()
def logit_frequency_energy(source: nn.Module | Float[Tensor, "n p"], dataset: Dataset) -> Float[Tensor, " k"]:
    """Energy of each frequency k = 1..m//2 in the logits' (u+v) coefficients, summed over answer
    classes (the input of the ``logits`` key rule). ``source``: a model or its (n, p) logits."""
    logits = final_position_cache(source, dataset.tokens).logits if isinstance(source, nn.Module) else source
    G = grid_logits(logits, dataset)
    C = G.C.to(torch.float64)
    m = C.shape[0]
    rows = C.pow(2).sum(-1)
    return torch.stack([rows[2 * k - 1] + (rows[2 * k] if 2 * k < m else 0.0) for k in range(1, m // 2 + 1)])


def _not_defined(out: dict) -> dict:
    """``out`` with every Fourier measure NaN and the key lists empty (a task without a basis)."""
    nan = float("nan")
    out.update(dict.fromkeys(FOURIER_MEASURES, nan))
    out.update(key_freqs=[], key_freqs_clustered=[], key_freqs_paper_code=[], cos_apb_c_coeffs=[])
    return out


@torch.no_grad()
def compute_all_measures(
    model: nn.Module,
    dataset: Dataset,
    key_freqs: Sequence[int] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    fast: bool = True,
    layer: int | None = None,
    cache: FinalCache | None = None,
) -> dict[str, float | list]:
    """Every scalar progress measure of one model from a single forward pass, as a flat dict:

    - ``{train,test,all}_{loss,acc}`` (every row) and ``sum_sq_weights``: always defined;
    - in the task's basis (NaN, lists empty, no per-frequency keys, when the task has none):
      ``restricted_loss`` (logit level, all rows of the grid; paper), ``restricted_loss_train``,
      ``excluded_loss`` (logit level, train), ``excluded_loss_k{k}`` for every k = 1..m//2,
      ``restricted_loss_neuron`` (test) and ``excluded_loss_neuron`` (train) of the last MLP layer
      (the demo's variants), ``gini_W_E``, ``gini_W_L``, ``frac_neurons_explained`` (of ``layer``)
      and ``frac_neurons_explained_l{i}`` for every MLP layer, ``cos_sim_cos_apb_c`` and
      ``cos_apb_c_coeffs`` (one per key);
    - ``key_freqs`` used (``key_freqs`` if given, else the clustered keys of ``layer``),
      ``key_freqs_clustered``, ``key_freqs_paper_code`` (of ``layer``), ``n_key_freqs``.

    ``layer``: the MLP layer whose clusters give ``frac_neurons_explained`` and the default keys
    (default: the layer with the most neurons explained). ``fast=False`` uses ``run_with_cache``.
    ``cache``: the model's ``final_position_cache`` on every row of ``dataset`` when the caller has
    it (``analyze_run`` shares its one forward with the clock/pizza measures).
    """
    cache = cache if cache is not None else final_position_cache(model, dataset.tokens, fast=fast)
    out: dict[str, float | list] = dict(loss_and_accuracy(cache.logits, dataset))
    out["sum_sq_weights"] = sum_squared_weights(model)[0]
    basis = task_basis(dataset.op, dataset.p)
    if not basis.defined:
        return _not_defined(out)
    grid = task_grid(dataset)
    m, K = grid.m, basis.n_freqs
    out["gini_W_E"] = gini_W_E(model, basis)
    out["gini_W_L"] = gini_W_L(model, basis)

    # Neurons of every layer on the grid: frequency energies and (u+v) coefficients.
    layers, coefs = [], []
    for i, post in enumerate(cache.posts):
        on_grid = grid.values(post)
        post_mean = on_grid.mean(0)  # float32: a float64 copy (or accumulator) costs 15x more
        cl, apb = clusters_and_apb(on_grid.reshape(m, m, -1), threshold, i, mean=post_mean)
        layers.append(cl)
        coefs.append(apb)
    n = len(layers)
    L_sel = best_layer(layers) if layer is None else layer % n
    chosen = layers[L_sel]
    keys = chosen.key_freqs if key_freqs is None else sorted({int(k) for k in key_freqs})
    for k in keys:
        if not 1 <= k <= K:
            raise ValueError(f"key frequency {k} is outside 1..{K} for {basis.name}")
    out["frac_neurons_explained"] = chosen.frac_explained
    out.update({f"frac_neurons_explained_l{i}": cl.frac_explained for i, cl in enumerate(layers)})
    out["key_freqs"] = keys
    out["key_freqs_clustered"] = chosen.key_freqs
    out["key_freqs_paper_code"] = chosen.key_freqs_paper_code
    out["n_key_freqs"] = len(keys)  # an int (NaN only where the task has no basis)

    per_k_only = not keys  # with no key frequencies there is nothing to restrict to or exclude
    # Logit level (paper), from the logits on the grid.
    G = grid_logits(cache.logits, dataset)
    both = restricted_losses(G, dataset, keys, ("all", "train"))
    out["restricted_loss"], out["restricted_loss_train"] = both["all"], both["train"]
    out["excluded_loss"] = excluded_loss(G, dataset, keys)
    per_k = per_frequency_excluded_loss(G, dataset)
    out.update({f"excluded_loss_k{k}": float(per_k[k - 1]) for k in range(1, K + 1)})

    # Neuron level (demo), last MLP layer, from the clustering's (u+v) coefficients: centring does
    # not change the (u+v) coefficients of k >= 1.
    # post_mean: the last layer's, from the loop above.
    resid = None if cache.resid_post is None else grid.values(cache.resid_post)
    neurons = GridNeurons(G, post_mean.to(torch.float64), coefs[-1].to(torch.float64), resid)
    out["restricted_loss_neuron"] = restricted_loss_neuron(model, dataset, keys, split="test", neurons=neurons)
    out["excluded_loss_neuron"] = excluded_loss_neuron(model, dataset, keys, split="train", neurons=neurons)

    # Fig. 11.
    out["cos_sim_cos_apb_c"] = cosine_similarity_to_cos_apb_minus_c(G, dataset, keys)
    out["cos_apb_c_coeffs"] = [float(c) for c in cos_apb_minus_c_coefficients(G, dataset, keys)]
    if per_k_only:
        out.update(dict.fromkeys(KEY_MEASURES, float("nan")))
    return out


#: Measures that need key frequencies: not defined (NaN) when a rule finds none.
KEY_MEASURES = (
    "restricted_loss", "restricted_loss_train", "excluded_loss", "restricted_loss_neuron", "excluded_loss_neuron",
    "cos_sim_cos_apb_c",
)  # fmt: skip

"""Interventions on a checkpoint, each measured with the one evaluator (``grokinterp.forward.evaluate``).

Every operation attaches forward hooks (TransformerLens hook points: ``hook_embed``,
``blocks.{i}.mlp.hook_post``; for the logits a forward hook on the model itself), evaluates the
model with them attached and removes them. The fused forward of ``grokinterp.forward`` falls back to
the hooked forward whenever hooks are attached, so the numbers are those of the intervened model. It
works on every architecture grokinterp trains: 1-layer and multi-layer ``HookedTransformer``, the
``GrokMLP``, and the pizza models with an attention rate (whose ``AttentionRate`` hooks stay).

Operations (docs/measures.md, "Interventions"):

- ``remove_frequencies`` / ``keep_frequencies`` at ``site`` "embed" (rows of W_E), "neurons"
  (``blocks.{layer}.mlp.hook_post`` over the task grid, every position) or "logits" (final position
  over the task grid). Frequencies are those of the task's basis (``grokinterp.analysis.bases``: the
  additive Z_p for add/sub, Z_(p-1) through the discrete log for mul/div); a task without a basis
  raises ``ValueError`` with the reason. "embed" projects W_E as a function of phi_a(token) onto
  the constant and the kept frequencies (cos k, sin k). "neurons" and "logits" project a function
  of the cell (u, v) = (phi_a(a), phi_b(b)) onto the 2D Fourier terms whose two frequencies are
  each 0 or kept (constant, cos/sin k u, cos/sin k v, and the products of frequency k in u and
  frequency k' in v for kept k, k'). Rows off the grid (a = 0 for mul) keep their values. Removing
  a set is keeping its complement; the constant is always kept.
- ``ablate_neurons`` / ``ablate_cluster``: zero or mean (over every input) ablation of neurons.
- ``replace_mlp_with_key_frequencies``: the neurons of a layer replaced by their projection onto
  the key frequencies' 2D Fourier terms (``keep_frequencies`` at "neurons").
- ``direct_logit_attribution``: each cluster's neurons' direct contribution to the correct logit
  through ``W_out @ W_U`` (layer norms ignored, as in ``spectra.W_L``).
- ``neuron_decomposition``: each neuron's quadratic Fourier terms in one frequency (constant,
  cos wa, sin wa, cos wb, sin wb, cos wa cos wb, cos wa sin wb, sin wa cos wb, sin wa sin wb) and
  the fraction of the neuron's variance each explains (Nanda et al. 2023, Sec. 4.2).

``intervened(model, hooks)`` is the context manager the operations use: a hook function gets the
activation and the input tokens of the batch, so hooks can depend on the input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from grokinterp.analysis.bases import TaskBasis, TaskGrid, task_basis, task_grid
from grokinterp.analysis.clusters import NeuronClusters
from grokinterp.analysis.fourier import fourier_basis, freq_rows
from grokinterp.backend import hook_points
from grokinterp.forward import evaluate, final_position_cache, mlp_hook_names
from grokinterp.tasks import Dataset

__all__ = [
    "TERMS",
    "ClusterAttribution",
    "HookFn",
    "InterventionResult",
    "Metrics",
    "NeuronDecomposition",
    "Site",
    "ablate_cluster",
    "ablate_neurons",
    "direct_logit_attribution",
    "intervened",
    "keep_frequencies",
    "measure",
    "neuron_decomposition",
    "remove_frequencies",
    "replace_mlp_with_key_frequencies",
]

#: Where a frequency intervention acts: W_E rows, an MLP layer's neurons, or the logits.
Site = Literal["embed", "neurons", "logits"]
#: A hook: (activation, input tokens of the batch) -> the new activation.
HookFn = Callable[[Tensor, Tensor], Tensor]
#: The pseudo hook name of the model's output (the logits).
LOGITS = "logits"


# ---------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Metrics:
    """Loss (float64 cross-entropy, or the run's loss) and accuracy on the train and test splits."""

    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> Metrics:
        """From ``evaluate``'s dict (keys ``{train,test}_{loss,acc}``)."""
        return cls(d["train_loss"], d["train_acc"], d["test_loss"], d["test_acc"])

    def __sub__(self, other: Metrics) -> Metrics:
        return Metrics(
            *(getattr(self, f) - getattr(other, f) for f in ("train_loss", "train_acc", "test_loss", "test_acc"))
        )


@dataclass(frozen=True)
class InterventionResult:
    """What an intervention did: its description, the model's metrics ``before`` (no hooks) and
    ``after`` (hooks attached), and ``change`` = after - before."""

    intervention: str
    before: Metrics
    after: Metrics

    @property
    def change(self) -> Metrics:
        """after - before, field by field (a loss increase is positive)."""
        return self.after - self.before

    def __str__(self) -> str:
        b, a = self.before, self.after
        return (
            f"{self.intervention}: test loss {b.test_loss:.4g} -> {a.test_loss:.4g}, "
            f"test acc {b.test_acc:.3f} -> {a.test_acc:.3f}, train loss {b.train_loss:.4g} -> {a.train_loss:.4g}"
        )


@dataclass(frozen=True)
class ClusterAttribution:
    """Direct logit attribution of one MLP layer by neuron cluster.

    ``per_cluster`` maps a cluster label (its frequency k; -1 the unexplained neurons) to the mean
    over the rows of ``split`` of its neurons' direct contribution to the correct logit (with
    ``centred``: minus the mean contribution over all classes); ``total`` is the same for all
    neurons of the layer (the sum of ``per_cluster``); ``per_row`` (n_clusters, n_rows) the
    contributions row by row, in the order of ``labels``."""

    layer: int
    split: str
    centred: bool
    labels: tuple[int, ...]
    per_cluster: dict[int, float]
    total: float
    per_row: Float[Tensor, "clusters rows"]


@dataclass(frozen=True)
class NeuronDecomposition:
    """Neurons as quadratic Fourier terms of one frequency each on the task grid (cell (u, v)).

    ``terms`` the 8 non-constant terms (``TERMS``); ``coefficients`` (n, 8) each neuron's
    coefficient on the unit-norm grid function of each term; ``variance_explained`` (n, 8) the
    fraction of the neuron's variance (centred sum of squares over the grid) each term explains;
    ``constant`` (n,) the neuron's mean; ``total_explained`` (n,) the sum over the 8 terms (the
    rest is in other frequencies). A dead neuron (no variance) explains 0."""

    layer: int
    neurons: tuple[int, ...]
    freqs: tuple[int, ...]
    terms: tuple[str, ...]
    constant: Float[Tensor, " n"]
    coefficients: Float[Tensor, "n 8"]
    variance_explained: Float[Tensor, "n 8"]

    @property
    def total_explained(self) -> Float[Tensor, " n"]:
        """Fraction of each neuron's variance explained by its 8 terms together."""
        return self.variance_explained.sum(-1)


#: The 8 non-constant quadratic Fourier terms of one frequency, in the order of ``NeuronDecomposition``.
TERMS = (
    "cos wa", "sin wa", "cos wb", "sin wb", "cos wa cos wb", "cos wa sin wb", "sin wa cos wb", "sin wa sin wb",
)  # fmt: skip


# ------------------------------------------------------------------------------- hook machinery
@contextmanager
def intervened(model: nn.Module, hooks: Sequence[tuple[str, HookFn]]) -> Iterator[nn.Module]:
    """Attach ``hooks`` (hook point name or ``"logits"``, function of (activation, tokens)) for
    the duration of the block; they are removed afterwards, whatever happens. Other hooks of the
    model (the user's, the ``AttentionRate``) are left alone."""
    state: dict[str, Tensor] = {}

    def capture(module: nn.Module, args: tuple, kwargs: dict) -> None:
        state["tokens"] = args[0] if args else next(iter(kwargs.values()))

    modules = dict(model.named_modules()) | hook_points(model)
    handles = [model.register_forward_pre_hook(capture, with_kwargs=True)]
    try:
        for name, fn in hooks:
            if name != LOGITS and name not in modules:
                raise ValueError(f"the model has no hook point {name!r}")
            module = model if name == LOGITS else modules[name]
            handles.append(module.register_forward_hook(lambda mod, inp, out, fn=fn: fn(out, state["tokens"])))
        yield model
    finally:
        for h in handles:
            h.remove()


def _metrics(model: nn.Module, dataset: Dataset) -> Metrics:
    device = next(model.parameters()).device
    tokens, labels = dataset.tokens.to(device), dataset.labels.to(device)
    return Metrics.from_dict(evaluate(model, dataset, tokens=tokens, labels=labels))


def measure(model: nn.Module, dataset: Dataset, hooks: Sequence[tuple[str, HookFn]], name: str) -> InterventionResult:
    """Evaluate ``model`` on ``dataset`` without and with ``hooks`` (``intervened``)."""
    before = _metrics(model, dataset)
    with intervened(model, hooks):
        after = _metrics(model, dataset)
    return InterventionResult(name, before, after)


class _RowIndex:
    """Maps token rows of a batch to rows of the dataset (each row keyed by its tokens)."""

    def __init__(self, tokens: Int[Tensor, "n ctx"]) -> None:
        self.base = int(tokens.max()) + 1
        keys = self._keys(tokens)
        self.sorted, self.order = keys.sort()

    def _keys(self, tokens: Tensor) -> Tensor:
        powers = self.base ** torch.arange(tokens.shape[1], device=tokens.device, dtype=torch.int64)
        return (tokens.to(torch.int64) * powers).sum(-1)

    def __call__(self, tokens: Tensor) -> Tensor:
        keys = self._keys(tokens.cpu())
        pos = torch.searchsorted(self.sorted, keys).clamp_max(len(self.sorted) - 1)
        if not bool((self.sorted[pos] == keys).all()):
            raise ValueError("the intervention was computed for the dataset's inputs; this batch has other inputs")
        return self.order[pos]


def _replace_by_row(table: Tensor, dataset: Dataset, last_only: bool = False) -> HookFn:
    """A hook that replaces the activation of each input by ``table``'s row of that input (the
    final position only with ``last_only``)."""
    index = _RowIndex(dataset.tokens)

    def hook(act: Tensor, tokens: Tensor) -> Tensor:
        new = table[index(tokens).to(table.device)].to(act.dtype)
        if last_only:
            act = act.clone()
            act[:, -1] = new
            return act
        return new.reshape(act.shape)

    return hook


# ----------------------------------------------------------------------------- Fourier projection
def _basis_or_raise(dataset: Dataset) -> TaskBasis:
    basis = task_basis(dataset.op, dataset.p)
    if not basis.defined:
        raise ValueError(f"no frequencies for op {dataset.op!r} at p={dataset.p}: {basis.reason}")
    return basis


def _kept_rows(basis: TaskBasis, freqs: Sequence[int], keep: bool) -> Tensor:
    """Boolean (m,) over the rows of ``fourier_basis(m)``: the constant and the kept frequencies."""
    freqs = sorted({int(k) for k in freqs})
    for k in freqs:
        if not 1 <= k <= basis.n_freqs:
            raise ValueError(f"frequency {k} is outside 1..{basis.n_freqs} for {basis.name}")
    kept = set(freqs) if keep else set(range(1, basis.n_freqs + 1)) - set(freqs)
    rows = torch.zeros(basis.m, dtype=torch.bool)
    rows[0] = True
    for k in kept:
        rows[freq_rows(basis.m, k)] = True
    return rows


def _project_1d(x: Float[Tensor, "m d"], rows: Tensor) -> Tensor:
    F, _ = fourier_basis(x.shape[0], x.device, torch.float64)
    Fk = F[rows.to(x.device)]
    return Fk.T @ (Fk @ x.double())


def _project_grid(values: Float[Tensor, "n ..."], grid: TaskGrid, rows: Tensor) -> Tensor:
    """``values`` (dataset rows) with their grid function projected onto the 2D terms whose two
    frequencies are kept; rows off the grid unchanged; float64."""
    m = grid.m
    values = values.double()
    G = grid.values(values).reshape(m, m, -1)
    F, _ = fourier_basis(m, values.device, torch.float64)
    Fk = F[rows.to(values.device)]
    C = torch.einsum("uvd,iu,jv->ijd", G, Fk, Fk)
    delta = (torch.einsum("ijd,iu,jv->uvd", C, Fk, Fk) - G).reshape(m * m, *values.shape[1:])
    on = grid.cell >= 0
    out = values.clone()
    out[on.to(values.device)] += delta[grid.cell[on].to(values.device)]
    return out


@torch.no_grad()
def _clean_activations(model: nn.Module, dataset: Dataset, name: str) -> Tensor:
    """The activation ``name`` on every dataset row (all positions), without interventions."""
    device = next(model.parameters()).device
    parts = []
    for t in dataset.tokens.to(device).split(8192):
        _, cache = model.run_with_cache(t, names_filter=lambda n: n == name)
        parts.append(cache[name])
    return torch.cat(parts)


def _layer(model: nn.Module, layer: int) -> int:
    n = len(mlp_hook_names(model))
    if not -n <= layer < n:
        raise ValueError(f"layer {layer} does not exist: the model has {n} MLP layer(s) (0..{n - 1})")
    return layer % n


def _frequency_hooks(model: nn.Module, dataset: Dataset, freqs: Sequence[int], keep: bool, site: Site, layer: int):
    """The hook of a frequency intervention, and its description."""
    basis = _basis_or_raise(dataset)
    rows = _kept_rows(basis, freqs, keep)
    what = f"{'keep' if keep else 'remove'} frequencies {sorted({int(k) for k in freqs})}"
    if site == "embed":
        p = basis.p
        W_E = model.W_E.detach()
        E = W_E[:p].double()
        phi = basis.phi_a.to(E.device)
        on = phi >= 0
        cell = torch.zeros(basis.m, E.shape[1], dtype=torch.float64, device=E.device)
        cell.index_add_(0, phi[on], E[on])
        cnt = torch.bincount(phi[on], minlength=basis.m).double()
        hit = cnt > 0
        cell[hit] /= cnt[hit, None]
        if not hit.all():
            cell[~hit] = cell[hit].mean(0)
        delta = torch.zeros_like(W_E, dtype=torch.float64)
        delta[:p][on] = (_project_1d(cell, rows) - cell)[phi[on]]
        delta = delta.to(W_E.dtype)

        def embed_hook(act: Tensor, tokens: Tensor) -> Tensor:
            return act + delta[tokens[:, : act.shape[1]]]

        return [("hook_embed", embed_hook)], f"{what} in W_E"
    grid = task_grid(dataset)
    if site == "neurons":
        L = _layer(model, layer)
        name = mlp_hook_names(model)[L]
        table = _project_grid(_clean_activations(model, dataset, name), grid, rows)
        return [(name, _replace_by_row(table, dataset))], f"{what} in the neurons of layer {L}"
    if site == "logits":
        logits = final_position_cache(model, dataset.tokens).logits
        table = _project_grid(logits, grid, rows)
        return [(LOGITS, _replace_by_row(table, dataset, last_only=True))], f"{what} in the logits"
    raise ValueError(f"site must be 'embed', 'neurons' or 'logits' (got {site!r})")


def remove_frequencies(
    model: nn.Module, dataset: Dataset, freqs: Sequence[int], site: Site = "embed", *, layer: int = -1
) -> InterventionResult:
    """Remove the frequencies ``freqs`` of the task's basis at ``site`` (module docstring) and
    measure the model. ``layer``: the MLP layer for ``site="neurons"``."""
    hooks, name = _frequency_hooks(model, dataset, freqs, False, site, layer)
    return measure(model, dataset, hooks, name)


def keep_frequencies(
    model: nn.Module, dataset: Dataset, freqs: Sequence[int], site: Site = "embed", *, layer: int = -1
) -> InterventionResult:
    """Keep only the constant and the frequencies ``freqs`` at ``site`` and measure the model."""
    hooks, name = _frequency_hooks(model, dataset, freqs, True, site, layer)
    return measure(model, dataset, hooks, name)


def replace_mlp_with_key_frequencies(
    model: nn.Module, dataset: Dataset, key_freqs: Sequence[int] | None = None, *, layer: int = -1
) -> InterventionResult:
    """Replace the neurons of MLP ``layer`` by their projection onto the 2D Fourier terms of the
    key frequencies (default: the model's key frequencies, ``measures.select_key_frequencies``)."""
    if key_freqs is None:
        from grokinterp.analysis.measures import select_key_frequencies

        key_freqs = select_key_frequencies(model, dataset)[0].freqs
    hooks, _ = _frequency_hooks(model, dataset, key_freqs, True, "neurons", layer)
    L = _layer(model, layer)
    return measure(model, dataset, hooks, f"MLP layer {L} replaced by key frequencies {sorted(key_freqs)}")


# ------------------------------------------------------------------------------------- ablations
def ablate_neurons(
    model: nn.Module,
    dataset: Dataset,
    neurons: Sequence[int] | Tensor,
    method: Literal["zero", "mean"] = "zero",
    *,
    layer: int = -1,
) -> InterventionResult:
    """Zero or mean ablate ``neurons`` of MLP ``layer`` (mean: each neuron's mean over every input,
    per position) and measure the model."""
    L = _layer(model, layer)
    name = mlp_hook_names(model)[L]
    idx = torch.as_tensor(neurons, dtype=torch.int64).flatten()
    if method == "mean":
        value = _clean_activations(model, dataset, name).mean(0)[..., idx]
    elif method == "zero":
        value = None
    else:
        raise ValueError(f"method must be 'zero' or 'mean' (got {method!r})")

    def hook(act: Tensor, tokens: Tensor) -> Tensor:
        act = act.clone()
        act[..., idx.to(act.device)] = 0.0 if value is None else value.to(act)
        return act

    return measure(model, dataset, [(name, hook)], f"{method}-ablate {idx.numel()} neuron(s) of layer {L}")


def _layer_clusters(model: nn.Module, dataset: Dataset, layer: int) -> NeuronClusters:
    from grokinterp.analysis.measures import layer_clusters

    return layer_clusters(model, dataset)[layer]


def ablate_cluster(
    model: nn.Module,
    dataset: Dataset,
    freq: int,
    method: Literal["zero", "mean"] = "zero",
    *,
    layer: int = -1,
    clusters: NeuronClusters | None = None,
) -> InterventionResult:
    """Ablate the neurons of the cluster of frequency ``freq`` (-1: the unexplained neurons) of MLP
    ``layer`` (``clusters`` default: ``measures.layer_clusters``)."""
    L = _layer(model, layer)
    clusters = clusters if clusters is not None else _layer_clusters(model, dataset, L)
    idx = torch.nonzero(clusters.labels == int(freq)).flatten()
    if idx.numel() == 0:
        raise ValueError(f"no neuron of layer {L} in cluster {freq} (clusters: {clusters.cluster_sizes()})")
    out = ablate_neurons(model, dataset, idx, method, layer=L)
    return InterventionResult(
        f"{method}-ablate cluster {freq} ({idx.numel()} neurons) of layer {L}", out.before, out.after
    )


# ------------------------------------------------------------------------------ attribution
def _neuron_logit_map(model: nn.Module, layer: int) -> Tensor:
    """(d_mlp, d_vocab_out): the direct path of layer ``layer``'s neurons to the logits."""
    n = model.cfg.d_vocab_out
    mlp = model.blocks[layer].mlp
    if not hasattr(mlp, "W_out"):  # GrokMLP: only the last hidden layer reaches the logits directly
        if layer != len(model.blocks) - 1:
            raise ValueError(f"layer {layer} of the MLP model has no direct path to the logits (only the last)")
        return model.W_U.detach()[:, :n]
    return (mlp.W_out @ model.W_U).detach()[:, :n]


@torch.no_grad()
def direct_logit_attribution(
    model: nn.Module,
    dataset: Dataset,
    *,
    layer: int = -1,
    clusters: NeuronClusters | None = None,
    split: Literal["train", "test", "all"] = "all",
    centred: bool = False,
) -> ClusterAttribution:
    """Each neuron cluster's direct contribution to the correct logit (``ClusterAttribution``),
    through ``W_out @ W_U`` at the final position; layer norms are ignored."""
    L = _layer(model, layer)
    clusters = clusters if clusters is not None else _layer_clusters(model, dataset, L)
    post = final_position_cache(model, dataset.tokens).posts[L].double()
    WL = _neuron_logit_map(model, L).double().to(post.device)
    labels = dataset.labels.to(post.device)
    weight = WL[:, labels].T  # (n, d_mlp): each neuron's weight on the row's correct logit
    if centred:
        weight = weight - WL.mean(1)[None, :]
    contrib = post * weight  # (n, d_mlp)
    rows = {"all": slice(None), "train": dataset.train_indices, "test": dataset.test_indices}[split]
    contrib = contrib[rows]
    names = tuple(sorted({int(k) for k in clusters.labels.tolist()}))
    lab = clusters.labels.to(post.device)
    per_row = torch.stack([contrib[:, lab == k].sum(1) for k in names])
    per_cluster = {k: float(v) for k, v in zip(names, per_row.mean(1).tolist(), strict=True)}
    return ClusterAttribution(L, split, centred, names, per_cluster, float(contrib.sum(1).mean()), per_row)


# --------------------------------------------------------------------------------- decomposition
@torch.no_grad()
def neuron_decomposition(
    source: nn.Module | Float[Tensor, "m m d_mlp"],
    dataset: Dataset | None = None,
    *,
    neurons: Sequence[int] | None = None,
    freqs: int | Sequence[int] | None = None,
    layer: int = -1,
) -> NeuronDecomposition:
    """The quadratic Fourier terms of ``neurons`` (default: all) in frequency ``freqs`` (one for
    all, one per neuron, or default each neuron's best frequency) with the variance each explains.

    ``source``: a model (with ``dataset``; neurons of MLP ``layer`` on the task grid) or neuron
    activations already on the grid, (m, m, d_mlp) with cell (u, v)."""
    if isinstance(source, nn.Module):
        if dataset is None:
            raise ValueError("neuron_decomposition of a model needs its dataset")
        from grokinterp.analysis.measures import neuron_acts

        layer = _layer(source, layer)
        acts = neuron_acts(source, dataset, layer)
    else:
        acts = source
    if acts.ndim != 3 or acts.shape[0] != acts.shape[1]:
        raise ValueError(f"expected neuron activations (m, m, d_mlp), got {tuple(acts.shape)}")
    m = acts.shape[0]
    idx = list(range(acts.shape[-1])) if neurons is None else [int(n) for n in neurons]
    g = acts[..., idx].double()
    const = g.mean(dim=(0, 1))
    g = g - const
    total = g.pow(2).sum(dim=(0, 1))
    F, _ = fourier_basis(m, g.device, torch.float64)
    C = torch.einsum("uvn,iu,jv->ijn", g, F, F)  # 2D coefficients of every neuron
    if freqs is None:
        energy = torch.stack([_freq_energy(C, m, k) for k in range(1, m // 2 + 1)])  # (K, n)
        ks = (energy.argmax(0) + 1).tolist()
    elif isinstance(freqs, int):
        ks = [freqs] * len(idx)
    else:
        ks = [int(k) for k in freqs]
    if len(ks) != len(idx) or not all(1 <= k <= m // 2 for k in ks):
        raise ValueError(f"freqs must be one frequency in 1..{m // 2} or one per neuron (got {freqs!r})")
    coef = torch.zeros(len(idx), len(TERMS), dtype=torch.float64, device=g.device)
    for j, k in enumerate(ks):
        c, s = 2 * k - 1, (2 * k if 2 * k < m else None)  # the Nyquist frequency has no sine
        cells = [(c, 0), (s, 0), (0, c), (0, s), (c, c), (c, s), (s, c), (s, s)]
        for t, (i1, i2) in enumerate(cells):
            if i1 is not None and i2 is not None:
                coef[j, t] = C[i1, i2, j]
    alive = total > 0
    var = torch.where(alive[:, None], coef.pow(2) / total.clamp_min(1e-300)[:, None], 0.0)
    return NeuronDecomposition(layer, tuple(idx), tuple(ks), TERMS, const, coef, var)


def _freq_energy(C: Tensor, m: int, k: int) -> Tensor:
    """Energy (n,) of frequency k's terms of the 2D coefficients C (m, m, n)."""
    r = freq_rows(m, k)
    return C[r][:, [0, *r]].pow(2).sum((0, 1)) + C[0][r].pow(2).sum(0)

"""Progress measures of Nanda et al. 2023 ("Progress measures for grokking via mechanistic
interpretability", arXiv 2301.05217) and of the TransformerLens Grokking demo
(demos/Grokking_Demo.ipynb), as plain functions of a model, its logits or its activations.

The exact definitions are those of ``/work/shared/docs/progress-measures.md``; where the paper's
code and the demo differ, both variants are offered under different names:

- logit-level ``restricted_loss`` / ``excluded_loss`` (paper Sec. 5.1, the restricted and
  excluded loss panels of its progress-measure figure) project the (p*p, p) logits onto the
  cos/sin(w_k(a+b)) directions of the key frequencies;
- neuron-level ``restricted_loss_neuron`` / ``excluded_loss_neuron`` (demo, "Restricted Loss" and
  "Excluded Loss" cells) project the MLP neuron activations and map them through W_out and W_U.

Conventions: inputs are the p*p pairs in a-major order (row = a*p + b; the Fourier measures need a
full grid, so not ``div``), logits are at the final position restricted to the p answer classes,
and every loss is cross-entropy in float64. Frequencies k run over 1..(p-1)/2 inclusive.

Speed: ``compute_all_measures`` runs one forward pass per model and derives everything from it. The
(a+b) projections are done in the Fourier domain (sums along anti-diagonals, then a 1D transform,
see ``grokinterp.fourier``), never with (p*p, p*p) projectors, and the per-neuron frequency
energies likewise avoid the O(p^3) 2D transform.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as TF
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens.utilities.activation_functions import SUPPORTED_ACTIVATIONS

from grokinterp.fourier import (
    _basis64,
    _energy_and_apb,
    apb_coefficients,
    fourier_basis,
    frequency_norms,
    n_freqs,
)
from grokinterp.models import (
    GrokMLP,
    _attn_out,
    _norm,
    _qkv,
    last_position_logits,
    supports_fused,
)
from grokinterp.tasks import Dataset

__all__ = [
    "W_L",
    "FinalCache",
    "NeuronClusters",
    "all_logits",
    "attention_to_a_b",
    "compute_all_measures",
    "cos_apb_minus_c_coefficients",
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
    "key_frequencies",
    "loss_and_accuracy",
    "neuron_acts",
    "neuron_frequency_clusters",
    "per_frequency_excluded_loss",
    "restricted_loss",
    "restricted_loss_neuron",
    "sum_squared_weights",
    "wl_freq_norms",
    "wl_spectrum",
]

Split = Literal["train", "test", "all"]
KeyRule = Literal["clustered", "paper_code"]

DEFAULT_THRESHOLD = 0.85
_CHUNK = 16_384


# ----------------------------------------------------------------------------------------------
# Forward passes
# ----------------------------------------------------------------------------------------------


def _tokens(x: Dataset | Tensor) -> Tensor:
    return x.tokens if isinstance(x, Dataset) else x


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _n_answers(model: nn.Module) -> int:
    return model.run_cfg.p if isinstance(model, GrokMLP) else model.cfg.d_vocab_out


@torch.no_grad()
def all_logits(model: nn.Module, dataset: Dataset, chunk: int = _CHUNK) -> Float[Tensor, "n p"]:
    """Final-position logits for every input of ``dataset`` (n = p*p rows for a full grid), on the
    p answer classes, from ``models.last_position_logits`` in chunks (the demo's
    ``model(dataset)[:, -1]``, the input of every logit-level measure)."""
    tokens = dataset.tokens.to(_model_device(model))
    out = torch.cat([last_position_logits(model, t) for t in tokens.split(chunk)])
    return out[:, : dataset.p]


def _last_layer(model: nn.Module) -> int:
    return len(model.blocks) - 1


def _post_hook(model: nn.Module) -> str:
    return f"blocks.{_last_layer(model)}.mlp.hook_post"


@torch.no_grad()
def neuron_acts(model: nn.Module, dataset: Dataset, chunk: int = _CHUNK) -> Float[Tensor, "p p d_mlp"]:
    """Post-activation MLP neurons of the last block at the final position for all p*p inputs,
    shape (p, p, d_mlp) (demo: ``cache["post", 0, "mlp"][:, -1, :]``; paper: ``neuron_acts``).

    Uses ``run_with_cache`` with a ``names_filter`` on ``blocks.{last}.mlp.hook_post``, so hooks
    the caller attached are honoured. Works for HookedTransformer (hook shape (batch, pos, d_mlp))
    and GrokMLP (hook shape (batch, d_mlp)).
    """
    _require_full_grid(dataset)
    name = _post_hook(model)
    tokens = dataset.tokens.to(_model_device(model))
    parts = []
    for t in tokens.split(chunk):
        _, cache = model.run_with_cache(t, names_filter=lambda n: n == name)
        act = cache[name]
        parts.append(act[:, -1] if act.ndim == 3 else act)
    p = dataset.p
    return torch.cat(parts).reshape(p, p, -1)


@dataclass
class FinalCache:
    """What the measures need from one forward pass, at the final position only.

    ``logits`` (n, p) on the answer classes; ``post`` (n, d_mlp) the last block's
    ``mlp.hook_post``; ``resid_mid`` / ``resid_post`` (n, d_model) the last block's residual stream
    (None for GrokMLP, whose MLP output is the logits' input).
    """

    logits: Float[Tensor, "n p"]
    post: Float[Tensor, "n d_mlp"]
    resid_mid: Float[Tensor, "n d_model"] | None
    resid_post: Float[Tensor, "n d_model"] | None


def _has_hooks(model: nn.Module) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def _can_fuse(model: nn.Module) -> bool:
    return (
        not isinstance(model, GrokMLP) and supports_fused(model) and model.cfg.n_layers == 1 and not _has_hooks(model)
    )


@torch.no_grad()
def final_position_cache(
    model: nn.Module, data: Dataset | Tensor, *, fast: bool = True, chunk: int = _CHUNK
) -> FinalCache:
    """One forward pass over all inputs returning logits and the last block's final-position
    activations (what the demo reads from ``model.run_with_cache(dataset)``).

    With ``fast=True`` a one-layer HookedTransformer without attached hooks is run through a fused
    final-position forward (the first layer's Q/K/V as per-token tables, MLP and unembedding only
    at the last position, as in ``models.last_position_logits``): about 3x less work than
    ``run_with_cache``, equal to it to float32 tolerance (tested). Otherwise ``run_with_cache``
    with a ``names_filter``.
    """
    tokens = _tokens(data).to(_model_device(model))
    n_ans = _n_answers(model)
    if fast and _can_fuse(model):
        parts = [_fused_cache(model, t) for t in tokens.split(chunk)]
    else:
        parts = [_hooked_cache(model, t) for t in tokens.split(chunk)]
    if len(parts) == 1:
        cat = list(parts[0])
    else:
        cat = [None if parts[0][i] is None else torch.cat([q[i] for q in parts]) for i in range(4)]
    p = data.p if isinstance(data, Dataset) else n_ans
    return FinalCache(cat[0][:, :p], cat[1], cat[2], cat[3])


def _hooked_cache(model: nn.Module, tokens: Tensor) -> tuple:
    L = _last_layer(model)
    post = f"blocks.{L}.mlp.hook_post"
    if isinstance(model, GrokMLP):
        logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n == post)
        return logits[:, -1], cache[post], None, None
    names = {post, f"blocks.{L}.hook_resid_mid", f"blocks.{L}.hook_resid_post"}
    logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    return (
        logits[:, -1],
        cache[post][:, -1],
        cache[f"blocks.{L}.hook_resid_mid"][:, -1],
        cache[f"blocks.{L}.hook_resid_post"][:, -1],
    )


def _fused_cache(model: nn.Module, tokens: Tensor) -> tuple:
    """Final-position forward of a one-layer HookedTransformer, keeping the intermediates.

    The layer's input depends on (position, token) only, so the attention scores of the final
    query are a lookup in a (query token, position, key token, head) table and the values are
    gathered from a (position, token) table; MLP and unembedding run at the final position only.
    """
    cfg = model.cfg
    norm, eps = cfg.normalization_type, cfg.eps
    n_ctx = tokens.shape[1]
    block = model.blocks[0]
    attn = block.attn
    table = model.embed.W_E[None] + model.pos_embed.W_pos[:n_ctx, None]  # (ctx, vocab, d)
    d_vocab = table.shape[1]
    x_tab = _norm(table, block.ln1, norm, eps)
    q_tab = _qkv(x_tab[-1], attn, "Q")  # (vocab, heads, d_head)
    k_tab = _qkv(x_tab, attn, "K")  # (ctx, vocab, heads, d_head)
    v_tab = _qkv(x_tab, attn, "V")
    # score_tab[q, t, k, h]: final-position query token q against token k at position t.
    score_tab = torch.einsum("qhe,tkhe->qtkh", q_tab, k_tab) / attn.attn_scale
    last = tokens[:, -1]
    pos = torch.arange(n_ctx, device=tokens.device)
    flat = pos * d_vocab + tokens  # (batch, ctx) rows of the (ctx*vocab) tables
    scores = TF.embedding(last[:, None] * (n_ctx * d_vocab) + flat, score_tab.flatten(0, 2))
    pattern = scores.softmax(dim=1)  # (batch, ctx, heads)
    v = TF.embedding(flat, v_tab.flatten(0, 1).flatten(-2)).unflatten(-1, v_tab.shape[-2:])
    z = (pattern[..., None] * v).sum(1)  # (batch, heads, d_head)
    resid_mid = TF.embedding(last, table[-1]) + _attn_out(z, attn)
    act = SUPPORTED_ACTIVATIONS[cfg.act_fn]
    post = act(_norm(resid_mid, block.ln2, norm, eps) @ block.mlp.W_in + block.mlp.b_in)
    resid_post = torch.addmm(resid_mid + block.mlp.b_out, post, block.mlp.W_out)
    final = _norm(resid_post, getattr(model, "ln_final", None), norm, eps)
    logits = torch.addmm(model.unembed.b_U, final, model.unembed.W_U)
    return logits, post, resid_mid, resid_post


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _require_full_grid(dataset: Dataset) -> None:
    if not dataset.is_full_grid:
        raise ValueError(
            f"the Fourier measures need all p*p inputs; op {dataset.op!r} leaves some out "
            "(use a full-grid op such as 'add')"
        )


def _split_index(dataset: Dataset, split: str) -> Tensor | None:
    if split == "train":
        return dataset.train_indices
    if split == "test":
        return dataset.test_indices
    if split == "all":
        return None
    raise ValueError(f"split must be 'train', 'test' or 'all' (got {split!r})")


def _nll(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-row cross-entropy in float64."""
    logp = logits.to(torch.float64).log_softmax(-1)
    return -logp.gather(-1, labels[:, None])[:, 0]


def _ce(logits: Tensor, labels: Tensor) -> float:
    """Mean cross-entropy in float64."""
    return _nll(logits, labels).mean().item()


def _ce_split(logits: Tensor, dataset: Dataset, split: str) -> float:
    idx = _split_index(dataset, split)
    labels = dataset.labels.to(logits.device)
    if idx is None:
        return _ce(logits, labels)
    idx = idx.to(logits.device)
    return _ce(logits[idx], labels[idx])


def _as_logits(source: nn.Module | Tensor, dataset: Dataset) -> Float[Tensor, "pp p"]:
    """float64 (p*p, p) logits from a model or from logits of shape (p*p, >=p) or (p, p, >=p)."""
    _require_full_grid(dataset)
    p = dataset.p
    logits = all_logits(source, dataset) if isinstance(source, nn.Module) else source
    return logits.reshape(p * p, -1)[:, :p].to(torch.float64)


def _check_keys(p: int, keys: Sequence[int]) -> list[int]:
    keys = sorted({int(k) for k in keys})
    for k in keys:
        if not 1 <= k <= n_freqs(p):
            raise ValueError(f"key frequency {k} is outside 1..{n_freqs(p)} for p={p}")
    return keys


def _rows(keys: Sequence[int]) -> list[int]:
    """Fourier rows (cos k, sin k) of the frequencies ``keys``."""
    return [r for k in keys for r in (2 * k - 1, 2 * k)]


@functools.lru_cache(maxsize=8)
def _apb_table(p: int) -> Tensor:
    """(p, p*p) float64: row 2k-1 is u_cos(k), row 2k is u_sin(k): ``F[:, (a+b) % p] / sqrt(p)``."""
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    return _basis64(p)[:, (a + b) % p] / math.sqrt(p)


def _apb_rows(p: int, keys: Sequence[int], idx: Tensor | None, device, dtype) -> Tensor:
    """``apb_basis(p, keys)`` restricted to the rows ``idx`` (all rows when None): (n, 2K)."""
    U = _apb_table(p)[_rows(keys)]
    if idx is not None:
        U = U[:, idx.cpu()]
    return U.T.to(device=device, dtype=dtype)


# ----------------------------------------------------------------------------------------------
# Weights: spectra, W_L, Gini, weight norm
# ----------------------------------------------------------------------------------------------


def _W_E(model: nn.Module, p: int) -> Tensor:
    return model.W_E[:p]


def embedding_spectrum(model: nn.Module, p: int) -> Float[Tensor, " p"]:
    """Norms of the rows of ``F @ W_E[:p]`` (p,), one per Fourier component (paper Fig. 3, W_E
    panel; demo "Fourier components of the embedding")."""
    E = _W_E(model, p).detach()
    F, _ = fourier_basis(p, E.device, E.dtype)
    return (F @ E).norm(dim=1)


def embedding_freq_norms(model: nn.Module, p: int) -> Float[Tensor, " k"]:
    """Strength of each frequency k = 1..(p-1)/2 in W_E: the norm of rows 2k-1 and 2k of F @ W_E."""
    E = _W_E(model, p).detach()
    F, _ = fourier_basis(p, E.device, E.dtype)
    return frequency_norms(F @ E)


def W_L(model: nn.Module) -> Float[Tensor, "d_mlp p"]:
    """The neuron-logit map (d_mlp, p): ``W_out @ W_U`` of the last block for a transformer, ``W_U``
    for GrokMLP (paper Sec. 4.2, demo ``W_logit``). Layer norms, if any, are ignored."""
    if isinstance(model, GrokMLP):
        return model.W_U.detach()
    p = model.cfg.d_vocab_out
    return (model.blocks[-1].mlp.W_out @ model.W_U).detach()[:, :p]


def wl_spectrum(model: nn.Module) -> Float[Tensor, " p"]:
    """Norms of the rows of ``F @ W_L^T`` (p,) (paper Fig. 3, W_L panel; demo "W_logit in the
    Fourier basis")."""
    WL = W_L(model)
    p = WL.shape[1]
    F, _ = fourier_basis(p, WL.device, WL.dtype)
    return (F @ WL.T).norm(dim=1)


def wl_freq_norms(model: nn.Module) -> Float[Tensor, " k"]:
    """Strength of each frequency k = 1..(p-1)/2 in W_L (rows 2k-1 and 2k of F @ W_L^T together)."""
    WL = W_L(model)
    F, _ = fourier_basis(WL.shape[1], WL.device, WL.dtype)
    return frequency_norms(F @ WL.T)


def gini(x: Tensor | Sequence[float]) -> float:
    """Gini coefficient (Hurley and Rickard) of a non-negative vector, sorted ascending:
    ``G = 1 - 2 * sum_i (x_(i) / ||x||_1) * (n - i + 1/2) / n`` (i = 1..n). 0 for a uniform vector,
    1 - 1/n for a one-hot one; NaN for an all-zero vector (paper Sec. 5.1, Gini coefficients of
    W_E and W_L)."""
    x = torch.as_tensor(x, dtype=torch.float64).detach().flatten().cpu()
    if (x < 0).any():
        raise ValueError("gini needs a non-negative vector")
    n = x.numel()
    total = x.sum()
    if n == 0 or total == 0:
        return float("nan")
    xs = x.sort().values
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(1 - 2 * ((xs / total) * (n - i + 0.5) / n).sum())


def gini_W_E(model: nn.Module, p: int) -> float:
    """Gini coefficient of the per-frequency norms of W_E (paper Sec. 5.1, Gini panel)."""
    return gini(embedding_freq_norms(model, p))


def gini_W_L(model: nn.Module) -> float:
    """Gini coefficient of the per-frequency norms of W_L (paper Sec. 5.1, Gini panel)."""
    return gini(wl_freq_norms(model))


def sum_squared_weights(model: nn.Module) -> tuple[float, dict[str, float]]:
    """Sum of ``param.pow(2).sum()`` over trainable parameters: (total, per parameter name)
    (paper Sec. 5.1, "total sum of squared weights" panel)."""
    per = {
        name: float(param.detach().double().pow(2).sum())
        for name, param in model.named_parameters()
        if param.requires_grad
    }
    return sum(per.values()), per


# ----------------------------------------------------------------------------------------------
# Loss and accuracy
# ----------------------------------------------------------------------------------------------


def loss_and_accuracy(logits: Float[Tensor, "n p"], dataset: Dataset) -> dict[str, float]:
    """float64 cross-entropy and accuracy on the train split, the test split and all inputs
    (the paper's loss curves / demo "Loss Curves"): keys ``{train,test,all}_{loss,acc}``."""
    logits = logits.reshape(len(dataset.labels), -1)[:, : dataset.p]
    logp = logits.to(torch.float64).log_softmax(-1)
    labels = dataset.labels.to(logits.device)
    nll = -logp.gather(-1, labels[:, None])[:, 0]
    correct = (logits.argmax(-1) == labels).to(torch.float64)
    out = {}
    for split in ("train", "test", "all"):
        idx = _split_index(dataset, split)
        idx = slice(None) if idx is None else idx.to(logits.device)
        out[f"{split}_loss"] = nll[idx].mean().item()
        out[f"{split}_acc"] = correct[idx].mean().item()
    return out


# ----------------------------------------------------------------------------------------------
# Neuron clusters and key frequencies
# ----------------------------------------------------------------------------------------------


@dataclass
class NeuronClusters:
    """Neuron-frequency clustering (doc steps 1-3; paper Sec. 4.2, demo "Neuron
    Clusters").

    ``frac`` (d_mlp, (p-1)/2): fraction of each centred neuron's energy explained by frequency k
    (column k-1). ``best_freq`` (d_mlp,): the argmax k (-1 for a dead, constant neuron).
    ``best_frac`` (d_mlp,). ``labels`` (d_mlp,): ``best_freq`` where ``best_frac >= threshold``,
    else -1 ("unexplained"). ``frac_explained``: the fraction of neurons with a label.
    """

    frac: Float[Tensor, "d_mlp k"]
    best_freq: Int[Tensor, " d_mlp"]
    best_frac: Float[Tensor, " d_mlp"]
    labels: Int[Tensor, " d_mlp"]
    threshold: float

    @property
    def frac_explained(self) -> float:
        return (self.labels >= 0).double().mean().item()

    @property
    def key_freqs(self) -> list[int]:
        """Sorted distinct frequencies of the clustered neurons (doc step 4)."""
        return sorted({int(k) for k in self.labels.tolist() if k > 0})

    @property
    def key_freqs_paper_code(self) -> list[int]:
        """Sorted distinct argmax frequencies of all (non-dead) neurons (released paper code)."""
        return sorted({int(k) for k in self.best_freq.tolist() if k > 0})

    def cluster_sizes(self) -> dict[int, int]:
        """Number of neurons per label (-1 = unexplained)."""
        vals, counts = self.labels.unique(return_counts=True)
        return {int(v): int(c) for v, c in zip(vals.tolist(), counts.tolist(), strict=True)}


def _clusters_from_energy(energy: Tensor, total: Tensor, threshold: float) -> NeuronClusters:
    """energy (K, d_mlp) per-frequency energies of the centred neurons, total (d_mlp,)."""
    alive = total > 0
    frac = torch.where(alive, energy / total.clamp_min(torch.finfo(total.dtype).tiny), 0.0).T
    best_frac, arg = frac.max(dim=1)
    best_freq = torch.where(alive, arg + 1, -1)
    labels = torch.where(alive & (best_frac >= threshold), best_freq, -1)
    return NeuronClusters(frac, best_freq, best_frac, labels, threshold)


def _sum_sq(g: Tensor) -> Tensor:
    """Per-neuron sum of squares of a (p, p, m) grid, as float64 (m,)."""
    flat = g.reshape(-1, g.shape[-1])
    return (flat * flat).sum(0).to(torch.float64)


def _centred_grid(acts: Tensor, p: int | None) -> Tensor:
    if acts.ndim == 2:
        if p is None:
            p = math.isqrt(acts.shape[0])
        acts = acts.reshape(p, p, -1)
    if acts.ndim != 3 or acts.shape[0] != acts.shape[1]:
        raise ValueError(f"expected neuron activations (p, p, d_mlp) or (p*p, d_mlp), got {tuple(acts.shape)}")
    return acts - acts.mean(dim=(0, 1), keepdim=True)


def neuron_frequency_clusters(
    acts: Float[Tensor, "p p d_mlp"] | Float[Tensor, "pp d_mlp"],
    p: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> NeuronClusters:
    """Cluster neurons by frequency (doc "Neuron-frequency clustering", steps 1-3).

    Each neuron is centred over the p*p inputs; its energy at frequency k is the sum of squares of
    the 8 2D-Fourier coefficients (0,cos k), (0,sin k), (cos k,0), (sin k,0) and the 2x2
    (cos/sin k, cos/sin k) block, divided by its total energy. Reproduces paper Sec. 4.2
    (fraction of variance explained per neuron) and the demo's neuron-cluster cells.
    """
    g = _centred_grid(acts, p)
    energy, _ = _energy_and_apb(g.reshape(g.shape[0], g.shape[1], -1))
    total = _sum_sq(g)
    return _clusters_from_energy(energy.to(torch.float64), total, threshold)


def key_frequencies(
    source: NeuronClusters | Tensor,
    p: int | None = None,
    *,
    rule: KeyRule = "clustered",
    threshold: float = DEFAULT_THRESHOLD,
) -> list[int]:
    """Key frequencies from neuron clusters or from neuron activations (p, p, d_mlp).

    ``rule="clustered"`` (doc step 4): the sorted distinct frequencies of the neurons whose best
    fraction is at least ``threshold``. ``rule="paper_code"``: the sorted distinct argmax
    frequencies of all neurons, thresholded or not (the released code's ``calculate_key_freqs``,
    with its loop fixed to run over k = 1..(p-1)/2 inclusive; dead neurons are skipped).
    """
    clusters = source if isinstance(source, NeuronClusters) else neuron_frequency_clusters(source, p, threshold)
    if rule == "clustered":
        if isinstance(source, NeuronClusters) and threshold != source.threshold:
            labels = torch.where(clusters.best_frac >= threshold, clusters.best_freq, -1)
            return sorted({int(k) for k in labels.tolist() if k > 0})
        return clusters.key_freqs
    if rule == "paper_code":
        return clusters.key_freqs_paper_code
    raise ValueError(f"rule must be 'clustered' or 'paper_code' (got {rule!r})")


def fraction_neurons_explained(
    acts: Float[Tensor, "p p d_mlp"], p: int | None = None, threshold: float = DEFAULT_THRESHOLD
) -> float:
    """Fraction of neurons whose best single frequency explains at least ``threshold`` of their
    centred energy (paper Sec. 4.2: 433 of 512 neurons above 0.85)."""
    return neuron_frequency_clusters(acts, p, threshold).frac_explained


# ----------------------------------------------------------------------------------------------
# Logit-level restricted and excluded loss (paper)
# ----------------------------------------------------------------------------------------------


def _logit_coeffs(L: Tensor, p: int) -> Tensor:
    """(p, p) coefficients of the (p*p, p) logits on the (a+b) directions (rows as in F)."""
    return apb_coefficients(L.reshape(p, p, -1))


def _restricted_logits(L: Tensor, C: Tensor, p: int, keys: list[int]) -> Tensor:
    U = _apb_rows(p, keys, None, L.device, L.dtype)
    R = U @ C[_rows(keys)]
    return R.add_(L.mean(0) - R.mean(0))  # R += mean over rows of (L - R)


def restricted_loss(
    logits: nn.Module | Float[Tensor, "pp p"],
    dataset: Dataset,
    key_freqs: Sequence[int],
    split: Split = "all",
) -> float:
    """Restricted loss (paper Sec. 5.1, restricted loss panel; released code's
    ``get_restricted_loss`` on all data).

    ``R = P L`` with P the projector onto u_cos(k), u_sin(k) of the key frequencies, plus the bias
    correction ``R += mean over rows of (L - R)``; float64 cross-entropy of R on ``split`` ("all"
    by default, as in the paper's main figure; "train" is the other variant). ``logits`` may be a
    model.
    """
    p = dataset.p
    L = _as_logits(logits, dataset)
    keys = _check_keys(p, key_freqs)
    R = _restricted_logits(L, _logit_coeffs(L, p), p, keys)
    return _ce_split(R, dataset, split)


def excluded_loss(
    logits: nn.Module | Float[Tensor, "pp p"],
    dataset: Dataset,
    key_freqs: Sequence[int],
) -> float:
    """Excluded loss (paper Sec. 5.1, excluded loss panel): ``L - P L`` (no bias correction),
    float64 cross-entropy on the train split. ``logits`` may be a model."""
    p = dataset.p
    L = _as_logits(logits, dataset)
    keys = _check_keys(p, key_freqs)
    return _excluded_from(L, _logit_coeffs(L, p), dataset, keys)


def _excluded_from(L: Tensor, C: Tensor, dataset: Dataset, keys: list[int]) -> float:
    idx = dataset.train_indices.to(L.device)
    U = _apb_rows(dataset.p, keys, idx, L.device, L.dtype)
    E = L[idx] - U @ C[_rows(keys)]
    return _ce(E, dataset.labels.to(L.device)[idx])


def per_frequency_excluded_loss(
    logits: nn.Module | Float[Tensor, "pp p"],
    dataset: Dataset,
    freqs: Sequence[int] | None = None,
) -> Float[Tensor, " k"]:
    """Excluded loss (train split) with P built from one frequency at a time, for every
    k = 1..(p-1)/2 (default) or ``freqs``: float64 tensor aligned with the frequencies (entry k-1
    for the default). Paper Sec. 5.1 / appendix (excluded loss of each key frequency).
    """
    p = dataset.p
    L = _as_logits(logits, dataset)
    freqs = list(range(1, n_freqs(p) + 1)) if freqs is None else [int(k) for k in freqs]
    _check_keys(p, freqs)
    return _per_frequency_excluded(L, _logit_coeffs(L, p), dataset, freqs)


@functools.lru_cache(maxsize=8)
def _rows_by_sum(p: int, rows: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Group the grid rows ``rows`` by s = (a+b) % p: an index (p, n_max) into the rows of the
    grid (padding points at row 0) and a (p, n_max) float64 weight (1 for real rows, 0 for
    padding)."""
    r = torch.tensor(rows, dtype=torch.int64)
    s = (r // p + r % p) % p
    order = torch.argsort(s, stable=True)
    r, s = r[order], s[order]
    counts = torch.bincount(s, minlength=p)
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(r)) - start[s]
    n_max = max(1, int(counts.max()))
    index = torch.zeros(p, n_max, dtype=torch.int64)
    weight = torch.zeros(p, n_max, dtype=torch.float64)
    index[s, slot] = r
    weight[s, slot] = 1.0
    return index, weight


def _per_frequency_excluded(L: Tensor, C: Tensor, dataset: Dataset, freqs: list[int]) -> Tensor:
    """Train-split excluded loss for each single frequency in ``freqs`` (float64, on L's device).

    Removing frequency k changes logit (a, b, c) by ``d_k[s, c]`` with s = (a+b) % p (u_cos(k) and
    u_sin(k) depend on a+b only), so ``exp(excluded) = exp(L) * exp(-d_k)``: with the train rows
    grouped by s, the softmax denominators of every frequency are one batched matmul of
    exp(L - rowmax) with the (p, p) tables exp(-d_k - shift), instead of a float64 log-softmax of
    the (n_train, p) logits per frequency. Exact up to float64 rounding (tested against the direct
    formula); frequencies whose tables over- or underflow fall back to it.
    """
    p = dataset.p
    dev = L.device
    K = len(freqs)
    F = _basis64(p).to(dev)
    rows = torch.tensor(_rows(freqs), device=dev).view(K, 2)
    # d[k, s, c]: the (a+b) part of frequency k of the logits, as a function of s = (a+b) % p.
    d = torch.einsum("kjs,kjc->ksc", F[rows], C[rows]) / math.sqrt(p)
    shift = (-d).amax(-1, keepdim=True)  # (K, p, 1)
    T = (-d - shift).exp_()  # (K, p, p), entries <= 1
    index, weight = _rows_by_sum(p, tuple(dataset.train_indices.tolist()))
    index, weight = index.to(dev), weight.to(dev)
    G = L[index]  # (s, n, c)
    G = G - G.amax(-1, keepdim=True)
    y = dataset.labels.to(dev)[index]  # (s, n)
    log_num = G.gather(-1, y[..., None])  # (s, n, 1)
    S = torch.bmm(G.exp_(), T.permute(1, 2, 0))  # (s, n, K)
    # -d_k[s, y] - shift_k[s] for every k: (s, n, K)
    dy = (-d).permute(1, 2, 0).gather(1, y[..., None].expand(-1, -1, K)) - shift[..., 0].T[:, None]
    loss = S.log() - (log_num + dy)
    out = torch.einsum("snk,sn->k", loss, weight) / weight.sum()
    bad = ~(torch.isfinite(S) & (S > 0)).flatten(0, 1).all(0)
    for i in bad.nonzero().flatten().tolist():
        out[i] = _excluded_from(L, C, dataset, [freqs[i]])
    return out


# ----------------------------------------------------------------------------------------------
# Neuron-level restricted and excluded loss (TransformerLens demo)
# ----------------------------------------------------------------------------------------------


def _neuron_apb(cache: FinalCache, p: int) -> Tensor:
    """(p, d_mlp) float64 coefficients of the neurons on the (a+b) directions."""
    return apb_coefficients(cache.post.reshape(p, p, -1)).to(torch.float64)


def _restricted_neuron_from(
    model: nn.Module,
    L: Tensor,
    post_mean: Tensor,
    coef: Tensor,
    dataset: Dataset,
    keys: list[int],
    split: str,
) -> float:
    """L: float64 (p*p, p) logits; post_mean (d_mlp,) float64; coef (p, d_mlp) float64."""
    p = dataset.p
    idx = _split_index(dataset, split)
    WL = W_L(model).to(L.device, torch.float64)
    base = post_mean @ WL  # the neuron means' logits; also the mean of R over the grid, since
    # every (a+b) direction sums to zero over it.
    U = _apb_rows(p, keys, idx, L.device, torch.float64)
    R = base + U @ (coef[_rows(keys)] @ WL)
    R = R + (L.mean(0) - base)  # demo: restricted_logits += logits.mean(0) - restricted.mean(0)
    labels = dataset.labels.to(L.device)
    return _ce(R, labels if idx is None else labels[idx.to(L.device)])


def _excluded_neuron_from(
    model: nn.Module,
    L: Tensor,
    cache: FinalCache,
    coef: Tensor,
    dataset: Dataset,
    keys: list[int],
    split: str,
) -> float:
    """L: float64 (p*p, p) logits; coef (p, d_mlp) float64."""
    p = dataset.p
    idx = _split_index(dataset, split)
    dev = L.device
    U = _apb_rows(p, keys, idx, dev, torch.float64)
    idx = slice(None) if idx is None else idx.to(dev)
    C = coef[_rows(keys)]  # (2K, d_mlp)
    ln = getattr(model, "ln_final", None)
    if isinstance(model, GrokMLP) or model.cfg.normalization_type is None or ln is None:
        # Without a final norm the logits are linear in the neurons: subtracting the projection
        # from the neurons subtracts U (C @ W_L) from the logits (biases and resid_mid unchanged).
        E = L[idx] - U @ (C @ W_L(model).to(dev, torch.float64))
    else:
        W_out = model.blocks[-1].mlp.W_out.detach().to(torch.float64)
        resid = cache.resid_post[idx].to(torch.float64) - U @ (C @ W_out)
        resid = _norm(resid.float(), ln, model.cfg.normalization_type, model.cfg.eps)
        E = resid @ model.W_U + model.unembed.b_U
    return _ce(E[:, :p], dataset.labels.to(dev)[idx])


def restricted_loss_neuron(
    model: nn.Module,
    dataset: Dataset,
    key_freqs: Sequence[int],
    *,
    cache: FinalCache | None = None,
    split: Split = "test",
) -> float:
    """Neuron-level restricted loss, as in the TransformerLens demo's ``get_restricted_loss``.

    The centred last-block neurons are projected onto cos/sin(w_k(a+b)) of the key frequencies,
    the neuron means added back, mapped through W_L = W_out @ W_U, and bias-corrected so their mean
    over inputs equals the model's mean logits (demo: ``restricted_logits += logits.mean(0) -
    restricted_logits.mean(0)``); float64 cross-entropy on the test split (the demo's choice).
    Layer norms, if any, are ignored here as in the demo's formula.
    """
    _require_full_grid(dataset)
    keys = _check_keys(dataset.p, key_freqs)
    cache = cache or final_position_cache(model, dataset)
    coef = _neuron_apb(cache, dataset.p)
    L = cache.logits.to(torch.float64)
    post_mean = cache.post.mean(0).to(torch.float64)
    return _restricted_neuron_from(model, L, post_mean, coef, dataset, keys, split)


def excluded_loss_neuron(
    model: nn.Module,
    dataset: Dataset,
    key_freqs: Sequence[int],
    *,
    cache: FinalCache | None = None,
    split: Split = "train",
) -> float:
    """Neuron-level excluded loss, as in the TransformerLens demo's ``get_excluded_loss``.

    The projection of the last-block neurons onto cos/sin(w_k(a+b)) of the key frequencies is
    removed (means kept), the result is mapped through W_out and added to the rest of the residual
    stream (``resid_mid``, the attention path, and the MLP bias), then unembedded (through
    ``ln_final`` if the model has one); float64 cross-entropy on the train split (the demo's
    choice).
    With the demo's frozen zero biases this is exactly its formula; GrokMLP has no resid_mid.
    """
    _require_full_grid(dataset)
    keys = _check_keys(dataset.p, key_freqs)
    cache = cache or final_position_cache(model, dataset)
    coef = _neuron_apb(cache, dataset.p)
    L = cache.logits.to(torch.float64)
    return _excluded_neuron_from(model, L, cache, coef, dataset, keys, split)


# ----------------------------------------------------------------------------------------------
# cos(w_k(a+b-c)) structure of the logits (paper Fig. 11) and attention
# ----------------------------------------------------------------------------------------------


def _cos_coeffs_from(C: Tensor, p: int, freqs: list[int]) -> Tensor:
    F = _basis64(p).to(C.device, C.dtype)
    cos_rows = [2 * k - 1 for k in freqs]
    sin_rows = [2 * k for k in freqs]
    return ((C[cos_rows] * F[cos_rows]).sum(-1) + (C[sin_rows] * F[sin_rows]).sum(-1)) / math.sqrt(2)


def cos_apb_minus_c_coefficients(
    logits: Float[Tensor, "pp p"] | Float[Tensor, "p p p"],
    p: int,
    keys: Sequence[int] | None = None,
) -> Float[Tensor, " k"]:
    """Coefficient of the logits on the unit-norm cos(w_k(a+b-c)) direction for each k in ``keys``
    (default all k = 1..(p-1)/2), float64: paper Fig. 11, demo "Coefficients with Predicted
    Logits" (``get_cos_coeffs``)."""
    L = logits.reshape(p * p, -1)[:, :p].to(torch.float64)
    freqs = list(range(1, n_freqs(p) + 1)) if keys is None else [int(k) for k in keys]
    _check_keys(p, freqs)
    return _cos_coeffs_from(_logit_coeffs(L, p), p, freqs)


def cosine_similarity_to_cos_apb_minus_c(
    logits: Float[Tensor, "pp p"] | Float[Tensor, "p p p"],
    p: int,
    keys: Sequence[int],
) -> float:
    """Cosine similarity of the (raw) logits with their projection onto the cos(w_k(a+b-c))
    directions of the key frequencies, i.e. ``||sum_k coef_k d_k|| / ||L||`` (the directions are
    orthonormal): paper Fig. 11. With all frequencies as keys, the demo's ``get_residual_cos_sim``
    equals sqrt(1 - this**2)."""
    L = logits.reshape(p * p, -1)[:, :p].to(torch.float64)
    coef = cos_apb_minus_c_coefficients(L, p, keys)
    return float(coef.norm() / L.norm())


@torch.no_grad()
def attention_to_a_b(
    model: nn.Module, dataset: Dataset, layer: int = 0, chunk: int = _CHUNK
) -> tuple[Float[Tensor, "heads p p"], Float[Tensor, "heads p p"]]:
    """Attention paid by the final ("=") position to the a and to the b position, as (n_heads, p, p)
    maps over (a, b) per head (paper Sec. 4.1, periodic attention; demo "Attention Patterns":
    ``cache["pattern", 0][:, :, -1, 0]``). Positions: a = 0 and b = 1 for ``a b =``, b = 2 for
    ``a op b =``."""
    if isinstance(model, GrokMLP):
        raise ValueError("attention_to_a_b needs a transformer; GrokMLP has no attention")
    _require_full_grid(dataset)
    name = f"blocks.{layer}.attn.hook_pattern"
    pos_b = 1 if dataset.layout == "a b =" else 2
    tokens = dataset.tokens.to(_model_device(model))
    parts = []
    for t in tokens.split(chunk):
        _, cache = model.run_with_cache(t, names_filter=lambda n: n == name)
        parts.append(cache[name][:, :, -1, [0, pos_b]])  # (batch, heads, 2)
    pat = torch.cat(parts)
    p = dataset.p
    maps = pat.reshape(p, p, -1, 2).permute(3, 2, 0, 1)  # (2, heads, a, b)
    return maps[0].contiguous(), maps[1].contiguous()


# ----------------------------------------------------------------------------------------------
# Everything at once
# ----------------------------------------------------------------------------------------------


def compute_all_measures(
    model: nn.Module,
    dataset: Dataset,
    key_freqs: Sequence[int] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    fast: bool = True,
) -> dict[str, float | list]:
    """Every scalar progress measure of one model from a single forward pass (paper Sec. 5.1 and
    the demo's "Progress Measures" section), as a flat dict:

    - ``{train,test,all}_{loss,acc}``: float64 cross-entropy and accuracy;
    - ``restricted_loss`` (logit level, all pairs; paper) and ``restricted_loss_train`` (train);
      ``excluded_loss`` (logit level, train; paper); ``excluded_loss_k{k}`` for every
      k = 1..(p-1)/2 (logit level, train, one frequency);
    - ``restricted_loss_neuron`` (test) and ``excluded_loss_neuron`` (train): the demo's
      neuron-level variants;
    - ``gini_W_E``, ``gini_W_L``, ``sum_sq_weights``, ``frac_neurons_explained`` (at ``threshold``);
    - ``cos_sim_cos_apb_c`` and ``cos_apb_c_coeffs`` (list, one per key frequency): paper Fig. 11;
    - ``key_freqs`` (list) used for the above: ``key_freqs`` if given, else the model's own
      clustered key frequencies (doc rule, step 4); ``key_freqs_clustered`` and
      ``key_freqs_paper_code`` (lists) from this model's neurons; ``n_key_freqs``.

    For datasets without a full grid (``div``) the Fourier measures are NaN (lists empty).
    ``fast=False`` uses ``run_with_cache`` instead of the fused forward (same numbers).
    """
    p = dataset.p
    with torch.no_grad():
        cache = final_position_cache(model, dataset, fast=fast)
        out: dict[str, float | list] = dict(loss_and_accuracy(cache.logits, dataset))
        total_ssw, _ = sum_squared_weights(model)
        out["sum_sq_weights"] = total_ssw
        out["gini_W_E"] = gini_W_E(model, p)
        out["gini_W_L"] = gini_W_L(model)
        K = n_freqs(p)
        if not dataset.is_full_grid:
            nan = float("nan")
            for name in (
                "restricted_loss", "restricted_loss_train", "excluded_loss",
                "restricted_loss_neuron", "excluded_loss_neuron", "frac_neurons_explained",
                "cos_sim_cos_apb_c", "n_key_freqs",
            ):  # fmt: skip
                out[name] = nan
            out.update({f"excluded_loss_k{k}": nan for k in range(1, K + 1)})
            out.update(key_freqs=[], key_freqs_clustered=[], key_freqs_paper_code=[])
            out["cos_apb_c_coeffs"] = []
            return out

        # Neurons: frequency energies and (a+b) coefficients from one pass of diagonal sums.
        post_mean = cache.post.mean(0)
        centred = cache.post.sub_(post_mean).reshape(p, p, -1)  # the cache is ours: in place
        post_mean = post_mean.to(torch.float64)
        energy, neuron_coef = _energy_and_apb(centred)
        total = _sum_sq(centred)
        clusters = _clusters_from_energy(energy.to(torch.float64), total, threshold)
        keys = clusters.key_freqs if key_freqs is None else _check_keys(p, key_freqs)
        out["frac_neurons_explained"] = clusters.frac_explained
        out["key_freqs"] = keys
        out["key_freqs_clustered"] = clusters.key_freqs
        out["key_freqs_paper_code"] = clusters.key_freqs_paper_code
        out["n_key_freqs"] = float(len(keys))

        # Logit level (paper).
        L = cache.logits.to(torch.float64)
        C = _logit_coeffs(L, p)
        R = _restricted_logits(L, C, p, keys)
        nll = _nll(R, dataset.labels.to(R.device))
        out["restricted_loss"] = nll.mean().item()
        out["restricted_loss_train"] = nll[dataset.train_indices.to(R.device)].mean().item()
        out["excluded_loss"] = _excluded_from(L, C, dataset, keys)
        per_k = _per_frequency_excluded(L, C, dataset, list(range(1, K + 1)))
        out.update({f"excluded_loss_k{k}": float(per_k[k - 1]) for k in range(1, K + 1)})

        # Neuron level (demo). Centring does not change the (a+b) coefficients of k >= 1.
        coef = neuron_coef.to(torch.float64)
        out["restricted_loss_neuron"] = _restricted_neuron_from(model, L, post_mean, coef, dataset, keys, "test")
        out["excluded_loss_neuron"] = _excluded_neuron_from(model, L, cache, coef, dataset, keys, "train")

        # Fig. 11.
        cos_coef = _cos_coeffs_from(C, p, keys)
        out["cos_sim_cos_apb_c"] = float(cos_coef.norm() / L.norm())
        out["cos_apb_c_coeffs"] = [float(c) for c in cos_coef]
    return out

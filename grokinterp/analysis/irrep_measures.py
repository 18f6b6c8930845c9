"""Progress measures of a group task in the basis of the group's irreducible representations.

For a finite group G (``grokinterp.groups``; the task's ``op`` names it, e.g. ``S5``) the Fourier
basis of Nanda et al. generalises to the matrix entries of G's real irreducible representations
(``grokinterp.analysis.irreps``): for each irrep rho an orthonormal set of functions on G (the
columns of ``Irrep.basis``), all irreps together an orthonormal basis of every function on G. For
the cyclic group C_n the 2-dimensional irreps are the frequencies k and their basis spans cos k and
sin k, so every measure below is then the Fourier measure of the same name. The measures follow
Chughtai, Chan and Nanda 2023 ("A toy model of universality", Sec. 5 and their released metrics),
re-derived here (docs/measures.md, "Groups and irreps"):

- **Fraction of variance explained (FVE)** of a weight matrix W whose rows are the group elements:
  ``||B_rho^T W||^2 / ||W||^2`` (not centred, as theirs). ``W_a`` and ``W_b`` are the embeddings of
  a and b as the first hidden layer sees them (the MLP: ``W_E @ W_in[:d]`` and ``W_E_b @ W_in[d:]``;
  a transformer: its token embedding ``W_E`` of the group elements for both); ``W_U`` the
  unembedding from the neurons (the MLP: ``W_U``; a transformer: ``W_L = W_out @ W_U``).
- **MLP FVE** of rho: the share of the centred neuron activations' energy (last MLP layer, every
  pair (a, b)) in the functions ``rho_ij(a)``, ``rho_ij(b)`` and ``rho_ij(ab)``; ``fve_mlp_ab`` the
  ``rho(ab)`` part alone (these three sets are orthogonal for a non-trivial rho).
- **Logit trace similarity** of rho: the cosine similarity of the logits (centred over the answer
  c) with ``chi_rho(a b c^-1)``, the character of the product's "distance" to c (for C_n:
  ``2 cos(w_k (a + b - c))``, Nanda et al.'s Fig. 11 direction). ``fve_logits`` sums its squares.
- **Key irreps** (rule "logit_trace"): the non-trivial irreps whose logit trace similarity at the
  final checkpoint exceeds ``KEY_IRREP_SIMILARITY`` (0.005, Chughtai et al.'s threshold), or given.
- **Restricted and excluded loss** (neuron level): the last layer's neuron activations projected
  onto the ``rho(ab)`` functions of the key irreps (restricted; loss on every pair) or with that
  projection removed (excluded; loss on the train pairs), mapped to the logits by ``W_U`` (plus
  ``b_U``) for the MLP and by ``W_L`` for a transformer (the neurons alone, as Chughtai et al.).
  Per irrep too (``restricted_loss_irrep_<irrep>``, ``excluded_loss_irrep_<irrep>``).
- **Gini** of the per-irrep norms ``||B_rho^T W||`` of the token embedding ``W_E`` and of ``W_L``
  over the non-trivial irreps (for C_n with n odd: ``gini_W_E`` and ``gini_W_L`` exactly).
- **Coset neurons** (Stander et al. 2024, "Grokking group multiplication with cosets"): a neuron
  is constant on cosets when at least ``threshold`` of its centred activation energy is explained by
  a function of (the left coset aH, the right coset H'b), for H, H' among ``coset_subgroups``
  (the point stabilisers of S_n and A_n, the rotations and the reflection pairs of D_n, the proper
  subgroups of C_n); ``frac_coset_neurons`` is their share of the last layer.

Columns of measures.csv: the totals over the key irreps (``fve_W_a``, ``fve_W_b``, ``fve_W_U``,
``fve_mlp``, ``fve_mlp_ab``, ``restricted_loss_irrep``, ``excluded_loss_irrep``) and every
irrep's own value as ``<measure>_<slug>`` (``irrep_column``), ``fve_logits``, ``gini_irrep_W_E``,
``gini_irrep_W_L``, ``frac_coset_neurons``, ``n_key_irreps``.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from grokinterp.analysis.irreps import Irrep, element_permutations, group_irreps
from grokinterp.analysis.spectra import gini
from grokinterp.forward import FinalCache
from grokinterp.groups import FiniteGroup, parse_group
from grokinterp.losses import cross_entropy
from grokinterp.tasks import Dataset, is_group_op

__all__ = [
    "IRREP_MEASURES",
    "KEY_IRREP_SIMILARITY",
    "PER_IRREP",
    "GroupTask",
    "coset_subgroups",
    "group_task",
    "irrep_column",
    "irrep_measures",
    "not_defined_reason",
    "select_key_irreps",
    "slug",
]

#: Chughtai et al.'s key-irrep threshold on the logit trace similarity of the final model.
KEY_IRREP_SIMILARITY = 0.005

#: Totals over the key irreps, and the measures of every run of a group task.
IRREP_MEASURES = (
    "fve_W_a", "fve_W_b", "fve_W_U", "fve_mlp", "fve_mlp_ab", "fve_logits",
    "restricted_loss_irrep", "excluded_loss_irrep", "gini_irrep_W_E", "gini_irrep_W_L",
    "frac_coset_neurons", "n_key_irreps",
)  # fmt: skip
#: Measures reported for every irrep (columns ``<measure>_<slug>``).
PER_IRREP = (
    "fve_W_a", "fve_W_b", "fve_W_U", "fve_mlp", "fve_mlp_ab", "logit_sim", "restricted_loss_irrep",
    "excluded_loss_irrep",
)  # fmt: skip
#: Measures that need key irreps (NaN when there are none).
KEY_IRREP_MEASURES = (
    "fve_W_a", "fve_W_b", "fve_W_U", "fve_mlp", "fve_mlp_ab", "restricted_loss_irrep", "excluded_loss_irrep",
)  # fmt: skip


def slug(name: str) -> str:
    """An irrep's name as a column suffix: ``(3,2)`` -> ``3_2``, ``freq 3`` -> ``freq_3``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def irrep_column(measure: str, irrep: Irrep | str) -> str:
    """The measures.csv column of ``measure`` for one irrep: ``fve_W_a_standard``."""
    return f"{measure}_{slug(irrep if isinstance(irrep, str) else irrep.name)}"


def not_defined_reason(op: str) -> str | None:
    """None for a group task, else why the irrep measures are not computed."""
    if is_group_op(op):
        return None
    return f"op {op!r} is not a group task (op S<n>, A<n>, D<n> or C<n>); for add mod p run op C<p>"


@dataclass(frozen=True)
class GroupTask:
    """A group task's dataset rows in group terms: ``a``, ``b`` and their product ``ab`` (n,), the
    train mask (n,), the group and its irreps (trivial first)."""

    group: FiniteGroup
    irreps: tuple[Irrep, ...]
    a: Int[Tensor, " n"]
    b: Int[Tensor, " n"]
    ab: Int[Tensor, " n"]
    train: Int[Tensor, " n_train"]

    @property
    def order(self) -> int:
        """|G|."""
        return self.group.order

    def irrep(self, name: str) -> Irrep:
        """The irrep called ``name`` (or whose slug is ``name``); ``ValueError`` listing them."""
        for r in self.irreps:
            if name in (r.name, slug(r.name)):
                return r
        raise ValueError(
            f"{self.group.name} has no irrep {name!r}; its irreps: {', '.join(r.name for r in self.irreps)}"
        )


def group_task(dataset: Dataset) -> GroupTask:
    """The ``GroupTask`` of a group task's dataset (``ValueError`` with the reason otherwise)."""
    reason = not_defined_reason(dataset.op)
    if reason is not None:
        raise ValueError(reason)
    group = parse_group(dataset.op)
    return GroupTask(group, group_irreps(group), dataset.a, dataset.b, dataset.labels, dataset.train_indices)


# ------------------------------------------------------------------------------------------------
# Weights and neurons as functions on G
# ------------------------------------------------------------------------------------------------


def _weights(model: nn.Module, order: int) -> dict[str, Tensor]:
    """``W_a``, ``W_b`` (order, d_mlp), ``W_E`` (order, d_model), ``W_L`` (d_mlp, order) and the
    logits' bias ``b`` (order,) for the neurons' map to the logits, in float64."""
    W_U = model.W_U.detach().double()[:, :order]
    if hasattr(model.blocks[-1].mlp, "W_out"):  # a transformer: W_E's rows of the group elements
        W_E = model.W_E.detach().double()[:order]
        W_L = model.blocks[-1].mlp.W_out.detach().double() @ W_U
        return {"W_a": W_E, "W_b": W_E, "W_E": W_E, "W_L": W_L, "b": torch.zeros(order, dtype=torch.float64)}
    W_in = model.blocks[0].mlp.W_in.detach().double()
    d = model.cfg.d_model
    W_E = model.W_E.detach().double()
    W_Eb = model.W_E_b.detach().double() if hasattr(model, "W_E_b") else W_E
    b = model.b_U.detach().double()[:order]
    return {"W_a": W_E @ W_in[:d], "W_b": W_Eb @ W_in[d:], "W_E": W_E, "W_L": W_U, "b": b}


def _energies(basis: Float[Tensor, "order k"], W: Float[Tensor, "order d"]) -> float:
    return float((basis.T @ W).pow(2).sum())


def _sum_by(index: Int[Tensor, " n"], x: Float[Tensor, "n d"], order: int) -> Float[Tensor, "order d"]:
    out = x.new_zeros(order, x.shape[1])
    return out.index_add_(0, index, x)


def logit_trace_similarities(task: GroupTask, logits: Float[Tensor, "n order"]) -> dict[str, float]:
    """Cosine similarity of the logits (centred over c) with ``chi_rho(a b c^-1)``, per non-trivial
    irrep. The n x order x order cube is never built: summing the logits by the product ab first,
    ``<L, chi(ab c^-1)> = sum_{g, c} S[g, c] chi(g c^-1)``, and ``||chi(ab c^-1)||^2 = |G|^2 sum_h
    chi(h)^2``."""
    order = task.order
    L = logits.double()[:, :order]
    L = L - L.mean(-1, keepdim=True)
    S = _sum_by(task.ab, L, order)  # (g, c)
    g_cinv = task.group.table[torch.arange(order)[:, None], task.group.inverse[None, :]]  # (g, c) -> g c^-1
    norm_L = L.norm()
    out = {}
    for r in task.irreps[1:]:
        chi = r.character.double()
        dot = (S * chi[g_cinv]).sum()
        norm_T = order * chi.pow(2).sum().sqrt()
        out[r.name] = float(dot / (norm_L * norm_T)) if norm_L > 0 else float("nan")
    return out


def select_key_irreps(
    task: GroupTask, logits: Float[Tensor, "n order"], threshold: float = KEY_IRREP_SIMILARITY
) -> list[str]:
    """The key irreps by rule "logit_trace": the non-trivial irreps whose logit trace similarity
    exceeds ``threshold`` (Chughtai et al.: 0.005 on the final model), in the irreps' order."""
    sims = logit_trace_similarities(task, logits)
    return [name for name, s in sims.items() if s > threshold]


# ------------------------------------------------------------------------------------------------
# Coset neurons
# ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def coset_subgroups(name: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The subgroups whose cosets the coset-neuron measure tries, as (label, element indices):
    S_n and A_n: the stabiliser of each point i; D_n: the rotations <r> and each reflection pair
    {e, r^k s}; C_n: each proper non-trivial subgroup <d> (d a divisor of n)."""
    group = parse_group(name)
    if group.family in ("symmetric", "alternating"):
        perms = element_permutations(group)  # (order, n): element g as the permutation it is
        return tuple((f"Stab({i})", tuple(torch.nonzero(perms[:, i] == i).flatten().tolist())) for i in range(group.n))
    n = group.n
    if group.family == "dihedral":
        out = [("<r>", tuple(range(n)))]
        out += [(f"<r^{k} s>", (0, k + n)) for k in range(n)]
        return tuple(out)
    return tuple((f"<{d}>", tuple(range(0, n, d))) for d in range(2, n) if n % d == 0)


@functools.lru_cache(maxsize=16)
def _coset_labels(name: str) -> tuple[tuple[str, Tensor, Tensor], ...]:
    """Per subgroup H: (label, left coset of each g (gH), right coset of each g (Hg)), as int64
    labels 0..index-1."""
    group = parse_group(name)
    out = []
    for label, elems in coset_subgroups(name):
        h = torch.tensor(elems, dtype=torch.int64)
        left = group.table[:, h].min(1).values  # gH's smallest element names the coset
        right = group.table[h, :].min(0).values
        out.append((label, torch.unique(left, return_inverse=True)[1], torch.unique(right, return_inverse=True)[1]))
    return tuple(out)


def coset_fractions(task: GroupTask, post: Float[Tensor, "n d_mlp"]) -> tuple[Float[Tensor, " d_mlp"], list[str]]:
    """Per neuron: the largest share of its centred activation energy explained by a function of
    (aH, H'b) over the subgroup pairs (H, H') of ``coset_subgroups``, and that pair's label."""
    X = post.double()
    X = X - X.mean(0)
    total = X.pow(2).sum(0)
    best = torch.zeros_like(total)
    which = torch.full(total.shape, -1, dtype=torch.int64)
    labels = _coset_labels(task.group.name)
    pairs = []
    for (la, left, _), (lb, _, right) in itertools.product(labels, labels):
        n_right = int(right.max()) + 1
        cell = left[task.a] * n_right + right[task.b]
        n_cells = (int(left.max()) + 1) * n_right
        sums = _sum_by(cell, X, n_cells)
        count = torch.bincount(cell, minlength=n_cells).double().clamp(min=1)
        explained = (sums.pow(2) / count[:, None]).sum(0)
        frac = torch.where(total > 0, explained / total, torch.zeros_like(total))
        better = frac > best
        best = torch.where(better, frac, best)
        which = torch.where(better, torch.tensor(len(pairs)), which)
        pairs.append(f"{la} x {lb}")
    return best, [pairs[i] if i >= 0 else "" for i in which.tolist()]


# ------------------------------------------------------------------------------------------------
# Every measure of one checkpoint
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def irrep_measures(
    model: nn.Module,
    task: GroupTask,
    cache: FinalCache,
    key_irreps: Sequence[str] | None,
    threshold: float = 0.85,
) -> dict[str, float]:
    """Every irrep measure of one checkpoint (module docstring) from its ``final_position_cache``
    on every row of the task. ``key_irreps``: the names the totals and the restricted/excluded
    loss use (None or empty: those are NaN). ``threshold``: of the coset-neuron measure."""
    order = task.order
    W = _weights(model, order)
    keys = [task.irrep(k).name for k in key_irreps or []]
    out: dict[str, float] = {}

    # Weights: FVE and Gini.
    norms = {name: W[name].pow(2).sum() for name in ("W_a", "W_b")}
    norms["W_U"] = W["W_L"].pow(2).sum()
    per: dict[str, dict[str, float]] = {m: {} for m in PER_IRREP}
    gini_E, gini_L = [], []
    for r in task.irreps:
        B = r.basis.double()
        per["fve_W_a"][r.name] = _energies(B, W["W_a"]) / float(norms["W_a"])
        per["fve_W_b"][r.name] = _energies(B, W["W_b"]) / float(norms["W_b"])
        per["fve_W_U"][r.name] = _energies(B, W["W_L"].T) / float(norms["W_U"])
        if r is not task.irreps[0]:
            gini_E.append(_energies(B, W["W_E"]) ** 0.5)
            gini_L.append(_energies(B, W["W_L"].T) ** 0.5)
    out["gini_irrep_W_E"] = gini(gini_E)
    out["gini_irrep_W_L"] = gini(gini_L)

    # Neurons of the last MLP layer: FVE by rho(a), rho(b), rho(ab).
    H = cache.posts[-1].double()
    Hc = H - H.mean(0)
    total = Hc.pow(2).sum()
    by_a, by_b, by_ab = (_sum_by(i, Hc, order) for i in (task.a, task.b, task.ab))
    # B_rho[g] / sqrt(|G|) repeated over the other operand is orthonormal on G x G, so the
    # energy in it is ||B^T (sum of the rows by g)||^2 / |G|.
    for r in task.irreps:
        B = r.basis.double()
        e_a, e_b, e_ab = (float((B.T @ s).pow(2).sum()) / order for s in (by_a, by_b, by_ab))
        per["fve_mlp"][r.name] = (e_a + e_b + e_ab) / float(total) if total > 0 else float("nan")
        per["fve_mlp_ab"][r.name] = e_ab / float(total) if total > 0 else float("nan")

    # Logits: trace similarity.
    sims = logit_trace_similarities(task, cache.logits)
    per["logit_sim"] = {task.irreps[0].name: float("nan"), **sims}
    out["fve_logits"] = sum(s * s for s in sims.values() if s == s)

    # Restricted / excluded loss through the neurons' map to the logits (linear, so each irrep's
    # share of the logits is (its projection of the sums by ab) @ W_L, gathered by ab).
    S_ab = _sum_by(task.ab, H, order)
    full = H @ W["W_L"] + W["b"]
    labels = task.ab
    share: dict[str, Tensor] = {}
    for r in task.irreps[1:]:
        B = r.basis.double()
        share[r.name] = ((B @ (B.T @ S_ab)) / order) @ W["W_L"]  # (order, order): logits of each product
    for r in task.irreps:
        if r.name not in share:
            per["restricted_loss_irrep"][r.name] = per["excluded_loss_irrep"][r.name] = float("nan")
            continue
        res, exc = _restricted_excluded(share[r.name], full, W["b"], task, labels)
        per["restricted_loss_irrep"][r.name], per["excluded_loss_irrep"][r.name] = res, exc
    if keys:
        total_share = sum(share[k] for k in keys if k in share)
        out["restricted_loss_irrep"], out["excluded_loss_irrep"] = _restricted_excluded(
            total_share, full, W["b"], task, labels
        )
        for m in ("fve_W_a", "fve_W_b", "fve_W_U", "fve_mlp", "fve_mlp_ab"):
            out[m] = sum(per[m][k] for k in keys)
    else:
        out.update(dict.fromkeys(KEY_IRREP_MEASURES, float("nan")))
    out["n_key_irreps"] = len(keys)

    frac, _ = coset_fractions(task, cache.posts[-1])
    out["frac_coset_neurons"] = float((frac >= threshold).double().mean())
    for m, values in per.items():
        out.update({irrep_column(m, name): v for name, v in values.items()})
    return out


def _restricted_excluded(
    share: Float[Tensor, "order order"],
    full: Float[Tensor, "n order"],
    bias: Float[Tensor, " order"],
    task: GroupTask,
    labels: Int[Tensor, " n"],
) -> tuple[float, float]:
    restricted = share[task.ab] + bias
    excluded = full - share[task.ab]
    res = float(cross_entropy(restricted, labels))
    exc = float(cross_entropy(excluded[task.train], labels[task.train]))
    return res, exc

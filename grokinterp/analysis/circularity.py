"""Circularity of the token embeddings (Zhong et al. 2023, "The Clock and the Pizza", eval notebook
``code/eval-main.ipynb``, cell "Circularity"): how much each leading principal component of the
embedding is a single Fourier mode over the group, i.e. how cleanly the embedding lies on circles.

Definition (in the notation of ``grokinterp.analysis.clock_pizza``). Let E be the embedding rows of
the group's elements in group order (row g = the token x with phi_a(x) = g; for addition the p
residues 0..p-1 in order, for mul/div at prime p the p - 1 non-zero residues ordered by their
discrete log), centred over the rows. For each of the first ``n_components`` (4, as in the notebook)
principal components v_i (the scores E @ u_i of the i-th right singular vector; equivalently
sklearn's ``PCA.fit_transform`` column) take its discrete Fourier transform over Z_m,
F_i(k) = sum_g v_i(g) exp(-2 pi i k g / m). Since v_i is real and centred, F_i(0) = 0 and
|F_i(k)| = |F_i(-k)|, so the energy of v_i splits into frequency pairs {k, -k}. The circularity of
the component is the share of its energy in its strongest pair::

    c_i = max_{k != 0} ( |F_i(k)|^2 + |F_i(-k)|^2 ) / sum_k |F_i(k)|^2      (one term when k = -k)

and the circularity is the mean of c_i over the components. The notebook normalises v_i so that
sum_k |F_i(k)|^2 = 1 (||v_i||^2 = 1/m) and takes 2 |F_i(k)|^2 at the best k, clipped to [0, 1]:
the same number for odd m (its ``t * i % 59`` re-indexing visits the frequencies i^-1, every
non-zero frequency once; the sign of the exponent does not change |F|). For even m the
self-conjugate frequency m / 2 counts once here (the notebook, written for p = 59, would count
it twice). 1 when every component is one cosine (a circle per pair of components); about
(ln(m/2) + 0.58) / (m/2) for isotropic noise (the largest of m/2 roughly exponential shares).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from grokinterp.analysis.bases import task_basis

__all__ = ["CIRCULARITY_COMPONENTS", "circularity", "component_circularities", "group_embedding"]

#: Principal components averaged (the notebook's ``first_k = 4``).
CIRCULARITY_COMPONENTS = 4


def group_embedding(model: nn.Module, op: str, p: int) -> Float[Tensor, "m d_model"]:
    """The token embedding ``model.W_E`` of the group's elements in group order (module docstring),
    float64 on the CPU. Raises ``ValueError`` for a task without a cyclic group (the reason of
    ``grokinterp.analysis.bases.task_basis``)."""
    basis = task_basis(op, p)
    if basis.family != "cyclic":
        raise ValueError(f"circularity needs a cyclic-group task (add, sub, mul/div at prime p): {basis.reason}")
    W_E = model.W_E.detach()[:p].double().cpu()
    phi = basis.phi_a.long()
    tokens = torch.full((basis.m,), -1, dtype=torch.int64)
    present = phi >= 0
    tokens[phi[present]] = torch.arange(p)[present]
    return W_E[tokens]


def component_circularities(
    embedding: Float[Tensor, "m d"], n_components: int = CIRCULARITY_COMPONENTS
) -> Float[Tensor, " k"]:
    """c_i (module docstring) for the first ``n_components`` principal components of the rows of
    ``embedding`` (in group order), float64; fewer when the centred rows have lower rank."""
    x = embedding.detach().double().cpu()
    x = x - x.mean(0)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    keep = s > s[0] * 1e-12 if len(s) and s[0] > 0 else torch.zeros_like(s, dtype=torch.bool)
    k = min(n_components, int(keep.sum()))
    scores = u[:, :k] * s[:k]  # (m, k): the principal component scores
    m = x.shape[0]
    power = torch.fft.fft(scores, dim=0).abs().square()  # (m, k)
    energy = power.sum(0)
    freqs = torch.arange(1, m // 2 + 1)
    pairs = power[freqs] + power[(m - freqs) % m] * (freqs != m - freqs)[:, None]  # (m // 2, k)
    return (pairs.max(0).values / energy).clamp(0.0, 1.0)


def circularity(embedding: Float[Tensor, "m d"], n_components: int = CIRCULARITY_COMPONENTS) -> float:
    """The mean of ``component_circularities`` (Zhong et al.'s circularity, module docstring);
    NaN when the centred embedding is zero."""
    c = component_circularities(embedding, n_components)
    return float(c.mean()) if len(c) else float("nan")

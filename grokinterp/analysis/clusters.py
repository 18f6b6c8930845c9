"""Neuron-frequency clustering of every MLP layer, and the named rules for key frequencies
(Nanda et al. 2023, Sec. 4.2; docs/measures.md).

Neurons are clustered on the task's grid (``grokinterp.analysis.bases.TaskGrid``): a neuron's activations
over the (phi_a, phi_b) cells of Z_m x Z_m, centred; its energy at frequency k is the sum of squares
of its 2D Fourier coefficients (0,cos k), (0,sin k), (cos k,0), (sin k,0) and the (cos/sin k,
cos/sin k) block (3 coefficients for the Nyquist frequency of an even m), divided by its total.

Key-frequency rules (``KeyFrequencies.rule``):

- ``"clustered"``: the distinct frequencies of the neurons of one layer whose best fraction is at
  least the threshold (default layer: the one with the most neurons explained);
- ``"paper_code"``: the distinct argmax frequencies of all live neurons of that layer (the
  released paper code's ``calculate_key_freqs``);
- ``"embedding"``: the W_E spectrum gap rule (``embedding_key_frequencies``);
- ``"logits"``: the fewest frequencies holding 95% of the logits' (u+v) energy
  (``logit_key_frequencies``);
- ``"given"``: passed by the user.

The default, ``"auto"``, picks one of these by architecture (``auto_key_rule``): "clustered" for
a 1-layer transformer and for the MLP, "logits" for a transformer with more layers, whose logits
compose frequencies that no single MLP layer's neurons show.

A rule resting on fewer than ``FEW_NEURONS`` (5%) of the layer's neurons carries a warning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from grokinterp.analysis.fourier import frequency_energy_and_apb

__all__ = [
    "AUTO_RULE_REASONS",
    "DEFAULT_THRESHOLD",
    "FEW_NEURONS",
    "KeyFrequencies",
    "KeyRule",
    "NeuronClusters",
    "auto_key_rule",
    "best_layer",
    "embedding_key_frequencies",
    "fraction_neurons_explained",
    "key_frequencies",
    "neuron_frequency_clusters",
]

DEFAULT_THRESHOLD = 0.85
#: Keys resting on fewer than this fraction of a layer's neurons get a warning.
FEW_NEURONS = 0.05
#: The embedding gap rule: at most this many keys, and the gap ratio must be at least GAP_RATIO.
GAP_MAX_KEYS = 10
GAP_RATIO = 2.0

LOGIT_ENERGY = 0.95
KeyRule = Literal["auto", "clustered", "paper_code", "embedding", "logits", "given"]

#: Why ``auto_key_rule`` picks each rule (the measurements are in docs/measures.md, "Key-frequency
#: rules by architecture").
AUTO_RULE_REASONS = {
    "transformer-1": "1-layer transformer: its one MLP layer's neurons read the key frequencies (Nanda et al. "
    "2023); the clustered keys leave a restricted loss near the model's loss",
    "transformer-n": "transformer with {n} layers: the logits compose frequencies that no single MLP layer's "
    "neurons show (on power-p97 layer 0's clustered keys leave a restricted loss of 0.89 against a test loss of "
    "0.04, the logits rule 0.13), so the keys are those of the logits",
    "mlp": "MLP: its first hidden layer's neurons read the key frequencies (on mlp-p97 the clustered keys leave "
    "a restricted loss of 3.5e-6 against a test loss of 0.03, the logits rule 5.4e-5)",
}


def auto_key_rule(arch: str, n_layers: int) -> tuple[KeyRule, str]:
    """The key rule ``"auto"`` stands for, and why: "clustered" for a 1-layer transformer and for
    the MLP, "logits" for a transformer with two or more layers (``AUTO_RULE_REASONS``)."""
    if arch == "mlp":
        return "clustered", AUTO_RULE_REASONS["mlp"]
    if n_layers <= 1:
        return "clustered", AUTO_RULE_REASONS["transformer-1"]
    return "logits", AUTO_RULE_REASONS["transformer-n"].format(n=n_layers)


@dataclass(frozen=True)
class NeuronClusters:
    """Neuron-frequency clustering of one MLP layer (doc steps 1-3).

    ``frac`` (d_mlp, m//2): fraction of each centred neuron's energy explained by frequency k
    (column k-1). ``best_freq`` (d_mlp,): the argmax k (-1 for a dead, constant neuron).
    ``best_frac`` (d_mlp,). ``labels`` (d_mlp,): ``best_freq`` where ``best_frac >= threshold``,
    else -1 ("unexplained"). ``frac_explained``: the fraction of neurons with a label.
    """

    frac: Float[Tensor, "d_mlp k"]
    best_freq: Int[Tensor, " d_mlp"]
    best_frac: Float[Tensor, " d_mlp"]
    labels: Int[Tensor, " d_mlp"]
    threshold: float
    layer: int | None = None

    @property
    def d_mlp(self) -> int:
        """Number of neurons of the layer."""
        return int(self.labels.numel())

    @property
    def n_explained(self) -> int:
        """Number of neurons with a label (best fraction at least the threshold)."""
        return int((self.labels >= 0).sum())

    @property
    def frac_explained(self) -> float:
        """Fraction of the layer's neurons with a label."""
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


@dataclass(frozen=True)
class KeyFrequencies:
    """Key frequencies with where they come from: the rule, the layer whose neurons gave them
    (None for "embedding"/"given"), the basis they are frequencies of, how many neurons of that
    layer support them (None where no neurons are involved), and a note (why a rule found none)."""

    freqs: tuple[int, ...]
    rule: KeyRule
    basis: str
    layer: int | None = None
    n_neurons: int | None = None
    d_mlp: int | None = None
    note: str | None = None

    @property
    def warning(self) -> str | None:
        """Set when the keys rest on fewer than 5% of the layer's neurons."""
        if self.n_neurons is None or not self.d_mlp or not self.freqs:
            return None
        if self.n_neurons < FEW_NEURONS * self.d_mlp:
            return (
                f"key frequencies {list(self.freqs)} ({self.rule}, layer {self.layer}) rest on "
                f"{self.n_neurons} of {self.d_mlp} neurons (< {FEW_NEURONS:.0%})"
            )
        return None

    def to_dict(self) -> dict:
        """The JSON form of analysis.json (with the ``warning``)."""
        return {
            "freqs": list(self.freqs),
            "rule": self.rule,
            "basis": self.basis,
            "layer": self.layer,
            "n_neurons": self.n_neurons,
            "d_mlp": self.d_mlp,
            "note": self.note,
            "warning": self.warning,
        }

    @classmethod
    def from_dict(cls, d: dict) -> KeyFrequencies:
        """The inverse of ``to_dict`` (the warning is derived, not read)."""
        return cls(
            tuple(int(k) for k in d["freqs"]),
            d["rule"],
            d["basis"],
            d.get("layer"),
            d.get("n_neurons"),
            d.get("d_mlp"),
            d.get("note"),
        )


def _clusters_from_energy(energy: Tensor, total: Tensor, threshold: float, layer: int | None = None) -> NeuronClusters:
    """energy (K, d_mlp) per-frequency energies of the centred neurons, total (d_mlp,)."""
    alive = total > 0
    frac = torch.where(alive, energy / total.clamp_min(torch.finfo(total.dtype).tiny), 0.0).T
    best_frac, arg = frac.max(dim=1)
    best_freq = torch.where(alive, arg + 1, -1)
    labels = torch.where(alive & (best_frac >= threshold), best_freq, -1)
    return NeuronClusters(frac, best_freq, best_frac, labels, threshold, layer)


def _as_grid(acts: Tensor, m: int | None) -> Tensor:
    """Activations (m, m, n) or (m*m, n) as a (m, m, n) grid."""
    if acts.ndim == 2:
        if m is None:
            m = math.isqrt(acts.shape[0])
        acts = acts.reshape(m, m, -1)
    if acts.ndim != 3 or acts.shape[0] != acts.shape[1]:
        raise ValueError(f"expected neuron activations (m, m, d_mlp) or (m*m, d_mlp), got {tuple(acts.shape)}")
    return acts


def clusters_and_apb(
    grid_acts: Float[Tensor, "m m d_mlp"],
    threshold: float,
    layer: int | None = None,
    *,
    mean: Float[Tensor, " d_mlp"] | None = None,
) -> tuple[NeuronClusters, Float[Tensor, "m d_mlp"]]:
    """Clusters of neurons given on the task grid, and their coefficients on the (u+v) directions
    (one pass of diagonal sums). ``mean``: the neurons' mean over the grid,
    ``grid_acts.reshape(-1, d_mlp).mean(0)``, when the caller has it (the same numbers as the mean
    taken here)."""
    g = _as_grid(grid_acts, None)
    mean = g.mean(dim=(0, 1)) if mean is None else mean
    g = g - mean  # centred: sums below lose no precision to the mean
    energy, apb = frequency_energy_and_apb(g)
    flat = g.reshape(-1, g.shape[-1])
    # Per neuron; a reduction over dim 0 is fast. Squared in place: g is this function's own copy,
    # and a second buffer of its size costs more (page faults) than the arithmetic.
    total = flat.mul_(flat).sum(0).to(torch.float64)
    return _clusters_from_energy(energy.to(torch.float64), total, threshold, layer), apb


def neuron_frequency_clusters(
    acts: Float[Tensor, "m m d_mlp"] | Float[Tensor, "mm d_mlp"],
    p: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> NeuronClusters:
    """Cluster neurons by frequency (doc "Neuron-frequency clustering", steps 1-3). ``acts`` are
    neuron activations on the task grid (``measures.neuron_acts``; for addition the (a, b) grid);
    ``p`` is the grid side m when ``acts`` is flat."""
    return clusters_and_apb(_as_grid(acts, p), threshold)[0]


def key_frequencies(
    source: NeuronClusters | Float[Tensor, "m m d_mlp"],
    p: int | None = None,
    *,
    rule: Literal["clustered", "paper_code"] = "clustered",
    threshold: float = DEFAULT_THRESHOLD,
) -> list[int]:
    """Key frequencies from neuron clusters or from grid activations (m, m, d_mlp): ``"clustered"``
    (doc step 4) or ``"paper_code"`` (argmax of all live neurons)."""
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
    acts: Float[Tensor, "m m d_mlp"], p: int | None = None, threshold: float = DEFAULT_THRESHOLD
) -> float:
    """Fraction of neurons whose best single frequency explains at least ``threshold`` of their
    centred energy (paper Sec. 4.2: 433 of 512 neurons above 0.85)."""
    return neuron_frequency_clusters(acts, p, threshold).frac_explained


def best_layer(layers: Sequence[NeuronClusters]) -> int:
    """The layer with the most neurons explained (the first on ties)."""
    return max(range(len(layers)), key=lambda i: (layers[i].n_explained, -i))


def embedding_key_frequencies(norms: Float[Tensor, " k"]) -> tuple[list[int], str | None]:
    """The W_E spectrum gap rule: sort the per-frequency norms descending (n_1 >= n_2 >= ...); take
    the top j frequencies, where j in 1..min(10, K-1) maximises n_j / n_{j+1}, if that ratio is at
    least 2; otherwise no keys. Returns (sorted keys, a note saying why there are none, or None)."""
    x = torch.as_tensor(norms, dtype=torch.float64).flatten()
    K = x.numel()
    if K < 2:
        return [], f"the gap rule needs at least 2 frequencies (got {K})"
    order = x.argsort(descending=True)
    xs = x[order]
    J = min(GAP_MAX_KEYS, K - 1)
    ratios = xs[:J] / xs[1 : J + 1].clamp_min(1e-300)
    j = int(ratios.argmax()) + 1
    ratio = float(ratios[j - 1])
    if ratio < GAP_RATIO:
        return [], f"no gap in the W_E spectrum: largest ratio of consecutive norms {ratio:.2f} < {GAP_RATIO:g}"
    return sorted(int(k) + 1 for k in order[:j].tolist()), None


def logit_key_frequencies(energy: Float[Tensor, " k"], fraction: float = LOGIT_ENERGY) -> tuple[list[int], str | None]:
    """The logit-energy rule: ``energy[k-1]`` is the energy of frequency k in the logits' (u+v)
    coefficients (over every answer class); the keys are the fewest frequencies that hold at least
    ``fraction`` of it. It names what the output uses, also where no single MLP layer's neurons
    show it (multi-layer models compose frequencies). Returns (sorted keys, note or None)."""
    x = torch.as_tensor(energy, dtype=torch.float64).flatten()
    total = float(x.sum())
    if not total > 0:
        return [], "the logits have no (u+v) energy"
    order = x.argsort(descending=True)
    j = int((x[order].cumsum(0) / total < fraction).sum()) + 1
    return sorted(int(k) + 1 for k in order[:j].tolist()), None

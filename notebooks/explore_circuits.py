# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Reverse-engineering the grokked circuit, one claim and one intervention at a time
#
# The shipped run `checkpoints/nanda-p113` is the one-layer transformer of Nanda et al. (2023) trained on
# $a + b \bmod p$ ($p = 113$) until it grokked. The paper's claim is that it computes
#
# 1. **embed**: $a \mapsto \cos(\omega_k a), \sin(\omega_k a)$ for a few key frequencies $\omega_k = 2\pi k/p$;
# 2. **multiply** (attention + MLP): $\cos(\omega_k(a+b))$ and $\sin(\omega_k(a+b))$ from the products
#    $\cos\omega_k a\cos\omega_k b$, ... by the trig identities;
# 3. **read out**: logit$(c) \approx \sum_k \alpha_k\cos(\omega_k(a+b-c))$, largest at $c = a+b \bmod p$.
#
# Each step below states the maths, checks it on the model's weights or activations, and then proves
# it causally with an intervention from `grokinterp.analysis.interventions`: change only what the claim
# names and watch the loss. The **exercises** (marked ✏️) have their answers checked by an `assert`
# in the cell (as in ARENA): change the code, re-run the cell, the assert tells you whether you
# got it.

# %%
# ruff: noqa: E402
import math
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # no ipywidgets: tqdm prints a text bar

from pathlib import Path

import torch

import grokinterp
from grokinterp import viz
from grokinterp.analysis import fourier, measures
from grokinterp.analysis import interventions as iv
from grokinterp.viz.explorer import use_static_images

use_static_images()  # each figure is stored with a PNG beside it: the notebook renders without JavaScript

# Notebooks run with cwd = notebooks/; from the repository root the run is one level down.
RUN_DIR = next(p for p in (Path("..") / "checkpoints" / "nanda-p113", Path("checkpoints") / "nanda-p113") if p.is_dir())
run = grokinterp.load_run(RUN_DIR)
dataset, p = run.dataset, run.config.p
model = run.model()  # a TransformerLens HookedTransformer, last checkpoint
print(run)
print(measures.loss_and_accuracy(measures.all_logits(model, dataset), dataset))

# %% [markdown]
# ## 1. The Fourier basis
#
# A function $f$ on $\mathbb{Z}_p$ is a vector of $p$ numbers. The real Fourier basis writes it in
# the orthonormal rows of $F$: the constant $1/\sqrt p$, then for $k = 1, \dots, (p-1)/2$ the
# normalised $\cos(\omega_k x)$ and $\sin(\omega_k x)$. Because $F F^\top = I$, $F f$ holds the
# coefficients and $F^\top F f = f$.
#
# ✏️ **Exercise 1.** Build the row of $\cos(\omega_9 x)$ yourself (its norm is $\sqrt{p/2}$) and find
# its index in $F$.

# %%
F, names = fourier.fourier_basis(p, dtype=torch.float64)
x = torch.arange(p, dtype=torch.float64)

cos9 = torch.cos(2 * math.pi * 9 * x / p) / math.sqrt(p / 2)  # your answer
row = names.index("cos 9")  # your answer

assert torch.allclose(F @ F.T, torch.eye(p, dtype=torch.float64), atol=1e-12)
assert torch.allclose(F[row], cos9, atol=1e-12), "not the cos 9 row: check the frequency and the norm"
print(f"cos 9 is row {row} of F")

# %% [markdown]
# ### The embedding is sparse in this basis
#
# Write the embedding $W_E$ (one row per number) in the Fourier basis, $F W_E$: nearly all of its
# norm sits in a handful of frequencies, the **key frequencies**. The neurons agree: clustered by the
# frequency that explains most of their variance, they give the same keys.

# %%
spectrum = measures.embedding_spectrum(model, p)
acts = measures.neuron_acts(model, dataset)  # (p, p, d_mlp): neurons at the "=" position over (a, b)
clusters = measures.neuron_frequency_clusters(acts)
key_freqs = measures.key_frequencies(clusters)
print("key frequencies:", key_freqs)
print(f"neurons explained by one frequency: {clusters.frac_explained:.1%}; sizes: {clusters.cluster_sizes()}")
viz.plot_embedding_spectrum(spectrum, fourier.basis_names(p), key_freqs).show()

# %% [markdown]
# ### Intervention: remove one frequency from $W_E$
#
# If the model reads only the key frequencies of its embedding, removing a key frequency from $W_E$
# (projecting every row off its $\cos$ and $\sin$ directions) must hurt, and removing any other must
# not. `remove_frequencies` attaches a hook to `hook_embed`, evaluates, and detaches it.
#
# ✏️ **Exercise 2.** Which non-key frequency carries the *most* embedding norm? Predict the effect of
# removing it, then check.

# %%
freq_norms = measures.embedding_freq_norms(model, p)  # norm of frequency k = 1..56 in W_E
non_key = [k for k in range(1, p // 2 + 1) if k not in key_freqs]
strongest_non_key = max(non_key, key=lambda k: freq_norms[k - 1].item())  # your answer

key_removed = iv.remove_frequencies(model, dataset, [key_freqs[0]])
other_removed = iv.remove_frequencies(model, dataset, [strongest_non_key])
print(key_removed)
print(other_removed)
assert strongest_non_key == non_key[int(freq_norms[torch.tensor(non_key) - 1].argmax())]
assert key_removed.change.test_loss > 1.0 and abs(other_removed.change.test_loss) < 0.1

# %% [markdown]
# Mid-training the same experiment is the paper's headline: at epoch 10,000 (test accuracy 98%) the
# model already relies on frequency 9.

# %%
print(iv.remove_frequencies(run.model(10_000), dataset, [9]))

# %% [markdown]
# ## 2. Multiplying with trig identities
#
# From $\cos\omega a, \sin\omega a$ and $\cos\omega b, \sin\omega b$ the model needs functions of
# $a+b$:
#
# $$\cos(\omega(a+b)) = \cos\omega a\cos\omega b - \sin\omega a\sin\omega b, \qquad
#   \sin(\omega(a+b)) = \sin\omega a\cos\omega b + \cos\omega a\sin\omega b.$$
#
# Products are what a ReLU of a sum can make: each neuron of the key-frequency-$k$ cluster should be
# a combination of the *quadratic Fourier terms* of one frequency: constant, $\cos\omega a$,
# $\sin\omega a$, $\cos\omega b$, $\sin\omega b$ and the four products.
#
# ✏️ **Exercise 3.** Check the first identity on the $(a, b)$ grid for $\omega = \omega_{9}$.

# %%
w = 2 * math.pi * 9 / p
a, b = x[:, None], x[None, :]
lhs = torch.cos(w * (a + b))
rhs = torch.cos(w * a) * torch.cos(w * b) - torch.sin(w * a) * torch.sin(w * b)  # your answer
assert torch.allclose(lhs, rhs, atol=1e-12)
print("cos(w(a+b)) = cos wa cos wb - sin wa sin wb on all", p * p, "cells")

# %% [markdown]
# ### The neurons are those terms
#
# `neuron_decomposition` writes each neuron in the 2D Fourier basis over $(a, b)$ and reports the
# fraction of its variance in each of the 8 non-constant terms of its frequency (Nanda et al.,
# Sec. 4.2). Over the clustered neurons these terms explain nearly all the variance.

# %%
explained = torch.nonzero(clusters.labels > 0).flatten().tolist()
dec = iv.neuron_decomposition(acts, neurons=explained)  # each neuron in its own best frequency
share = dec.variance_explained.mean(0)
for term, s in zip(dec.terms, share.tolist(), strict=True):
    print(f"{term:>14}: {s:6.1%}")
print(f"all 8 terms of its frequency: {dec.total_explained.mean():.1%} of a clustered neuron's variance on average")
assert dec.total_explained.mean() > 0.9
viz.plot_neuron_heatmaps(acts.double().round(decimals=3), clusters).show()

# %% [markdown]
# ### Intervention: keep only the key frequencies in the neurons, or ablate a cluster
#
# If the MLP computes with the key frequencies' terms only, replacing every neuron by its projection
# onto the 2D Fourier terms of the key frequencies (everything else, about 99% of the basis, set to
# zero) must leave the loss low; and a cluster's neurons must matter.
#
# ✏️ **Exercise 4.** Which cluster hurts the most when mean-ablated? Guess from the cluster sizes
# first, then look.

# %%
approx = iv.replace_mlp_with_key_frequencies(model, dataset, key_freqs)
print(approx)
ablations = {k: iv.ablate_cluster(model, dataset, k, "mean", clusters=clusters) for k in key_freqs}
for r in ablations.values():
    print(r)
worst_cluster = max(ablations, key=lambda k: ablations[k].after.test_loss)  # your answer
assert approx.after.test_loss < 0.1
assert worst_cluster == max(key_freqs, key=lambda k: ablations[k].change.test_loss)
print("the cluster that matters most:", worst_cluster)

# %% [markdown]
# ## 3. Reading out: $\cos(\omega(a+b-c))$
#
# The unembedding turns $\cos(\omega(a+b))$ and $\sin(\omega(a+b))$ into a logit for each answer $c$
# with one more identity:
#
# $$\cos(\omega(a+b-c)) = \cos(\omega(a+b))\cos\omega c + \sin(\omega(a+b))\sin\omega c.$$
#
# Each term is 1 at $c = a+b \bmod p$ and smaller elsewhere; summed over several key frequencies the
# wrong answers cancel (constructive interference only at the right one).
#
# ✏️ **Exercise 5.** With equal weights on the key frequencies, find the answer $c$ the sum predicts
# for $a = 40$, $b = 100$.

# %%
c = torch.arange(p, dtype=torch.float64)
scores = sum(torch.cos(2 * math.pi * k * (40 + 100 - c) / p) for k in key_freqs)
predicted = int(scores.argmax())  # your answer
assert predicted == (40 + 100) % p
print(f"argmax_c sum_k cos(w_k(a+b-c)) = {predicted} = (40 + 100) mod {p}")

# %% [markdown]
# ### The model's logits are that sum
#
# Project the logits on the unit directions $\cos(\omega_k(a+b-c))$: the projection keeps most of
# them, and the projection *alone* classifies the inputs.

# %%
L = measures.all_logits(model, dataset).double()  # (p*p, p)
coefs = measures.cos_apb_minus_c_coefficients(L, p, key_freqs)
cos_sim = measures.cosine_similarity_to_cos_apb_minus_c(L, p, key_freqs)
print("alpha_k:", {k: round(float(v), 1) for k, v in zip(key_freqs, coefs, strict=True)})
print(f"cosine similarity of the logits with their cos(w(a+b-c)) part: {cos_sim:.3f}")
approx_logits = sum(
    v * fourier.cos_apb_minus_c(p, k, dtype=torch.float64) for k, v in zip(key_freqs, coefs, strict=True)
)
print("the cos(w(a+b-c)) part alone:", measures.loss_and_accuracy(approx_logits, dataset))

# %% [markdown]
# ### Intervention: frequencies in the logits
#
# The paper's two ablations of the logits: **restricted loss** keeps only the key frequencies'
# $(a+b)$ directions; **excluded loss** removes them (train split). A Fourier circuit keeps a low
# restricted loss and gets a high excluded loss, and removing any single *other* frequency barely
# matters. `remove_frequencies(..., "logits")` removes a frequency's whole 2D Fourier terms over
# $(a, b)$ from the logits by a hook on the model's output.

# %%
restricted = measures.restricted_loss(L, dataset, key_freqs)
excluded = measures.excluded_loss(L, dataset, key_freqs)
train_loss = measures.loss_and_accuracy(L, dataset)["train_loss"]
print(f"train loss {train_loss:.2e} | restricted loss {restricted:.2e} | excluded loss {excluded:.2f}")

per_k = measures.per_frequency_excluded_loss(L, dataset)
worst = per_k.argsort(descending=True)[: len(key_freqs)] + 1
print("frequencies whose removal hurts most:", sorted(worst.tolist()))
print(iv.remove_frequencies(model, dataset, [key_freqs[-1]], "logits"))
viz.plot_per_frequency_excluded_loss(run, key_freqs=key_freqs).show()

# %% [markdown]
# ### Who writes the correct logit? Direct logit attribution per cluster
#
# Each neuron writes to the logits through $W_L = W_{out} W_U$. Summing, per cluster, the neurons'
# contributions to the *correct* logit (averaged over all inputs) shows which frequencies carry the
# answer.
#
# ✏️ **Exercise 6.** The attribution is linear in the neurons: check that the clusters' shares add up to
# the MLP's whole direct contribution, and name the cluster with the largest share.

# %%
dla = iv.direct_logit_attribution(model, dataset, clusters=clusters)
print({k: round(v, 1) for k, v in dla.per_cluster.items()}, "| total", round(dla.total, 1))
top_cluster = max((k for k in dla.per_cluster if k > 0), key=dla.per_cluster.get)  # your answer
assert abs(sum(dla.per_cluster.values()) - dla.total) < 1e-6 * abs(dla.total)
assert top_cluster in key_freqs
print("largest direct contribution: the cluster of frequency", top_cluster)

# %% [markdown]
# ## Summary
#
# | claim | evidence | intervention |
# |---|---|---|
# | embed with a few frequencies | $F W_E$ sparse | remove a key frequency from $W_E$: loss jumps; another: nothing |
# | multiply with trig identities | neurons = quadratic terms of one frequency | MLP replaced by its key-frequency terms: loss stays low; a cluster ablated: loss rises |
# | read out $\cos(\omega(a+b-c))$ | logits project on it | restricted loss low, excluded loss high; DLA per cluster |
#
# Next: `notebooks/progress_measures.ipynb` follows these measures over training (the three phases).

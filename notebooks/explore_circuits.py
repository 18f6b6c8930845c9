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
# # Exploring the grokked circuit
#
# The shipped run `checkpoints/nanda-p113` is the one-layer transformer of Nanda et al. (2023)
# trained on $a + b \bmod 113$ until it grokked. This notebook follows the paper's reverse
# engineering with `grokinterp`: the embedding in the Fourier basis, the key frequencies, the
# neuron clusters, the periodic attention, the logits as $\cos(\omega_k(a+b-c))$ and an ablation of
# the key frequencies (restricted and excluded loss).

# %%
# ruff: noqa: E402
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # no ipywidgets: tqdm prints a text bar

from pathlib import Path

import torch

import grokinterp
from grokinterp import viz as plots
from grokinterp.analysis import fourier, measures
from grokinterp.viz.explorer import use_static_images

use_static_images()  # each figure is stored with a PNG beside it: the notebook renders without JavaScript

# Notebooks run with cwd = notebooks/; from the repository root the run is one level down.
RUN_DIR = next(p for p in (Path("..") / "checkpoints" / "nanda-p113", Path("checkpoints") / "nanda-p113") if p.is_dir())
run = grokinterp.load_run(RUN_DIR)
dataset, p = run.dataset, run.config.p
print(run)

# %% [markdown]
# ## The model and its activations
#
# `run.model()` is a TransformerLens `HookedTransformer` with the final weights, so the usual
# `run_with_cache` works on all $p^2$ inputs `a b =`.

# %%
model = run.model()
logits, cache = model.run_with_cache(dataset.tokens)
print("logits", tuple(logits.shape), "| mlp post", tuple(cache["blocks.0.mlp.hook_post"].shape))
print(measures.loss_and_accuracy(logits[:, -1, :p], dataset))

# %% [markdown]
# ## The embedding in the Fourier basis
#
# Rows of `F @ W_E` (cos and sin of each frequency $\omega_k = 2\pi k/p$): a handful of frequencies
# carry almost all of the norm.

# %%
F, names = fourier.fourier_basis(p)
W_E_fourier = F @ model.W_E[:p].detach()
norms = W_E_fourier.norm(dim=1)
top = norms.argsort(descending=True)[:8]
print("largest components:", [names[i] for i in top.tolist()])

# %% [markdown]
# ## Key frequencies and neuron clusters
#
# Each MLP neuron is centred over the $p^2$ inputs; the fraction of its variance explained by one
# frequency clusters it (threshold 0.85). The key frequencies are those of the clusters.

# %%
acts = measures.neuron_acts(model, dataset)  # (p, p, d_mlp) at the "=" position
clusters = measures.neuron_frequency_clusters(acts)
key_freqs = measures.key_frequencies(clusters)
print("key frequencies:", key_freqs)
print(f"neurons explained by one frequency: {clusters.frac_explained:.1%}")
print("cluster sizes:", clusters.cluster_sizes())

# %%
plots.plot_embedding_spectrum(measures.embedding_spectrum(model, p), fourier.basis_names(p), key_freqs).show()
plots.plot_wl_spectrum(measures.wl_spectrum(model), fourier.basis_names(p), key_freqs).show()

# %%
plots.plot_cluster_sizes(clusters).show()
plots.plot_fraction_explained_hist(clusters).show()
# Rounded to 3 decimals for the plot only: the stored notebook keeps 113 x 113 numbers per panel.
plots.plot_neuron_heatmaps(acts.double().round(decimals=3), clusters).show()

# %% [markdown]
# ## Attention
#
# The attention from `=` to `a` is periodic in $a$ and $b$ too (paper Sec. 4.1).

# %%
plots.plot_attention(measures.attention_to_a_b(model, dataset)[0].double().round(decimals=3)).show()

# %% [markdown]
# ## Logits as $\cos(\omega_k(a+b-c))$
#
# The paper's algorithm predicts logits $\sum_k \alpha_k \cos(\omega_k(a+b-c))$ over the key
# frequencies. Project the logits on these unit directions and check how much they explain and
# how well the approximation alone does.

# %%
L = measures.all_logits(model, dataset).double()  # (p*p, p)
coefs = measures.cos_apb_minus_c_coefficients(L, p, key_freqs)
cos_sim = measures.cosine_similarity_to_cos_apb_minus_c(L, p, key_freqs)
print("coefficients:", {k: round(float(c), 1) for k, c in zip(key_freqs, coefs, strict=True)})
print(f"cosine similarity of the logits with their cos(w(a+b-c)) part: {cos_sim:.3f}")

approx = sum(c * fourier.cos_apb_minus_c(p, k, dtype=torch.float64) for k, c in zip(key_freqs, coefs, strict=True))
print("loss of the approximation alone:", measures.loss_and_accuracy(approx, dataset))

# %% [markdown]
# ## Ablating the key frequencies
#
# Restricted loss keeps only the key frequencies' $(a+b)$ directions of the logits; excluded loss
# removes them (train split). A model that uses the Fourier algorithm keeps a low restricted loss
# and gets a high excluded loss; removing any other single frequency barely matters.

# %%
restricted = measures.restricted_loss(L, dataset, key_freqs)
excluded = measures.excluded_loss(L, dataset, key_freqs)
train_loss = measures.loss_and_accuracy(L, dataset)["train_loss"]
print(f"train loss {train_loss:.2e} | restricted loss {restricted:.2e} | excluded loss {excluded:.2f}")

per_k = measures.per_frequency_excluded_loss(L, dataset)
worst = per_k.argsort(descending=True)[: len(key_freqs)] + 1
print("frequencies whose removal hurts most:", sorted(worst.tolist()))

# %%
plots.plot_per_frequency_excluded_loss(run, key_freqs=key_freqs).show()

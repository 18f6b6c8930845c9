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
# # Grokking modular division, end to end
#
# Division $a / b \bmod p$ is multiplication by $b^{-1}$. Its Fourier structure lives in the
# multiplicative group $\mathbb{Z}_p^*$, which is cyclic of order $p - 1$: with a primitive root
# $g$, the discrete log $\phi = \log_g$ turns division into subtraction,
# $\phi(a / b) = \phi(a) - \phi(b) \bmod (p-1)$. `grokinterp.bases` knows this: every Fourier
# measure of a division run is computed on the $(\phi_a, \phi_b)$ grid of $\mathbb{Z}_{p-1}$ (the
# pairs with $b = 0$ are not in the dataset; $a = 0$ has no discrete log and is left out of the
# Fourier measures only).
#
# This notebook trains the `nanda-p113-fast` recipe on division at a small prime (seconds on a
# CPU), analyses it in that basis, plots the progress measures and opens the checkpoint explorer.

# %%
import shutil
import tempfile
from pathlib import Path

import torch

import grokinterp
from grokinterp import viz as plots
from grokinterp.analysis.bases import task_basis
from grokinterp.training.trainer import Trainer
from grokinterp.viz.explorer import use_static_images

use_static_images()  # each figure is stored with a PNG beside it: the notebook renders without JavaScript

torch.set_num_threads(1)  # a model this small trains faster on one thread (and does not fight other jobs)

P = 31
# nanda-p113-fast's model and recipe; a small prime has few pairs, so 60% of them train.
cfg = grokinterp.get_preset("nanda-p113-fast").replace(p=P, op="div", train_frac=0.6, checkpoint_every=25)
run_dir = Path(tempfile.mkdtemp(prefix="grokinterp-")) / f"div{P}"

basis = task_basis("div", P)
print(f"basis: {basis.name} (m = {basis.m}, primitive root g = {basis.g})")
print("phi_a = dlog:", basis.phi_a[:8].tolist(), "...")

# %% [markdown]
# ## Train
#
# The recipe stops once test accuracy has stayed at or above 0.99 for 51 evaluations in a row (500
# epochs at the preset's spacing, a little less here, where a checkpoint every 25 epochs adds
# evaluations): long enough for the analysis below to see cleanup end, so it reports all three
# phase boundaries.

# %%
result = Trainer(cfg, run_dir).run(progress=True)
print(f"trained {result.final_epoch} epochs in {result.wall_clock_s:.1f} s; grokked at epoch {result.grokking_epoch}")

# %% [markdown]
# ## Analyse in the discrete-log basis
#
# `analyze_run` picks the key frequencies at the final checkpoint (frequencies $k$ of
# $\mathbb{Z}_{p-1}$, $\omega_k = 2\pi k / (p-1)$), computes every measure at every checkpoint and
# places the three phases: memorisation ends where the excluded loss turns upward while the
# restricted loss falls, circuit formation ends at the excluded loss' peak as test accuracy reaches
# 0.99, and cleanup ends once the weight norm and the Gini coefficients are seen to plateau. Short
# loss spikes are listed, never taken as boundaries.

# %%
table, summary = grokinterp.analyze_run(run_dir, progress=False)
run = grokinterp.load_run(run_dir)
print("basis:", summary["basis"]["name"])
print("key frequencies:", summary["key_freqs"])
print(f"neurons explained by one frequency: {summary['frac_neurons_explained_final']:.1%}")
print("phase boundaries:", summary["phases"]["boundaries"])
for name, why in zip(("memorisation", "circuit formation", "cleanup"), summary["phases"]["reasons"], strict=True):
    if why:
        print(f"end of {name} not reached: {why}")
print("loss spikes:", [(s["start"], s["end"]) for s in summary["phases"]["instabilities"]] or "none")
final = summary["final"]
print(f"final test accuracy: {final['test_acc']:.3f}")
print(f"restricted loss {final['restricted_loss']:.2e} | excluded loss {final['excluded_loss']:.2f}")
for note in summary["notes"]:
    print("note:", note)

# %% [markdown]
# ## Progress measures
#
# As for addition: the restricted loss (only the key frequencies' directions of the logits) falls
# before the test loss does, and the excluded loss (those directions removed) rises during circuit
# formation.

# %%
plots.plot_loss(run).show()
plots.plot_restricted_excluded(run).show()
plots.plot_gini(run).show()

# %% [markdown]
# ## The circuit at the last checkpoint
#
# The embedding is sparse in the Fourier basis of $\mathbb{Z}_{p-1}$ (rows indexed by
# $\phi(a)$), and neurons are periodic over the $(\phi_a, \phi_b)$ grid (in the raw $(a, b)$ grid
# they look like noise).

# %%
figs = plots.make_all_figures(run)
figs["embedding_spectrum"].show()
figs["neuron_heatmaps"].show()
figs["per_frequency_excluded_loss"].show()

# %% [markdown]
# ## Explore the checkpoints
#
# `grokinterp.explore(run)` opens a slider over the checkpoints (live kernel needed); `show(epoch)`
# draws the same panels at one checkpoint as ordinary outputs. `grokinterp report RUN --out
# report.html` writes the explorer as one HTML file.

# %%
ex = grokinterp.explore(run)
ex  # noqa: B018 (a cell's last expression is displayed: here, the widget)

# %%
middle = ex.epochs[len(ex.epochs) // 2]
ex.show(middle)

# %% [markdown]
# Clean up: remove the temporary run directory (skip this cell to keep it).

# %%
shutil.rmtree(run_dir.parent)

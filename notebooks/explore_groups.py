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
# # Grokking a non-abelian group, in the basis of its irreducible representations
#
# Modular addition is the cyclic group $C_p$, and Nanda et al.'s Fourier basis is the set of its
# irreducible representations ("irreps"): the frequency $k$ is the 2-dimensional rotation by
# $2\pi k x / p$. Chughtai, Chan and Nanda 2023 ("A toy model of universality") showed that
# networks trained on any finite group $G$ learn the same algorithm with $G$'s own irreps $\rho$:
# they embed $a$ and $b$ as the matrices $\rho(a)$, $\rho(b)$, multiply them in the hidden layer and
# read the answer $c$ off $\mathrm{tr}\,\rho(a b c^{-1})$.
#
# This notebook trains their MLP on the alternating group $A_5$ (60 elements, the rotations of an
# icosahedron) with the fast recipe `chughtai-a5-mlp-fast` (seconds on a CPU), analyses every
# checkpoint in the irrep basis and draws the irrep figures.

# %%
import shutil
import tempfile
from pathlib import Path

import torch

import grokinterp
from grokinterp import viz as plots
from grokinterp.analysis.irreps import KAPPA, group_irreps
from grokinterp.groups import parse_group
from grokinterp.training.trainer import Trainer
from grokinterp.viz.explorer import use_static_images

use_static_images()  # each figure is stored with a PNG beside it: the notebook renders without JavaScript
torch.set_num_threads(1)  # a model this small trains faster on one thread

group = parse_group("A5")
irreps = group_irreps(group)
print(f"{group.name}: {group.order} elements; element 7 is {group.labels[7]}")
for r in irreps:
    print(f"  irrep {r.name:9s} dim {r.dim} ({r.kind}), character at element 7: {float(r.character[7]):+.3f}")
print("sum of dim^2 / kappa:", sum(r.dim**2 // KAPPA[r.kind] for r in irreps), "= |G|")

# %% [markdown]
# ## Train
#
# The task is $A_5$'s multiplication table: tokens $a, b$ are element indices, the answer is the
# index of $a b$. The model is Chughtai et al.'s MLP: two embeddings (one for $a$, one for $b$),
# concatenated, one hidden ReLU layer of 128 neurons, no biases.

# %%
cfg = grokinterp.get_preset("chughtai-a5-mlp-fast")
run_dir = Path(tempfile.mkdtemp(prefix="grokinterp-")) / "a5"
result = Trainer(cfg, run_dir).run(progress=True)
print(f"trained {result.final_epoch} epochs in {result.wall_clock_s:.1f} s; grokked at epoch {result.grokking_epoch}")

# %% [markdown]
# ## Analyse in the irrep basis
#
# The key irreps are those whose character direction $\mathrm{tr}\,\rho(a b c^{-1})$ the final
# logits follow (cosine similarity above 0.005, Chughtai et al.'s rule). The fractions of
# variance explained (FVE) say how much of the embeddings, the unembedding and the neurons lives
# in the key irreps' matrix entries; the restricted loss keeps only the neurons' $\rho(ab)$ part of
# the key irreps, the excluded loss removes it. $A_5$ is not cyclic, so the Fourier measures are
# not defined, and the analysis says so rather than computing them in the wrong basis.

# %%
table, summary = grokinterp.analyze_run(run_dir, progress=False)
run = grokinterp.load_run(run_dir)
entry = summary["irreps"]
print("key irreps:", entry["key_irreps"], f"({entry['key_rule']['rule']} rule)")
final = entry["final"]
print(f"final test accuracy: {summary['final']['test_acc']:.3f}")
print(
    f"FVE by the key irreps: W_a {final['fve_W_a']:.2%}, W_b {final['fve_W_b']:.2%}, W_U {final['fve_W_U']:.2%}, "
    f"MLP {final['fve_mlp']:.2%}"
)
print(f"restricted loss {final['restricted_loss_irrep']:.2e} | excluded loss {final['excluded_loss_irrep']:.2f}")
print("Fourier measures:", summary["not_defined"]["restricted_loss"])
print("phase boundaries:", summary["phases"]["boundaries"])
sims = entry["final_per_irrep"]["logit_sim"]
print("logit trace similarity per irrep:", {k: round(v, 3) for k, v in sims.items() if v is not None})

# %% [markdown]
# ## The irreps over training
#
# The embedding of $a$ spreads over every irrep at initialisation; the key irreps take over as the
# model groks, and the restricted loss falls long before the test loss does.

# %%
figs = plots.make_all_figures(run)
figs["irrep_spectrum_over_training"].show()
figs["irrep_restricted_excluded"].show()
plots.plot_loss(run).show()

# %% [markdown]
# ## Explore the checkpoints
#
# The explorer shows the irrep panels beside the loss, with a cursor on the checkpoint.

# %%
ex = grokinterp.explore(run)
ex  # noqa: B018 (a cell's last expression is displayed: here, the widget)

# %% [markdown]
# Clean up: remove the temporary run directory (skip this cell to keep it).

# %%
shutil.rmtree(run_dir.parent)

# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Progress measures and the three phases
#
# Every progress measure of Nanda et al. (2023) over all 32 checkpoints of the shipped run, and the
# phases (memorisation, circuit formation, cleanup) placed by `grokinterp.phases`' rule. The
# analysis is written into a temporary copy of the run, so the repository stays untouched.

# %%
# ruff: noqa: E402
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # no ipywidgets: tqdm prints a text bar

import shutil
import tempfile
from pathlib import Path

import grokinterp
from grokinterp import viz as plots
from grokinterp.analysis.phases import PAPER_PHASES
from grokinterp.viz.explorer import use_static_images

use_static_images()  # each figure is stored with a PNG beside it: the notebook renders without JavaScript

# Notebooks run with cwd = notebooks/; from the repository root the run is one level down.
RUN_DIR = next(p for p in (Path("..") / "checkpoints" / "nanda-p113", Path("checkpoints") / "nanda-p113") if p.is_dir())
work = Path(tempfile.mkdtemp(prefix="grokinterp-")) / RUN_DIR.name
shutil.copytree(RUN_DIR, work)
print("working copy:", work)

# %% [markdown]
# ## Analyse
#
# `analyze_run` computes every measure at every checkpoint (a few seconds) and writes
# `measures.csv` and `analysis.json` (here: into the copy).

# %%
table, summary = grokinterp.analyze_run(work)
run = grokinterp.load_run(work)
print("key frequencies:", summary["key_freqs"])
print("phase boundaries:", summary["phases"]["boundaries"], "| paper:", list(PAPER_PHASES))
table[["epoch", "train_loss", "test_loss", "restricted_loss", "excluded_loss", "gini_W_E", "sum_sq_weights"]].tail()

# %% [markdown]
# ## Loss and accuracy

# %%
plots.plot_loss(run).show()
plots.plot_accuracy(run).show()

# %% [markdown]
# ## Restricted and excluded loss (paper Fig. 7)
#
# Logit level: restricted loss on all $p^2$ pairs, excluded loss on the train split. The neuron
# level variants of the TransformerLens demo follow, and the same figure with the paper's phase
# boundaries for comparison.

# %%
plots.plot_restricted_excluded(run).show()
plots.plot_restricted_excluded_neuron(run).show()
plots.plot_restricted_excluded(run, phases=PAPER_PHASES).update_layout(
    title_text="Restricted and excluded loss, paper's phase boundaries"
).show()

# %% [markdown]
# ## Sparsity in the Fourier basis, weight norm, clustered neurons

# %%
plots.plot_gini(run).show()
plots.plot_weight_norm(run).show()
plots.plot_frac_neurons_explained(run).show()
plots.plot_cos_apb_c(run).show()

# %% [markdown]
# ## Which frequencies matter, at the end

# %%
plots.plot_per_frequency_excluded_loss(run).show()

# %% [markdown]
# ## Export a paper figure
#
# Static export (pdf, png, svg) renders in Chromium through kaleido; without Chromium the figure
# is written as HTML instead. `plots.write_all_figures(run_dir, out_dir, fmt)` writes all of them.

# %%
out_dir = work.parent / "figures"
(path,) = plots.export_figures({"fig7_restricted_excluded": plots.plot_restricted_excluded(run)}, out_dir, fmt="pdf")
print("wrote", path.name, f"({path.stat().st_size // 1024} KB)")

# %% [markdown]
# Remove the temporary copy (skip this cell to keep the analysed copy and the figure).

# %%
shutil.rmtree(work.parent)

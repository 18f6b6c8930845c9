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
# # Train your own grokking model
#
# A small one-layer transformer on $a + b \bmod 23$ with half the pairs for training groks in a few
# hundred epochs (seconds on a CPU). Training writes a run directory (here a temporary one) that
# `load_run`, `analyze_run` and the plots read like the shipped run.

# %%
# ruff: noqa: E402
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # no ipywidgets: tqdm prints a text bar

import shutil
import tempfile
from pathlib import Path

import grokinterp
from grokinterp import viz as plots
from grokinterp.analysis import fourier, measures
from grokinterp.training.trainer import Trainer
from grokinterp.viz.explorer import use_static_images

use_static_images()  # each figure is stored with a PNG beside it: the notebook renders without JavaScript

cfg = grokinterp.RunConfig(
    p=23,
    train_frac=0.5,
    d_model=64,
    n_heads=4,
    d_head=16,
    d_mlp=256,
    lr=3e-3,
    wd=3.0,
    epochs=1000,
    eval_every=50,
    checkpoint_every=50,
    device="cpu",
)
run_dir = Path(tempfile.mkdtemp(prefix="grokinterp-")) / "p23"

# %% [markdown]
# ## Train, with live progress
#
# The tqdm bar shows the epochs; the callback prints the losses every 200 epochs.


# %%
def report(trainer, row):
    if row["epoch"] % 200 == 0:
        print(
            f"epoch {row['epoch']:4d}  train {row['train_loss']:.2e}  test {row['test_loss']:.2e}  test acc {row['test_acc']:.3f}"
        )


result = Trainer(cfg, run_dir).run(progress=True, callback=report)
print(f"trained {result.final_epoch} epochs in {result.wall_clock_s:.1f} s; grokked at epoch {result.grokking_epoch}")

# %% [markdown]
# ## Analyse and plot

# %%
table, summary = grokinterp.analyze_run(run_dir, progress=False)
run = grokinterp.load_run(run_dir)
print("key frequencies:", summary["key_freqs"])
print("phase boundaries:", summary["phases"]["boundaries"])
print(f"final test accuracy: {summary['final']['test_acc']:.3f}")

# %%
plots.plot_loss(run).show()
plots.plot_restricted_excluded(run).show()
plots.plot_embedding_spectrum(
    measures.embedding_spectrum(run.model(), cfg.p), fourier.basis_names(cfg.p), summary["key_freqs"]
).show()

# %% [markdown]
# Clean up: remove the temporary run directory (skip this cell to keep it for `load_run`).

# %%
shutil.rmtree(run_dir.parent)

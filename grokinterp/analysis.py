"""Every progress measure over every checkpoint of a run, plus the phases.

``analyze_run(path)`` loads each checkpoint into one reused model, computes
``measures.compute_all_measures`` with the key frequencies of the final checkpoint (as in the paper;
overridable), and writes ``measures.csv`` (one row per checkpoint) and ``analysis.json`` (key
frequencies, phase boundaries, final losses) into the run directory.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from grokinterp import checkpoints as ckpt
from grokinterp import measures
from grokinterp.models import build_model
from grokinterp.phases import detect_phases
from grokinterp.runs import Run

logger = logging.getLogger(__name__)


_FINAL_KEYS = (
    "epoch", "train_loss", "test_loss", "train_acc", "test_acc",
    "restricted_loss", "restricted_loss_train", "excluded_loss",
    "restricted_loss_neuron", "excluded_loss_neuron", "gini_W_E", "gini_W_L", "sum_sq_weights",
)  # fmt: skip


def _scalar_row(epoch: int, m: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"epoch": epoch}
    for k, v in m.items():
        if isinstance(v, list):
            if k == "cos_apb_c_coeffs":
                row.update({f"cos_apb_c_k{f}": c for f, c in zip(m["key_freqs"], v, strict=True)})
            else:
                row[k] = " ".join(map(str, v))
        else:
            row[k] = v
    return row


def analyze_run(
    path: str | Path,
    key_freqs: Sequence[int] | None = None,
    threshold: float = measures.DEFAULT_THRESHOLD,
    epochs: Sequence[int] | None = None,
    progress: bool = True,
    write: bool = True,
):
    """Compute all measures for every checkpoint; return ``(DataFrame, summary dict)``."""
    import pandas as pd
    from tqdm.auto import tqdm

    run = Run(path)
    cfg, dataset = run.config, run.dataset
    all_epochs = run.checkpoint_epochs
    if not all_epochs:
        raise ckpt.RunDirError(f"{run.path}: no checkpoints to analyse")
    epochs = all_epochs if epochs is None else [run._resolve_epoch(e) for e in epochs]
    start = time.perf_counter()
    model = build_model(cfg)
    model.eval()

    final = run.checkpoint(all_epochs[-1])
    model.load_state_dict(final.state_dict)
    final_m = measures.compute_all_measures(model, dataset, None, threshold)
    keys_source = "given" if key_freqs is not None else "final checkpoint (clustered rule)"
    keys = list(key_freqs) if key_freqs is not None else list(final_m["key_freqs_clustered"])

    rows = []
    for epoch in tqdm(epochs, desc="analyse", unit="ckpt", disable=not progress):
        tensors, _ = ckpt.load_tensors(ckpt.checkpoint_path(run.path, epoch))
        model.load_state_dict(tensors)
        rows.append(_scalar_row(epoch, measures.compute_all_measures(model, dataset, keys, threshold)))
    table = pd.DataFrame(rows)
    elapsed = time.perf_counter() - start

    phases = detect_phases(run.metrics_rows, table)
    last = rows[-1]
    summary = {
        "run": str(run.path),
        "n_checkpoints": len(rows),
        "analysis_seconds": round(elapsed, 2),
        "key_freqs": keys,
        "key_freqs_source": keys_source,
        "key_freqs_final_clustered": final_m["key_freqs_clustered"],
        "key_freqs_final_paper_code": final_m["key_freqs_paper_code"],
        "threshold": threshold,
        "frac_neurons_explained_final": final_m["frac_neurons_explained"],
        "n_neurons_explained_final": round(final_m["frac_neurons_explained"] * _d_mlp(model)),
        "phases": phases,
        "final": {
            k: last[k]
            for k in (
                "epoch",
                "train_loss",
                "test_loss",
                "train_acc",
                "test_acc",
                "restricted_loss",
                "restricted_loss_train",
                "excluded_loss",
                "restricted_loss_neuron",
                "excluded_loss_neuron",
                "gini_W_E",
                "gini_W_L",
                "sum_sq_weights",
            )
        },
        "variants": {
            "restricted_loss": "logit level, all p*p pairs (paper)",
            "restricted_loss_train": "logit level, train split",
            "excluded_loss": "logit level, train split (paper)",
            "restricted_loss_neuron": "neuron level, test split (TransformerLens demo)",
            "excluded_loss_neuron": "neuron level, train split (TransformerLens demo)",
        },
    }
    if write:
        ckpt.atomic_write_text(run.path / "measures.csv", table.to_csv(index=False))
        ckpt.atomic_write_text(run.path / "analysis.json", json.dumps(summary, indent=2, default=float))
    logger.info("analysed %d checkpoints in %.1f s", len(rows), elapsed)
    return table, summary


def _d_mlp(model: torch.nn.Module) -> int:
    cfg = getattr(model, "cfg", None)
    return cfg.d_mlp if cfg is not None else model.run_cfg.d_mlp

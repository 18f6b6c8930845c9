"""Every progress measure over every checkpoint of a run, plus the phases.

``analyze_run(path)`` chooses the key frequencies at the final checkpoint (rule "auto": the rule of
the architecture, ``clusters.auto_key_rule``: "clustered" on the MLP layer with the most neurons
explained, as in the paper, for a 1-layer transformer and the MLP, "logits" for a transformer with
more layers; recorded in analysis.json's ``key_rule`` with why; overridable: another rule, another
layer, or given keys), computes ``measures.compute_all_measures`` with them at every checkpoint,
and writes ``measures.csv`` (one row per checkpoint) and ``analysis.json`` (the typed
``Analysis``: the task's basis, key frequencies by every rule, each MLP layer, the phases, final
values, what is not defined and why, warnings). For cyclic-group tasks every checkpoint also gets the
clock/pizza measures of Zhong et al. 2023 (``clock_pizza.measure_columns``) and analysis.json their
final values and verdict (``clock_pizza.analysis_entry``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from grokinterp import constants as C
from grokinterp.analysis import clock_pizza, irrep_measures, measures
from grokinterp.analysis.bases import task_basis
from grokinterp.analysis.clusters import KeyFrequencies, KeyRule, auto_key_rule
from grokinterp.analysis.phases import detect_phases
from grokinterp.errors import RunDirError
from grokinterp.forward import final_position_cache
from grokinterp.io import rundir
from grokinterp.io.interop import import_warnings
from grokinterp.io.lock import locks_run_when_writing
from grokinterp.io.runs import Run
from grokinterp.memory import keep_freed_memory
from grokinterp.models import build_model, load_weights
from grokinterp.progress import progress_enabled

if TYPE_CHECKING:
    import pandas as pd

    from grokinterp.analysis.llc import LLCConfig

__all__ = ["Analysis", "analyze_run", "clock_pizza_verdict", "load_analysis"]

logger = logging.getLogger(__name__)

_FINAL_KEYS = (
    "epoch", "train_loss", "test_loss", "train_acc", "test_acc",
    "restricted_loss", "restricted_loss_train", "excluded_loss",
    "restricted_loss_neuron", "excluded_loss_neuron", "gini_W_E", "gini_W_L", "sum_sq_weights",
    "gradient_symmetricity", "distance_irrelevance", "circularity",
)  # fmt: skip

VARIANTS = {
    "restricted_loss": "logit level, all rows of the grid (paper)",
    "restricted_loss_train": "logit level, train rows of the grid",
    "excluded_loss": "logit level, train rows of the grid (paper)",
    "restricted_loss_neuron": "neuron level, last MLP layer, test rows of the grid (TransformerLens demo)",
    "excluded_loss_neuron": "neuron level, last MLP layer, train rows of the grid (TransformerLens demo)",
}

#: The JSON type of each entry of analysis.json that readers index into.
_SHAPE: dict[str, type] = {
    "basis": dict, "key_frequencies": dict, "key_freqs_by_rule": dict, "layers": list, "phases": dict,
    "final": dict, "not_defined": dict, "warnings": list, "notes": list, "variants": dict, "clock_pizza": dict,
    "key_rule": dict, "irreps": dict,
}  # fmt: skip


@dataclass(frozen=True)
class Analysis:
    """The contents of analysis.json. ``key_frequencies`` is None for a task without a basis.
    ``key_rule``: the rule asked for ("requested", e.g. "auto"), the rule used ("used") and why
    ("why")."""

    run: str
    n_checkpoints: int
    analysis_seconds: float
    basis: dict[str, Any]
    key_frequencies: KeyFrequencies | None
    key_freqs_by_rule: dict[str, KeyFrequencies]
    layers: list[dict[str, Any]]
    threshold: float
    phases: dict[str, Any]
    final: dict[str, Any]
    not_defined: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    clock_pizza: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, str] = field(default_factory=lambda: dict(VARIANTS))
    key_rule: dict[str, Any] = field(default_factory=dict)
    irreps: dict[str, Any] = field(default_factory=dict)

    @property
    def key_irreps(self) -> list[str]:
        """The key irreps of a group task (empty for any other task, or where none was found)."""
        return list(self.irreps.get("key_irreps") or [])

    @property
    def key_freqs(self) -> list[int]:
        """The chosen key frequencies (empty for a task without a basis)."""
        return [] if self.key_frequencies is None else list(self.key_frequencies.freqs)

    @property
    def basis_defined(self) -> bool:
        """Whether the task has a Fourier basis (else no Fourier measure is defined)."""
        return self.basis.get("family", "none") != "none"

    def chosen_layer(self) -> dict[str, Any] | None:
        """The ``layers`` entry of the keys' layer (default: the one with the most neurons
        explained); None without MLP layers."""
        kf = self.key_frequencies
        layer = kf.layer if kf is not None and kf.layer is not None else None
        if layer is None:
            best = max(self.layers, key=lambda d: d["n_explained"], default=None)
            return best
        return next((d for d in self.layers if d["layer"] == layer), None)

    def to_dict(self) -> dict[str, Any]:
        """The contents of analysis.json, with the derived keys older readers expect."""
        kf = self.key_frequencies
        chosen = self.chosen_layer()
        src = "not defined" if kf is None else (kf.rule if kf.rule == "given" else f"final checkpoint ({kf.rule} rule)")
        return {
            "run": self.run,
            "n_checkpoints": self.n_checkpoints,
            "analysis_seconds": self.analysis_seconds,
            "basis": self.basis,
            "key_freqs": self.key_freqs,
            "key_freqs_source": src,
            "key_rule": self.key_rule,
            "key_frequencies": None if kf is None else kf.to_dict(),
            "key_freqs_by_rule": {r: k.to_dict() for r, k in self.key_freqs_by_rule.items()},
            "key_freqs_final_clustered": list(self.key_freqs_by_rule["clustered"].freqs)
            if "clustered" in self.key_freqs_by_rule
            else [],
            "key_freqs_final_paper_code": list(self.key_freqs_by_rule["paper_code"].freqs)
            if "paper_code" in self.key_freqs_by_rule
            else [],
            "threshold": self.threshold,
            "frac_neurons_explained_final": None if chosen is None else chosen["frac_explained"],
            "n_neurons_explained_final": None if chosen is None else chosen["n_explained"],
            "layers": self.layers,
            "phases": self.phases,
            "final": self.final,
            "not_defined": self.not_defined,
            "warnings": self.warnings,
            "notes": self.notes,
            "variants": self.variants,
            "clock_pizza": self.clock_pizza,
            "irreps": self.irreps,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Analysis:
        """The ``Analysis`` of an analysis.json dict (also of older versions, with defaults)."""
        for key, kind in _SHAPE.items():
            if d.get(key) is not None and not isinstance(d[key], kind):
                raise TypeError(f"{key} is a {type(d[key]).__name__}, not a {kind.__name__}")
        kf = d.get("key_frequencies")
        if kf is None and d.get("key_freqs"):  # analysis.json of an older version
            kf = {"freqs": d["key_freqs"], "rule": "clustered", "basis": "Z_p (additive)"}
        return cls(
            run=d.get("run", ""),
            n_checkpoints=d.get("n_checkpoints", 0),
            analysis_seconds=d.get("analysis_seconds", 0.0),
            basis=d.get("basis", {"family": "cyclic", "name": "Z_p (additive)"}),
            key_frequencies=None if kf is None else KeyFrequencies.from_dict(kf),
            key_freqs_by_rule={r: KeyFrequencies.from_dict(k) for r, k in d.get("key_freqs_by_rule", {}).items()},
            layers=d.get("layers", []),
            threshold=d.get("threshold", measures.DEFAULT_THRESHOLD),
            phases=d.get("phases", {}),
            final=d.get("final", {}),
            not_defined=d.get("not_defined", {}),
            warnings=d.get("warnings", []),
            notes=d.get("notes", []),
            variants=d.get("variants", dict(VARIANTS)),
            clock_pizza=d.get("clock_pizza", {}),
            key_rule=d.get("key_rule") or {},
            irreps=d.get("irreps") or {},
        )

    def to_json(self) -> str:
        """``to_dict`` as indented JSON (the text of analysis.json)."""
        return json.dumps(self.to_dict(), indent=2, default=_json_default)

    @classmethod
    def load(cls, run_dir: str | Path) -> Analysis | None:
        """The ``Analysis`` of a run directory (None if it has no analysis.json)."""
        doc = rundir.read_analysis(run_dir)
        if doc is None:
            return None
        try:
            return cls.from_dict(doc)
        except (TypeError, KeyError, AttributeError, ValueError) as e:
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise rundir.not_an_analysis(run_dir, f"unexpected contents: {why}") from None


def clock_pizza_verdict(entry: dict[str, Any] | None) -> tuple[str | None, str]:
    """The clock/pizza verdict of analysis.json's ``clock_pizza`` entry and the text every output
    shows for it: ``("clock", "clock")``, or ``(None, "no verdict: <why>")`` where there is none
    (a model that does not generalise, a task without the measures, constant logits), the reason
    being the entry's own (``verdict_reason``, else ``reason``)."""
    entry = entry or {}
    verdict = entry.get("verdict")
    if verdict:
        return str(verdict), str(verdict)
    why = entry.get("verdict_reason") or entry.get("reason") or "the run has no clock/pizza measures; re-run analyze"
    return None, "no verdict: " + str(why).removeprefix("no verdict: ")


def load_analysis(run_dir: str | Path) -> Analysis | None:
    """The ``Analysis`` of an analysed run directory (None if it has no analysis.json)."""
    return Analysis.load(run_dir)


def _json_default(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return float(x)


def _nan_to_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def _scalar_row(epoch: int, m: dict[str, Any], basis_label: str) -> dict[str, Any]:
    row: dict[str, Any] = {"epoch": epoch}
    for k, v in m.items():
        if isinstance(v, list):
            if k == "cos_apb_c_coeffs":
                row.update({f"cos_apb_c_k{f}": c for f, c in zip(m["key_freqs"], v, strict=True)})
            else:
                row[k] = " ".join(map(str, v))  # readable only: plots read the Analysis
        else:
            row[k] = v
    row["fourier_basis"] = basis_label
    return row


def _key_rule_record(requested: str, given: Sequence[int] | None, arch: str, n_layers: int) -> dict[str, Any]:
    """analysis.json's ``key_rule``: the rule asked for, the rule used and why."""
    if given is not None:
        return {"requested": "given", "used": "given", "why": "key frequencies given (--key-freqs)"}
    if requested == "auto":
        used, why = auto_key_rule(arch, n_layers)
        return {"requested": "auto", "used": used, "why": why}
    return {"requested": requested, "used": requested, "why": "asked for (--key-rule)"}


def _irrep_setup(
    model: torch.nn.Module,
    dataset: Any,
    given: Sequence[str] | None,
    not_defined: dict[str, str],
    warnings: list[str],
    notes: list[str],
    metrics_rows: Sequence[dict[str, Any]],
) -> tuple[irrep_measures.GroupTask | None, dict[str, Any]]:
    """The group task and analysis.json's ``irreps`` entry (key irreps chosen on the final
    checkpoint, whose weights ``model`` holds), or (None, why not)."""
    reason = irrep_measures.not_defined_reason(dataset.op)
    if reason is not None:
        if given is not None:
            warnings.append(f"--key-irreps ignored: {reason}")
        not_defined.update(dict.fromkeys(irrep_measures.IRREP_MEASURES, reason))
        return None, {"defined": False, "reason": reason}
    gtask = irrep_measures.group_task(dataset)
    if given is not None:
        keys = [gtask.irrep(k).name for k in given]
        rule = {"rule": "given", "why": "key irreps given (--key-irreps)"}
    else:
        with torch.no_grad():
            keys = irrep_measures.select_key_irreps(gtask, final_position_cache(model, dataset.tokens).logits)
        rule = {
            "rule": "logit_trace",
            "threshold": irrep_measures.KEY_IRREP_SIMILARITY,
            "why": "non-trivial irreps whose logit trace similarity at the final checkpoint exceeds "
            f"{irrep_measures.KEY_IRREP_SIMILARITY} (Chughtai et al. 2023)",
        }
        if not keys:
            rule["why"] = f"no irrep's logit trace similarity exceeds {irrep_measures.KEY_IRREP_SIMILARITY}"
    if not keys:
        reason = f"no key irreps ({rule['why']})"
        not_defined.update(dict.fromkeys(irrep_measures.KEY_IRREP_MEASURES, reason))
    final_test = next((r.get("test_acc") for r in reversed(metrics_rows) if r.get("test_acc") is not None), None)
    if final_test is not None and final_test < 0.99:
        warnings.append(
            f"final test accuracy {final_test:.3f} < 0.99: the model has not generalised, so its key irreps "
            "describe a memorising network, not a group algorithm"
        )
    notes.append(
        "irrep measures (Chughtai et al. 2023): FVE of W_a, W_b (embeddings as the first hidden layer sees them), "
        "W_U (from the last MLP layer) and the last MLP layer's neurons; restricted/excluded loss at neuron level, "
        "the neurons mapped to the logits alone (the MLP: W_U + b_U; a transformer: W_L, without the attention path)"
    )
    entry = {
        "defined": True,
        "group": gtask.group.name,
        "order": gtask.order,
        "irreps": [
            {"name": r.name, "slug": irrep_measures.slug(r.name), "dim": r.dim, "kind": r.kind} for r in gtask.irreps
        ],
        "key_irreps": keys,
        "key_rule": rule,
        "coset_subgroups": [label for label, _ in irrep_measures.coset_subgroups(gtask.group.name)],
    }
    return gtask, entry


def _irreps_final(entry: dict[str, Any], last: dict[str, Any], gtask: irrep_measures.GroupTask | None) -> dict:
    """analysis.json's ``irreps`` entry with the final checkpoint's values."""
    if gtask is None:
        return entry
    final = {k: last.get(k) for k in irrep_measures.IRREP_MEASURES}
    per = {
        m: {r.name: last.get(irrep_measures.irrep_column(m, r)) for r in gtask.irreps} for m in irrep_measures.PER_IRREP
    }
    return {**entry, "final": _nan_to_none(final), "final_per_irrep": {m: _nan_to_none(v) for m, v in per.items()}}


@locks_run_when_writing  # holds the run's lock while it writes measures.csv, analysis.json, llc/
def analyze_run(
    path: str | Path,
    key_freqs: Sequence[int] | None = None,
    threshold: float = measures.DEFAULT_THRESHOLD,
    epochs: Sequence[int] | None = None,
    progress: bool = True,
    write: bool = True,
    *,
    layer: int | None = None,
    key_rule: KeyRule = "auto",
    llc: LLCConfig | None = None,
    key_irreps: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Compute all measures for every checkpoint; return ``(DataFrame, analysis.json as a dict)``
    (``Analysis.from_dict`` types it). ``layer``: the MLP layer of the neuron key rules (default
    the one with the most neurons explained); ``key_rule``: "auto" (the architecture's rule,
    ``clusters.auto_key_rule``), "clustered", "paper_code", "embedding" or "logits"; ``key_freqs``:
    given keys (rule "given"); ``llc``: also estimate the local
    learning coefficient with these hyperparameters (columns ``llc_mean``, ``llc_std``; chain
    diagnostics in ``RUN/llc/``; needs ``grokinterp[llc]``); ``key_irreps``: for a group task, the
    key irreps by name (default: rule "logit_trace" at the final checkpoint,
    ``irrep_measures.select_key_irreps``)."""
    import pandas as pd
    from tqdm.auto import tqdm

    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1] (got {threshold})")
    run = Run(path)
    cfg, dataset = run.config, run.dataset
    keep_freed_memory()  # the (p^2, d_mlp) grids of each checkpoint reuse the last one's blocks
    all_epochs = run.checkpoint_epochs
    if not all_epochs:
        raise RunDirError(f"{run.path}: no checkpoints to analyse")
    epochs = all_epochs if epochs is None else [run.resolve_epoch(e) for e in epochs]
    start = time.perf_counter()
    model = build_model(cfg)
    model.eval()
    final_ckpt = run.checkpoint(all_epochs[-1])
    load_weights(model, final_ckpt.state_dict, final_ckpt.path)

    basis = task_basis(dataset.op, dataset.p)
    rule_record = _key_rule_record(key_rule, key_freqs, cfg.arch, cfg.n_layers)
    rule_used = rule_record["used"]
    warnings: list[str] = import_warnings(run.path)  # e.g. an imported checkpoint's split is not its authors'
    notes: list[str] = []
    not_defined: dict[str, str] = {}
    chosen: KeyFrequencies | None = None
    by_rule: dict[str, KeyFrequencies] = {}
    layers_info: list[dict[str, Any]] = []
    if not basis.defined:
        for name in (*measures.FOURIER_MEASURES, "excluded_loss_k*", "cos_apb_c_k*", "key_freqs"):
            not_defined[name] = basis.reason
        logger.warning("%s: Fourier measures not defined: %s", run.path, basis.reason)
        if key_freqs is not None or layer is not None:
            warnings.append(f"--key-freqs / --layer ignored: {basis.reason}")
    else:
        with torch.no_grad():
            chosen, by_rule, layers = measures.select_key_frequencies(
                model, dataset, rule=rule_used, layer=layer, given=key_freqs, threshold=threshold
            )
        for cl in layers:
            layers_info.append(
                {
                    "layer": cl.layer,
                    "d_mlp": cl.d_mlp,
                    "n_explained": cl.n_explained,
                    "frac_explained": cl.frac_explained,
                    "key_freqs_clustered": cl.key_freqs,
                    "key_freqs_paper_code": cl.key_freqs_paper_code,
                    "cluster_sizes": {str(k): v for k, v in sorted(cl.cluster_sizes().items())},
                }
            )
        if not chosen.freqs:
            reason = f"no key frequencies by the {chosen.rule} rule" + (f" ({chosen.note})" if chosen.note else "")
            not_defined.update(dict.fromkeys(measures.KEY_MEASURES, reason))
        if chosen.warning:
            warnings.append(chosen.warning)
        if chosen.note:
            warnings.append(chosen.note)
        if basis.experimental:
            notes.append(f"{basis.name}: phi_a is not injective; the Fourier measures are experimental")
        if basis.m != basis.p or dataset.op == "div":
            notes.append(
                "Fourier measures use the pairs with a discrete log (a, b != 0); losses and accuracies use every pair"
            )
        if cfg.normalization_type != "none":
            notes.append("W_L = W_out @ W_U of the last MLP layer ignores the LayerNorm")
        if cfg.n_layers > 1:
            notes.append("neuron-level restricted/excluded loss use the last MLP layer")
        for w in warnings:
            logger.warning("%s: %s", run.path, w)
    cp_reason = clock_pizza.not_defined_reason(dataset.op, dataset.p)
    if cp_reason is not None:
        not_defined.update(dict.fromkeys(clock_pizza.COLUMNS, cp_reason))
    gtask, irreps_entry = _irrep_setup(model, dataset, key_irreps, not_defined, warnings, notes, run.metrics_rows)
    keys = None if chosen is None else list(chosen.freqs)
    sel_layer = None if chosen is None or chosen.layer is None else chosen.layer
    if sel_layer is None and layers_info:
        sel_layer = max(layers_info, key=lambda d: (d["n_explained"], -d["layer"]))["layer"]

    label = basis.name if basis.defined else f"not defined: {basis.reason}"
    rows = []
    for epoch in tqdm(epochs, desc="analyse", unit="ckpt", disable=not progress_enabled(progress)):
        ckpt = run.checkpoint(epoch)  # checked: its epoch and its run identity
        load_weights(model, ckpt.state_dict, ckpt.path)
        # One forward per checkpoint, shared by every measure that reads the logits or neurons.
        cache = final_position_cache(model, dataset.tokens)
        m = measures.compute_all_measures(model, dataset, keys, threshold, layer=sel_layer, cache=cache)
        m.update(
            clock_pizza.measure_columns(model, dataset, logits=cache.logits)
        )  # Zhong et al. 2023; NaN if not cyclic
        if gtask is not None:
            m.update(irrep_measures.irrep_measures(model, gtask, cache, irreps_entry["key_irreps"], threshold))
        rows.append(_scalar_row(epoch, m, label))
        del cache  # freed before the next forward allocates its own: the heap reuses the pages
    table = pd.DataFrame(rows)
    if llc is not None:
        from grokinterp.analysis.llc import llc_over_run

        estimates = llc_over_run(run.path, llc, epochs=list(table["epoch"]), progress=progress, write=write)
        table["llc_mean"] = [estimates[e].llc_mean for e in table["epoch"]]
        table["llc_std"] = [estimates[e].llc_std for e in table["epoch"]]
        notes.append(f"llc_mean/llc_std: devinterp SGLD on the train split, config in {C.LLC_DIR}/{C.LLC_CONFIG_FILE}")
    elapsed = time.perf_counter() - start

    phase_table, excluded_reason = table, not_defined.get("excluded_loss")
    if gtask is not None and not basis.defined:
        # A non-cyclic group: the phase rule reads the same measures in the irrep basis.
        phase_table = table.drop(columns=["excluded_loss", "restricted_loss", "gini_W_E", "gini_W_L"]).rename(
            columns={
                "excluded_loss_irrep": "excluded_loss",
                "restricted_loss_irrep": "restricted_loss",
                "gini_irrep_W_E": "gini_W_E",
                "gini_irrep_W_L": "gini_W_L",
            }
        )
        excluded_reason = None if irreps_entry["key_irreps"] else irreps_entry["key_rule"]["why"]
        notes.append(
            "phases: the excluded/restricted loss and Gini coefficients of the rule are the irrep-basis ones "
            "(excluded_loss_irrep, restricted_loss_irrep, gini_irrep_W_E, gini_irrep_W_L)"
        )
    phases = detect_phases(run.metrics_rows, phase_table, p=cfg.p, excluded_reason=excluded_reason)
    last = rows[-1]
    analysis = Analysis(
        run=str(run.path),
        n_checkpoints=len(rows),
        analysis_seconds=round(elapsed, 2),
        basis=basis.to_dict(),
        key_frequencies=chosen,
        key_freqs_by_rule=by_rule,
        layers=layers_info,
        threshold=threshold,
        phases=phases,
        final=_nan_to_none({k: last[k] for k in _FINAL_KEYS}),
        not_defined=not_defined,
        warnings=warnings,
        notes=notes,
        clock_pizza=clock_pizza.analysis_entry(dataset, last, epoch=int(last["epoch"])),
        key_rule=rule_record if basis.defined else {**rule_record, "used": None, "why": basis.reason},
        irreps=_irreps_final(irreps_entry, last, gtask),
    )
    summary = analysis.to_dict()
    if write:
        rundir.write_measures(run.path, table)
        rundir.write_analysis(run.path, analysis)
    logger.info("analysed %d checkpoints in %.1f s", len(rows), elapsed)
    return table, summary

"""An ensemble analysed as one study: every member of a ``train --seeds`` folder, and their spread.

``study_ensemble(ENS)`` analyses every member run ``ENS/seed=S`` (``analyze_run``), reusing a
member's analysis where it is up to date (``stale_reason``), and writes ``ENS/study.json``
(``grokinterp.io.ensembles.write_study``): a ``Study``, one ``MemberSummary`` per seed and the
aggregates over seeds.

A member's analysis is **up to date** (reused, not recomputed) when all of these hold:

1. it has analysis.json and measures.csv, and measures.csv covers exactly its checkpoints now;
2. analysis.json is not older (mtime) than its newest checkpoint and its summary.json;
3. it was made with the same options: threshold, key rule asked for (``auto``, ...), the given key
   frequencies (if any), and the MLP layer (a given ``layer`` must be the analysis's key layer;
   without one, the analysis's key layer must be the default, the layer with the most neurons
   explained).

Aggregates: quantiles are numpy's default (linear interpolation between order statistics) over the
members that grokked (``grokking_epoch`` from each member's summary.json: the first evaluation with
test accuracy >= ``GROKKING_THRESHOLD``); ``key_freq_counts[k]`` is the number of members whose key
frequencies include k. Loss bands (``quantile_bands``) are taken at each evaluation epoch over the
members evaluated there: a member that ended (diverged, paused) leaves the band after its last evaluation
(``n`` says how many members remain), except a member that stopped early (the early-stopping rule:
it had converged), which is held at its last value.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from grokinterp import constants as C
from grokinterp.errors import RunDirError
from grokinterp.io import ensembles, rundir
from grokinterp.io.runs import Run

__all__ = [
    "FINAL_KEYS",
    "STUDY_FORMAT",
    "MemberSummary",
    "Study",
    "ensemble_members",
    "load_study",
    "member_curves",
    "quantile_bands",
    "stale_reason",
    "study_ensemble",
    "summarize_member",
]

log = logging.getLogger(__name__)

#: Format tag of study.json.
STUDY_FORMAT = "grokinterp-study/1"
#: The final values (of summary.json's ``final``: the last evaluation) kept per member.
FINAL_KEYS = ("train_loss", "test_loss", "train_acc", "test_acc")
#: The quantiles of the aggregates and bands.
QUANTILES = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class MemberSummary:
    """One member of a study: its training outcome and its analysis at the final checkpoint.

    ``phase_boundaries``: the ends of memorisation, circuit formation and cleanup (None where not
    reached, with the reason in ``phase_reasons``); ``key_freqs`` by ``key_rule``;
    ``frac_explained``: the fraction of the key layer's neurons explained (None without an MLP or a
    Fourier basis); ``verdict``: "clock", "pizza", "unclear" or None, and ``verdict_text`` the
    line every output shows (``no verdict: <why>`` without one); ``final``: ``FINAL_KEYS`` at the
    last evaluation (None where not finite)."""

    seed: int
    run: str
    status: str
    final_epoch: int
    grokking_epoch: int | None
    phase_boundaries: tuple[int | None, ...]
    phase_reasons: tuple[str | None, ...]
    key_freqs: tuple[int, ...]
    key_rule: str | None
    frac_explained: float | None
    verdict: str | None
    verdict_text: str
    final: Mapping[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """As stored in study.json (tuples as lists)."""
        doc = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in doc.items()} | {"final": dict(self.final)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> MemberSummary:
        """The inverse of ``to_dict``; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in doc.items() if k in names}
        for k in ("phase_boundaries", "phase_reasons", "key_freqs"):
            kw[k] = tuple(kw.get(k) or ())
        kw["final"] = dict(kw.get("final") or {})
        return cls(**kw)


def _quantiles(values: Sequence[float]) -> dict[str, float] | None:
    """min, q25, median, q75, max of ``values`` (numpy's linear quantiles); None when empty."""
    if not values:
        return None
    q = np.quantile(np.asarray(values, dtype=float), QUANTILES)
    return {"min": float(min(values)), "q25": float(q[0]), "median": float(q[1]), "q75": float(q[2]),
            "max": float(max(values))}  # fmt: skip


@dataclass(frozen=True)
class Study:
    """An ensemble folder analysed as one study (the contents of study.json): ``members`` in seed
    order, the analysis ``options`` every member was analysed with, and the aggregates over seeds
    (``aggregates``, recomputed from the members)."""

    ensemble: str
    members: tuple[MemberSummary, ...]
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        """The members' seeds, in order."""
        return [m.seed for m in self.members]

    @property
    def grokked(self) -> list[MemberSummary]:
        """The members that grokked (a grokking epoch)."""
        return [m for m in self.members if m.grokking_epoch is not None]

    def key_freq_counts(self) -> dict[int, int]:
        """{k: number of members whose key frequencies include k}, by k."""
        counts = Counter(k for m in self.members for k in set(m.key_freqs))
        return {k: counts[k] for k in sorted(counts)}

    def aggregates(self) -> dict[str, Any]:
        """The spread over seeds: counts, quantiles of the grokking epoch (grokked members), of the
        fraction of neurons explained and of the final test loss, key-frequency and verdict counts."""
        verdicts = Counter(m.verdict or "no verdict" for m in self.members)
        explained = [m.frac_explained for m in self.members if m.frac_explained is not None]
        test_loss = [m.final.get("test_loss") for m in self.members]
        return {
            "n_members": len(self.members),
            "n_grokked": len(self.grokked),
            "not_grokked": [m.seed for m in self.members if m.grokking_epoch is None],
            "grokking_epoch": _quantiles([m.grokking_epoch for m in self.grokked]),
            "key_freq_counts": {str(k): n for k, n in self.key_freq_counts().items()},
            "n_key_freqs": _quantiles([len(m.key_freqs) for m in self.members]),
            "frac_explained": _quantiles(explained),
            "final_test_loss": _quantiles([x for x in test_loss if x is not None]),
            "verdict_counts": dict(sorted(verdicts.items())),
            "status_counts": dict(sorted(Counter(m.status for m in self.members).items())),
        }

    def to_dict(self) -> dict[str, Any]:
        """study.json as a dict: format, ensemble, options, aggregates and members."""
        return {
            "format": STUDY_FORMAT,
            "ensemble": self.ensemble,
            "options": dict(self.options),
            "aggregates": self.aggregates(),
            "members": [m.to_dict() for m in self.members],
        }

    def to_json(self) -> str:
        """study.json's text (strict JSON: non-finite numbers as null)."""
        from grokinterp.io.files import strict_json

        return strict_json(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Study:
        """The inverse of ``to_dict`` (the stored aggregates are ignored: they follow from the members)."""
        if doc.get("format") != STUDY_FORMAT:
            raise ValueError(f"not a grokinterp study (format {doc.get('format')!r}, expected {STUDY_FORMAT!r})")
        members = tuple(MemberSummary.from_dict(m) for m in doc.get("members") or [])
        return cls(ensemble=str(doc.get("ensemble", "")), members=members, options=dict(doc.get("options") or {}))


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def summarize_member(run_dir: str | Path, analysis: Mapping[str, Any]) -> MemberSummary:
    """The ``MemberSummary`` of member ``run_dir`` from its summary.json and ``analysis`` (its
    analysis.json as a dict)."""
    from grokinterp.analysis.run_analysis import clock_pizza_verdict

    run_dir = Path(run_dir)
    summary = rundir.read_summary(run_dir)
    phases = analysis.get("phases") or {}
    verdict, text = clock_pizza_verdict(analysis.get("clock_pizza"))
    final = summary.get("final") or analysis.get("final") or {}
    rule = (analysis.get("key_frequencies") or {}).get("rule")
    return MemberSummary(
        seed=-1 if (seed := ensembles.member_seed(run_dir)) is None else seed,
        run=run_dir.name,
        status=str(summary.get("status", "unknown")),
        final_epoch=int(summary.get("final_epoch", (analysis.get("final") or {}).get("epoch", 0))),
        grokking_epoch=summary.get("grokking_epoch"),
        phase_boundaries=tuple(phases.get("boundaries") or ()),
        phase_reasons=tuple(phases.get("reasons") or ()),
        key_freqs=tuple(int(k) for k in analysis.get("key_freqs") or ()),
        key_rule=rule,
        frac_explained=_finite(analysis.get("frac_neurons_explained_final")),
        verdict=verdict,
        verdict_text=text,
        final={k: _finite(final.get(k)) for k in FINAL_KEYS},
    )


def ensemble_members(folder: str | Path) -> list[Path]:
    """The member run directories of ensemble folder ``folder`` in seed order; ``RunDirError``
    (one line) naming a member that cannot be studied and why (``ensembles.member_problem``), or
    saying that ``folder`` is neither a run directory nor an ensemble folder."""
    folder = Path(folder)
    if not ensembles.is_ensemble_dir(folder):
        raise RunDirError(
            f"{folder} is neither a run directory (no {C.CONFIG_FILE}) nor an ensemble folder "
            "(no seed=N member runs from grokinterp train --seeds)"
        )
    members = ensembles.seed_folders(folder)
    bad = [(d, why) for d in members if (why := ensembles.member_problem(d))]
    if bad:
        d, why = bad[0]
        more = f" (and {len(bad) - 1} more member(s))" if len(bad) > 1 else ""
        raise RunDirError(
            f"ensemble {folder}: member {d.name} cannot be studied: {why}{more}; finish it with "
            f"grokinterp train --resume {folder}, or move it out of the folder"
        )
    return members


def stale_reason(run_dir: str | Path, options: Mapping[str, Any]) -> str | None:
    """Why member ``run_dir``'s analysis must be redone for ``options`` (threshold, key_rule,
    key_freqs, layer), or None when it is up to date (the module docstring's three rules)."""
    run = Run(run_dir)
    try:
        doc = run.analysis
        reason = run.stale_reason
    except RunDirError as e:
        return str(e)
    if doc is None:
        return f"no {C.ANALYSIS_FILE} yet"
    if reason is not None:
        return reason
    made = (run.path / C.ANALYSIS_FILE).stat().st_mtime_ns
    newer = [rundir.checkpoint_path(run.path, run.checkpoint_epochs[-1]), run.path / C.SUMMARY_FILE]
    if any(f.is_file() and f.stat().st_mtime_ns > made for f in newer):
        return f"the run changed after its {C.ANALYSIS_FILE} was written"
    rule = (doc.get("key_rule") or {}).get("requested")
    given = options.get("key_freqs")
    wanted_rule = "given" if given else options.get("key_rule", "auto")
    if rule != wanted_rule or (given and list(doc.get("key_freqs") or []) != list(given)):
        return f"analysed with key rule {rule} {doc.get('key_freqs')}, asked for {wanted_rule}"
    if doc.get("threshold") != options.get("threshold"):
        return f"analysed with threshold {doc.get('threshold')}, asked for {options.get('threshold')}"
    layers = doc.get("layers") or []
    key_layer = (doc.get("key_frequencies") or {}).get("layer")
    default = max(layers, key=lambda d: (d["n_explained"], -d["layer"]))["layer"] if layers else None
    wanted_layer = options.get("layer")
    if key_layer is not None and key_layer != (default if wanted_layer is None else wanted_layer):
        return f"analysed with layer {key_layer}, asked for {wanted_layer if wanted_layer is not None else 'default'}"
    return None


def study_ensemble(
    folder: str | Path,
    *,
    key_freqs: Sequence[int] | None = None,
    threshold: float = 0.85,
    layer: int | None = None,
    key_rule: str = "auto",
    progress: bool = True,
    write: bool = True,
) -> tuple[Study, list[int]]:
    """Analyse every member of ensemble folder ``folder`` (``analyze_run`` with these options;
    a member whose analysis is up to date is reused) and, with ``write``, write the study to
    ``folder/study.json``. Returns the ``Study`` and the seeds that were (re-)analysed."""
    from grokinterp.analysis.run_analysis import analyze_run

    folder = Path(folder)
    members = ensemble_members(folder)
    options = {"threshold": threshold, "key_rule": key_rule, "key_freqs": list(key_freqs) if key_freqs else None,
               "layer": layer}  # fmt: skip
    summaries, analysed = [], []
    for d in members:
        why = stale_reason(d, options)
        if why is None:
            doc = rundir.read_analysis(d) or {}
            log.info("%s: analysis up to date; reused", d)
        else:
            log.info("%s: analysing (%s)", d, why)
            _, doc = analyze_run(d, key_freqs=key_freqs, threshold=threshold, progress=progress, layer=layer,
                                 key_rule=key_rule, write=True)  # fmt: skip
            analysed.append(ensembles.member_seed(d))
        summaries.append(summarize_member(d, doc))
    study = Study(ensemble=str(folder), members=tuple(summaries), options=options)
    if write:
        ensembles.write_study(folder, study)
    return study, analysed


def load_study(folder: str | Path) -> Study | None:
    """The ``Study`` in ``folder/study.json`` (None when the ensemble was not analysed yet);
    ``RunDirError`` naming the file when it is not a study."""
    doc = ensembles.read_study(folder)
    if doc is None:
        return None
    try:
        return Study.from_dict(doc)
    except (ValueError, TypeError, KeyError) as e:
        raise RunDirError(f"{ensembles.study_path(folder)}: {e}; run grokinterp analyze {folder} again") from None


def member_curves(folder: str | Path, study: Study, column: str) -> dict[int, tuple[list[int], list[float]]]:
    """{seed: (epochs, values)} of metrics column ``column`` (e.g. ``test_loss``) for every member
    of ``study`` (from its metrics.jsonl); non-finite values are left out."""
    out = {}
    for m in study.members:
        rows = rundir.read_metrics(Path(folder) / m.run)
        pts = [(int(r["epoch"]), float(r[column])) for r in rows if _finite(r.get(column)) is not None]
        out[m.seed] = ([e for e, _ in pts], [v for _, v in pts])
    return out


def quantile_bands(
    curves: Mapping[int, tuple[Sequence[int], Sequence[float]]],
    quantiles: Sequence[float] = QUANTILES,
    *,
    hold: Sequence[int] = (),
) -> dict[str, list]:
    """Per epoch (every epoch any curve has), the number of curves with a value there (``n``) and
    their ``quantiles`` (numpy's linear; keys ``q25``, ``q50``, ``q75`` for the defaults). The
    curves of the seeds in ``hold`` (members that stopped early: they had converged by the
    early-stopping rule) keep their last value at the later epochs; the others leave the band
    after their last value."""
    by_epoch: dict[int, list[float]] = {}
    for epochs, values in curves.values():
        for e, v in zip(epochs, values, strict=True):
            by_epoch.setdefault(int(e), []).append(float(v))
    epochs = sorted(by_epoch)
    for seed in hold:
        seen, values = curves.get(seed, ((), ()))
        if len(seen):
            for e in epochs:
                if e > seen[-1]:
                    by_epoch[e].append(float(values[-1]))
    out: dict[str, list] = {"epoch": epochs, "n": [len(by_epoch[e]) for e in epochs]}
    for q in quantiles:
        out[f"q{round(q * 100):02d}"] = [float(np.quantile(by_epoch[e], q)) for e in epochs]
    return out

"""Analysis of checkpoints: task bases (``bases``), the Fourier basis (``fourier``), spectra,
neuron clusters and key frequencies (``clusters``), restricted and excluded losses (``ablations``),
attention, every measure of one model (``measures``), the three phases (``phases``), clock/pizza
(``clock_pizza``), the real irreducible representations of a group task's group (``irreps``) and
the measures in their basis (``irrep_measures``), the LLC (``llc``), power-law statistics (``powerlaw``) and the run-level
``analyze_run`` (``run_analysis``), and interventions with hooks (``interventions``: remove or keep
frequencies, ablate neurons and clusters, direct logit attribution, neuron decomposition).

``from grokinterp.analysis import analyze_run, Analysis`` works as before the package was split.
"""

from __future__ import annotations

from grokinterp.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__, globals(), ["grokinterp.analysis.run_analysis", "grokinterp.analysis.interventions"]
)

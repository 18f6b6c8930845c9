"""Clock-vs-Pizza measures of Zhong et al. 2023 ("The Clock and the Pizza: Two Stories in Mechanistic
Explanation of Neural Networks", arXiv 2306.17844, Sec. 4), generalised to any cyclic-group task.

Notation. Q_abc is the logit of class c at the final position for input (a, b), restricted to the p
answer classes; E_a, E_b are the input (token) embeddings of a and b, i.e. the outputs of the
TransformerLens hook point ``hook_embed`` at the positions of a and b (before positional
embeddings are added). Both measures need only forward and backward passes of the model.

Gradient symmetricity (paper Sec. 4, Definition 4.1)::

    s_g = 1/|S| * sum_{(a,b,c) in S} cos( dQ_abc/dE_a , dQ_abc/dE_b )

with cos(x, y) = x.y / (|x| |y|) the cosine similarity, and S a set of random triples drawn from
Z_p^3: the paper uses 100 of them, and c is a uniformly random class, *not* the correct answer
a+b. A Pizza model reads the two embeddings only through (E_a + E_b) (constant attention), so its
two gradients coincide and s_g = 1; a Clock multiplies the two embeddings (attention/bilinear), its
gradients are rotated against each other by the angle w(a - b) and s_g is low (the paper's Clock
"Model B": 33.36%, its Pizza "Model A": 99.37%).

Distance irrelevance (paper Sec. 4, Definition 4.2). With the correct-logit matrix
L[i, j] = Q_{i j, i+j} over all p*p inputs::

    q = ( 1/p * sum_{d in Z_p} std_i( L[i, i+d] ) ) / std_{i,j}( L[i, j] )

i.e. the mean over distances d = b - a of the standard deviation of the correct logit among the
inputs at that distance, divided by the standard deviation of all correct logits; std is the
population standard deviation (divide by n). A Pizza's correct logit is |cos(w(a-b)/2)| times a
constant, a function of the distance alone, so q is near 0 (paper: 0.17); a Clock's correct logit
does not depend on the distance, so q is near 1 (paper: 0.85).

Generalisation to a cyclic group Z_m. A task gives each row the group elements phi_a(a), phi_b(b)
of Z_m with answer phi_a(a) + phi_b(b): addition phi_a = a, phi_b = b, m = p; subtraction
phi_b = -b mod p; multiplication phi = discrete log to a primitive root, m = p - 1, rows with a = 0
or b = 0 excluded; division additionally phi_b = -log(b). The distance becomes
d = (phi_a - phi_b) mod m (``group_coordinates`` reads these maps from ``grokinterp.analysis.bases.task_basis``,
the project's one home of the discrete log). Grouping by a - b instead of the paper's b - a gives
the same partition (d -> -d), so the same q. For odd m the sum and the distance
are independent coordinates of Z_m^2, so a logit depending on the answer alone gives q = 1 exactly;
for even m (multiplication mod p, m = p - 1) a distance d only meets the answers of d's parity, so
that ceiling drops to (sd(L on even answers) + sd(L on odd answers)) / 2 / sd(L) < 1. q is always in
[0, 1] on a full grid (equal group sizes: the mean of the group sds is at most the total sd). For
gradient symmetricity the triples are (row, c) pairs: a row of the supplied ``tokens`` (the valid
inputs) and a class c.

The authors' released code (github.com/fjzzq2002/pizza, ``code/eval-main.ipynb``, cells
"Distance Irrelevance" and "Gradient Symmetricity") matches both definitions:

- gradient symmetricity: 100 distinct triples from range(C)^3 (Python ``random.Random(42)``
  shuffle), c uniform over all C output classes, gradient of ``logits[0, -1, c]`` w.r.t. the token
  embedding before the positional embedding, cosine similarity averaged. Here the triples are drawn
  without replacement through an explicit ``torch.Generator`` (so the sample differs from theirs
  but the estimator is the same); ``logit="correct"`` is an extra variant (gradient of the correct
  logit only), not from the paper;
- distance irrelevance: the code fills a grid indexed by ((a+b) mod C, (a-b) mod C) and takes
  ``mean(std(grid, axis=0)) / std(grid)`` (numpy, ddof=0): for odd C this is exactly Definition
  4.2. Here the rows are grouped directly by the distance, which needs no full grid and also works
  for even m (multiplication, m = p - 1). No variant is needed.

Thresholds: the paper separates Clock from Pizza qualitatively (its phase diagrams colour runs by
the two measures) and states no numeric cut-offs that we could verify; ``classify`` uses
symmetricity > 0.9 and irrelevance < 0.5 -> "pizza", symmetricity < 0.8 and irrelevance > 0.7 ->
"clock", anything else "unclear" (the project's choice, consistent with the paper's reference
models above). The verdict is given only for a model that generalises (``analysis_entry``: final
test accuracy at least ``GROKKING_THRESHOLD``, else no verdict and a ``verdict_reason``), as in the
paper, which also filters its runs by the circularity of the embeddings (``circularity``, the third
column; ``grokinterp.analysis.circularity``): at initialisation a transformer's attention is near
uniform (s_g ~ 1, q ~ 1: "unclear") and the GrokMLP reads a and b through separate weights
(s_g ~ 0, q ~ 1: "clock").

Reference values (this module, p = 23, three key frequencies; see tests/analysis/test_clock_pizza.py):
planted Clock s_g = 0 over all triples (-0.033 with 100 random triples, seed 0), q = 1; planted Pizza
s_g = 1, q = 0; a one-layer transformer grokked on p = 23 addition (the tests' GROK_P23 recipe,
1200 full-batch epochs, test accuracy 1): s_g 0.02-0.09 over three 100-triple samples (seeds 0-2), q = 0.87 (Clock).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as TF
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from grokinterp import tasks
from grokinterp.analysis.bases import task_basis
from grokinterp.analysis.circularity import CIRCULARITY_COMPONENTS, circularity, group_embedding
from grokinterp.constants import GROKKING_THRESHOLD
from grokinterp.forward import last_position_logits

logger = logging.getLogger(__name__)

Verdict = Literal["clock", "pizza", "unclear"]
LogitChoice = Literal["random", "correct"]

PIZZA_MIN_SYMMETRICITY = 0.9
PIZZA_MAX_IRRELEVANCE = 0.5
CLOCK_MAX_SYMMETRICITY = 0.8
CLOCK_MIN_IRRELEVANCE = 0.7


# --------------------------------------------------------------------------------------------
# Task geometry
# --------------------------------------------------------------------------------------------


def embed_positions(layout: str) -> tuple[int, int]:
    """Positions (a_pos, b_pos) of a and b in the output of ``hook_embed`` for a token layout.

    ``"a b ="`` and ``"a b"`` (and the GrokMLP, whose hook_embed is (batch, 2, d_model)): (0, 1);
    ``"a op b ="``: (0, 2) (``grokinterp.tasks.operand_positions``).
    """
    return tasks.operand_positions(layout)


@dataclass(frozen=True)
class GroupCoordinates:
    """Each row's group elements in Z_m: the answer is phi_a + phi_b (mod m), the distance
    phi_a - phi_b (mod m). ``mask`` marks the rows that belong to the group (False where a or b
    is 0 for mul/div)."""

    phi_a: Int[Tensor, " n"]
    phi_b: Int[Tensor, " n"]
    m: int
    mask: Bool[Tensor, " n"]

    @property
    def distance(self) -> Int[Tensor, " n"]:
        """(phi_a - phi_b) mod m; meaningless (but in range) on masked-out rows."""
        return (self.phi_a - self.phi_b) % self.m


def group_coordinates(a: Int[Tensor, " n"], b: Int[Tensor, " n"], p: int, op: str) -> GroupCoordinates:
    """Group elements of each row in the task's cyclic group, from ``grokinterp.analysis.bases.task_basis``
    (the one home of the maps): add, sub (Z_p) and mul, div at prime p (Z_{p-1} through the discrete
    log to the smallest primitive root). Raises ``ValueError`` for any other task (including the
    experimental sum-decomposable ones, whose maps are not injective) with the basis's reason."""
    basis = task_basis(op, p)
    if basis.family != "cyclic":
        why = basis.reason or f"{basis.name} is not a cyclic group"
        raise ValueError(f"op {op!r} at p={p} is not a cyclic-group operation (add, sub, mul, div): {why}")
    phi_a, phi_b = basis.phi_a[a.long()], basis.phi_b[b.long()]
    mask = (phi_a >= 0) & (phi_b >= 0)
    # Rows outside the group keep an in-range (meaningless) element so that ``distance`` stays valid.
    return GroupCoordinates(phi_a.clamp(min=0), phi_b.clamp(min=0), basis.m, mask)


# --------------------------------------------------------------------------------------------
# Gradient symmetricity
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def _n_classes(model: nn.Module, tokens: Tensor, n_classes: int | None) -> int:
    """``n_classes`` if given, else the model's output size (p for the project's models)."""
    if n_classes is not None:
        return n_classes
    return int(model(tokens[:1]).shape[-1])


def embedding_gradients(
    model: nn.Module,
    tokens: Int[Tensor, "n ctx"],
    classes: Int[Tensor, " n"],
    *,
    a_pos: int,
    b_pos: int,
) -> tuple[Float[Tensor, "n d_model"], Float[Tensor, "n d_model"]]:
    """dQ_{row, c}/dE_a and dQ_{row, c}/dE_b for each row of ``tokens`` and its class ``classes[i]``.

    The embeddings are the output of ``model.hook_embed``: a forward hook replaces it by a detached
    copy that requires grad, so only those gradients are computed (no parameter gradients). The
    rows are independent, so one backward pass of the summed selected logits gives every row's
    gradient. The model is run in eval mode.
    """
    captured: list[Tensor] = []

    def _leaf(act: Tensor, hook: object) -> Tensor:
        leaf = act.detach().requires_grad_(True)
        captured.append(leaf)
        return leaf

    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), model.hooks(fwd_hooks=[("hook_embed", _leaf)]):
            logits = model(tokens)[:, -1, :]
            selected = logits.gather(-1, classes[:, None].to(logits.device)).sum()
            (grad,) = torch.autograd.grad(selected, captured[0])
    finally:
        model.train(was_training)
    return grad[:, a_pos], grad[:, b_pos]


def sample_triples(
    n_rows: int, n_classes: int, n_samples: int | None, generator: torch.Generator | None = None
) -> tuple[Int[Tensor, " s"], Int[Tensor, " s"]]:
    """Distinct (row, class) pairs, uniformly without replacement (all of them, row-major, when
    ``n_samples`` is None or at least n_rows * n_classes).

    A small sample of a large set (at most a quarter of it) is drawn by rejection: uniform draws in
    order of appearance, repeats dropped, which is a uniform sample without replacement and avoids
    a permutation of all n_rows * n_classes pairs (1.4M for p = 113) at every checkpoint.
    """
    total = n_rows * n_classes
    if n_samples is None or n_samples >= total:
        flat = torch.arange(total)
    elif n_samples < 1:
        raise ValueError(f"n_samples must be at least 1 (got {n_samples})")
    elif 4 * n_samples <= total:
        seen: dict[int, None] = {}
        while len(seen) < n_samples:
            for x in torch.randint(total, (2 * n_samples,), generator=generator).tolist():
                seen.setdefault(x, None)
                if len(seen) == n_samples:
                    break
        flat = torch.tensor(list(seen), dtype=torch.int64)
    else:
        flat = torch.randperm(total, generator=generator)[:n_samples]
    return flat // n_classes, flat % n_classes


def gradient_cosines(
    model: nn.Module,
    tokens: Int[Tensor, "n ctx"],
    labels: Int[Tensor, " n"] | None = None,
    *,
    a_pos: int,
    b_pos: int,
    n_samples: int | None = 100,
    generator: torch.Generator | None = None,
    logit: LogitChoice = "random",
    n_classes: int | None = None,
    batch_size: int = 4096,
) -> tuple[Float[Tensor, " s"], Int[Tensor, " s"], Int[Tensor, " s"]]:
    """Per-sample cos(dQ_abc/dE_a, dQ_abc/dE_b) (Definition 4.1) with the sampled rows and classes.

    ``logit="random"`` (paper and released code): (row, c) pairs drawn uniformly without
    replacement from rows x classes; ``logit="correct"`` (variant): ``n_samples`` distinct rows,
    each with its correct class ``labels[row]``. ``n_samples=None`` takes every pair (or row).
    Returns float64 cosines (0 where a gradient vanishes), the rows and the classes.
    """
    n_rows = tokens.shape[0]
    if logit == "correct":
        if labels is None:
            raise ValueError("logit='correct' needs the labels")
        rows, _ = sample_triples(n_rows, 1, n_samples, generator)
        classes = labels[rows].long()
    elif logit == "random":
        n_cls = _n_classes(model, tokens, n_classes)
        rows, classes = sample_triples(n_rows, n_cls, n_samples, generator)
    else:
        raise ValueError(f"logit must be 'random' or 'correct' (got {logit!r})")
    cosines = []
    for start in range(0, len(rows), batch_size):
        r, c = rows[start : start + batch_size], classes[start : start + batch_size]
        grad_a, grad_b = embedding_gradients(model, tokens[r], c, a_pos=a_pos, b_pos=b_pos)
        cosines.append(TF.cosine_similarity(grad_a.double(), grad_b.double(), dim=-1, eps=1e-30).cpu())
    return torch.cat(cosines), rows, classes


def gradient_symmetricity(
    model: nn.Module, tokens: Int[Tensor, "n ctx"], labels: Int[Tensor, " n"] | None = None, **options: Any
) -> float:
    """Gradient symmetricity s_g (Zhong et al. 2023, Sec. 4, Definition 4.1): the mean over sampled
    triples (a, b, c) of the cosine similarity between the gradients of the logit Q_abc with respect
    to the input embeddings E_a and E_b (outputs of ``hook_embed`` at ``a_pos`` and ``b_pos``).

    ``options`` are the keyword arguments of ``gradient_cosines``, which draws the triples and
    computes the cosines: ``a_pos`` and ``b_pos`` (required), ``n_samples`` (100), ``generator``,
    ``logit`` ("random"), ``n_classes``, ``batch_size``.

    ``tokens`` are the valid inputs of the task (mask out rows outside the group before calling);
    logits are ``model(tokens)[:, -1, :]`` and c ranges over the first ``n_classes`` classes
    (default: the model's output size, p). Default: 100 triples with c uniformly random, as in the
    paper; deterministic given ``generator``. Near 1 for Pizza, clearly lower for Clock.
    """
    cos, _, _ = gradient_cosines(model, tokens, labels, **options)
    value = float(cos.mean())
    logger.debug("gradient symmetricity %.4f over %d samples", value, len(cos))
    return value


# --------------------------------------------------------------------------------------------
# Distance irrelevance
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def correct_logits(
    model: nn.Module, tokens: Int[Tensor, "n ctx"], labels: Int[Tensor, " n"], *, batch_size: int = 16384
) -> Float[Tensor, " n"]:
    """Q_{ab, answer}: the final-position logit of each row's correct class (the entries of the
    paper's correct-logit matrix L, Definition 4.2), float64, in eval mode. The logits come from
    ``grokinterp.forward.last_position_logits`` (the fused forward of training and analysis where
    the model supports it, else ``model(tokens)[:, -1]``)."""
    was_training = model.training
    model.eval()
    try:
        out = []
        for start in range(0, tokens.shape[0], batch_size):
            logits = last_position_logits(model, tokens[start : start + batch_size])
            lab = labels[start : start + batch_size].to(logits.device)
            out.append(logits.gather(-1, lab[:, None].long())[:, 0].double().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


def distance_irrelevance(
    correct_logits: Float[Tensor, " n"],
    distance: Int[Tensor, " n"],
    mask: Bool[Tensor, " n"] | None = None,
    *,
    m: int | None = None,
) -> float:
    """Distance irrelevance q (Zhong et al. 2023, Sec. 4, Definition 4.2) from the correct logits.

    q = mean_d std(L | distance = d) / std(L): the unweighted mean, over the distances d in
    [0, m) that occur among the kept rows, of the population standard deviation of the correct
    logits at distance d, divided by the population standard deviation of all kept correct logits.
    ``distance`` is (phi_a - phi_b) mod m (a - b for addition; the paper's b - a gives the same
    groups). With the full grid every distance holds m rows, as in the paper; on a partial table
    small groups bias q downwards. 0 when the logit depends on the distance alone, 1 when the
    distance explains nothing. Raises if all kept logits are equal (q undefined).
    """
    logits = correct_logits.detach().double().flatten().cpu()
    dist = distance.detach().long().flatten().cpu()
    if logits.shape != dist.shape:
        raise ValueError(f"correct_logits and distance differ in shape: {logits.shape} vs {dist.shape}")
    if mask is not None:
        keep = mask.detach().bool().flatten().cpu()
        logits, dist = logits[keep], dist[keep]
    if logits.numel() == 0:
        raise ValueError("no rows left to compute distance irrelevance")
    if (dist < 0).any() or (m is not None and (dist >= m).any()):
        raise ValueError("distance values must lie in [0, m)")
    size = int(dist.max()) + 1 if m is None else m
    counts = torch.bincount(dist, minlength=size).double()
    means = torch.bincount(dist, weights=logits, minlength=size) / counts.clamp(min=1)
    dev2 = (logits - means[dist]) ** 2
    group_std = (torch.bincount(dist, weights=dev2, minlength=size) / counts.clamp(min=1)).sqrt()
    total_std = float(logits.std(unbiased=False))
    if total_std == 0.0:
        raise ValueError("the correct logits are constant, so distance irrelevance is undefined")
    value = float(group_std[counts > 0].mean()) / total_std
    logger.debug("distance irrelevance %.4f over %d rows", value, logits.numel())
    return value


def distance_irrelevance_of_model(
    model: nn.Module,
    tokens: Int[Tensor, "n ctx"],
    labels: Int[Tensor, " n"],
    distance: Int[Tensor, " n"],
    mask: Bool[Tensor, " n"] | None = None,
    *,
    m: int | None = None,
) -> float:
    """``distance_irrelevance`` of the model's correct logits on ``tokens`` (pass every input of
    the task, train and test, as the paper does)."""
    if mask is not None:
        keep = mask.bool()
        tokens, labels, distance = tokens[keep], labels[keep], distance[keep]
    return distance_irrelevance(correct_logits(model, tokens, labels), distance, m=m)


# --------------------------------------------------------------------------------------------
# Verdict
# --------------------------------------------------------------------------------------------


def classify(gradient_symmetricity: float, distance_irrelevance: float) -> Verdict:
    """ "pizza" if symmetricity > 0.9 and irrelevance < 0.5, "clock" if symmetricity < 0.8 and
    irrelevance > 0.7, otherwise "unclear".

    The paper (Sec. 4, and the phase diagrams of Sec. 5) gives no numeric cut-offs we could verify;
    these are the project's, placed between its reference models (Pizza: 0.9937 / 0.17, Clock:
    0.3336 / 0.85).
    """
    if gradient_symmetricity > PIZZA_MIN_SYMMETRICITY and distance_irrelevance < PIZZA_MAX_IRRELEVANCE:
        return "pizza"
    if gradient_symmetricity < CLOCK_MAX_SYMMETRICITY and distance_irrelevance > CLOCK_MIN_IRRELEVANCE:
        return "clock"
    return "unclear"


@dataclass(frozen=True)
class _GroupInputs:
    """The inputs of a cyclic-group dataset that both measures read: the rows inside the group,
    their distances, and the positions of a and b."""

    tokens: Int[Tensor, "n ctx"]
    labels: Int[Tensor, " n"]
    distance: Int[Tensor, " n"]
    m: int
    a_pos: int
    b_pos: int
    p: int
    keep: Bool[Tensor, " n_dataset"]  # the dataset's rows inside the group

    @classmethod
    def of(cls, dataset: tasks.Dataset, device: torch.device | None = None) -> _GroupInputs:
        """The rows of ``dataset`` inside its group (``group_coordinates``), tokens on ``device``
        (default: where they are)."""
        a_pos, b_pos = embed_positions(dataset.layout)
        coords = group_coordinates(dataset.a, dataset.b, dataset.p, dataset.op)
        keep = coords.mask
        tokens = dataset.tokens[keep]
        tokens = tokens if device is None else tokens.to(device)
        return cls(tokens, dataset.labels[keep], coords.distance[keep], coords.m, a_pos, b_pos, dataset.p, keep)

    def gradient_symmetricity(
        self, model: nn.Module, *, n_samples: int | None, generator: torch.Generator | None, logit: LogitChoice
    ) -> float:
        """``gradient_symmetricity`` over the rows, c over the p classes."""
        return gradient_symmetricity(
            model,
            self.tokens,
            self.labels,
            a_pos=self.a_pos,
            b_pos=self.b_pos,
            n_samples=n_samples,
            generator=generator,
            logit=logit,
            n_classes=self.p,
        )

    def distance_irrelevance(
        self, model: nn.Module, *, logits: Tensor | None = None, dataset: tasks.Dataset | None = None
    ) -> float:
        """``distance_irrelevance`` of the model's correct logits on the rows (taken from
        ``logits``, the model's logits on every row of ``dataset``, when given)."""
        if logits is None or dataset is None:
            return distance_irrelevance(correct_logits(model, self.tokens, self.labels), self.distance, m=self.m)
        keep, labels = self.keep.to(logits.device), self.labels.to(logits.device).long()
        correct = logits[keep].gather(-1, labels[:, None])[:, 0].double().cpu()
        return distance_irrelevance(correct, self.distance, m=self.m)


@dataclass(frozen=True)
class ClockPizza:
    """The two measures of Zhong et al. 2023 (Definitions 4.1 and 4.2) and the ``classify`` verdict."""

    gradient_symmetricity: float
    distance_irrelevance: float
    verdict: Verdict

    @classmethod
    def from_values(cls, gradient_symmetricity: float, distance_irrelevance: float) -> ClockPizza:
        """The two measures with their ``classify`` verdict."""
        return cls(gradient_symmetricity, distance_irrelevance, classify(gradient_symmetricity, distance_irrelevance))


def clock_pizza(
    model: nn.Module,
    dataset: tasks.Dataset,
    *,
    n_samples: int | None = 100,
    generator: torch.Generator | None = None,
    logit: LogitChoice = "random",
) -> ClockPizza:
    """Both measures on every valid input of a cyclic-group ``dataset`` (add, sub, mul, div).

    Positions come from the layout (``embed_positions``), group elements and distances from
    ``group_coordinates``; rows outside the group (a or b = 0 for mul/div) are dropped.
    """
    group = _GroupInputs.of(dataset)
    s_g = group.gradient_symmetricity(model, n_samples=n_samples, generator=generator, logit=logit)
    q = group.distance_irrelevance(model)
    result = ClockPizza.from_values(s_g, q)
    logger.info("clock/pizza: symmetricity %.4f, irrelevance %.4f -> %s", s_g, q, result.verdict)
    return result


# --------------------------------------------------------------------------------------------
# Over training (``grokinterp.analysis.run_analysis``)
# --------------------------------------------------------------------------------------------

#: Triples per checkpoint for gradient symmetricity in ``analyze_run`` (the paper's 100) and the
#: seed of their ``torch.Generator``: the same triples at every checkpoint of every run.
ANALYSIS_SAMPLES = 100
ANALYSIS_SEED = 0
COLUMNS = ("gradient_symmetricity", "distance_irrelevance", "circularity")

DEFINITIONS = {
    "gradient_symmetricity": (
        "mean over 100 random triples (a, b, c), c uniform over the p classes, of cos(dQ_abc/dE_a, dQ_abc/dE_b), "
        "Q the final-position logit, E_a and E_b the token embeddings of a and b (Zhong et al. 2023, Sec. 4, "
        "Definition 4.1); near 1 for pizza"
    ),
    "distance_irrelevance": (
        "mean over distances d = phi_a - phi_b (mod m) of the population sd of the correct logit at distance d, "
        "divided by the sd of all correct logits, over every input of the group (Zhong et al. 2023, Sec. 4, "
        "Definition 4.2); near 0 for pizza, near 1 for clock"
    ),
    "circularity": (
        f"mean over the first {CIRCULARITY_COMPONENTS} principal components of the centred token embeddings (rows in "
        "group order) of the share of the component's energy in its strongest frequency pair +-k of the DFT over "
        "Z_m (Zhong et al. 2023, eval notebook, cell 'Circularity'; grokinterp.analysis.circularity); 1 when the "
        "embedding lies on circles"
    ),
}
THRESHOLDS = {
    "pizza": f"gradient_symmetricity > {PIZZA_MIN_SYMMETRICITY} and distance_irrelevance < {PIZZA_MAX_IRRELEVANCE}",
    "clock": f"gradient_symmetricity < {CLOCK_MAX_SYMMETRICITY} and distance_irrelevance > {CLOCK_MIN_IRRELEVANCE}",
    "unclear": "anything else (the project's cut-offs; the paper states none)",
}


def not_defined_reason(op: str, p: int) -> str | None:
    """None when the clock/pizza measures are defined for the task (a cyclic group in
    ``grokinterp.analysis.bases``), else why not."""
    basis = task_basis(op, p)
    if basis.family == "cyclic":
        return None
    if basis.family == "sum_decomposable":
        return (
            f"{basis.name}: phi_a is not injective, so the answer is not a group operation on (a, b) and the "
            "distance of Definition 4.2 is not defined; clock/pizza needs a cyclic-group task (add, sub, mul/div "
            "at prime p)"
        )
    return f"{basis.reason}; clock/pizza needs a cyclic-group task (add, sub, mul/div at prime p)"


def measure_columns(
    model: nn.Module, dataset: tasks.Dataset, *, logits: Float[Tensor, "n p"] | None = None
) -> dict[str, float]:
    """``gradient_symmetricity``, ``distance_irrelevance`` and ``circularity`` of one checkpoint for
    the measures table: ``clock_pizza`` with ``ANALYSIS_SAMPLES`` triples from a generator seeded
    with ``ANALYSIS_SEED``, and ``grokinterp.analysis.circularity`` of the token embeddings; NaN for
    a task without a cyclic group (``not_defined_reason``) and a distance irrelevance of NaN when
    the correct logits are constant. ``logits``: the model's final-position logits on every row of
    ``dataset`` when the caller has them (the analysis's one forward), so they are not recomputed."""
    nan = float("nan")
    if not_defined_reason(dataset.op, dataset.p) is not None:
        return dict.fromkeys(COLUMNS, nan)
    group = _GroupInputs.of(dataset, next(model.parameters()).device)
    generator = torch.Generator().manual_seed(ANALYSIS_SEED)
    s_g = group.gradient_symmetricity(model, n_samples=ANALYSIS_SAMPLES, generator=generator, logit="random")
    try:
        q = group.distance_irrelevance(model, logits=logits, dataset=dataset)
    except ValueError as err:
        logger.debug("distance irrelevance not defined: %s", err)
        q = nan
    circ = circularity(group_embedding(model, dataset.op, dataset.p))
    return {"gradient_symmetricity": s_g, "distance_irrelevance": q, "circularity": circ}


def no_verdict_reason(test_acc: float | None) -> str | None:
    """Why the final checkpoint gets no clock/pizza verdict (None when it gets one): the verdict is
    only for a model that generalises (final test accuracy at least ``GROKKING_THRESHOLD``)."""
    if isinstance(test_acc, float) and test_acc == test_acc and test_acc >= GROKKING_THRESHOLD:
        return None
    shown = "unknown" if not isinstance(test_acc, float) or test_acc != test_acc else f"{test_acc:.2f}"
    return (
        f"no verdict: final test accuracy {shown} < {GROKKING_THRESHOLD}, the model has not generalised; distance "
        "irrelevance is about 1 at initialisation, so an untrained model reads as a clock"
    )


def analysis_entry(dataset: tasks.Dataset, final: dict[str, float], *, epoch: int) -> dict:
    """The ``clock_pizza`` entry of analysis.json from the final checkpoint's ``measure_columns``
    (and its ``test_acc``): values, verdict, thresholds, definitions, or null with the reason.
    The verdict is given only for a model that generalises: below ``GROKKING_THRESHOLD`` final
    test accuracy it is None and ``verdict_reason`` says why (``no_verdict_reason``); the values
    are kept."""
    reason = not_defined_reason(dataset.op, dataset.p)
    entry: dict = {"defined": reason is None, "reason": reason, "epoch": epoch}
    s_g, q = final.get("gradient_symmetricity"), final.get("distance_irrelevance")
    ok = reason is None and all(isinstance(x, float) and x == x for x in (s_g, q))
    circ = final.get("circularity")
    why_not = no_verdict_reason(final.get("test_acc")) if ok else None
    entry.update(
        gradient_symmetricity=s_g if ok else None,
        distance_irrelevance=q if ok else None,
        circularity=circ if reason is None and isinstance(circ, float) and circ == circ else None,
        verdict=classify(s_g, q) if ok and why_not is None else None,
        verdict_reason=why_not,
    )
    if reason is None and not ok:
        entry["reason"] = "the correct logits are constant at the final checkpoint: distance irrelevance undefined"
    notes = []
    if reason is None:
        m = task_basis(dataset.op, dataset.p).m
        if m is not None and m % 2 == 0:
            notes.append(
                f"m = {m} is even: a correct logit that depends on the answer alone gives distance irrelevance "
                "below 1 (each distance meets the answers of one parity)"
            )
    entry.update(
        samples=ANALYSIS_SAMPLES,
        seed=ANALYSIS_SEED,
        thresholds=dict(THRESHOLDS),
        definitions=dict(DEFINITIONS),
        notes=notes,
    )
    return entry

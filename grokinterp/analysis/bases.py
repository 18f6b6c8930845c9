"""The Fourier basis that fits each task, and the (phi_a, phi_b) grid the Fourier measures use.

A number computed in the wrong basis is worse than no number. Every Fourier measure of
``grokinterp`` is the additive math of Nanda et al. (Fourier basis of Z_m, directions
cos/sin(w_k(u+v)) and cos(w_k(u+v-j))) applied to tensors re-indexed by the task's own maps
(docs/measures.md, "Other operations and architectures"):

- **cyclic**: the answer is psi(phi_a(a) + phi_b(b)) in a cyclic group Z_m.
  ``add``: phi_a = a, phi_b = b, m = p. ``sub``: phi_b = -b mod p. ``mul`` and ``div`` at prime p:
  the multiplicative group Z_p^* is cyclic of order m = p - 1; with g the smallest primitive root,
  phi = dlog_g (``div``: phi_b = -dlog(b) mod (p-1)); 0 has no discrete log (phi = -1).
- **sum_decomposable** (experimental): ``x2_y`` (phi_a = a^2, phi_b = b) and ``x2_y2``
  (phi_a = a^2, phi_b = b^2), answer phi_a + phi_b mod p (phi_c = identity). phi_a is not injective.
- **group tasks** (``op`` a group, ``grokinterp.groups``): C_n is cyclic with the maps of ``add``;
  any other group has no Fourier basis (its basis is its irreps, ``grokinterp.analysis.irrep_measures``).
- **none**: every other operation, and ``mul`` at a composite p (not a group): no Fourier measure
  is defined; ``TaskBasis.reason`` says why.

The grid (``TaskGrid``): cell (u, v) of Z_m x Z_m, flat index u*m + v, holds the dataset rows with
phi_a(a) = u and phi_b(b) = v (rows where phi_a or phi_b is undefined, e.g. a = 0 for ``mul``, are
left out). For the injective maps of the cyclic tasks every cell holds exactly one row. For the
non-injective maps of the sum-decomposable tasks a cell may hold several rows (they share their
answer, since it is phi_a + phi_b) or none: a cell's value is the mean of its rows, an empty cell
gets the mean over the occupied cells (so it adds nothing to a centred tensor), and losses weight
each cell by the number of its rows in the split (experimental).

Logit columns are re-ordered by phi_c: the first m columns are the classes c with phi_c(c) = 0..m-1,
then the classes where phi_c is undefined (c = 0 for ``mul``/``div``), which have no Fourier
component: a projection leaves them out (excluded logits keep them, restricted logits get their
mean).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from grokinterp.tasks import Dataset, get_operation, is_prime

__all__ = ["Family", "TaskBasis", "TaskGrid", "discrete_log_table", "primitive_root", "task_basis", "task_grid"]

Family = Literal["cyclic", "sum_decomposable", "none"]


def primitive_root(p: int) -> int:
    """The smallest primitive root of the prime p (a generator of Z_p^*)."""
    if not is_prime(p):
        raise ValueError(f"primitive roots are defined here for prime p only (got p={p})")
    if p == 2:
        return 1
    m = p - 1
    factors = {q for q in range(2, m + 1) if m % q == 0 and is_prime(q)}
    return next(g for g in range(2, p) if all(pow(g, m // q, p) != 1 for q in factors))


def discrete_log_table(p: int, g: int | None = None) -> Int[Tensor, " p"]:
    """``dlog[x]`` = the e in 0..p-2 with g^e = x mod p (g: the smallest primitive root by
    default); ``dlog[0] = -1`` (0 has no discrete log)."""
    g = primitive_root(p) if g is None else g
    table = torch.full((p,), -1, dtype=torch.int64)
    x = 1
    for e in range(p - 1):
        table[x] = e
        x = x * g % p
    return table


@dataclass(frozen=True)
class TaskBasis:
    """The basis of one task (op, p): the maps into Z_m, or the reason there is none.

    ``phi_a``, ``phi_b`` (p,) int64 map a residue to Z_m (-1 where undefined); ``phi_c`` (p,) maps
    an answer class to Z_m (-1 where undefined). ``m`` is None for family "none".
    """

    op: str
    p: int
    family: Family
    m: int | None
    phi_a: Int[Tensor, " p"] | None = field(repr=False)
    phi_b: Int[Tensor, " p"] | None = field(repr=False)
    phi_c: Int[Tensor, " p"] | None = field(repr=False)
    name: str
    experimental: bool = False
    reason: str | None = None
    g: int | None = None

    @property
    def defined(self) -> bool:
        """Whether Fourier measures are defined for this task."""
        return self.family != "none"

    @property
    def n_freqs(self) -> int:
        """Frequencies run over k = 1..n_freqs (m // 2); 0 when undefined."""
        return 0 if self.m is None else self.m // 2

    def to_dict(self) -> dict:
        """The JSON form of analysis.json's ``basis`` entry (no tensors)."""
        return {
            "op": self.op,
            "p": self.p,
            "family": self.family,
            "m": self.m,
            "name": self.name,
            "experimental": self.experimental,
            "reason": self.reason,
            "primitive_root": self.g,
        }


def _none(op: str, p: int, reason: str) -> TaskBasis:
    """The basis of a task that has none, with the reason."""
    return TaskBasis(op, p, "none", None, None, None, None, "none", reason=reason)


@functools.lru_cache(maxsize=64)
def task_basis(op: str, p: int) -> TaskBasis:
    """The ``TaskBasis`` of operation ``op`` mod p (see the module docstring)."""
    x = torch.arange(p, dtype=torch.int64)
    if op in ("add", "sub"):
        phi_b = x if op == "add" else (-x) % p
        kind = "additive" if op == "add" else "additive, phi_b = -b"
        return TaskBasis(op, p, "cyclic", p, x, phi_b, x, f"Z_{p} ({kind})")
    if op in ("mul", "div"):
        if not is_prime(p):
            return _none(op, p, f"{op} mod composite p={p} is not a group operation: no cyclic basis")
        if p < 3:
            return _none(op, p, f"Z_{p}^* has order {p - 1}: no frequencies")
        g = primitive_root(p)
        dlog = discrete_log_table(p, g)
        m = p - 1
        phi_b = dlog if op == "mul" else torch.where(dlog >= 0, (-dlog) % m, -1)
        name = f"Z_{m} via discrete log base {g}" + (", phi_b = -dlog(b)" if op == "div" else "")
        return TaskBasis(op, p, "cyclic", m, dlog, phi_b, dlog, name, g=g)
    if op in ("x2_y", "x2_y2"):
        sq = (x * x) % p
        phi_b = x if op == "x2_y" else sq
        name = f"Z_{p} with phi_a = a^2, phi_b = {'b' if op == 'x2_y' else 'b^2'} (experimental)"
        return TaskBasis(op, p, "sum_decomposable", p, sq, phi_b, x, name, experimental=True)
    operation = get_operation(op)
    if operation.group is not None:
        return _group_basis(op, p, operation.group)
    formula = operation.formula
    return _none(op, p, f"{op} ({formula}) is not of the form psi(phi_a(a) + phi_b(b)) in a cyclic group")


def _group_basis(op: str, p: int, group: str) -> TaskBasis:
    """A group task's Fourier basis: C_n's is Z_n's (its table is addition mod n); any other group
    has none (its basis is its irreps: ``grokinterp.analysis.irrep_measures``)."""
    if group.startswith("C"):
        x = torch.arange(p, dtype=torch.int64)
        return TaskBasis(op, p, "cyclic", p, x, x, x, f"Z_{p} (additive: the cyclic group {group})")
    return _none(
        op,
        p,
        f"{group} is not a cyclic group: no Fourier basis; its measures are in the basis of its irreducible "
        "representations (the irrep measures)",
    )


@dataclass(frozen=True)
class TaskGrid:
    """Dataset rows placed on the (phi_a, phi_b) grid of Z_m x Z_m (module docstring).

    ``cell`` (n,) the flat cell u*m + v of each dataset row (-1 when phi_a or phi_b is undefined);
    ``count`` (m*m,) rows per cell; ``class_order`` (p,) the classes in column order (first the m
    classes with phi_c = 0..m-1, then the undefined ones); ``labels`` (m*m,) the answer of each
    cell as a column of the re-ordered logits (0 for empty cells); ``weights`` per split: rows of
    the split in each cell (float64).
    """

    basis: TaskBasis
    m: int
    cell: Int[Tensor, " n"]
    count: Int[Tensor, " mm"]
    class_order: Int[Tensor, " p"]
    labels: Int[Tensor, " mm"]
    weights: dict[str, Float[Tensor, " mm"]]

    @property
    def n_rows(self) -> int:
        """Number of dataset rows on the grid."""
        return int(self.count.sum())

    @functools.cached_property
    def injective(self) -> bool:
        """Every cell holds exactly one row (then cell values are the rows themselves)."""
        return bool((self.count == 1).all())

    @functools.cached_property
    def rows(self) -> Int[Tensor, " mm"]:
        """For an injective grid: the dataset row of each cell."""
        out = torch.full((self.m * self.m,), -1, dtype=torch.int64)
        on = self.cell >= 0
        out[self.cell[on]] = torch.nonzero(on).flatten()
        return out

    @functools.cached_property
    def _identity(self) -> bool:
        """Cell i holds dataset row i (addition in the a-major order of ``make_dataset``)."""
        return (
            self.injective
            and len(self.cell) == self.m * self.m
            and bool((self.rows == torch.arange(self.m * self.m)).all())
        )

    def values(self, x: Float[Tensor, "n ..."]) -> Float[Tensor, "mm ..."]:
        """Per-cell mean of the rows of ``x`` (rows of the dataset); empty cells get the mean over
        the occupied cells. Where cell i holds row i this is ``x`` itself (no copy)."""
        if self._identity:
            return x
        if self.injective:
            return x[self.rows.to(x.device)]
        on = self.cell >= 0
        flat = x.reshape(x.shape[0], -1)
        out = flat.new_zeros(self.m * self.m, flat.shape[1])
        out.index_add_(0, self.cell[on].to(x.device), flat[on.to(x.device)])
        cnt = self.count.to(x.device)
        hit = cnt > 0
        out[hit] /= cnt[hit, None].to(out.dtype)
        out[~hit] = out[hit].mean(0)
        return out.reshape(self.m * self.m, *x.shape[1:])

    @functools.cached_property
    def _classes_in_order(self) -> bool:
        """``class_order`` is 0..p-1 (addition): the logits' columns need no re-ordering."""
        return bool((self.class_order == torch.arange(len(self.class_order))).all())

    def logits(self, logits: Float[Tensor, "n p"]) -> Float[Tensor, "mm p"]:
        """Per-cell logits with the columns in ``class_order`` (``logits`` itself where neither rows
        nor columns move: gathering columns copies the whole matrix)."""
        if self._classes_in_order and logits.shape[-1] == len(self.class_order):
            return self.values(logits)
        return self.values(logits[:, self.class_order.to(logits.device)])


@functools.lru_cache(maxsize=16)
def _cached_grid(op: str, p: int, a: tuple, b: tuple, labels: tuple, train: tuple) -> TaskGrid:
    """The ``TaskGrid`` of a dataset given as hashable tuples (``task_grid``)."""
    basis = task_basis(op, p)
    m = basis.m
    a_t, b_t = torch.tensor(a), torch.tensor(b)
    u, v = basis.phi_a[a_t], basis.phi_b[b_t]
    cell = torch.where((u >= 0) & (v >= 0), u * m + v, -1)
    on = cell >= 0
    count = torch.bincount(cell[on], minlength=m * m)
    defined = basis.phi_c >= 0
    order_def = torch.argsort(torch.where(defined, basis.phi_c, m + torch.arange(p)))
    class_order = order_def  # phi_c is a bijection from the defined classes onto Z_m
    col_of = torch.empty(p, dtype=torch.int64)
    col_of[class_order] = torch.arange(p)
    lab = torch.tensor(labels)
    cell_labels = torch.zeros(m * m, dtype=torch.int64)
    cell_labels[cell[on]] = col_of[lab[on]]
    is_train = torch.zeros(len(a), dtype=torch.bool)
    is_train[torch.tensor(train, dtype=torch.int64)] = True
    weights = {}
    for split, mask in (("train", is_train), ("test", ~is_train), ("all", torch.ones_like(is_train))):
        w = torch.zeros(m * m, dtype=torch.float64)
        sel = on & mask
        w.index_add_(0, cell[sel], torch.ones(int(sel.sum()), dtype=torch.float64))
        weights[split] = w
    return TaskGrid(basis, m, cell, count, class_order, cell_labels, weights)


def task_grid(dataset: Dataset) -> TaskGrid:
    """The ``TaskGrid`` of a dataset (raises ``ValueError`` with the reason when the task has no
    basis)."""
    basis = task_basis(dataset.op, dataset.p)
    if not basis.defined:
        raise ValueError(f"no Fourier measures for op {dataset.op!r} at p={dataset.p}: {basis.reason}")
    # The analysis asks for the grid of the same dataset several times per checkpoint: the same
    # tensor objects, unmodified (same version counters), have the same grid, and this skips
    # turning 4 x n values into hashable tuples (a millisecond at p = 113).
    inputs = (dataset.a, dataset.b, dataset.labels, dataset.train_indices)
    key = (dataset.op, dataset.p, *(t._version for t in inputs))
    last = _LAST_GRID.get("entry")
    if last is not None and last[0] == key and all(x is y for x, y in zip(last[1], inputs, strict=True)):
        return last[2]
    grid = _cached_grid(dataset.op, dataset.p, *(tuple(t.tolist()) for t in inputs))
    _LAST_GRID["entry"] = (key, inputs, grid)
    return grid


#: The last ``task_grid`` call's dataset tensors (held, so that their ids stay theirs) and grid.
_LAST_GRID: dict[str, tuple] = {}

"""The real irreducible representations of the groups of ``grokinterp.groups``, built in closed form.

A real representation rho of a finite group G gives each element an orthogonal matrix rho(g) with
rho(g h) = rho(g) rho(h) (products in ``FiniteGroup.table``'s convention). Its matrix entries
``g -> rho_ij(g)`` are functions on G, and over all irreps they span every function on G: the
irreps are to G what the frequencies of the Fourier basis are to Z_n (``Irrep.basis``,
``irrep_basis``). Over the reals an irrep is of one of three Frobenius-Schur kinds, read off the
character norm <chi, chi> = (1/|G|) sum_g chi(g)^2 = kappa:

- **real** (kappa = 1): it stays irreducible over C; its dim**2 entries are linearly independent.
- **complex** (kappa = 2): it is a complex irrep and its conjugate glued into one real irrep (e.g. the
  2-dim rotation by 2 pi k x / n of C_n); only dim**2 / 2 of its entries are independent.
- **quaternionic** (kappa = 4): dim**2 / 4 independent entries (none of the groups here has one,
  but the basis handles it).

So ``sum_irreps dim**2 / kappa == |G|``. The constructions (no generic numerical decomposition
except to split an irrep of A_n):

- **C_n**: ``trivial``; ``sign`` (x -> (-1)^x) for even n; for k = 1..ceil(n/2)-1 ``freq k``, the
  rotation by 2 pi k x / n (kind complex), whose entries span cos k and sin k of
  ``grokinterp.analysis.fourier``'s basis.
- **D_n**: ``trivial``; ``sign`` (r -> 1, s -> -1); for even n also ``sign_r`` (r -> -1, s -> 1) and
  ``sign_rs`` (r -> -1, s -> -1); then ``rot k`` for k = 1..ceil(n/2)-1: r^j -> the rotation by
  2 pi j k / n, s -> diag(1, -1).
- **S_n**: Young's orthogonal form on the standard Young tableaux of each partition lambda of n:
  the adjacent transposition s_i = (i i+1) maps e_T to (1/r) e_T + sqrt(1 - 1/r^2) e_{s_i T}, r the
  axial distance content(i+1) - content(i) (the second term is absent when i, i+1 share a row,
  r = 1, or a column, r = -1). Every other matrix follows by breadth-first search from the
  identity with rho(s_i g) = rho(s_i) rho(g). Named ``trivial`` (n), ``sign`` (1^n), ``standard``
  (n-1,1), ``standard_sign`` (2,1^(n-2)), else by the partition, ``(3,2)``.
- **A_n**: the restriction of S_n's irrep lambda. lambda and its conjugate lambda' restrict to the
  same irrep (one is kept: the larger of the two, so it has lambda's S_n name). A self-conjugate
  lambda splits in two: the average over G of rho(g) M rho(g)^T for a seeded random symmetric M
  commutes with the restriction, so its eigenspaces are the halves, named ``(3,1,1)a`` (the half
  whose character is larger at the first element where the two differ) and ``(3,1,1)b``. Where it
  has a single eigenvalue the restriction is irreducible over the reals (kind complex: A_3's and
  A_4's 2-dim irreps) and is kept whole under lambda's name.

Irreps come trivial first, then by dimension, ties in construction order (deterministic). Every
matrix is float64 and orthogonal. The tensors are cached (``group_irreps``): do not modify them in
place.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from grokinterp.groups import FiniteGroup, parse_group, permutation_parity

__all__ = ["KAPPA", "Irrep", "IrrepKind", "group_irreps", "irrep_basis", "irrep_slices"]

IrrepKind = Literal["real", "complex", "quaternionic"]

#: <chi, chi> of each kind, and the factor by which it divides dim**2 in the count of independent entries.
KAPPA: dict[str, int] = {"real": 1, "complex": 2, "quaternionic": 4}

# Singular values of the entry matrix below this fraction of the largest are dependencies: the
# independent ones are all sqrt(|G| / dim) (Schur), the dependent ones zero up to rounding.
_RANK_RTOL = 1e-8
# The seed of the random symmetric matrix that splits A_n's self-conjugate irreps (any generic
# matrix does; a fixed seed keeps the halves' bases reproducible).
_SPLIT_SEED = 0


@dataclass(frozen=True)
class Irrep:
    """One real irreducible representation: ``matrices[g]`` is the orthogonal matrix rho(g).

    ``kind`` is the Frobenius-Schur type (module docstring): <chi, chi> = 1, 2, 4 for real,
    complex, quaternionic. Two irreps compare equal by name, dim and kind.
    """

    name: str
    dim: int
    kind: IrrepKind
    matrices: Float[Tensor, "order dim dim"] = field(compare=False, repr=False)

    @property
    def character(self) -> Float[Tensor, " order"]:
        """chi(g) = trace rho(g)."""
        return self.matrices.diagonal(dim1=-2, dim2=-1).sum(-1)

    @functools.cached_property
    def basis(self) -> Float[Tensor, "order k"]:
        """Orthonormal columns spanning the entry functions g -> rho_ij(g); k = dim**2 / kappa.

        From the SVD of the (order, dim*dim) entry matrix (left singular vectors of the non-zero
        singular values). Each column's largest entry is made positive so the signs are fixed.
        """
        order = self.matrices.shape[0]
        U, S, _ = torch.linalg.svd(self.matrices.reshape(order, -1), full_matrices=False)
        B = U[:, S / S[0] > _RANK_RTOL]
        expected = self.dim * self.dim // KAPPA[self.kind]
        if B.shape[1] != expected:  # a construction bug, not a user error
            raise RuntimeError(f"irrep {self.name}: {B.shape[1]} independent entries, expected {expected}")
        peak = B.abs().argmax(dim=0)
        return B * torch.sign(B[peak, torch.arange(B.shape[1])])


def group_irreps(group: FiniteGroup | str) -> tuple[Irrep, ...]:
    """The real irreps of ``group`` (a ``FiniteGroup`` or its name): trivial first, then by
    dimension; cached per group name."""
    return _irreps(group if isinstance(group, str) else group.name)


def irrep_basis(group: FiniteGroup | str) -> Float[Tensor, "order order"]:
    """Every irrep's ``basis`` columns side by side, in ``group_irreps`` order: an orthogonal
    (order, order) matrix, i.e. an orthonormal basis of the functions on G. ``irrep_slices``
    says which columns belong to which irrep."""
    return torch.cat([r.basis for r in group_irreps(group)], dim=1)


def irrep_slices(group: FiniteGroup | str) -> dict[str, slice]:
    """The columns of ``irrep_basis(group)`` of each irrep, by irrep name."""
    out: dict[str, slice] = {}
    start = 0
    for r in group_irreps(group):
        width = r.dim * r.dim // KAPPA[r.kind]
        out[r.name] = slice(start, start + width)
        start += width
    return out


@functools.lru_cache(maxsize=16)
def _irreps(name: str) -> tuple[Irrep, ...]:
    group = parse_group(name)
    build = {"cyclic": _cyclic, "dihedral": _dihedral, "symmetric": _symmetric, "alternating": _alternating}
    irreps = build[group.family](group)
    # Stable sort: within one dimension the construction order stays, which the builders keep canonical.
    return tuple(sorted(irreps, key=lambda r: (r.name != "trivial", r.dim)))


def _irrep(name: str, matrices: Tensor) -> Irrep:
    """An Irrep with its kind read off <chi, chi>."""
    chi = matrices.diagonal(dim1=-2, dim2=-1).sum(-1)
    norm = float(chi.pow(2).mean())
    kind = next((k for k, v in KAPPA.items() if abs(norm - v) < 1e-6), None)
    if kind is None:  # not irreducible: a construction bug
        raise RuntimeError(f"irrep {name}: <chi, chi> = {norm:.6g} is none of 1, 2, 4")
    return Irrep(name, int(matrices.shape[-1]), kind, matrices)  # type: ignore[arg-type]


def _rotations(theta: Float[Tensor, " m"]) -> Float[Tensor, "m 2 2"]:
    """The 2x2 rotations by the angles theta."""
    c, s = torch.cos(theta), torch.sin(theta)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def _one_dim(values: Tensor) -> Tensor:
    return values.to(torch.float64).reshape(-1, 1, 1)


# ------------------------------------------------------------------------------------------------
# C_n and D_n
# ------------------------------------------------------------------------------------------------


def _cyclic(group: FiniteGroup) -> list[Irrep]:
    n = group.n
    x = torch.arange(n, dtype=torch.float64)
    out = [_irrep("trivial", _one_dim(torch.ones(n)))]
    if n % 2 == 0:
        out.append(_irrep("sign", _one_dim(1 - 2 * (torch.arange(n) % 2))))
    # k and n - k give equivalent real irreps (conjugate complex characters), and k = n/2 is the sign.
    out += [_irrep(f"freq {k}", _rotations(2 * math.pi * k * x / n)) for k in range(1, (n + 1) // 2)]
    return out


def _dihedral(group: FiniteGroup) -> list[Irrep]:
    n = group.n
    idx = torch.arange(2 * n)
    k, j = idx % n, idx // n  # element k + n*j is r^k s^j
    out = [_irrep("trivial", _one_dim(torch.ones(2 * n))), _irrep("sign", _one_dim(1 - 2 * j))]
    if n % 2 == 0:  # r -> -1 respects r^n = 1 only for even n
        out.append(_irrep("sign_r", _one_dim(1 - 2 * (k % 2))))
        out.append(_irrep("sign_rs", _one_dim(1 - 2 * ((k + j) % 2))))
    reflect = torch.tensor([1.0, -1.0], dtype=torch.float64)
    for f in range(1, (n + 1) // 2):
        R = _rotations(2 * math.pi * f * k.to(torch.float64) / n)
        # rho(r^k s^j) = R^k diag(1, -1)^j: right-multiplying by diag(1, -1) negates the second column.
        scale = torch.where(j[:, None] == 1, reflect, torch.ones(2, dtype=torch.float64))
        out.append(_irrep(f"rot {f}", R * scale[:, None, :]))
    return out


# ------------------------------------------------------------------------------------------------
# S_n: Young's orthogonal form
# ------------------------------------------------------------------------------------------------


def _partitions(n: int, largest: int | None = None) -> list[tuple[int, ...]]:
    """The partitions of n in decreasing lexicographic order, (n) first."""
    largest = n if largest is None else largest
    if n == 0:
        return [()]
    return [(first, *rest) for first in range(min(n, largest), 0, -1) for rest in _partitions(n - first, first)]


def _conjugate(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(sum(1 for row in shape if row > c) for c in range(shape[0]))


def _partition_name(shape: tuple[int, ...]) -> str:
    n = sum(shape)
    # A list, not a dict: for small n the keys coincide ((n-1, 1) is (1, 1) = sign for n = 2, and
    # (2, 1) is both standard and standard_sign for n = 3), and the first match wins.
    common = [((n,), "trivial"), ((1,) * n, "sign"), ((n - 1, 1), "standard"), ((2,) + (1,) * (n - 2), "standard_sign")]
    return next((label for key, label in common if shape == key), _partition_text(shape))


def _partition_text(shape: tuple[int, ...]) -> str:
    return "(" + ",".join(str(p) for p in shape) + ")"


def _tableaux(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The standard Young tableaux of ``shape``, each as its row word (``word[k]`` = the row of the
    box holding k), in lexicographic order of the words."""
    n = sum(shape)
    out: list[tuple[int, ...]] = []
    counts = [0] * len(shape)
    word: list[int] = []

    def extend() -> None:
        if len(word) == n:
            out.append(tuple(word))
            return
        for r in range(len(shape)):
            # k may go at the end of row r if the row has room and stays no longer than the one above.
            if counts[r] < shape[r] and (r == 0 or counts[r - 1] > counts[r]):
                counts[r] += 1
                word.append(r)
                extend()
                word.pop()
                counts[r] -= 1

    extend()
    return out


def _contents(word: Sequence[int]) -> list[int]:
    """content(k) = column - row of the box holding k."""
    seen = [0] * (max(word) + 1)
    out = []
    for row in word:
        out.append(seen[row] - row)
        seen[row] += 1
    return out


def _young_generators(shape: tuple[int, ...]) -> list[Tensor]:
    """rho(s_i) for i = 0..n-2 in Young's orthogonal form (module docstring)."""
    words = _tableaux(shape)
    index = {w: t for t, w in enumerate(words)}
    contents = [_contents(w) for w in words]
    n, d = sum(shape), len(words)
    gens = []
    for i in range(n - 1):
        M = torch.zeros(d, d, dtype=torch.float64)
        for t, w in enumerate(words):
            r = contents[t][i + 1] - contents[t][i]
            M[t, t] = 1.0 / r
            if abs(r) > 1:  # i and i+1 in neither the same row nor column: s_i T is standard
                swapped = (*w[:i], w[i + 1], w[i], *w[i + 2 :])
                M[index[swapped], t] = math.sqrt(1.0 - 1.0 / (r * r))
        gens.append(M)
    return gens


def element_permutations(group: FiniteGroup) -> Int[Tensor, "order n"]:
    """The one-line permutation of each element of S_n or A_n, in the group's element order."""
    if group.family not in ("symmetric", "alternating"):
        raise ValueError(f"{group.name} is not a permutation group (S<n> or A<n>)")
    perms = torch.tensor(list(itertools.permutations(range(group.n))), dtype=torch.int64)
    return perms if group.family == "symmetric" else perms[permutation_parity(perms) == 0]


def _bfs(group: FiniteGroup) -> list[tuple[int, int, int]]:
    """(element, parent, generator i) with element = s_i * parent, in breadth-first order from the
    identity over the adjacent transpositions: the recipe that builds every rho(g) from rho(s_i)."""
    perms = element_permutations(group)
    index = {tuple(p.tolist()): g for g, p in enumerate(perms)}
    gens = []
    for i in range(group.n - 1):
        p = list(range(group.n))
        p[i], p[i + 1] = p[i + 1], p[i]
        gens.append(index[tuple(p)])
    table = group.table.tolist()
    seen = {0}
    frontier = [0]
    steps = []
    while frontier:
        nxt = []
        for g in frontier:
            for i, s in enumerate(gens):
                h = table[s][g]
                if h not in seen:
                    seen.add(h)
                    steps.append((h, g, i))
                    nxt.append(h)
        frontier = nxt
    return steps


def _young_matrices(group: FiniteGroup, shape: tuple[int, ...]) -> Float[Tensor, "order dim dim"]:
    gens = _young_generators(shape)
    d = gens[0].shape[0] if gens else 1
    mats = torch.empty(group.order, d, d, dtype=torch.float64)
    mats[0] = torch.eye(d, dtype=torch.float64)
    for h, g, i in _bfs(group):
        mats[h] = gens[i] @ mats[g]
    return mats


def _symmetric(group: FiniteGroup) -> list[Irrep]:
    return [_irrep(_partition_name(shape), _young_matrices(group, shape)) for shape in _partitions(group.n)]


# ------------------------------------------------------------------------------------------------
# A_n: restrictions of S_n's irreps, self-conjugate ones split
# ------------------------------------------------------------------------------------------------


def _alternating(group: FiniteGroup) -> list[Irrep]:
    sym = parse_group(f"S{group.n}")
    # A_n's elements inside S_n (both in lexicographic order of their permutations).
    codes = element_permutations(sym) @ (group.n ** torch.arange(group.n - 1, -1, -1))
    inside = torch.searchsorted(codes, element_permutations(group) @ (group.n ** torch.arange(group.n - 1, -1, -1)))
    out = []
    for shape in _partitions(group.n):
        conj = _conjugate(shape)
        if conj > shape:  # lambda and lambda' restrict to the same irrep: keep the larger one
            continue
        mats = _young_matrices(sym, shape)[inside]
        out += [_irrep(_partition_name(shape), mats)] if conj != shape else _split(_partition_text(shape), shape, mats)
    return out


def _split(text: str, shape: tuple[int, ...], mats: Float[Tensor, "order dim dim"]) -> list[Irrep]:
    """The restriction of a self-conjugate lambda to A_n: two halves, or whole where it does not split
    over the reals."""
    d = mats.shape[-1]
    gen = torch.Generator().manual_seed(_SPLIT_SEED)
    M = torch.randn(d, d, generator=gen, dtype=torch.float64)
    M = M + M.T
    # sum_g rho(g) M rho(g)^T commutes with every rho(h), so its eigenspaces are invariant.
    avg = torch.einsum("gij,jk,glk->il", mats, M, mats) / mats.shape[0]
    evals, evecs = torch.linalg.eigh(avg)
    scale = max(float(evals.abs().max()), 1.0)
    breaks = [0, *[i + 1 for i in range(d - 1) if evals[i + 1] - evals[i] > 1e-8 * scale], d]
    if len(breaks) == 2:  # one eigenvalue: irreducible over the reals
        return [_irrep(_partition_name(shape), mats)]
    if len(breaks) != 3 or breaks[1] * 2 != d:
        raise RuntimeError(f"A_n irrep {text}: eigenspaces of sizes {breaks} do not split it in two halves")
    halves = []
    for lo, hi in itertools.pairwise(breaks):
        Q = evecs[:, lo:hi]  # orthonormal columns, so Q^T rho Q stays orthogonal
        halves.append(Q.T @ mats @ Q)
    chi = [h.diagonal(dim1=-2, dim2=-1).sum(-1) for h in halves]
    differ = ((chi[0] - chi[1]).abs() > 1e-6).nonzero()
    if len(differ) == 0:
        raise RuntimeError(f"A_n irrep {text}: the two halves have the same character")
    first = int(differ[0])
    if chi[1][first] > chi[0][first]:  # "a" is the half with the larger character there
        halves.reverse()
    return [_irrep(f"{text}{suffix}", h) for suffix, h in zip("ab", halves, strict=True)]

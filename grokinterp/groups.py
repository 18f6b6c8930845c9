"""Finite groups given by their Cayley tables: the symmetric, alternating, dihedral and cyclic groups.

A group task (``op`` = ``S5``, ``A5``, ``D7``, ``C113``; ``grokinterp.tasks``) learns the
multiplication of a finite group G: the tokens are the element indices 0..|G|-1 and the answer to
(a, b) is the index of a*b. Everything a task or an analysis needs is the table
``table[g, h] = index of g*h``, so a group is its table plus the element order below (which the
irreps of ``grokinterp.analysis.irreps`` and the coset subgroups of
``grokinterp.analysis.irrep_measures`` rely on). Index 0 is always the identity.

Element orders:

- **S_n** (``family`` "symmetric", n! elements): the permutations of ``range(n)`` in one-line
  notation, in lexicographic order (``itertools.permutations(range(n))``), so the identity comes
  first. Composition applies the right factor first: ``(g*h)(i) = g[h[i]]``. Labels are the
  one-line notation, ``"[1 0 2 3 4]"``.
- **A_n** ("alternating", n!/2 elements): the even permutations of S_n in the same relative order,
  with the same composition.
- **D_n** ("dihedral", 2n elements, the symmetries of the regular n-gon): index ``k + n*j`` is
  ``r^k s^j`` (k in 0..n-1, j in 0, 1), r the rotation of order n, s a reflection, with
  ``s r = r^-1 s``; so ``(r^a s^i)(r^b s^j) = r^(a + (-1)^i b) s^(i+j)``. Labels ``"e"``, ``"r"``,
  ``"r^3"``, ``"s"``, ``"r s"``, ``"r^3 s"``.
- **C_n** ("cyclic", n elements): the integers mod n under addition, so the table is exactly
  ``(a + b) % n`` and C_n is the task ``add`` at p = n. Labels ``"0"``, ``"1"``, ...

``MAX_ORDER`` bounds |G|: the analysis holds every one of the |G|^2 pairs (a, b) at once.
``parse_group`` checks the size from n alone (n!, n!/2, 2n, n) before it builds anything, so
``S9`` fails at once with one line rather than after enumerating 362,880 permutations.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # torch is imported where it is used, so a config (and `grokinterp --help`) stays light
    from jaxtyping import Int
    from torch import Tensor

__all__ = [
    "GROUP_NAMES",
    "MAX_ORDER",
    "FiniteGroup",
    "GroupFamily",
    "canonical_name",
    "group_order",
    "is_group_name",
    "parse_group",
    "permutation_parity",
]

GroupFamily = Literal["symmetric", "alternating", "dihedral", "cyclic"]

#: The groups ``parse_group`` accepts, as the error messages list them.
GROUP_NAMES = "S<n> (n 2..6), A<n> (n 3..6), D<n> (n >= 3), C<n> (n >= 2)"

#: The largest group order a task may have: the analysis holds all order**2 pairs (a, b) at once.
MAX_ORDER = 1024

_FAMILIES: dict[str, GroupFamily] = {"S": "symmetric", "A": "alternating", "D": "dihedral", "C": "cyclic"}
# The smallest n of each family: S_1 and C_1 are trivial, A_2 is trivial, D_2 is C_2 x C_2 and D_1 is C_2
# (a dihedral group "of the n-gon" needs n >= 3 for the presentation and the irreps below).
_MIN_N = {"S": 2, "A": 3, "D": 3, "C": 2}
_NAME = re.compile(r"([SADC])([0-9]+)", re.IGNORECASE)
# n with more digits than this is far too large for any family; it also keeps int() and
# factorial() from being handed absurd inputs.
_MAX_DIGITS = 9


@dataclass(frozen=True)
class FiniteGroup:
    """A finite group by its Cayley table; see the module docstring for each family's element order.

    ``table[g, h]`` (int64) is the index of the product g*h, index 0 is the identity, and
    ``labels[g]`` is a readable name of element g. Two groups compare equal when their names do
    (the table is a function of the name). Do not modify ``table`` in place: ``parse_group``
    caches the group.
    """

    name: str
    family: GroupFamily
    n: int
    table: Int[Tensor, "order order"] = field(compare=False, repr=False)
    labels: tuple[str, ...] = field(compare=False, repr=False)

    @property
    def order(self) -> int:
        """|G|, the number of elements."""
        return int(self.table.shape[0])

    @property
    def identity(self) -> int:
        """The index of the identity element: always 0."""
        return 0

    @functools.cached_property
    def inverse(self) -> Int[Tensor, " order"]:
        """``inverse[g]`` = the index of g^-1 (the h with g*h = identity)."""
        import torch

        return (self.table == self.identity).to(torch.int64).argmax(dim=1)

    def mul(self, g: Int[Tensor, "*batch"] | int, h: Int[Tensor, "*batch"] | int) -> Int[Tensor, "*batch"]:
        """The products g*h elementwise (broadcasting g against h), by table lookup."""
        import torch

        return self.table[torch.as_tensor(g, dtype=torch.int64), torch.as_tensor(h, dtype=torch.int64)]


def is_group_name(text: str) -> bool:
    """Whether ``text`` has the form S<n>, A<n>, D<n> or C<n> (any case), whether or not that group
    is valid or small enough, so a caller can route it to ``parse_group`` and its error message."""
    return isinstance(text, str) and _NAME.fullmatch(text) is not None


def _parse_name(text: str) -> tuple[str, int, int]:
    """(family letter, n, order) of a valid group name; ``ValueError`` with one line otherwise.

    The order comes from n by arithmetic, so nothing is built for a group that is too large.
    """
    m = _NAME.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"unknown group {text!r}; choose {GROUP_NAMES}")
    letter, digits = m.group(1).upper(), m.group(2).lstrip("0") or "0"
    if len(digits) > _MAX_DIGITS:
        raise ValueError(f"{letter}{digits} is far too large: at most {MAX_ORDER} elements fit; choose {GROUP_NAMES}")
    n = int(digits)
    name = f"{letter}{n}"
    if n < _MIN_N[letter]:
        raise ValueError(f"{name} is out of range: {letter}<n> needs n >= {_MIN_N[letter]}; choose {GROUP_NAMES}")
    if letter in "SA":
        # n! outgrows MAX_ORDER by n = 7; past 20 the exact count helps nobody (and stays cheap to skip).
        if n > 20:
            count = "n!" if letter == "S" else "n!/2"
            raise ValueError(f"{name} has {count.replace('n', str(n))} elements: at most {MAX_ORDER} fit")
        order = math.factorial(n) // (2 if letter == "A" else 1)
    else:
        order = 2 * n if letter == "D" else n
    if order > MAX_ORDER:
        raise ValueError(
            f"{name} has {order} elements: at most {MAX_ORDER} fit (the analysis holds all {order * order:,} pairs)"
        )
    return letter, n, order


def group_order(text: str) -> int:
    """|G| of the group ``text`` names, from n alone (nothing is built); ``ValueError`` with one line,
    as ``parse_group``, for an unknown, out-of-range or too large group."""
    return _parse_name(text)[2]


def canonical_name(text: str) -> str:
    """The canonical name of the group ``text`` names (``s5`` -> ``S5``), checked like ``parse_group``
    (``ValueError`` with one line) but without building the group."""
    letter, n, _ = _parse_name(text)
    return f"{letter}{n}"


def parse_group(text: str) -> FiniteGroup:
    """The group ``text`` names (``"S5"``, ``"s5"``, ``"A5"``, ``"D10"``, ``"C113"``); cached per
    canonical name.

    Raises ``ValueError`` with one actionable line for an unknown family, an n out of range or an
    order above ``MAX_ORDER`` (checked before any table is built).
    """
    letter, n, _ = _parse_name(text)
    return _build(letter, n)


@functools.lru_cache(maxsize=32)
def _build(letter: str, n: int) -> FiniteGroup:
    import torch

    if letter == "C":
        x = torch.arange(n, dtype=torch.int64)
        table = (x[:, None] + x[None, :]) % n
        return FiniteGroup(f"C{n}", "cyclic", n, table, tuple(str(k) for k in range(n)))
    if letter == "D":
        return _dihedral(n)
    return _permutation_group(n, alternating=letter == "A")


def _dihedral(n: int) -> FiniteGroup:
    import torch

    idx = torch.arange(2 * n, dtype=torch.int64)
    k, j = idx % n, idx // n  # element k + n*j is r^k s^j
    # (r^a s^i)(r^b s^j) = r^a (s^i r^b) s^j = r^(a + (-1)^i b) s^(i+j), since s r^b = r^-b s.
    sign = 1 - 2 * j[:, None]
    rot = (k[:, None] + sign * k[None, :]) % n
    ref = (j[:, None] + j[None, :]) % 2
    table = rot + n * ref
    labels = []
    for jj in range(2):
        for kk in range(n):
            r = "" if kk == 0 else ("r" if kk == 1 else f"r^{kk}")
            labels.append(" ".join(t for t in (r, "s" if jj else "") if t) or "e")
    return FiniteGroup(f"D{n}", "dihedral", n, table, tuple(labels))


def _permutation_group(n: int, alternating: bool) -> FiniteGroup:
    import torch

    perms = torch.tensor(list(itertools.permutations(range(n))), dtype=torch.int64)  # lexicographic
    if alternating:
        perms = perms[permutation_parity(perms) == 0]
    # A permutation's code in base n, most significant digit first, increases with lexicographic
    # order, so the index of any permutation is a binary search among the sorted codes.
    weights = n ** torch.arange(n - 1, -1, -1, dtype=torch.int64)
    codes = perms @ weights
    composed = perms[:, perms]  # composed[g, h, i] = g[h[i]]: apply h first
    table = torch.searchsorted(codes, composed @ weights)
    labels = tuple("[" + " ".join(str(int(v)) for v in p) + "]" for p in perms)
    name = f"{'A' if alternating else 'S'}{n}"
    return FiniteGroup(name, "alternating" if alternating else "symmetric", n, table, labels)


def permutation_parity(perms: Int[Tensor, "m n"]) -> Int[Tensor, " m"]:
    """0 for an even permutation, 1 for an odd one (one-line notation, one permutation per row),
    by counting inversions."""
    inversions = (perms[:, :, None] > perms[:, None, :]).triu(diagonal=1).sum(dim=(1, 2))
    return inversions % 2

"""Real irreps of the finite groups (grokinterp.analysis.irreps), checked against the group tables
and closed forms: homomorphism, orthogonality, Schur, counts, known characters, the Fourier basis."""

from __future__ import annotations

import math

import pytest
import torch

from grokinterp.analysis.fourier import fourier_basis, freq_rows
from grokinterp.analysis.irreps import KAPPA, group_irreps, irrep_basis, irrep_slices
from grokinterp.groups import parse_group, permutation_parity

GROUPS = ["S3", "S4", "S5", "S6", "A3", "A4", "A5", "A6", "D5", "D6", "C7", "C8"]
ATOL = 1e-10


def _pairs(order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pair (g, h) for a small group, a seeded sample of 2000 for a big one."""
    if order <= 120:
        g, h = torch.meshgrid(torch.arange(order), torch.arange(order), indexing="ij")
        return g.reshape(-1), h.reshape(-1)
    gen = torch.Generator().manual_seed(order)
    return torch.randint(order, (2, 2000), generator=gen).unbind(0)


def _permutations(name: str) -> torch.Tensor:
    G = parse_group(name)
    return torch.tensor([[int(c) for c in label.strip("[]").split()] for label in G.labels])


def _n_classes(name: str) -> int:
    """The number of conjugacy classes, straight from the table."""
    G = parse_group(name)
    conj = G.table[G.table[:, :], G.inverse[:, None]]  # conj[x, g] = x g x^-1
    return len({tuple(sorted(set(conj[:, g].tolist()))) for g in range(G.order)})


@pytest.mark.parametrize("name", GROUPS)
def test_homomorphism_and_orthogonal(name: str) -> None:
    G = parse_group(name)
    g, h = _pairs(G.order)
    for r in group_irreps(G):
        R = r.matrices
        assert R.dtype == torch.float64 and R.shape == (G.order, r.dim, r.dim)
        torch.testing.assert_close(R[0], torch.eye(r.dim, dtype=torch.float64), atol=ATOL, rtol=0)
        torch.testing.assert_close(R[g] @ R[h], R[G.table[g, h]], atol=ATOL, rtol=0, msg=f"{name} {r.name}")
        eye = torch.eye(r.dim, dtype=torch.float64).expand_as(R)
        torch.testing.assert_close(R @ R.transpose(1, 2), eye, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", GROUPS)
def test_schur_orthogonality_and_counts(name: str) -> None:
    G = parse_group(name)
    irreps = group_irreps(G)
    X = torch.stack([r.character for r in irreps])
    kappa = torch.tensor([KAPPA[r.kind] for r in irreps], dtype=torch.float64)
    # <chi_i, chi_j> = kappa_i delta_ij: irreducible, of the stated kind, pairwise inequivalent.
    torch.testing.assert_close(X @ X.T / G.order, torch.diag(kappa), atol=1e-9, rtol=0)
    assert sum(r.dim**2 // KAPPA[r.kind] for r in irreps) == G.order
    # Complete: a complex-type real irrep is two complex irreps, so they number the classes.
    assert sum(2 if r.kind == "complex" else 1 for r in irreps) == _n_classes(name)
    assert irreps[0].name == "trivial" and torch.all(irreps[0].matrices == 1)
    assert [r.dim for r in irreps] == sorted(r.dim for r in irreps)
    assert len({r.name for r in irreps}) == len(irreps)


@pytest.mark.parametrize(
    ("name", "dims"),
    [
        ("S3", [1, 1, 2]),
        ("S4", [1, 1, 2, 3, 3]),
        ("S5", [1, 1, 4, 4, 5, 5, 6]),
        ("S6", [1, 1, 5, 5, 5, 5, 9, 9, 10, 10, 16]),
        ("A4", [1, 2, 3]),
        ("A5", [1, 3, 3, 4, 5]),
        ("A6", [1, 5, 5, 8, 8, 9, 10]),
        ("D5", [1, 1, 2, 2]),
        ("D6", [1, 1, 1, 1, 2, 2]),
        ("C7", [1, 2, 2, 2]),
        ("C8", [1, 1, 2, 2, 2]),
    ],
)
def test_dims(name: str, dims: list[int]) -> None:
    assert [r.dim for r in group_irreps(parse_group(name))] == dims


def test_names() -> None:
    names = lambda g: [r.name for r in group_irreps(parse_group(g))]
    assert names("S5") == ["trivial", "sign", "standard", "standard_sign", "(3,2)", "(2,2,1)", "(3,1,1)"]
    assert names("A5") == ["trivial", "(3,1,1)a", "(3,1,1)b", "standard", "(3,2)"]
    assert names("D6") == ["trivial", "sign", "sign_r", "sign_rs", "rot 1", "rot 2"]
    assert names("C8") == ["trivial", "sign", "freq 1", "freq 2", "freq 3"]
    assert names("S3") == ["trivial", "sign", "standard"]
    assert names("A4") == ["trivial", "(2,2)", "standard"]


def test_kinds() -> None:
    kinds = lambda g: {r.name: r.kind for r in group_irreps(parse_group(g))}
    assert set(kinds("S5").values()) == {"real"} and set(kinds("A5").values()) == {"real"}
    assert kinds("A4")["(2,2)"] == "complex" and kinds("A3")["standard"] == "complex"
    assert kinds("C7") == {"trivial": "real", "freq 1": "complex", "freq 2": "complex", "freq 3": "complex"}
    assert all(v == "real" for v in kinds("D6").values())


@pytest.mark.parametrize("n", [3, 4, 5, 6])
def test_symmetric_characters_closed_form(n: int) -> None:
    perms = _permutations(f"S{n}")
    chi = {r.name: r.character for r in group_irreps(parse_group(f"S{n}"))}
    sign = 1.0 - 2.0 * permutation_parity(perms).double()
    fixed = (perms == torch.arange(n)).sum(1).double()
    torch.testing.assert_close(chi["sign"], sign, atol=ATOL, rtol=0)
    torch.testing.assert_close(chi["standard"], fixed - 1, atol=ATOL, rtol=0)  # permutation rep minus trivial
    if n > 3:
        torch.testing.assert_close(chi["standard_sign"], (fixed - 1) * sign, atol=ATOL, rtol=0)


def test_s5_sign_is_the_permutation_sign() -> None:
    perms = _permutations("S5")
    # sign = det of the permutation matrix, independent of the parity helper
    det = torch.stack([torch.linalg.det(torch.eye(5, dtype=torch.float64)[p]) for p in perms])
    (sign,) = [r for r in group_irreps(parse_group("S5")) if r.name == "sign"]
    torch.testing.assert_close(sign.character, det, atol=ATOL, rtol=0)


def test_a5_three_dims_take_the_golden_ratio_on_five_cycles() -> None:
    A = parse_group("A5")
    irreps = {r.name: r for r in group_irreps(A)}
    phi = (1 + math.sqrt(5)) / 2
    five = A.labels.index("[1 2 3 4 0]")  # a 5-cycle
    values = sorted([float(irreps["(3,1,1)a"].character[five]), float(irreps["(3,1,1)b"].character[five])])
    assert values == pytest.approx([1 - phi, phi], abs=1e-10)
    assert float(irreps["(3,1,1)a"].character[five]) == pytest.approx(phi)  # "a": the larger at its first difference


@pytest.mark.parametrize("n", [5, 6, 7])
def test_dihedral_characters_closed_form(n: int) -> None:
    D = parse_group(f"D{n}")
    irreps = {r.name: r for r in group_irreps(D)}
    k, j = torch.arange(2 * n) % n, torch.arange(2 * n) // n
    for f in range(1, (n + 1) // 2):
        expected = torch.where(j == 0, 2 * torch.cos(2 * math.pi * f * k.double() / n), torch.zeros(2 * n).double())
        torch.testing.assert_close(irreps[f"rot {f}"].character, expected, atol=ATOL, rtol=0)
        torch.testing.assert_close(irreps[f"rot {f}"].matrices[n], torch.diag(torch.tensor([1.0, -1.0]).double()))
    torch.testing.assert_close(irreps["sign"].character, 1.0 - 2.0 * j.double())
    if n % 2 == 0:
        torch.testing.assert_close(irreps["sign_r"].character, 1.0 - 2.0 * (k % 2).double())
        torch.testing.assert_close(irreps["sign_rs"].character, 1.0 - 2.0 * ((k + j) % 2).double())


@pytest.mark.parametrize("name", GROUPS)
def test_basis_orthonormal_and_complete(name: str) -> None:
    G = parse_group(name)
    B = irrep_basis(G)
    assert B.shape == (G.order, G.order) and B.dtype == torch.float64
    eye = torch.eye(G.order, dtype=torch.float64)
    torch.testing.assert_close(B.T @ B, eye, atol=1e-9, rtol=0)
    torch.testing.assert_close(B @ B.T, eye, atol=1e-9, rtol=0)
    slices = irrep_slices(G)
    assert list(slices) == [r.name for r in group_irreps(G)]
    for r in group_irreps(G):
        Br = r.basis
        assert Br.shape == (G.order, r.dim**2 // KAPPA[r.kind])
        assert torch.equal(B[:, slices[r.name]], Br)
        # The columns span the entry functions: projecting the entries onto them changes nothing.
        E = r.matrices.reshape(G.order, -1)
        torch.testing.assert_close(Br @ (Br.T @ E), E, atol=1e-9, rtol=0)


@pytest.mark.parametrize("n", [7, 8, 12, 113])
def test_cyclic_basis_is_the_fourier_basis(n: int) -> None:
    F, _ = fourier_basis(n, dtype=torch.float64)
    irreps = {r.name: r for r in group_irreps(parse_group(f"C{n}"))}
    # Same subspaces: equal orthogonal projectors (the bases differ by a rotation within each).
    spaces = {"trivial": [0]} | {f"freq {k}": freq_rows(n, k) for k in range(1, (n + 1) // 2)}
    if n % 2 == 0:
        spaces["sign"] = freq_rows(n, n // 2)  # the Nyquist row cos(pi x)
    assert set(spaces) == set(irreps)
    for name, rows in spaces.items():
        B, Fk = irreps[name].basis, F[rows].T
        torch.testing.assert_close(B @ B.T, Fk @ Fk.T, atol=1e-10, rtol=0, msg=name)


def test_cached_per_name_and_deterministic() -> None:
    assert group_irreps(parse_group("S5")) is group_irreps("S5")
    # The A_n split uses a seeded matrix: rebuilding gives the same matrices.
    from grokinterp.analysis import irreps as module

    before = [r.matrices.clone() for r in group_irreps("A5")]
    module._irreps.cache_clear()
    after = [r.matrices for r in group_irreps("A5")]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))

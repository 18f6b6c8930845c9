"""Finite groups by their Cayley tables (grokinterp.groups): group axioms, the documented element
orders and products, and the one-line errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from grokinterp.groups import MAX_ORDER, FiniteGroup, group_order, is_group_name, parse_group, permutation_parity

SMALL = ["S3", "S4", "A4", "A5", "D3", "D5", "D6", "C7", "C8"]
BIG = ["S5", "S6", "A6", "D512", "C1024"]


def _check_associative(G: FiniteGroup, samples: int | None) -> None:
    T = G.table
    if samples is None:  # every triple
        assert torch.equal(T[T, :], T[:, T]), "(gh)k != g(hk) somewhere"
        return
    gen = torch.Generator().manual_seed(0)
    g, h, k = torch.randint(G.order, (3, samples), generator=gen)
    assert torch.equal(T[T[g, h], k], T[g, T[h, k]])


@pytest.mark.parametrize("name", SMALL + BIG)
def test_group_axioms(name: str) -> None:
    G = parse_group(name)
    T, order = G.table, G.order
    assert T.dtype == torch.int64 and T.shape == (order, order)
    assert order == group_order(name) == len(G.labels) == len(set(G.labels))
    # Latin square: every row and every column is a permutation of the elements.
    everyone = torch.arange(order)
    assert torch.equal(T.sort(dim=1).values, everyone.expand(order, order))
    assert torch.equal(T.sort(dim=0).values, everyone[:, None].expand(order, order))
    # Identity at index 0, on both sides.
    assert G.identity == 0
    assert torch.equal(T[0], everyone) and torch.equal(T[:, 0], everyone)
    # Inverses on both sides.
    inv = G.inverse
    assert inv.dtype == torch.int64 and inv.shape == (order,)
    assert torch.all(T[everyone, inv] == 0) and torch.all(T[inv, everyone] == 0)
    _check_associative(G, None if order <= 120 else 20_000)


def test_mul_is_the_table_vectorised() -> None:
    G = parse_group("S4")
    g, h = torch.tensor([[1, 2], [3, 23]]), torch.tensor([[5, 0], [7, 11]])
    assert torch.equal(G.mul(g, h), G.table[g, h])
    assert int(G.mul(3, 4)) == int(G.table[3, 4])


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_symmetric_order_and_composition(n: int) -> None:
    G = parse_group(f"S{n}")
    perms = list(itertools.permutations(range(n)))
    assert G.order == math.factorial(n) and G.family == "symmetric" and G.n == n
    assert G.labels[0] == "[" + " ".join(map(str, range(n))) + "]"
    assert G.labels == tuple("[" + " ".join(map(str, p)) + "]" for p in perms)
    index = {p: i for i, p in enumerate(perms)}
    gen = torch.Generator().manual_seed(n)
    for g, h in torch.randint(G.order, (200, 2), generator=gen).tolist():
        gh = tuple(perms[g][perms[h][i]] for i in range(n))  # apply h first
        assert int(G.table[g, h]) == index[gh]


def test_s3_known_products() -> None:
    G = parse_group("S3")
    idx = {label: i for i, label in enumerate(G.labels)}
    # (g*h)(i) = g[h[i]]: [1 0 2] after [0 2 1] sends 0->0->1, 1->2->2, 2->1->0.
    assert G.labels[int(G.table[idx["[1 0 2]"], idx["[0 2 1]"]])] == "[1 2 0]"
    assert G.labels[int(G.table[idx["[0 2 1]"], idx["[1 0 2]"]])] == "[2 0 1]"
    assert G.order == 6 and not torch.equal(G.table, G.table.T)  # S3 is not abelian


@pytest.mark.parametrize("n", [3, 4, 5, 6])
def test_alternating_is_the_even_permutations(n: int) -> None:
    A = parse_group(f"A{n}")
    even = [p for p in itertools.permutations(range(n)) if permutation_parity(torch.tensor([p]))[0] == 0]
    assert A.order == math.factorial(n) // 2 == len(even) and A.family == "alternating"
    assert A.labels == tuple("[" + " ".join(map(str, p)) + "]" for p in even)
    # The table agrees with S_n's restricted to the even permutations.
    S = parse_group(f"S{n}")
    inside = torch.tensor([S.labels.index(label) for label in A.labels])
    position = {int(s): a for a, s in enumerate(inside)}
    restricted = S.table[inside[:, None], inside[None, :]]
    assert torch.equal(restricted.apply_(lambda s: position[s]), A.table)


def test_a5_all_even() -> None:
    A = parse_group("A5")
    perms = torch.tensor([[int(c) for c in label.strip("[]").split()] for label in A.labels])
    assert A.order == 60
    assert torch.all(permutation_parity(perms) == 0)
    # A 3-cycle and a transposition pair: both even, both in.
    assert "[1 2 0 3 4]" in A.labels and "[1 0 3 2 4]" in A.labels and "[1 0 2 3 4]" not in A.labels


def test_permutation_parity_closed_form() -> None:
    perms = torch.tensor(list(itertools.permutations(range(4))))
    # sign = det of the permutation matrix
    dets = torch.stack([torch.linalg.det(torch.eye(4)[p]) for p in perms])
    assert torch.equal(permutation_parity(perms), ((1 - dets.round().long()) // 2))


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7])
def test_dihedral_products(n: int) -> None:
    D = parse_group(f"D{n}")
    assert D.order == 2 * n and D.family == "dihedral"
    assert D.labels[0] == "e" and D.labels[1] == "r" and D.labels[n] == "s" and D.labels[n + 2] == "r^2 s"
    T = D.table
    for k, j in itertools.product(range(n), repeat=2):
        assert int(T[k, j]) == (k + j) % n  # r^k r^j = r^(k+j)
        assert int(T[k + n, j]) == (k - j) % n + n  # r^k s * r^j = r^(k-j) s
        assert int(T[k, j + n]) == (k + j) % n + n  # r^k * r^j s = r^(k+j) s
        assert int(T[k + n, j + n]) == (k - j) % n  # r^k s * r^j s = r^(k-j)
    # s r = r^-1 s, r has order n, s order 2.
    assert int(T[n, 1]) == (n - 1) + n and int(T[n, n]) == 0
    assert int(D.inverse[1]) == n - 1


def test_d3_is_s3_sized_and_not_abelian() -> None:
    D = parse_group("D3")
    assert D.order == 6 and not torch.equal(D.table, D.table.T)


@pytest.mark.parametrize("n", [2, 7, 8, 113])
def test_cyclic_table_is_addition(n: int) -> None:
    C = parse_group(f"C{n}")
    x = torch.arange(n)
    assert torch.equal(C.table, (x[:, None] + x[None, :]) % n)
    assert C.labels == tuple(str(k) for k in range(n)) and C.family == "cyclic"
    assert torch.equal(C.inverse, (-x) % n)


def test_names_parse_case_insensitively_and_cache() -> None:
    assert parse_group("s5") is parse_group("S5")
    assert parse_group("S05").name == "S5" and parse_group("d10").name == "D10" and parse_group("C113").order == 113
    assert parse_group("D512").order == MAX_ORDER and parse_group("C1024").order == MAX_ORDER


def test_is_group_name() -> None:
    for text in ["S5", "s5", "A5", "D7", "C113", "S7", "S100", "D0", "C1"]:
        assert is_group_name(text), text
    for text in ["Q8", "add", "S", "5", "S5 ", "SL2", "", "x2_y"]:
        assert not is_group_name(text), text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Q8", "unknown group 'Q8'; choose S<n> (n 2..6), A<n> (n 3..6), D<n> (n >= 3), C<n> (n >= 2)"),
        ("S7", "S7 has 5040 elements: at most 1024 fit (the analysis holds all 25,401,600 pairs)"),
        ("D0", "D0 is out of range: D<n> needs n >= 3"),
        ("C1", "C1 is out of range: C<n> needs n >= 2"),
        ("A2", "A2 is out of range: A<n> needs n >= 3"),
        ("S1", "S1 is out of range: S<n> needs n >= 2"),
        ("A7", "A7 has 2520 elements: at most 1024 fit"),
        ("D513", "D513 has 1026 elements: at most 1024 fit"),
        ("C1025", "C1025 has 1025 elements"),
        ("S40", "S40 has 40! elements"),
        ("C123456789012", "far too large"),
    ],
)
def test_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_group(text)
    assert message in str(info.value) and "\n" not in str(info.value)
    if is_group_name(text):  # the size and range checks come from n alone, as parse_group's
        with pytest.raises(ValueError, match=r"out of range|elements|too large"):
            group_order(text)


def test_size_check_builds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import grokinterp.groups as groups

    def boom(*args: object) -> None:
        raise AssertionError("a table was built for a group that is too large")

    monkeypatch.setattr(groups.itertools, "permutations", boom)
    with pytest.raises(ValueError, match="5040 elements"):
        parse_group("S7")
    with pytest.raises(ValueError, match="40320 elements"):
        parse_group("S8")

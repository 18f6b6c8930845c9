"""Algorithmic tasks: binary operations mod p, token layouts and train/test splits.

Inputs are all p*p pairs (a, b) in a-major order (row = a*p + b), as in Nanda et al. 2023.
Three token layouts are supported:

- ``"a b ="`` (Nanda et al.): tokens ``[a, b, p]``; d_vocab = p + 1.
- ``"a op b ="`` (Power et al.): tokens ``[a, p, b, p + 1]`` (op token p, "=" token p + 1);
  d_vocab = p + 2.
- ``"a b"`` (Zhong et al. 2023, "The Clock and the Pizza"): tokens ``[a, b]``, no "=" token;
  d_vocab = p. The answer is read at the final position, which holds b.

Answers are always one of the p residues, so the output vocabulary (d_vocab_out) is p.

Besides the operations mod p, ``op`` may name a finite group (``grokinterp.groups``: ``S5``, ``A5``,
``D7``, ``C113``): the task is the group's multiplication read off its Cayley table, the p tokens
are the group's elements (p is the group's order, so "p" reads "|G|" there) and the answer of (a, b)
is a * b. ``C<n>``'s table is addition mod n, so ``op="C113"`` builds exactly the dataset of
``op="add"`` at p = 113.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # torch is imported where it is used, so `grokinterp --help` stays light
    from jaxtyping import Bool, Int
    from torch import Tensor

Layout = Literal["a b =", "a op b =", "a b"]
LAYOUTS: tuple[str, ...] = ("a b =", "a op b =", "a b")
#: Per layout: (sequence length, extra tokens beyond the p residues, position of a, position of b).
_LAYOUT_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "a b =": (3, 1, 0, 1),
    "a op b =": (4, 2, 0, 2),
    "a b": (2, 0, 0, 1),
}


def is_prime(n: int) -> bool:
    """Whether ``n`` is a prime (trial division; p is small here)."""
    if n < 2:
        return False
    return all(n % d for d in range(2, int(n**0.5) + 1))


@dataclass(frozen=True)
class Operation:
    """A binary operation on residues mod p.

    ``fn`` maps int64 tensors ``a``, ``b`` (and ``p``) to the answer in [0, p).
    ``b_nonzero`` restricts the domain to b != 0 (division); ``needs_prime`` asks for prime p;
    ``group`` names the finite group of a group task (``grokinterp.groups``), else None.
    """

    name: str
    formula: str
    fn: Callable[[Tensor, Tensor, int], Tensor]
    b_nonzero: bool = False
    needs_prime: bool = False
    group: str | None = None


def _div(a: Tensor, b: Tensor, p: int) -> Tensor:
    import torch

    # Fermat's little theorem: b^(p-2) is the inverse of b mod prime p.
    inv = torch.tensor([pow(int(x), p - 2, p) for x in range(p)], dtype=torch.int64)
    return (a * inv[b]) % p


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in [
        Operation("add", "a + b", lambda a, b, p: (a + b) % p),
        Operation("sub", "a - b", lambda a, b, p: (a - b) % p),
        Operation("mul", "a * b", lambda a, b, p: (a * b) % p),
        Operation("div", "a * b^(p-2)", _div, b_nonzero=True, needs_prime=True),
        Operation("x2_y2", "a^2 + b^2", lambda a, b, p: (a * a + b * b) % p),
        Operation("x2_xy_y2", "a^2 + a*b + b^2", lambda a, b, p: (a * a + a * b + b * b) % p),
        Operation("x3_xy2_y", "a^3 + a*b^2 + b", lambda a, b, p: (a**3 + a * b * b + b) % p),
        Operation("x2_y", "a^2 + b", lambda a, b, p: (a * a + b) % p),
    ]
}


def is_group_op(op: str) -> bool:
    """Whether ``op`` names a finite group (``S5``, ``A5``, ``D7``, ``C113``; ``grokinterp.groups``),
    known or not: such a name is never one of the operations mod p."""
    from grokinterp.groups import is_group_name

    return op not in OPERATIONS and is_group_name(op)


@functools.lru_cache(maxsize=32)
def _group_operation(op: str) -> Operation:
    from grokinterp.groups import parse_group

    group = parse_group(op)  # one line for an unknown or too large group, before any table is built
    table = group.table

    def multiply(a: Tensor, b: Tensor, p: int) -> Tensor:
        return table[a, b]

    return Operation(group.name, f"a * b in {group.name}", multiply, group=group.name)


def get_operation(name: str) -> Operation:
    """The ``Operation`` named ``name``: one of ``OPERATIONS`` or a finite group's multiplication
    (``ValueError`` listing the choices if there is none)."""
    if name in OPERATIONS:
        return OPERATIONS[name]
    if is_group_op(name):
        return _group_operation(name)
    raise ValueError(f"unknown op {name!r}; choose one of: {', '.join(OPERATIONS)}, or a group: S<n>, A<n>, D<n>, C<n>")


def group_order(op: str) -> int | None:
    """The order |G| of the group ``op`` names (the p of its task), or None for an operation mod p."""
    if not is_group_op(op):
        return None
    from grokinterp.groups import group_order as order

    return order(op)


def canonical_op(op: str) -> str:
    """``op`` as it is stored: a group's canonical name (``s5`` -> ``S5``), else ``op`` itself."""
    if not is_group_op(op):
        return op
    from grokinterp.groups import canonical_name

    return canonical_name(op)  # no table built: a config stays light


def validate_task(p: int, op: str, layout: str = "a b =") -> None:
    """Raise ``ValueError`` with a one-line, actionable message if the task is ill-defined."""
    order = group_order(op)  # an unknown or too large group fails here, before anything is built
    operation = get_operation(op) if order is None else None
    if p < 2:
        raise ValueError(f"p must be at least 2 (got p={p})")
    if order is not None and p != order:
        raise ValueError(
            f"op {op} is a group of {order} elements: p must be {order} (got p={p}); leave p out and it is set"
        )
    if operation is not None and operation.needs_prime and not is_prime(p):
        raise ValueError(f"op {op!r} needs a prime p (got p={p}); try p=97 or p=113")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")


def _shape(layout: str) -> tuple[int, int, int, int]:
    try:
        return _LAYOUT_SHAPES[layout]
    except KeyError:
        raise ValueError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}") from None


def d_vocab(p: int, layout: str) -> int:
    """Input vocabulary size: the p residues plus "=" (``a b =``), plus the op token and "="
    (``a op b =``), or the residues alone (``a b``)."""
    return p + _shape(layout)[1]


def n_ctx(layout: str) -> int:
    """Sequence length of a layout: 3 for ``a b =``, 4 for ``a op b =``, 2 for ``a b``."""
    return _shape(layout)[0]


def operand_positions(layout: str) -> tuple[int, int]:
    """Positions (a_pos, b_pos) of a and b in a token row: (0, 1) for ``a b =`` and ``a b``,
    (0, 2) for ``a op b =``."""
    _, _, a_pos, b_pos = _shape(layout)
    return a_pos, b_pos


def has_equals_token(layout: str) -> bool:
    """Whether the layout ends with an "=" token (``a b =``, ``a op b =``); in ``a b`` the final
    position holds b itself."""
    return layout != "a b"


def all_pairs(p: int) -> tuple[Int[Tensor, " p*p"], Int[Tensor, " p*p"]]:
    """All (a, b) in a-major order: row index = a*p + b."""
    import torch

    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    return a, b


def make_tokens(a: Int[Tensor, " n"], b: Int[Tensor, " n"], p: int, layout: str) -> Int[Tensor, "n ctx"]:
    """The token rows of the pairs (a, b) in ``layout`` (module docstring): ``[a, b, p]``,
    ``[a, p, b, p + 1]`` or ``[a, b]``."""
    import torch

    _shape(layout)  # an unknown layout fails here, not with a silent default
    if layout == "a b":
        return torch.stack([a, b], dim=1)
    eq = torch.full_like(a, p if layout == "a b =" else p + 1)
    if layout == "a b =":
        return torch.stack([a, b, eq], dim=1)
    op_tok = torch.full_like(a, p)
    return torch.stack([a, op_tok, b, eq], dim=1)


@dataclass(frozen=True)
class Dataset:
    """Every input of a task and its answer, with the train/test split.

    ``tokens`` and ``labels`` cover the whole domain in a-major order (for ``div`` the rows with
    b = 0 are absent). ``train_indices``/``test_indices`` index rows of ``tokens``.
    """

    p: int
    op: str
    layout: str
    a: Int[Tensor, " n"]
    b: Int[Tensor, " n"]
    tokens: Int[Tensor, "n ctx"]
    labels: Int[Tensor, " n"]
    train_indices: Int[Tensor, " n_train"]
    test_indices: Int[Tensor, " n_test"]

    @property
    def train_tokens(self) -> Int[Tensor, "n_train ctx"]:
        """The token rows of the train split."""
        return self.tokens[self.train_indices]

    @property
    def train_labels(self) -> Int[Tensor, " n_train"]:
        """The answers of the train split."""
        return self.labels[self.train_indices]

    @property
    def test_tokens(self) -> Int[Tensor, "n_test ctx"]:
        """The token rows of the test split."""
        return self.tokens[self.test_indices]

    @property
    def test_labels(self) -> Int[Tensor, " n_test"]:
        """The answers of the test split."""
        return self.labels[self.test_indices]

    @property
    def is_full_grid(self) -> bool:
        """True when every (a, b) pair is present (needed by the Fourier measures)."""
        return len(self.labels) == self.p * self.p

    def train_mask_grid(self) -> Bool[Tensor, " n"]:
        """(p*p,) bool mask of the rows in the train split (full-grid tasks only)."""
        import torch

        mask = torch.zeros(len(self.labels), dtype=torch.bool)
        mask[self.train_indices] = True
        return mask


def random_split(n: int, train_frac: float, seed: int) -> tuple[Int[Tensor, " n_train"], Int[Tensor, " n_test"]]:
    """Random permutation split, as in the TransformerLens Grokking demo.

    ``torch.randperm`` through a ``torch.Generator`` seeded with ``seed`` gives the same
    permutation as the demo's ``torch.manual_seed(seed); torch.randperm(n)``.
    """
    import torch

    if not 0.0 < train_frac < 1.0:
        raise ValueError(f"train fraction must be in (0, 1) (got {train_frac})")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    cutoff = int(n * train_frac)
    if cutoff == 0 or cutoff == n:
        raise ValueError(f"train fraction {train_frac} leaves an empty split for {n} examples")
    return perm[:cutoff], perm[cutoff:]


def make_dataset(
    p: int,
    op: str = "add",
    layout: str = "a b =",
    train_frac: float = 0.3,
    data_seed: int = 598,
    split: tuple[Int[Tensor, " n_train"], Int[Tensor, " n_test"]] | None = None,
) -> Dataset:
    """Build the full task table and split it (or reuse a saved ``split``)."""
    import torch

    validate_task(p, op, layout)
    operation = get_operation(op)
    a, b = all_pairs(p)
    if operation.b_nonzero:
        keep = b != 0
        a, b = a[keep], b[keep]
    labels = operation.fn(a, b, p)
    tokens = make_tokens(a, b, p, layout)
    if split is None:
        train_idx, test_idx = random_split(len(labels), train_frac, data_seed)
    else:
        train_idx, test_idx = (t.to(torch.int64) for t in split)
    return Dataset(p, op, layout, a, b, tokens, labels, train_idx, test_idx)

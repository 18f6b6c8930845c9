import pytest
import torch

from grokinterp import tasks


@pytest.mark.parametrize(
    ("op", "a", "b", "p", "expected"),
    [
        ("add", 100, 20, 113, 7),
        ("sub", 3, 5, 7, 5),
        ("mul", 5, 6, 7, 2),
        ("div", 3, 2, 7, 5),  # 2 * 5 = 10 = 3 mod 7
        ("x2_y2", 3, 4, 7, 4),  # 25 mod 7
        ("x2_xy_y2", 2, 3, 7, 5),  # 4 + 6 + 9 = 19
        ("x3_xy2_y", 2, 3, 7, 1),  # 8 + 18 + 3 = 29
        ("x2_y", 4, 5, 7, 0),  # 21
    ],
)
def test_operations_match_formula(op, a, b, p, expected):
    fn = tasks.get_operation(op).fn
    assert fn(torch.tensor([a]), torch.tensor([b]), p).item() == expected


def test_division_inverts_multiplication():
    p = 31
    ds = tasks.make_dataset(p, "div", train_frac=0.5)
    assert len(ds.labels) == p * (p - 1)  # b = 0 excluded
    assert torch.equal((ds.labels * ds.b) % p, ds.a)


def test_layouts_and_a_major_order():
    p = 5
    ds = tasks.make_dataset(p, "add", "a b =")
    assert ds.tokens.shape == (25, 3)
    assert ds.tokens[7].tolist() == [1, 2, 5]  # row = a*p + b
    ds4 = tasks.make_dataset(p, "sub", "a op b =")
    assert ds4.tokens[7].tolist() == [1, 5, 2, 6]
    assert ds4.labels[7].item() == (1 - 2) % p


def test_split_matches_transformerlens_demo():
    # The demo: torch.manual_seed(598); indices = torch.randperm(p*p); cutoff = int(p*p*0.3)
    p = 113
    torch.manual_seed(598)
    indices = torch.randperm(p * p)
    cutoff = int(p * p * 0.3)
    ds = tasks.make_dataset(p, "add", train_frac=0.3, data_seed=598)
    assert torch.equal(ds.train_indices, indices[:cutoff])
    assert torch.equal(ds.test_indices, indices[cutoff:])


def test_split_is_a_partition_and_seeded():
    a = tasks.make_dataset(23, train_frac=0.4, data_seed=1)
    b = tasks.make_dataset(23, train_frac=0.4, data_seed=1)
    c = tasks.make_dataset(23, train_frac=0.4, data_seed=2)
    assert torch.equal(a.train_indices, b.train_indices)
    assert not torch.equal(a.train_indices, c.train_indices)
    both = torch.cat([a.train_indices, a.test_indices]).sort().values
    assert torch.equal(both, torch.arange(23 * 23))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p": 12, "op": "div"}, "prime"),
        ({"p": 1}, "at least 2"),
        ({"p": 7, "train_frac": 1.0}, "(0, 1)"),
        ({"p": 7, "train_frac": 0.0}, "(0, 1)"),
        ({"p": 7, "op": "pow"}, "unknown op"),
    ],
)
def test_bad_tasks_raise_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tasks.make_dataset(**kwargs)


def test_zhong_layout_has_no_equals_token():
    p = 5
    ds = tasks.make_dataset(p, "add", "a b")
    assert ds.tokens.shape == (25, 2) and ds.tokens[7].tolist() == [1, 2]
    assert (tasks.d_vocab(p, "a b"), tasks.n_ctx("a b")) == (p, 2)
    assert [tasks.operand_positions(x) for x in ("a b =", "a op b =", "a b")] == [(0, 1), (0, 2), (0, 1)]
    assert not tasks.has_equals_token("a b") and tasks.has_equals_token("a b =")
    with pytest.raises(ValueError, match="unknown layout"):
        tasks.n_ctx("a + b")


def test_group_task_is_its_cayley_table_and_c_n_is_addition():
    from grokinterp.groups import parse_group

    ds = tasks.make_dataset(60, "A5", "a b", 0.4, 1)
    table = parse_group("A5").table
    assert ds.tokens.shape == (3600, 2) and tasks.d_vocab(60, "a b") == 60
    assert torch.equal(ds.labels, table[ds.a, ds.b])
    # C_n's dataset is exactly addition mod n's: tokens, answers and split
    c, add = tasks.make_dataset(23, "C23", "a b =", 0.3, 598), tasks.make_dataset(23, "add", "a b =", 0.3, 598)
    for name in ("tokens", "labels", "train_indices", "test_indices"):
        assert torch.equal(getattr(c, name), getattr(add, name)), name
    assert tasks.get_operation("s5").name == "S5" and tasks.canonical_op("d7") == "D7"
    assert tasks.group_order("S5") == 120 and tasks.group_order("add") is None


def test_group_op_in_the_config_sets_p_and_refuses_a_wrong_one():
    from grokinterp.config import RunConfig

    assert RunConfig(op="S5").p == 120 and RunConfig(op="s5").op == "S5"
    assert RunConfig(op="C113").p == 113 and RunConfig(op="D7", p=14).p == 14
    with pytest.raises(ValueError, match=r"op S5 is a group of 120 elements: p must be 120 \(got p=97\)"):
        RunConfig(op="S5", p=97)
    with pytest.raises(ValueError, match="S7 has 5040 elements"):
        RunConfig(op="S7")
    with pytest.raises(ValueError, match="unknown op 'Q8'"):
        RunConfig(op="Q8")
    cfg = RunConfig(op="S5", layout="a b", arch="mlp", mlp_embed="separate")
    assert cfg.n_train == int(120 * 120 * 0.3)
    assert RunConfig.from_json(cfg.to_json()) == cfg

"""The irrep-basis measures against brute-force computations from the irreps' matrices, and C_n
against the Fourier measures of addition mod n."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from grokinterp.analysis import irrep_measures as im
from grokinterp.analysis.bases import task_basis
from grokinterp.analysis.irreps import group_irreps
from grokinterp.analysis.spectra import gini_W_E, gini_W_L
from grokinterp.config import RunConfig
from grokinterp.forward import final_position_cache
from grokinterp.groups import parse_group
from grokinterp.models import build_model
from grokinterp.tasks import make_dataset


def _model_and_task(op: str, arch: str = "transformer", **kw):
    cfg = RunConfig(op=op, d_model=32, n_heads=2, d_head=16, d_mlp=48, arch=arch, model_seed=3, **kw)
    if arch == "mlp":
        cfg = cfg.replace(layout="a b", n_layers=1)
    model = build_model(cfg).eval()
    dataset = make_dataset(cfg.p, cfg.op, cfg.layout, cfg.train_frac, cfg.data_seed)
    return cfg, model, dataset, im.group_task(dataset)


def _span(columns: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis of the column span (QR with rank from the singular values)."""
    u, s, _ = torch.linalg.svd(columns, full_matrices=False)
    return u[:, s > 1e-9 * s.max()]


def _entries(matrices: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The matrix-entry functions rho_ij(index[row]) as columns (rows, dim*dim)."""
    return matrices.double()[index].reshape(len(index), -1)


@pytest.mark.parametrize("op", ["S3", "D5", "C7", "A4"])
def test_logit_trace_similarity_matches_the_explicit_cube(op):
    _, model, dataset, task = _model_and_task(op)
    with torch.no_grad():
        logits = final_position_cache(model, dataset.tokens).logits.double()
    g = task.group
    L = logits - logits.mean(-1, keepdim=True)
    sims = im.logit_trace_similarities(task, logits)
    for r in task.irreps[1:]:
        chi = r.character.double()
        # cube[row, c] = chi(a b c^-1), built element by element
        cube = torch.tensor(
            [[float(chi[g.table[int(ab), int(g.inverse[c])]]) for c in range(g.order)] for ab in task.ab],
            dtype=torch.float64,
        )
        expect = float((L * cube).sum() / (L.norm() * cube.norm()))
        assert sims[r.name] == pytest.approx(expect, abs=1e-10)


@pytest.mark.parametrize(("op", "arch"), [("S3", "transformer"), ("D5", "mlp"), ("A4", "mlp")])
def test_fve_and_restricted_excluded_loss_match_least_squares(op, arch):
    cfg, model, dataset, task = _model_and_task(op, arch, **({"mlp_embed": "separate"} if arch == "mlp" else {}))
    with torch.no_grad():
        cache = final_position_cache(model, dataset.tokens)
    keys = [task.irreps[-1].name, task.irreps[1].name]
    m = im.irrep_measures(model, task, cache, keys)
    H = cache.posts[-1].double()
    Hc = H - H.mean(0)
    if arch == "mlp":
        W_in = model.blocks[0].mlp.W_in.detach().double()
        d = cfg.d_model
        W_a = model.W_E.detach().double() @ W_in[:d]
        W_L = model.W_U.detach().double()
        bias = model.b_U.detach().double()
    else:
        W_a = model.W_E.detach().double()[: task.order]
        W_L = model.blocks[-1].mlp.W_out.detach().double() @ model.W_U.detach().double()[:, : task.order]
        bias = torch.zeros(task.order, dtype=torch.float64)
    elems = torch.arange(task.order)
    total_fve_a, total_fve_mlp = 0.0, 0.0
    P_key = torch.zeros(len(task.ab), len(task.ab), dtype=torch.float64)
    for r in task.irreps:
        Q = _span(_entries(r.matrices, elems))  # functions on G
        fve_a = float((Q.T @ W_a).pow(2).sum() / W_a.pow(2).sum())
        assert m[im.irrep_column("fve_W_a", r)] == pytest.approx(fve_a, abs=1e-10)
        cols = [_entries(r.matrices, idx) for idx in (task.a, task.b, task.ab)]
        Q2 = _span(torch.cat(cols, 1)) if r is not task.irreps[0] else _span(cols[0])
        fve_mlp = float((Q2.T @ Hc).pow(2).sum() / Hc.pow(2).sum())
        if r is not task.irreps[0]:
            assert m[im.irrep_column("fve_mlp", r)] == pytest.approx(fve_mlp, abs=1e-9)
        if r.name in keys:
            total_fve_a += fve_a
            total_fve_mlp += fve_mlp
            Qab = _span(cols[2])
            P_key += Qab @ Qab.T
    assert m["fve_W_a"] == pytest.approx(total_fve_a, abs=1e-10)
    assert m["fve_mlp"] == pytest.approx(total_fve_mlp, abs=1e-9)
    # Restricted: the neurons projected onto the rho(ab) functions of the keys, to the logits.
    labels = dataset.labels
    restricted = (P_key @ H) @ W_L + bias
    excluded = (H - P_key @ H) @ W_L + bias
    train = dataset.train_indices
    res = float(torch.nn.functional.cross_entropy(restricted, labels))
    exc = float(torch.nn.functional.cross_entropy(excluded[train], labels[train]))
    assert m["restricted_loss_irrep"] == pytest.approx(res, rel=1e-9)
    assert m["excluded_loss_irrep"] == pytest.approx(exc, rel=1e-9)
    # Every irrep's FVE of W_a adds up to 1 (the irreps' functions are a basis of functions on G).
    assert sum(m[im.irrep_column("fve_W_a", r)] for r in task.irreps) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("n", [11, 12])
def test_cyclic_group_irreps_reproduce_the_fourier_measures(n):
    """On C_n the irreps are the frequencies: per-irrep FVE of W_E is each frequency's share of the
    embedding spectrum, and the irrep Gini coefficients are gini_W_E and gini_W_L."""
    from grokinterp.analysis.spectra import embedding_freq_norms

    _, model, dataset, task = _model_and_task(f"C{n}")
    basis = task_basis(dataset.op, dataset.p)
    assert basis.family == "cyclic" and basis.m == n
    with torch.no_grad():
        cache = final_position_cache(model, dataset.tokens)
    m = im.irrep_measures(model, task, cache, None)
    norms = embedding_freq_norms(model, basis).double()  # k = 1..n//2
    W_E = model.W_E.detach().double()[:n]
    nontrivial = task.irreps[1:]
    assert len(nontrivial) == len(norms)
    # irreps in the order of the frequencies: "freq k" (and "sign", the Nyquist k = n/2, for even n)
    by_k = {r.name: r for r in nontrivial}
    for k in range(1, n // 2 + 1):
        name = "sign" if 2 * k == n else f"freq {k}"
        share = float(norms[k - 1] ** 2 / W_E.pow(2).sum())
        assert m[im.irrep_column("fve_W_a", by_k[name])] == pytest.approx(share, abs=1e-6)
    assert m["gini_irrep_W_E"] == pytest.approx(gini_W_E(model, basis), abs=1e-6)
    assert m["gini_irrep_W_L"] == pytest.approx(gini_W_L(model, basis), abs=1e-6)
    assert math.isnan(m["fve_W_a"]) and m["n_key_irreps"] == 0  # no keys given: totals not defined


def test_a_neuron_of_a_coset_is_found():
    """A neuron that reads a only through a(0) (constant on the left cosets of Stab(0)) and b only
    through b^-1(1) (constant on the right cosets of Stab(1)) is a coset neuron; a random one is not."""
    group = parse_group("S4")
    dataset = make_dataset(group.order, "S4", "a b", 0.5, 0)
    task = im.group_task(dataset)
    perms = list(itertools.permutations(range(4)))
    a0 = torch.tensor([perms[int(a)][0] for a in task.a], dtype=torch.float64)
    b_inv1 = torch.tensor([perms[int(b)].index(1) for b in task.b], dtype=torch.float64)
    planted = torch.relu(torch.sin(a0 * 1.3) + torch.cos(b_inv1 * 0.7) + 0.2)
    noise = torch.randn(len(task.a), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    frac, which = im.coset_fractions(task, torch.stack([planted, noise], 1))
    assert frac[0] == pytest.approx(1.0, abs=1e-12)
    assert which[0] == "Stab(0) x Stab(1)"
    assert frac[1] < 0.2


def test_coset_subgroups_are_subgroups():
    for name in ("S4", "A5", "D6", "C12"):
        g = parse_group(name)
        for label, elems in im.coset_subgroups(name):
            h = set(elems)
            assert 0 in h, label
            assert all(int(g.table[x, y]) in h for x in h for y in h), label
            assert g.order % len(h) == 0


def test_group_run_analyses_with_irreps_and_says_what_does_not_apply(tmp_path):
    from conftest import train_one_thread

    from grokinterp.analysis.run_analysis import analyze_run

    cfg = RunConfig(
        op="D5", layout="a b", arch="mlp", mlp_embed="separate", n_layers=1, d_model=32, d_mlp=64,
        train_frac=0.6, lr=3e-3, epochs=60, eval_every=20, checkpoint_every=30, device="cpu",
    )  # fmt: skip
    train_one_thread(cfg, tmp_path / "run")
    table, summary = analyze_run(tmp_path / "run", progress=False)
    entry = summary["irreps"]
    assert entry["defined"] and entry["group"] == "D5" and entry["order"] == 10
    assert [r["dim"] for r in entry["irreps"]] == [r.dim for r in group_irreps(parse_group("D5"))]
    assert "fve_W_a" in table.columns and len(table) == 3
    # D5 is not cyclic: the Fourier measures say why, in the irrep basis's words
    assert "not a cyclic group" in summary["not_defined"]["restricted_loss"]
    # 60 epochs do not generalise: the warning says the key irreps describe a memorising network
    assert any("has not generalised" in w for w in summary["warnings"])
    doc = json.loads((tmp_path / "run" / "analysis.json").read_text())
    assert doc["irreps"]["key_rule"]["rule"] in ("logit_trace",)
    # given irreps by name or slug; an unknown one is one line naming the group's irreps
    _, s2 = analyze_run(tmp_path / "run", progress=False, write=False, key_irreps=["rot 1"])
    assert s2["irreps"]["key_irreps"] == ["rot 1"] and s2["irreps"]["key_rule"]["rule"] == "given"
    with pytest.raises(ValueError, match="D5 has no irrep 'standard'; its irreps: trivial"):
        analyze_run(tmp_path / "run", progress=False, write=False, key_irreps=["standard"])


def test_add_run_has_no_irrep_measures_and_says_why(tmp_path):
    from conftest import train_one_thread

    from grokinterp.analysis.run_analysis import analyze_run

    cfg = RunConfig(p=7, d_model=16, n_heads=2, d_head=8, d_mlp=32, epochs=20, eval_every=10, checkpoint_every=10)
    train_one_thread(cfg, tmp_path / "run")
    table, summary = analyze_run(tmp_path / "run", progress=False, write=False)
    assert summary["irreps"] == {"defined": False, "reason": im.not_defined_reason("add")}
    assert "run op C<p>" in summary["not_defined"]["fve_W_a"]
    assert "fve_W_a" not in table.columns


def test_the_committed_s5_reproduction_gives_the_documented_numbers():
    """docs/reproductions.md's S5 column, recomputed from the committed final checkpoint."""
    from pathlib import Path

    from grokinterp.io.runs import load_run

    run = load_run(Path(__file__).resolve().parents[2] / "benchmarks/results/reproductions/chughtai-s5-mlp")
    model = run.model(250_000)
    task = im.group_task(run.dataset)
    with torch.no_grad():
        cache = final_position_cache(model, run.dataset.tokens)
    assert im.select_key_irreps(task, cache.logits) == ["sign", "standard"]
    m = im.irrep_measures(model, task, cache, ["sign", "standard"])
    assert m["fve_W_a"] > 0.9999 and m["fve_W_b"] > 0.9999
    assert m["fve_W_U"] == pytest.approx(0.9267, abs=5e-4)
    assert m["fve_mlp"] == pytest.approx(0.8996, abs=5e-4)
    assert m["fve_mlp_ab"] == pytest.approx(0.1270, abs=5e-4)
    assert m["restricted_loss_irrep"] < 1e-7 and m["excluded_loss_irrep"] == pytest.approx(17.17, abs=0.05)

"""Task bases (grokinterp.bases), planted models whose answer is known in closed form in the
discrete-log and subtraction bases, and every operation and architecture end to end on tiny runs."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch

from grokinterp.analysis import measures as M
from grokinterp.analysis.bases import discrete_log_table, primitive_root, task_basis, task_grid
from grokinterp.analysis.clusters import embedding_key_frequencies
from grokinterp.analysis.fourier import basis_names, fourier_basis, frequency_energy_2d, n_freqs
from grokinterp.config import RunConfig
from grokinterp.tasks import OPERATIONS, make_dataset

f64 = torch.float64


# ------------------------------------------------------------------------------------ bases


@pytest.mark.parametrize(("p", "g"), [(3, 2), (7, 3), (11, 2), (23, 5), (41, 6), (59, 2), (97, 5), (113, 3)])
def test_smallest_primitive_root(p, g):
    assert primitive_root(p) == g
    assert len({pow(g, e, p) for e in range(p - 1)}) == p - 1


@pytest.mark.parametrize("p", [7, 13, 23])
def test_discrete_log_table(p):
    g = primitive_root(p)
    dlog = discrete_log_table(p)
    assert dlog[0] == -1
    for x in range(1, p):
        assert pow(g, int(dlog[x]), p) == x


@pytest.mark.parametrize("op", list(OPERATIONS))
@pytest.mark.parametrize("p", [11, 13])
def test_phi_maps_answer_as_a_sum(op, p):
    """Wherever phi_a and phi_b are defined, phi_c(answer) = phi_a(a) + phi_b(b) mod m."""
    basis = task_basis(op, p)
    d = make_dataset(p, op)
    if not basis.defined:
        assert basis.family == "none" and basis.reason and basis.m is None
        return
    m = basis.m
    u, v, w = basis.phi_a[d.a], basis.phi_b[d.b], basis.phi_c[d.labels]
    on = (u >= 0) & (v >= 0)
    assert torch.equal(w[on], (u[on] + v[on]) % m)
    assert (w[on] >= 0).all()


def test_families():
    assert task_basis("add", 113).name == "Z_113 (additive)"
    assert task_basis("sub", 7).family == "cyclic" and torch.equal(task_basis("sub", 7).phi_b, (-torch.arange(7)) % 7)
    mul = task_basis("mul", 59)
    assert mul.family == "cyclic" and mul.m == 58 and mul.g == 2 and mul.name == "Z_58 via discrete log base 2"
    div = task_basis("div", 59)
    assert torch.equal(div.phi_b[1:], (-mul.phi_b[1:]) % 58) and div.phi_b[0] == -1
    comp = task_basis("mul", 12)
    assert comp.family == "none" and "composite" in comp.reason
    for op in ("x2_y", "x2_y2"):
        assert task_basis(op, 13).family == "sum_decomposable" and task_basis(op, 13).experimental
    for op in ("x2_xy_y2", "x3_xy2_y"):
        assert task_basis(op, 13).family == "none" and "not of the form" in task_basis(op, 13).reason


@pytest.mark.parametrize("m", [2, 6, 22, 58])
def test_even_basis_has_a_nyquist_cos_row(m):
    F, names = fourier_basis(m, dtype=f64)
    torch.testing.assert_close(F @ F.T, torch.eye(m, dtype=f64), atol=1e-12, rtol=0)
    assert names == basis_names(m) and names[-1] == f"cos {m // 2}" and f"sin {m // 2}" not in names
    x = torch.arange(m, dtype=f64)
    torch.testing.assert_close(F[-1], torch.cos(math.pi * x) / math.sqrt(m))
    assert n_freqs(m) == m // 2
    # energies of a random centred grid sum to its (linear + quadratic-diagonal) energy and the
    # Nyquist frequency counts its 3 coefficients once
    g = torch.randn(m, m, 2, generator=torch.Generator().manual_seed(m), dtype=f64)
    X = torch.einsum("xyn,fx,gy->fgn", g, F, F)
    e = frequency_energy_2d(g)
    r = m - 1
    nyq = X[0, r].pow(2) + X[r, 0].pow(2) + X[r, r].pow(2)
    torch.testing.assert_close(e[-1], nyq)


def test_grid_for_div_and_x2_y():
    d = make_dataset(13, "div")
    grid = task_grid(d)
    assert grid.m == 12 and grid.injective and grid.n_rows == 12 * 12  # a = 0 rows left out
    d2 = make_dataset(13, "x2_y")
    g2 = task_grid(d2)
    assert not g2.injective and g2.n_rows == 13 * 13
    assert int((g2.count > 0).sum()) == 7 * 13  # squares: 0 and the 6 residues


# ------------------------------------------------------------------------------ planted models

P = 23
KEYS = [2, 5]


def _planted_logits(op: str, p: int, keys, amp: float = 30.0) -> tuple[torch.Tensor, object]:
    """Dataset-row logits L[a, b, c] = amp * sum_k cos(w_k(phi_a(a) + phi_b(b) - phi_c(c)))
    (0 where a phi is undefined)."""
    d = make_dataset(p, op)
    basis = task_basis(op, p)
    m = basis.m
    u, v = basis.phi_a[d.a].to(f64), basis.phi_b[d.b].to(f64)
    w = basis.phi_c.to(f64)
    arg = u[:, None] + v[:, None] - w[None, :]
    L = amp * sum(torch.cos(2 * math.pi * k / m * arg) for k in keys)
    undefined = (basis.phi_a[d.a] < 0) | (basis.phi_b[d.b] < 0)
    L[:, basis.phi_c < 0] = -amp  # class 0 (no discrete log) is never the answer on the grid
    L[undefined] = 0.0
    return L, d


@pytest.mark.parametrize("op", ["sub", "mul", "div"])
def test_planted_logits_in_the_task_basis(op):
    L, d = _planted_logits(op, P, KEYS)
    grid = task_grid(d)
    on_grid = grid.cell >= 0
    train_on = on_grid[d.train_indices]
    planted_all = float(-L.log_softmax(-1)[on_grid].gather(-1, d.labels[on_grid, None]).mean())
    tr = d.train_indices[train_on]
    planted_train = float(-L[tr].log_softmax(-1).gather(-1, d.labels[tr, None]).mean())
    assert planted_all < 1e-3
    assert M.restricted_loss(L, d, KEYS) == pytest.approx(planted_all, rel=1e-6)
    assert M.excluded_loss(L, d, KEYS) > 100 * planted_train + 1.0
    per_k = M.per_frequency_excluded_loss(L, d)
    assert per_k.shape == (task_basis(op, P).n_freqs,)
    for k in range(1, len(per_k) + 1):
        if k in KEYS:
            assert per_k[k - 1] > 100 * planted_train
        else:
            assert float(per_k[k - 1]) == pytest.approx(planted_train, rel=1e-6, abs=1e-12)
    coef = M.cos_apb_minus_c_coefficients(L, d)
    big = [k for k in range(1, len(coef) + 1) if abs(float(coef[k - 1])) > 1e-6 * float(coef.abs().max())]
    assert big == KEYS
    assert M.cosine_similarity_to_cos_apb_minus_c(L, d, KEYS) == pytest.approx(1.0, abs=1e-9)


def test_planted_nyquist_frequency_for_mul():
    """m = 22 for p = 23: k = 11 is the Nyquist frequency (cos only)."""
    L, d = _planted_logits("mul", P, [11], amp=20.0)
    coef = M.cos_apb_minus_c_coefficients(L, d)
    assert int(coef.abs().argmax()) == 10
    assert M.cosine_similarity_to_cos_apb_minus_c(L, d, [11]) == pytest.approx(1.0, abs=1e-9)
    assert M.restricted_loss(L, d, [11]) < M.excluded_loss(L, d, [11])


def test_planted_neurons_cluster_in_the_discrete_log_basis():
    p, keys, n = 23, [3, 7], 40
    basis = task_basis("mul", p)
    m = basis.m
    g = torch.Generator().manual_seed(0)
    dlog = basis.phi_a.to(f64)
    k = torch.tensor(keys, dtype=f64)[torch.arange(n) % len(keys)]
    ph1, ph2 = (torch.rand(n, generator=g, dtype=f64) * 6.28 for _ in range(2))
    d = make_dataset(p, "mul")
    a, b = dlog[d.a][:, None], dlog[d.b][:, None]
    acts = torch.relu(torch.cos(2 * math.pi * k / m * a + ph1) + torch.cos(2 * math.pi * k / m * b + ph2))
    acts[(d.a == 0) | (d.b == 0)] = 0.0  # rows off the grid do not matter
    grid = task_grid(d)
    cl = M.neuron_frequency_clusters(grid.values(acts).reshape(m, m, -1))
    assert cl.key_freqs == keys and cl.frac_explained == 1.0
    # in the additive basis of Z_p the same neurons are not explained: the silent error
    add = acts.reshape(p, p, -1)
    assert M.neuron_frequency_clusters(add).frac_explained < 0.2


def test_embedding_gap_rule():
    norms = torch.tensor([1.0, 10.0, 1.2, 9.0, 0.9, 1.1])
    assert embedding_key_frequencies(norms) == ([2, 4], None)
    keys, note = embedding_key_frequencies(torch.ones(8))
    assert keys == [] and "no gap" in note


# ----------------------------------------------------- every op and architecture, tiny runs


def _train(tmp_path, **kw):
    from tests.conftest import train_one_thread

    base = dict(p=11, d_model=16, n_heads=2, d_head=8, d_mlp=32, epochs=30, lr=3e-3, wd=1.0, train_frac=0.5)
    base.update(checkpoint_every=10, eval_every=10, device="cpu")
    base.update(kw)
    cfg = RunConfig(**base)
    path = tmp_path / "_".join(f"{k}{v}" for k, v in kw.items()).replace(" ", "")
    train_one_thread(cfg, path)
    return path


@pytest.mark.parametrize("op", list(OPERATIONS))
def test_every_op_analyses_and_plots(tmp_path, op, caplog):
    from grokinterp.analysis.run_analysis import Analysis, analyze_run
    from grokinterp.viz import make_all_figures

    path = _train(tmp_path, op=op)
    table, summary = analyze_run(path, progress=False)
    basis = task_basis(op, 11)
    a = Analysis.load(path)
    assert a.basis["family"] == basis.family
    assert math.isfinite(table["test_loss"].iloc[-1])
    if basis.defined:
        assert a.key_frequencies is not None and a.key_frequencies.basis == basis.name
        assert math.isfinite(table["gini_W_E"].iloc[-1])
        if a.key_frequencies.freqs:
            assert math.isfinite(table["restricted_loss"].iloc[-1])
        else:  # a tiny untrained run may have no key frequency: then no restricted loss either
            assert table["restricted_loss"].isna().all() and "no key frequencies" in a.not_defined["restricted_loss"]
        assert f"excluded_loss_k{basis.n_freqs}" in table
    else:
        assert table[list(M.FOURIER_MEASURES)].isna().all().all()  # never a number
        assert not any(c.startswith("excluded_loss_k") for c in table.columns)
        assert a.not_defined["restricted_loss"] == basis.reason and summary["key_freqs"] == []
        assert summary["final"]["restricted_loss"] is None
        assert (table["fourier_basis"] == f"not defined: {basis.reason}").all()
        raw = json.loads((path / "analysis.json").read_text())
        assert raw["basis"]["reason"] == basis.reason
    with caplog.at_level(logging.INFO, logger="grokinterp.viz.figures"):
        figs = make_all_figures(path)
    assert {"loss", "accuracy", "restricted_excluded", "gini", "attention"} <= set(figs)
    if not basis.defined:
        assert "embedding_spectrum" not in figs and "neuron_heatmaps" not in figs
        assert any("no Fourier basis" in r.getMessage() for r in caplog.records)
        notes = [ann.text for ann in figs["restricted_excluded"].layout.annotations]
        assert any("not defined" in t for t in notes)
    else:
        assert "embedding_spectrum" in figs and "per_frequency_excluded_loss" in figs


@pytest.mark.parametrize(
    "arch", [dict(n_layers=2, normalization_type="LN", layout="a op b ="), dict(arch="mlp", n_layers=2)]
)
def test_every_layer_is_reported(tmp_path, arch):
    from grokinterp.analysis.run_analysis import analyze_run
    from grokinterp.viz import make_all_figures

    path = _train(tmp_path, **arch)
    table, s = analyze_run(path, progress=False)
    assert [d["layer"] for d in s["layers"]] == [0, 1]
    assert {"frac_neurons_explained_l0", "frac_neurons_explained_l1"} <= set(table.columns)
    assert set(s["key_freqs_by_rule"]) == {"clustered", "paper_code", "embedding", "logits"}
    if s["key_freqs"]:  # with no key frequency the excluded loss is not defined
        assert math.isfinite(s["final"]["excluded_loss"])
    _, s0 = analyze_run(path, progress=False, write=False, layer=0, key_rule="paper_code")
    assert s0["key_frequencies"]["layer"] == 0 and s0["key_frequencies"]["rule"] == "paper_code"
    with pytest.raises(ValueError, match="layer 5"):
        analyze_run(path, progress=False, write=False, layer=5)
    figs = make_all_figures(path)
    assert ("attention" in figs) == (arch.get("arch") != "mlp")
    if arch.get("normalization_type") == "LN":
        assert any("LayerNorm" in n for n in s["notes"])


def test_key_frequency_warning_on_few_neurons():
    from grokinterp.analysis.clusters import KeyFrequencies

    kf = KeyFrequencies((7,), "clustered", "Z_37 (additive)", layer=1, n_neurons=7, d_mlp=512)
    assert "7 of 512" in kf.warning
    assert KeyFrequencies((7,), "clustered", "Z_37", layer=1, n_neurons=100, d_mlp=512).warning is None

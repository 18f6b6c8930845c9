"""Tests of grokinterp.measures: planted answers known in closed form, literal re-implementations
of the paper's and the TransformerLens demo's formulas, and one small model that has grokked."""

from __future__ import annotations

import math

import pytest
import torch

from grokinterp.analysis import measures as M
from grokinterp.analysis.fourier import apb_basis, fourier_basis, n_freqs
from grokinterp.backend import named_parameters_3x
from grokinterp.config import RunConfig
from grokinterp.forward import evaluate
from grokinterp.models import GrokMLP, build_model
from grokinterp.tasks import make_dataset

f64 = torch.float64
P = 23
KEYS = [3, 7]


def _ce(logits, labels):
    return float(-logits.double().log_softmax(-1).gather(-1, labels[:, None]).mean())


def _small_cfg(**kw) -> RunConfig:
    base = dict(p=P, d_model=32, n_heads=4, d_head=8, d_mlp=64, device="cpu")
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture(scope="module")
def ds():
    return make_dataset(P)


def _planted_logits(p: int, keys, amplitude: float) -> torch.Tensor:
    """L[a*p+b, c] = amplitude * sum_k cos(w_k (a + b - c))."""
    x = torch.arange(p, dtype=f64)
    d = x[:, None, None] + x[None, :, None] - x[None, None, :]
    cube = sum(torch.cos(2 * math.pi * k / p * d) for k in keys)
    return (amplitude * cube).reshape(p * p, p)


# ------------------------------------------------------------------------------------ Gini


def test_gini_one_hot_uniform_and_scale():
    n = 10
    one_hot = torch.zeros(n)
    one_hot[3] = 5.0
    assert M.gini(one_hot) == pytest.approx(1 - 1 / n)
    assert M.gini(torch.ones(n)) == pytest.approx(0.0, abs=1e-12)
    x = torch.rand(n, generator=torch.Generator().manual_seed(0))
    assert M.gini(x) == pytest.approx(M.gini(7 * x))
    assert M.gini(x) == pytest.approx(M.gini(x.flip(0)))  # order does not matter
    assert 0 < M.gini(x) < 1 - 1 / n
    assert math.isnan(M.gini(torch.zeros(n)))
    with pytest.raises(ValueError):
        M.gini(torch.tensor([1.0, -1.0]))


# ------------------------------------------------------------------------ planted logits


def test_planted_logits_restricted_excluded_and_cos_sim(ds):
    p = P
    L = _planted_logits(p, KEYS, amplitude=30.0)
    full = M.loss_and_accuracy(L, ds)
    assert full["all_acc"] == 1.0 and full["train_acc"] == 1.0
    assert full["all_loss"] < 1e-3
    # P L = L: restricted logits equal the logits.
    assert M.restricted_loss(L, ds, KEYS) == pytest.approx(full["all_loss"], rel=1e-9)
    assert M.restricted_loss(L, ds, KEYS, split="train") == pytest.approx(full["train_loss"], rel=1e-9)
    # L - P L = 0: uniform logits.
    assert M.excluded_loss(L, ds, KEYS) == pytest.approx(math.log(p), rel=1e-9)
    # A key frequency alone matters; the others do not.
    per_k = M.per_frequency_excluded_loss(L, ds)
    assert per_k.shape == (n_freqs(p),)
    for k in range(1, n_freqs(p) + 1):
        if k in KEYS:
            assert per_k[k - 1] > 100 * full["train_loss"]
        else:
            assert float(per_k[k - 1]) == pytest.approx(full["train_loss"], rel=1e-6)
    # Fig. 11: cosine similarity 1; coefficient = amplitude * ||cos cube|| for each key.
    assert M.cosine_similarity_to_cos_apb_minus_c(L, p, KEYS) == pytest.approx(1.0, abs=1e-12)
    coef = M.cos_apb_minus_c_coefficients(L, p)
    expected = 30.0 * math.sqrt(p**3 / 2)
    for k in range(1, n_freqs(p) + 1):
        assert float(coef[k - 1]) == pytest.approx(expected if k in KEYS else 0.0, abs=1e-8 * expected)
    assert M.cosine_similarity_to_cos_apb_minus_c(L, p, [KEYS[0]]) == pytest.approx(math.sqrt(0.5))
    # (p, p, p) input works too
    assert M.cosine_similarity_to_cos_apb_minus_c(L.reshape(p, p, p), p, KEYS) == pytest.approx(1.0)


def test_restricted_bias_correction_restores_answer_bias(ds):
    """A per-class bias is orthogonal to every (a+b) direction: the bias correction puts it back
    into the restricted logits, and it stays in the excluded ones."""
    p = P
    g = torch.Generator().manual_seed(0)
    beta = torch.randn(p, generator=g, dtype=f64) * 3
    L = _planted_logits(p, KEYS, amplitude=30.0) + beta
    full = M.loss_and_accuracy(L, ds)
    assert M.restricted_loss(L, ds, KEYS) == pytest.approx(full["all_loss"], rel=1e-9)
    labels = ds.labels[ds.train_indices]
    assert M.excluded_loss(L, ds, KEYS) == pytest.approx(_ce(beta.expand(len(labels), p), labels))


def test_logit_level_losses_match_explicit_projector(ds):
    p = P
    g = torch.Generator().manual_seed(1)
    L = torch.randn(p * p, p, generator=g, dtype=f64) * 2 + _planted_logits(p, [5], 4.0)
    keys = [2, 5, 9]
    a, b = ds.a.double(), ds.b.double()
    cols = []
    for k in keys:
        for fn in (torch.cos, torch.sin):
            v = fn(2 * math.pi * k / p * (a + b))
            cols.append(v / v.norm())
    U = torch.stack(cols, 1)
    Pm = U @ U.T  # explicit (p*p, p*p) projector, fine at p=23
    R = Pm @ L
    R = R + (L - R).mean(0, keepdim=True)
    assert M.restricted_loss(L, ds, keys) == pytest.approx(_ce(R, ds.labels), rel=1e-10)
    tr = ds.train_indices
    E = L - Pm @ L
    assert M.excluded_loss(L, ds, keys) == pytest.approx(_ce(E[tr], ds.labels[tr]), rel=1e-10)
    torch.testing.assert_close(U, apb_basis(p, keys))
    # float32 logits and (p, p, p) logits are accepted
    assert M.restricted_loss(L.float().reshape(p, p, p), ds, keys) == pytest.approx(_ce(R, ds.labels), rel=1e-5)


@pytest.mark.parametrize("amplitude", [1.0, 30.0, 1e4])
def test_per_frequency_excluded_matches_direct_formula(ds, amplitude):
    """The batched per-frequency computation equals excluded_loss with one key, including logits so
    large that its exp tables underflow (then it falls back to the direct formula)."""
    p = P
    g = torch.Generator().manual_seed(2)
    L = _planted_logits(p, KEYS, amplitude) + torch.randn(p * p, p, generator=g, dtype=f64)
    fast = M.per_frequency_excluded_loss(L, ds)
    direct = torch.tensor([M.excluded_loss(L, ds, [k]) for k in range(1, n_freqs(p) + 1)], dtype=f64)
    torch.testing.assert_close(fast, direct, rtol=1e-9, atol=1e-12)
    sub = M.per_frequency_excluded_loss(L, ds, freqs=[7, 2])
    torch.testing.assert_close(sub, direct[[6, 1]], rtol=1e-9, atol=1e-12)


def test_key_frequency_validation(ds):
    L = _planted_logits(P, KEYS, 1.0)
    with pytest.raises(ValueError, match="outside"):
        M.restricted_loss(L, ds, [0])
    with pytest.raises(ValueError, match="outside"):
        M.excluded_loss(L, ds, [n_freqs(P) + 1])
    with pytest.raises(ValueError, match="split"):
        M.restricted_loss(L, ds, KEYS, split="val")


# ------------------------------------------------------------------ planted neuron activations


def _planted_acts(p: int, keys, n: int, seed: int = 0, sum_form: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(p, dtype=f64)
    a, b = x[:, None, None], x[None, :, None]
    k = torch.tensor(keys, dtype=f64)[torch.arange(n) % len(keys)]
    w = 2 * math.pi * k / p
    ph1 = torch.rand(n, generator=g, dtype=f64) * 2 * math.pi
    ph2 = torch.rand(n, generator=g, dtype=f64) * 2 * math.pi
    if sum_form:  # like the paper's neurons: ReLU of linear terms in a and b
        return torch.relu(torch.cos(w * a + ph1) + torch.cos(w * b + ph2))
    return torch.relu(torch.cos(w * (a + b) + ph1))


def test_planted_neurons_give_planted_key_frequencies():
    p, keys, n = 31, [3, 7, 12], 60
    acts = _planted_acts(p, keys, n)
    dead = torch.zeros(p, p, 4, dtype=f64)  # dead neurons are unexplained, not frequency 1
    noise = torch.rand(p, p, 6, generator=torch.Generator().manual_seed(5), dtype=f64)
    acts = torch.cat([acts, dead, noise], dim=-1)
    cl = M.neuron_frequency_clusters(acts, p)
    assert cl.frac.shape == (n + 10, n_freqs(p))
    planted = torch.tensor(keys)[torch.arange(n) % 3]
    assert torch.equal(cl.best_freq[:n], planted)
    assert torch.equal(cl.labels[:n], planted)
    assert (cl.best_frac[:n] > 0.95).all()
    assert (cl.best_freq[n : n + 4] == -1).all() and (cl.labels[n:] == -1).all()
    assert cl.frac_explained == pytest.approx(n / (n + 10))
    assert M.key_frequencies(cl) == keys
    assert M.key_frequencies(acts, p) == keys
    assert M.key_frequencies(acts.reshape(p * p, -1), rule="clustered") == keys
    assert M.fraction_neurons_explained(acts, p) == pytest.approx(n / (n + 10))
    assert cl.cluster_sizes() == {-1: 10, 3: 20, 7: 20, 12: 20}
    # paper_code: argmax of all (live) neurons, so the noise neurons add frequencies.
    pc = M.key_frequencies(cl, rule="paper_code")
    assert set(keys) <= set(pc) and -1 not in pc
    # The fractions sum to at most 1 (the rest is higher harmonics / cross terms).
    assert (cl.frac.sum(1) <= 1 + 1e-9).all()
    with pytest.raises(ValueError):
        M.key_frequencies(cl, rule="median")


def test_threshold_is_configurable():
    """relu(cos(w(a+b) + phase)) puts about 84% of its energy at k (the rest in harmonics)."""
    p, keys = 31, [4, 9]
    acts = _planted_acts(p, keys, 20, sum_form=False)
    cl = M.neuron_frequency_clusters(acts, p)
    assert ((cl.best_frac > 0.8) & (cl.best_frac < 0.85)).all()
    assert M.key_frequencies(cl) == []
    assert M.key_frequencies(cl, rule="paper_code") == keys
    assert M.key_frequencies(cl, threshold=0.8) == keys
    assert M.neuron_frequency_clusters(acts, p, threshold=0.8).frac_explained == 1.0


# -------------------------------------------------------------------- weights and spectra


def test_embedding_and_wl_spectra_of_planted_weights():
    p, k = P, 4
    K = n_freqs(p)
    x = torch.arange(p, dtype=torch.float32)
    wave = torch.cos(2 * math.pi * k / p * x)
    model = build_model(_small_cfg())
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.embed.W_E[:p] = torch.outer(wave, torch.randn(32, generator=g))
    spec = M.embedding_spectrum(model, p)
    assert spec.shape == (p,)
    assert int(spec.argmax()) == 2 * k - 1
    norms = M.embedding_freq_norms(model, p)
    assert norms.shape == (K,)
    assert int(norms.argmax()) == k - 1
    assert M.gini_W_E(model, p) == pytest.approx(1 - 1 / K, abs=1e-5)

    mlp = build_model(_small_cfg(arch="mlp"))
    with torch.no_grad():
        mlp.W_U.copy_(torch.outer(torch.randn(64, generator=g), wave))
    torch.testing.assert_close(M.W_L(mlp), mlp.W_U.detach())
    assert int(M.wl_spectrum(mlp).argmax()) == 2 * k - 1
    assert M.gini_W_L(mlp) == pytest.approx(1 - 1 / K, abs=1e-5)

    WL = M.W_L(model)
    assert WL.shape == (64, p)
    torch.testing.assert_close(WL, (model.blocks[0].mlp.W_out @ model.W_U).detach())
    assert 0 <= M.gini_W_L(model) < 0.5  # random init: spread over frequencies


def test_sum_squared_weights_counts_trainable_parameters_only():
    model = build_model(_small_cfg())
    total, per = M.sum_squared_weights(model)
    trainable = {n: p for n, p in named_parameters_3x(model) if p.requires_grad}  # 3.x names on 3.x and 4.x
    assert set(per) == set(trainable)
    assert not any(".b_" in n for n in per)  # freeze_biases
    assert total == pytest.approx(sum(float(p.detach().pow(2).sum()) for p in trainable.values()), rel=1e-6)


# ---------------------------------------------------- forward, cache and demo re-implementation


@pytest.mark.parametrize(
    "cfg",
    [
        _small_cfg(),
        _small_cfg(layout="a op b ="),
        _small_cfg(normalization_type="LN", freeze_biases=False),
        _small_cfg(n_layers=2),
        _small_cfg(act_fn="gelu"),
    ],
    ids=["ab", "a_op_b", "LN", "2layer", "gelu"],
)
def test_fast_cache_matches_run_with_cache(cfg):
    model = build_model(cfg)
    d = make_dataset(cfg.p, layout=cfg.layout)
    fast = M.final_position_cache(model, d)
    slow = M.final_position_cache(model, d, fast=False)
    for name in ("logits", "post", "resid_mid", "resid_post"):
        torch.testing.assert_close(getattr(fast, name), getattr(slow, name), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast.logits, M.all_logits(model, d), rtol=1e-4, atol=1e-5)
    acts = M.neuron_acts(model, d)
    assert acts.shape == (cfg.p, cfg.p, cfg.d_mlp)
    torch.testing.assert_close(acts.reshape(cfg.p**2, -1), slow.post)
    # compute_all_measures gives the same numbers through both paths
    a = M.compute_all_measures(model, d, key_freqs=KEYS)
    b = M.compute_all_measures(model, d, key_freqs=KEYS, fast=False)
    assert a.keys() == b.keys()
    for key, val in a.items():
        if isinstance(val, list):
            assert val == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
        else:
            assert val == pytest.approx(b[key], rel=1e-4, abs=1e-6), key


def _demo_losses(model, d, keys):
    """The TransformerLens demo's get_restricted_loss / get_excluded_loss, written out literally."""
    p = d.p
    last = len(model.blocks) - 1
    with torch.no_grad():
        logits, cache = model.run_with_cache(d.tokens)
        logits = logits[:, -1, :p].double()
        acts = cache[f"blocks.{last}.mlp.hook_post"]
        acts = (acts[:, -1] if acts.ndim == 3 else acts).double()
    a = torch.arange(p)[:, None]
    b = torch.arange(p)[None, :]
    approx = torch.zeros_like(acts) + acts.mean(0)
    proj = torch.zeros_like(acts)
    for freq in keys:
        for fn in (torch.cos, torch.sin):
            vec = fn(freq * 2 * torch.pi / p * (a + b)).double()
            vec = (vec / vec.norm()).reshape(p * p, 1)
            proj += (acts * vec).sum(0) * vec
    approx += proj
    if isinstance(model, GrokMLP):
        W_logit = model.W_U.detach().double()
        excluded = (acts - proj) @ W_logit + model.b_U.detach().double()
    else:
        W_out = model.blocks[last].mlp.W_out.detach().double()
        W_logit = W_out @ model.W_U.detach().double()
        resid_mid = cache[f"blocks.{last}.hook_resid_mid"][:, -1].double()
        excluded = ((acts - proj) @ W_out + resid_mid) @ model.W_U.detach().double()
    restricted = approx @ W_logit
    restricted += logits.mean(0, keepdim=True) - restricted.mean(0, keepdim=True)
    te, tr = d.test_indices, d.train_indices
    return _ce(restricted[te], d.labels[te]), _ce(excluded[tr], d.labels[tr])


@pytest.mark.parametrize("arch", ["transformer", "mlp"])
def test_neuron_level_losses_match_demo_formula(arch, ds):
    model = build_model(_small_cfg(arch=arch, d_mlp=96))
    keys = [2, 5, 11]
    ref_r, ref_e = _demo_losses(model, ds, keys)
    assert M.restricted_loss_neuron(model, ds, keys) == pytest.approx(ref_r, rel=1e-5)
    assert M.excluded_loss_neuron(model, ds, keys) == pytest.approx(ref_e, rel=1e-5)
    cache = M.final_position_cache(model, ds)
    out = M.compute_all_measures(model, ds, key_freqs=keys)
    assert out["restricted_loss_neuron"] == pytest.approx(ref_r, rel=1e-5)
    assert out["excluded_loss_neuron"] == pytest.approx(ref_e, rel=1e-5)
    assert M.excluded_loss_neuron(model, ds, keys, cache=cache) == pytest.approx(ref_e, rel=1e-5)
    # Excluding nothing leaves the logits unchanged.
    full = M.loss_and_accuracy(cache.logits, ds)
    assert M.excluded_loss_neuron(model, ds, [], cache=cache) == pytest.approx(full["train_loss"], rel=1e-6)


@pytest.mark.parametrize("arch", ["transformer", "mlp"])
def test_precomputed_inputs_give_the_same_numbers(arch, ds):
    """GridLogits and GridNeurons are the precomputed forms of a model's inputs: the same numbers."""
    model = build_model(_small_cfg(arch=arch))
    keys = [2, 5]
    cache = M.final_position_cache(model, ds)
    G = M.grid_logits(cache.logits, ds)
    L = M.all_logits(model, ds)
    assert M.restricted_loss(G, ds, keys, split="train") == M.restricted_loss(L, ds, keys, split="train")
    assert M.excluded_loss(G, ds, keys) == M.excluded_loss(model, ds, keys)
    assert torch.equal(M.per_frequency_excluded_loss(G, ds), M.per_frequency_excluded_loss(L, ds))
    assert torch.equal(M.cos_apb_minus_c_coefficients(G, ds, keys), M.cos_apb_minus_c_coefficients(L, ds, keys))
    assert M.cosine_similarity_to_cos_apb_minus_c(G, ds, keys) == M.cosine_similarity_to_cos_apb_minus_c(L, ds, keys)
    neurons = M.GridNeurons.from_cache(cache, ds)
    assert M.restricted_loss_neuron(model, ds, keys, neurons=neurons) == M.restricted_loss_neuron(model, ds, keys)
    assert M.excluded_loss_neuron(model, ds, keys, neurons=neurons) == M.excluded_loss_neuron(model, ds, keys)
    with pytest.raises(ValueError, match="not both"):
        M.excluded_loss_neuron(model, ds, keys, cache=cache, neurons=neurons)
    # compute_all_measures gives the logit-level measures of the public functions, bit for bit.
    out = M.compute_all_measures(model, ds, key_freqs=keys)
    assert out["restricted_loss"] == M.restricted_loss(G, ds, keys)
    assert out["excluded_loss"] == M.excluded_loss(G, ds, keys)


def test_all_logits_is_the_forward_module_one():
    from grokinterp import forward

    assert M.all_logits is forward.all_logits


def test_grokmlp_measures(ds):
    model = build_model(_small_cfg(arch="mlp"))
    assert isinstance(model, GrokMLP)
    out = M.compute_all_measures(model, ds, key_freqs=[1, 2])  # an untrained MLP has no keys of its own
    for key in (
        "train_loss",
        "test_loss",
        "restricted_loss",
        "excluded_loss",
        "gini_W_E",
        "gini_W_L",
    ):
        assert math.isfinite(out[key]), key
    if not M.compute_all_measures(model, ds)["key_freqs"]:  # no keys: nothing to restrict to
        assert math.isnan(M.compute_all_measures(model, ds)["restricted_loss"])
    assert M.neuron_acts(model, ds).shape == (P, P, 64)
    assert M.embedding_freq_norms(model, P).shape == (n_freqs(P),)
    with pytest.raises(ValueError, match="transformer"):
        M.attention_to_a_b(model, ds)


@pytest.mark.parametrize("layout", ["a b =", "a op b ="])
def test_attention_to_a_b(layout):
    cfg = _small_cfg(layout=layout)
    model = build_model(cfg)
    d = make_dataset(P, layout=layout)
    to_a, to_b = M.attention_to_a_b(model, d)
    assert to_a.shape == to_b.shape == (cfg.n_heads, P, P)
    _, cache = model.run_with_cache(d.tokens)
    pattern = cache["blocks.0.attn.hook_pattern"][:, :, -1]  # (batch, head, key)
    pos_b = 1 if layout == "a b =" else 2
    a, b = 4, 9
    row = a * P + b
    torch.testing.assert_close(to_a[:, a, b], pattern[row, :, 0])
    torch.testing.assert_close(to_b[:, a, b], pattern[row, :, pos_b])
    assert ((to_a + to_b) <= 1 + 1e-6).all()


def test_fourier_measures_not_defined_without_a_basis():
    """x2_xy_y2 has no cyclic basis: every Fourier measure is NaN, the functions say why."""
    d = make_dataset(P, op="x2_xy_y2")
    model = build_model(_small_cfg(op="x2_xy_y2"))
    L = M.all_logits(model, d)
    with pytest.raises(ValueError, match="not of the form"):
        M.restricted_loss(L, d, KEYS)
    with pytest.raises(ValueError, match="not of the form"):
        M.neuron_acts(model, d)
    out = M.compute_all_measures(model, d)
    assert math.isfinite(out["test_loss"]) and math.isnan(out["restricted_loss"])
    assert all(math.isnan(out[k]) for k in M.FOURIER_MEASURES)
    assert out["key_freqs"] == [] and not any(k.startswith("excluded_loss_k") for k in out)


def test_div_is_measured_in_the_discrete_log_basis():
    d = make_dataset(P, op="div")
    model = build_model(_small_cfg(op="div"))
    out = M.compute_all_measures(model, d, key_freqs=[3])
    assert math.isfinite(out["restricted_loss"]) and math.isfinite(out["excluded_loss"])
    assert f"excluded_loss_k{(P - 1) // 2}" in out  # m = p - 1 = 22: frequencies 1..11 (11 = Nyquist)
    assert M.neuron_acts(model, d).shape == (P - 1, P - 1, 64)


def test_measures_on_random_init_are_neutral(ds):
    model = build_model(_small_cfg())
    out = M.compute_all_measures(model, ds)
    assert out["key_freqs"] == out["key_freqs_clustered"]
    assert out["train_loss"] == pytest.approx(math.log(P), rel=0.1)
    assert out["frac_neurons_explained"] < 0.2
    n_k = n_freqs(P)
    assert all(f"excluded_loss_k{k}" in out for k in range(1, n_k + 1))
    assert f"excluded_loss_k{n_k + 1}" not in out


# ------------------------------------------------------------------------- a grokked model


def test_trained_model_measures(trained_p23):
    model, d = trained_p23.model, trained_p23.dataset
    out = M.compute_all_measures(model, d)
    assert out["test_acc"] >= 0.99 and out["train_acc"] == 1.0
    ev = evaluate(model, d)
    assert out["train_loss"] == pytest.approx(ev["train_loss"], rel=1e-3)
    assert out["test_loss"] == pytest.approx(ev["test_loss"], rel=1e-3)

    keys = out["key_freqs"]
    assert keys and keys == out["key_freqs_clustered"]
    assert set(keys) <= set(out["key_freqs_paper_code"])
    assert out["frac_neurons_explained"] > 0.5
    # Restricting to the key frequencies does not hurt (paper: it even helps); excluding them does.
    assert out["restricted_loss"] < max(out["test_loss"], 10 * out["all_loss"])
    assert out["restricted_loss"] < 1e-2
    assert out["excluded_loss"] > 0.5 and out["excluded_loss"] > 1e3 * out["train_loss"]
    assert out["restricted_loss_neuron"] < 1e-2
    assert out["excluded_loss_neuron"] > 0.5
    per_k = torch.tensor([out[f"excluded_loss_k{k}"] for k in range(1, n_freqs(P) + 1)])
    non_keys = [k for k in range(1, n_freqs(P) + 1) if k not in keys]
    assert min(per_k[k - 1] for k in keys) > 10 * max(per_k[k - 1] for k in non_keys)
    assert out["cos_sim_cos_apb_c"] > 0.9
    assert len(out["cos_apb_c_coeffs"]) == len(keys) and min(out["cos_apb_c_coeffs"]) > 0
    init = build_model(trained_p23.cfg)
    assert out["gini_W_E"] > M.gini_W_E(init, P) + 0.2
    assert out["gini_W_L"] > M.gini_W_L(init) + 0.2
    assert out["sum_sq_weights"] < M.sum_squared_weights(init)[0]

    # The single-purpose functions agree with compute_all_measures.
    L = M.all_logits(model, d)
    assert M.restricted_loss(L, d, keys) == pytest.approx(out["restricted_loss"], rel=1e-3)
    assert M.restricted_loss(model, d, keys, split="train") == pytest.approx(out["restricted_loss_train"], rel=1e-3)
    assert M.excluded_loss(L, d, keys) == pytest.approx(out["excluded_loss"], rel=1e-4)
    assert M.restricted_loss_neuron(model, d, keys) == pytest.approx(out["restricted_loss_neuron"], rel=1e-3)
    assert M.excluded_loss_neuron(model, d, keys) == pytest.approx(out["excluded_loss_neuron"], rel=1e-4)
    acts = M.neuron_acts(model, d)
    assert M.fraction_neurons_explained(acts) == pytest.approx(out["frac_neurons_explained"])
    assert M.key_frequencies(acts) == keys
    assert M.cosine_similarity_to_cos_apb_minus_c(L, P, keys) == pytest.approx(out["cos_sim_cos_apb_c"], rel=1e-5)
    to_a, to_b = M.attention_to_a_b(model, d)
    assert to_a.shape == to_b.shape == (trained_p23.cfg.n_heads, P, P)

    # Passing key frequencies explicitly is honoured.
    other = M.compute_all_measures(model, d, key_freqs=[keys[0]])
    assert other["key_freqs"] == [keys[0]]
    assert other["key_freqs_clustered"] == keys


def test_fourier_basis_names_match_frequency_columns():
    _, names = fourier_basis(P)
    K = n_freqs(P)
    assert [names[2 * k - 1] for k in range(1, K + 1)] == [f"cos {k}" for k in range(1, K + 1)]


def test_logit_energy_key_rule():
    from grokinterp.analysis.clusters import logit_key_frequencies

    energy = torch.tensor([0.0, 50.0, 0.1, 30.0, 15.0, 0.2, 0.0])  # k = 2, 4, 5 hold 95/95.3
    assert logit_key_frequencies(energy) == ([2, 4, 5], None)
    assert logit_key_frequencies(energy, fraction=0.5) == ([2], None)
    assert logit_key_frequencies(torch.zeros(5))[0] == []


def test_logits_rule_recovers_planted_keys():
    from grokinterp.analysis.clusters import logit_key_frequencies
    from grokinterp.analysis.measures import logit_frequency_energy

    p, keys = 23, [3, 7]
    ds = make_dataset(p, "add", train_frac=0.5)

    a, b = ds.a.double(), ds.b.double()
    c = torch.arange(p, dtype=torch.float64)
    logits = sum(torch.cos(2 * math.pi * k / p * (a[:, None] + b[:, None] - c)) for k in keys)
    energy = logit_frequency_energy(logits, ds)
    assert logit_key_frequencies(energy)[0] == keys

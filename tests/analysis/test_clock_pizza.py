"""Tests of grokinterp.clock_pizza: planted Clock and Pizza models with closed-form answers, the
distance-irrelevance statistic on planted logit tables (and the released code's grid formula), and
the real HookedTransformer / GrokMLP run end to end."""

from __future__ import annotations

import math

import pytest
import torch
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from grokinterp.analysis import clock_pizza as CP
from grokinterp.analysis.bases import primitive_root
from grokinterp.config import RunConfig
from grokinterp.models import build_model
from grokinterp.tasks import all_pairs, make_dataset

f64 = torch.float64
P = 23
FREQS = (2, 5, 9)


class _Planted(HookedRootModule):
    """Tokens (batch, 3) = [a, b, p] -> logits (batch, 3, p), float64. E[x] = (cos w_k x, sin w_k x)
    for each key frequency w_k = 2 pi k / p ("=" embeds to 0); the unembedding of class c is
    (cos w_k c, sin w_k c)."""

    def __init__(self, p: int, freqs: tuple[int, ...]) -> None:
        super().__init__()
        self.p, self.k = p, len(freqs)
        w = 2 * math.pi * torch.tensor(freqs, dtype=f64) / p  # (K,)
        x = torch.arange(p, dtype=f64)[:, None] * w  # (p, K)
        emb = torch.stack([x.cos(), x.sin()], dim=-1).reshape(p, 2 * self.k)
        self.register_buffer("W_E", torch.cat([emb, torch.zeros(1, 2 * self.k, dtype=f64)]))
        self.register_buffer("U_cos", x.cos().T.contiguous())  # (K, p): cos(w_k c)
        self.register_buffer("U_sin", x.sin().T.contiguous())
        self.hook_embed = HookPoint()

    def _operands(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.hook_embed(self.W_E[tokens])  # (batch, 3, 2K)
        return e[:, 0].reshape(-1, self.k, 2), e[:, 1].reshape(-1, self.k, 2)

    def _out(self, cos_part: torch.Tensor, sin_part: torch.Tensor) -> torch.Tensor:
        logits = cos_part @ self.U_cos + sin_part @ self.U_sin  # (batch, p)
        return logits[:, None, :].expand(-1, 3, -1)


class PlantedClock(_Planted):
    """Complex product of the two embeddings: Q_abc = sum_k cos(w_k(a + b - c)) + beta_c. The
    unembedding bias beta (random, fixed) makes the correct logit K + beta_{a+b} vary with a + b
    only."""

    def __init__(self, p: int, freqs: tuple[int, ...], seed: int = 0) -> None:
        super().__init__(p, freqs)
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("b_U", torch.randn(p, generator=g, dtype=f64))
        self.setup()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        ea, eb = self._operands(tokens)
        cos_sum = ea[..., 0] * eb[..., 0] - ea[..., 1] * eb[..., 1]  # cos w(a+b)
        sin_sum = ea[..., 1] * eb[..., 0] + ea[..., 0] * eb[..., 1]  # sin w(a+b)
        return self._out(cos_sum, sin_sum) + self.b_U


class PlantedPizza(_Planted):
    """Mean of the two embeddings, v = cos(w(a-b)/2) (cos w(a+b)/2, sin w(a+b)/2), then the angle is
    doubled by (x^2 - y^2, 2xy)/|v|: Q_abc = sum_k |cos(w_k(a-b)/2)| cos(w_k(a + b - c)), the paper's
    Pizza logit."""

    def __init__(self, p: int, freqs: tuple[int, ...]) -> None:
        super().__init__(p, freqs)
        self.setup()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        ea, eb = self._operands(tokens)
        v = (ea + eb) / 2
        x, y = v[..., 0], v[..., 1]
        r = (x * x + y * y).sqrt()
        return self._out((x * x - y * y) / r, 2 * x * y / r)


@pytest.fixture(scope="module")
def add_data():
    return make_dataset(P, "add")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# Planted models
# --------------------------------------------------------------------------------------------


def test_planted_models_compute_their_formulas(add_data):
    a, b = add_data.a.double(), add_data.b.double()
    c = torch.arange(P, dtype=f64)
    w = 2 * math.pi * torch.tensor(FREQS, dtype=f64) / P
    clock = PlantedClock(P, FREQS)
    s = (a + b)[:, None, None] - c[None, :, None]  # (n, p, 1)
    expected_clock = (w * s).cos().sum(-1) + clock.b_U
    torch.testing.assert_close(clock(add_data.tokens)[:, -1], expected_clock)
    amp = (w * (a - b)[:, None] / 2).cos().abs()[:, None, :]  # (n, 1, K)
    expected_pizza = (amp * (w * s).cos()).sum(-1)
    torch.testing.assert_close(PlantedPizza(P, FREQS)(add_data.tokens)[:, -1], expected_pizza)


def test_planted_clock_gradient_cosines_match_closed_form(add_data):
    # dQ/dE_a = (cos w(c-b), sin w(c-b)), dQ/dE_b = (cos w(c-a), sin w(c-a)) per frequency, each of
    # norm 1, so cos = mean_k cos(w_k(a - b)), whatever c is.
    clock = PlantedClock(P, FREQS)
    cos, rows, _ = CP.gradient_cosines(clock, add_data.tokens, a_pos=0, b_pos=1, n_samples=500, generator=_gen())
    a, b = add_data.a[rows].double(), add_data.b[rows].double()
    w = 2 * math.pi * torch.tensor(FREQS, dtype=f64) / P
    torch.testing.assert_close(cos, (w * (a - b)[:, None]).cos().mean(-1), atol=1e-12, rtol=0)


def test_planted_clock_and_pizza_measures(add_data):
    clock, pizza = PlantedClock(P, FREQS), PlantedPizza(P, FREQS)
    kw = dict(a_pos=0, b_pos=1)
    # Over every (a, b, c) the clock's mean_k cos(w_k(a-b)) averages to exactly 0.
    assert CP.gradient_symmetricity(clock, add_data.tokens, n_samples=None, **kw) == pytest.approx(0.0, abs=1e-12)
    # The paper's estimator (100 random triples): 0 in expectation, sd sqrt(1/(2K*100)) = 0.04.
    s_clock = CP.gradient_symmetricity(clock, add_data.tokens, generator=_gen(), **kw)
    assert abs(s_clock) < 0.15
    # The pizza reads only E_a + E_b: both gradients coincide, cos = 1.
    s_pizza = CP.gradient_symmetricity(pizza, add_data.tokens, generator=_gen(), **kw)
    assert s_pizza == pytest.approx(1.0, abs=1e-12)
    # Correct logits: clock K + beta_{a+b} (a function of the sum: q = 1); pizza
    # sum_k |cos(w_k(a-b)/2)| (a function of the distance: q = 0).
    dist = (add_data.a - add_data.b) % P
    q_clock = CP.distance_irrelevance_of_model(clock, add_data.tokens, add_data.labels, dist, m=P)
    q_pizza = CP.distance_irrelevance_of_model(pizza, add_data.tokens, add_data.labels, dist, m=P)
    assert q_clock == pytest.approx(1.0, abs=1e-12)
    assert q_pizza == pytest.approx(0.0, abs=1e-12)
    # The one-call version agrees and gives the verdicts.
    rc = CP.clock_pizza(clock, add_data, generator=_gen())
    rp = CP.clock_pizza(pizza, add_data, generator=_gen())
    assert (rc.gradient_symmetricity, rc.distance_irrelevance, rc.verdict) == (s_clock, q_clock, "clock")
    assert (rp.gradient_symmetricity, rp.distance_irrelevance, rp.verdict) == (s_pizza, q_pizza, "pizza")


def test_gradient_symmetricity_sampling_is_deterministic_and_distinct(add_data):
    clock = PlantedClock(P, FREQS)
    kw = dict(a_pos=0, b_pos=1, n_samples=100)
    s1 = CP.gradient_symmetricity(clock, add_data.tokens, generator=_gen(3), **kw)
    s2 = CP.gradient_symmetricity(clock, add_data.tokens, generator=_gen(3), **kw)
    assert s1 == s2
    rows, classes = CP.sample_triples(P * P, P, 100, _gen(3))
    assert len(set(zip(rows.tolist(), classes.tolist(), strict=True))) == 100
    assert int(rows.max()) < P * P and int(classes.max()) < P
    # The "correct logit" variant uses labels[row] as c (for the clock still mean_k cos(w_k(a-b))).
    cos, rows, classes = CP.gradient_cosines(
        clock, add_data.tokens, add_data.labels, logit="correct", a_pos=0, b_pos=1, n_samples=50, generator=_gen()
    )
    assert torch.equal(classes, add_data.labels[rows]) and len(set(rows.tolist())) == 50


def test_model_state_is_restored(add_data):
    clock = PlantedClock(P, FREQS).train()
    CP.gradient_symmetricity(clock, add_data.tokens, a_pos=0, b_pos=1, generator=_gen())
    assert clock.training
    assert not clock.hook_embed._forward_hooks


# --------------------------------------------------------------------------------------------
# Distance irrelevance on logit tables
# --------------------------------------------------------------------------------------------


def _table(p: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(p, generator=_gen(seed), dtype=f64)


def test_distance_irrelevance_extremes_addition():
    a, b = all_pairs(P)
    u, v = _table(P, 1), _table(P, 2)
    dist = (a - b) % P
    assert CP.distance_irrelevance(u[(a + b) % P], dist, m=P) == pytest.approx(1.0, abs=1e-12)
    assert CP.distance_irrelevance(v[(a - b) % P], dist, m=P) < 1e-12


def test_distance_irrelevance_mixture_closed_form():
    # L = alpha u(a+b) + beta v(a-b); over the full grid (p odd) sum and difference are independent
    # and uniform, so q = alpha sd(u) / sqrt(alpha^2 var(u) + beta^2 var(v)).
    a, b = all_pairs(P)
    u, v = _table(P, 1), _table(P, 2)
    alpha, beta = 0.7, 1.9
    logits = alpha * u[(a + b) % P] + beta * v[(a - b) % P]
    su, sv = u.std(unbiased=False), v.std(unbiased=False)
    expected = float(alpha * su / (alpha**2 * su**2 + beta**2 * sv**2).sqrt())
    assert CP.distance_irrelevance(logits, (a - b) % P) == pytest.approx(expected, abs=1e-12)


def test_distance_irrelevance_matches_released_code_grid_formula():
    # The authors' notebook: grid[(a+b) % C][(a-b) % C] = correct logit, then
    # mean(std(grid, axis=0)) / std(grid) with ddof=0.
    a, b = all_pairs(P)
    logits = torch.randn(P * P, generator=_gen(5), dtype=f64)
    grid = torch.zeros(P, P, dtype=f64)
    grid[(a + b) % P, (a - b) % P] = logits
    code = float(grid.std(dim=0, unbiased=False).mean() / grid.std(unbiased=False))
    assert CP.distance_irrelevance(logits, (a - b) % P, m=P) == pytest.approx(code, abs=1e-12)


def test_distance_irrelevance_generalised_subtraction_and_multiplication():
    a, b = all_pairs(P)
    f = _table(P, 3)
    # Subtraction: phi_b = -b, answer a - b, distance phi_a - phi_b = a + b.
    sub = CP.group_coordinates(a, b, P, "sub")
    assert torch.equal(sub.distance, (a + b) % P) and sub.m == P
    assert CP.distance_irrelevance(f[(a + b) % P], sub.distance, sub.mask, m=P) < 1e-12
    assert CP.distance_irrelevance(f[(a - b) % P], sub.distance, sub.mask, m=P) == pytest.approx(1.0, abs=1e-12)
    # Multiplication: discrete logs in Z_{p-1} (even order), rows with a or b = 0 masked out.
    mul = CP.group_coordinates(a, b, P, "mul")
    g = primitive_root(P)
    assert g == 5 and mul.m == P - 1 and int(mul.mask.sum()) == (P - 1) ** 2
    keep = mul.mask
    assert torch.equal(torch.tensor([pow(g, int(k), P) for k in mul.phi_a[keep]]), a[keep])
    h = _table(P - 1, 4)
    by_ratio = h[mul.distance]  # depends on log a - log b only
    by_product = h[(mul.phi_a + mul.phi_b) % (P - 1)]  # on the answer a*b only
    assert CP.distance_irrelevance(by_ratio, mul.distance, keep, m=P - 1) < 1e-12
    # m = p - 1 is even: at distance d the sum 2 log a - d covers only the residues of d's parity
    # (each twice), so even a function of the answer alone gives q = mean(sd(h[even]), sd(h[odd])) / sd(h)
    # rather than 1.
    sd = lambda t: t.std(unbiased=False)
    expected = float((sd(h[0::2]) + sd(h[1::2])) / 2 / sd(h))
    assert CP.distance_irrelevance(by_product, mul.distance, keep, m=P - 1) == pytest.approx(expected, abs=1e-12)
    assert 0.9 < expected < 1.0
    div = CP.group_coordinates(a, b, P, "div")
    assert torch.equal(div.distance[keep], (mul.phi_a + mul.phi_b)[keep] % (P - 1))


def test_distance_irrelevance_rejects_bad_input():
    with pytest.raises(ValueError, match="constant"):
        CP.distance_irrelevance(torch.ones(10), torch.arange(10) % 3)
    with pytest.raises(ValueError, match=r"\[0, m\)"):
        CP.distance_irrelevance(torch.randn(4), torch.tensor([0, 1, 2, 5]), m=5)
    with pytest.raises(ValueError, match="cyclic-group"):
        CP.group_coordinates(torch.arange(3), torch.arange(3), 3, "x2_y2")


def test_classify_thresholds():
    assert CP.classify(0.9937, 0.17) == "pizza"
    assert CP.classify(0.3336, 0.85) == "clock"
    assert CP.classify(0.85, 0.6) == "unclear"
    assert CP.ClockPizza.from_values(0.95, 0.2) == CP.ClockPizza(0.95, 0.2, "pizza")


# --------------------------------------------------------------------------------------------
# Real models
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        RunConfig(p=P, device="cpu"),
        RunConfig(p=P, layout="a op b =", device="cpu"),
        RunConfig(p=P, arch="mlp", n_layers=2, d_model=32, d_mlp=64, device="cpu"),
    ],
    ids=["transformer", "transformer-a-op-b", "mlp"],
)
def test_real_models_run(cfg):
    model = build_model(cfg)
    data = make_dataset(cfg.p, cfg.op, cfg.layout)
    result = CP.clock_pizza(model, data, generator=_gen())
    assert -1.0 <= result.gradient_symmetricity <= 1.0
    assert 0.0 <= result.distance_irrelevance <= 1.0
    assert result.verdict in ("clock", "pizza", "unclear")
    # The hook_embed gradient of one input with a != b equals the gradient w.r.t. the embedding
    # rows W_E[a] and W_E[b] (each token occurs once in the input).
    a_pos, b_pos = CP.embed_positions(cfg.layout)
    row = 3 * P + 11
    tokens, c = data.tokens[row : row + 1], torch.tensor([7])
    grad_a, grad_b = CP.embedding_gradients(model, tokens, c, a_pos=a_pos, b_pos=b_pos)
    W_E = model.W_E
    W_E.requires_grad_(True)
    model.zero_grad()
    model(tokens)[0, -1, 7].backward()
    torch.testing.assert_close(grad_a[0], W_E.grad[3])
    torch.testing.assert_close(grad_b[0], W_E.grad[11])


# --------------------------------------------------------------------------------------------
# In the analysis (measures.csv, analysis.json, the figure)
# --------------------------------------------------------------------------------------------


def _train_run(path, **kw):
    from tests.conftest import GROK_P23, train_one_thread

    train_one_thread(GROK_P23.replace(**kw), path)
    return path


def test_analyze_run_writes_clock_pizza_for_a_trained_addition_run(tmp_path):
    import pandas as pd

    from grokinterp.analysis.run_analysis import Analysis, analyze_run
    from grokinterp.io.runs import load_run
    from grokinterp.viz import make_all_figures

    path = _train_run(tmp_path / "add", epochs=900, checkpoint_every=300, eval_every=50)
    table, summary = analyze_run(path, progress=False)
    written = pd.read_csv(path / "measures.csv")
    for col in CP.COLUMNS:
        assert written[col].notna().all(), col
    assert list(written["epoch"]) == [0, 300, 600, 900]
    # The columns are the module's measures at each checkpoint, deterministic (a seeded generator).
    run = load_run(path)
    direct = CP.measure_columns(run.model(900), run.dataset)
    assert direct["gradient_symmetricity"] == pytest.approx(table["gradient_symmetricity"].iloc[-1], abs=1e-6)
    assert direct["distance_irrelevance"] == pytest.approx(table["distance_irrelevance"].iloc[-1], abs=1e-6)
    again, _ = analyze_run(path, progress=False, write=False)
    assert again["gradient_symmetricity"].tolist() == pytest.approx(table["gradient_symmetricity"].tolist(), abs=1e-9)
    cp = Analysis.load(path).clock_pizza
    assert cp["defined"] and cp["reason"] is None and cp["epoch"] == 900
    assert cp["verdict"] == CP.classify(cp["gradient_symmetricity"], cp["distance_irrelevance"])
    assert cp["samples"] == 100 and set(cp["definitions"]) == set(CP.COLUMNS)
    assert set(cp["thresholds"]) == {"pizza", "clock", "unclear"}
    assert summary["final"]["distance_irrelevance"] == pytest.approx(cp["distance_irrelevance"])
    fig = make_all_figures(path)["clock_pizza"]
    assert [tr.name for tr in fig.data if tr.name in ("gradient symmetricity", "distance irrelevance")] == [
        "gradient symmetricity",
        "distance irrelevance",
    ]
    assert list(next(tr for tr in fig.data if tr.name == "distance irrelevance").y) == pytest.approx(
        table["distance_irrelevance"].tolist()
    )


def test_clock_pizza_not_defined_for_a_non_cyclic_operation(tmp_path):
    import json

    from grokinterp.analysis.run_analysis import analyze_run
    from grokinterp.io.runs import load_run
    from grokinterp.viz import plot_clock_pizza

    path = _train_run(tmp_path / "poly", p=11, op="x2_xy_y2", epochs=20, checkpoint_every=10, eval_every=10)
    table, summary = analyze_run(path, progress=False)
    assert table[list(CP.COLUMNS)].isna().all().all()  # never a number
    raw = json.loads((path / "analysis.json").read_text())
    cp = raw["clock_pizza"]
    assert cp["defined"] is False and cp["verdict"] is None and cp["gradient_symmetricity"] is None
    assert "x2_xy_y2" in cp["reason"] and "cyclic-group" in cp["reason"]
    assert raw["not_defined"]["gradient_symmetricity"] == cp["reason"]
    assert raw["final"]["distance_irrelevance"] is None
    fig = plot_clock_pizza(load_run(path))
    assert any("not defined" in ann.text for ann in fig.layout.annotations)
    # The experimental sum-decomposable tasks have a basis but no group operation: not defined either.
    assert "not injective" in CP.not_defined_reason("x2_y2", 11)
    assert CP.not_defined_reason("mul", 12) is not None and CP.not_defined_reason("div", 11) is None
    with pytest.raises(ValueError, match="cyclic-group"):
        CP.group_coordinates(torch.arange(3), torch.arange(3), 11, "x2_y2")


@pytest.mark.parametrize("test_acc", [0.10, 0.02, float("nan")])
def test_no_verdict_for_a_model_that_has_not_generalised(test_acc):
    """Distance irrelevance is about 1 at initialisation, so an untrained model would read as a clock:
    below the grokking threshold the entry keeps the values but gives no verdict, with the reason."""
    ds = make_dataset(11, "add")
    final = {"gradient_symmetricity": 0.3, "distance_irrelevance": 0.95, "circularity": 0.4, "test_acc": test_acc}
    entry = CP.analysis_entry(ds, final, epoch=30)
    assert entry["verdict"] is None
    assert entry["verdict_reason"].startswith("no verdict: final test accuracy")
    assert "has not generalised" in entry["verdict_reason"]
    assert (entry["gradient_symmetricity"], entry["distance_irrelevance"], entry["circularity"]) == (0.3, 0.95, 0.4)
    grokked = CP.analysis_entry(ds, {**final, "test_acc": 1.0}, epoch=30)
    assert grokked["verdict"] == "clock" and grokked["verdict_reason"] is None

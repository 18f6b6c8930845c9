"""The local learning coefficient (grokinterp.llc, issue 13): config, determinism, a closed-form
anchor, trained against random init, and the analysis / CLI integration.

Sampling is kept short (tens of SGLD steps) so the file runs in well under a minute on one core.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

pytest.importorskip("devinterp", reason="the LLC needs the optional extra grokinterp[llc]")

from grokinterp import constants as C
from grokinterp.analysis.llc import LLCConfig, LLCEstimate, estimate_llc, llc_over_run, load_llc
from grokinterp.tasks import make_dataset
from tests.conftest import GROK_P23, train_one_thread

# The conftest model that groks p=23: it memorises its train split within 100 epochs (test
# accuracy ~0.15 then) and groks later; only the first 100 epochs are trained here.
MEMORISE_P23 = GROK_P23.replace(
    epochs=100, eval_every=50, checkpoint_every=100, checkpoint_early_every=50, checkpoint_early_until=50
)
FAST = LLCConfig(num_chains=1, num_draws=40, num_burnin_steps=20, batch_size=64, epsilon=1e-4, gamma=1000.0)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices, busy machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A p=23 run with checkpoints at epochs 0 (random init), 50 and 100 (memorised)."""
    path = tmp_path_factory.mktemp("llc") / "run"
    train_one_thread(MEMORISE_P23, path)
    return path


# ----------------------------------------------------------------------------------------------
# LLCConfig
# ----------------------------------------------------------------------------------------------


def test_config_defaults_round_trip_json():
    cfg = LLCConfig()
    assert LLCConfig.from_json(cfg.to_json()) == cfg
    custom = LLCConfig(sampler="rmsprop_sgld", epsilon=1e-3, gamma=10, nbeta=50, num_chains=3, seed=7)
    back = LLCConfig.from_json(custom.to_json())
    assert back == custom
    assert isinstance(back.gamma, float) and isinstance(back.nbeta, float)  # ints -> floats
    assert custom.num_steps == custom.num_burnin_steps + custom.num_draws * custom.num_steps_bw_draws
    assert all(LLCConfig.doc(name) for name in cfg.to_dict())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epsilon": 0.0}, "epsilon must be positive"),
        ({"epsilon": float("nan")}, "epsilon must be a finite number"),
        ({"gamma": -1.0}, "gamma must be non-negative"),
        ({"nbeta": 0.0}, "nbeta must be positive"),
        ({"num_chains": 0}, "num_chains must be at least 1"),
        ({"num_draws": 2.5}, "num_draws must be an integer"),
        ({"num_burnin_steps": -1}, "num_burnin_steps must be non-negative"),
        ({"batch_size": True}, "batch_size must be an integer"),
        ({"sampler": "mala"}, "sampler must be one of 'sgld', 'rmsprop_sgld'"),
        ({"save_metrics": 1}, "save_metrics must be true or false"),
    ],
)
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        LLCConfig(**changes)


def test_config_rejects_unknown_fields_and_bad_json():
    with pytest.raises(ValueError, match="unknown LLC config field"):
        LLCConfig.from_dict({"epsilon": 1e-4, "step": 3})
    with pytest.raises(ValueError, match="not valid JSON"):
        LLCConfig.from_json("{epsilon: 1}")


def test_default_nbeta_is_n_over_log_n_of_the_train_split():
    """The default (None, "train") is n/log n of the n train examples: grokinterp's choice, which
    devinterp's default_nbeta gives for a count, not for its DataLoader."""
    assert LLCConfig().resolved_nbeta(3830) == pytest.approx(3830 / math.log(3830))
    assert LLCConfig(nbeta="train").resolved_nbeta(3830) == pytest.approx(3830 / math.log(3830))
    assert LLCConfig().nbeta_rule == "train" and LLCConfig(nbeta=12).nbeta_rule == "given"
    assert LLCConfig(nbeta=12.0).resolved_nbeta(3830) == 12.0
    assert "grokinterp's default" in LLCConfig.doc("nbeta") and "devinterp's default_nbeta(n)" not in LLCConfig.doc(
        "nbeta"
    )


@pytest.mark.parametrize("batch_size", [2, 64, 128, 1000])
def test_nbeta_devinterp_is_b_over_log_b_of_the_sgld_batch(batch_size):
    """nbeta="devinterp" is devinterp's own default: default_nbeta of the SGLD DataLoader = B/log B
    for batch size B (17.6x smaller than n/log n at n = 3,830, B = 128)."""
    cfg = LLCConfig(nbeta="devinterp", batch_size=batch_size)
    assert cfg.resolved_nbeta(3830) == pytest.approx(batch_size / math.log(batch_size))
    assert cfg.resolved_nbeta(10) == cfg.resolved_nbeta(3830)  # does not depend on n
    devinterp_utils = pytest.importorskip("devinterp.utils")
    from torch.utils.data import DataLoader

    loader = DataLoader(list(range(3830)), batch_size=batch_size)
    assert cfg.resolved_nbeta(3830) == pytest.approx(float(devinterp_utils.default_nbeta(loader)))
    if batch_size == 128:
        ratio = LLCConfig().resolved_nbeta(3830) / cfg.resolved_nbeta(3830)
        assert ratio == pytest.approx(17.6, abs=0.05)


def test_nbeta_rules_parse_and_round_trip():
    assert LLCConfig.parse_field("nbeta", "DevInterp") == "devinterp"
    assert LLCConfig.parse_field("nbeta", "train") == "train"
    assert LLCConfig.parse_field("nbeta", "none") is None
    assert LLCConfig.parse_field("nbeta", "12") == 12.0
    cfg = LLCConfig(nbeta="devinterp")
    assert LLCConfig.from_json(cfg.to_json()) == cfg
    for bad, message in (("x", "nbeta takes a number, train or devinterp"), ("-1", "nbeta must be positive")):
        with pytest.raises(ValueError, match=message):
            LLCConfig.parse_field("nbeta", bad)
    for bad in ("n", float("inf"), True):
        with pytest.raises(ValueError, match="nbeta must be"):
            LLCConfig(nbeta=bad)


# ----------------------------------------------------------------------------------------------
# A closed-form anchor: a regular model at its minimum has LLC d/2
# ----------------------------------------------------------------------------------------------


class ConstantLogits(nn.Module):
    """Logits (theta_1..theta_{p-1}, 0) for every input: a regular model with d = p - 1 parameters
    (the last logit is fixed, so no direction is flat), called like the transformer."""

    def __init__(self, theta: torch.Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(theta.clone())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        logits = torch.cat([self.theta, self.theta.new_zeros(1)])
        return logits.expand(tokens.shape[0], tokens.shape[1], -1)


def test_regular_minimum_gives_half_the_parameter_count():
    """At the minimum of a regular model, n*beta*(E[L] - L(w*)) -> d/2. With localization gamma,
    the Gaussian (Laplace) posterior gives exactly 1/2 sum_i nbeta h_i / (nbeta h_i + gamma) over
    the Hessian eigenvalues h_i of the train loss; the estimate must match it (SGLD's step-size bias
    at epsilon * nbeta * h_max ~ 0.2 is a few percent; the slowest direction relaxes in ~90 steps,
    so 2 x 400 draws leave ~10% noise)."""
    ds = make_dataset(11, "add", train_frac=0.5, data_seed=0)
    counts = torch.bincount(ds.train_labels, minlength=11).double()
    assert (counts > 0).all()
    q = counts / counts.sum()
    theta = torch.log(q[:-1] / q[-1]).float()  # the minimum of the train cross-entropy
    d = len(theta)
    nbeta, gamma = 2000.0, 1.0
    h = torch.linalg.eigvalsh(torch.diag(q[:-1]) - torch.outer(q[:-1], q[:-1]))
    anchor = float(0.5 * (nbeta * h / (nbeta * h + gamma)).sum())
    assert anchor == pytest.approx(d / 2, rel=0.01)

    n = len(ds.train_labels)
    cfg = LLCConfig(epsilon=1e-3, gamma=gamma, nbeta=nbeta, num_chains=2, num_draws=400, num_burnin_steps=100,
                    batch_size=n, seed=0)  # fmt: skip
    est = estimate_llc(ConstantLogits(theta), ds, cfg)
    assert est.n_params == d
    assert est.llc_mean == pytest.approx(anchor, rel=0.2)  # seeds 0-3 gave -4%..+15%
    assert est.checks["failed_chains"] == 0
    assert est.init_loss == pytest.approx(float(-(q * q.log()).sum()), rel=1e-5)


# ----------------------------------------------------------------------------------------------
# A trained transformer
# ----------------------------------------------------------------------------------------------


def test_same_seed_same_estimate_and_rng_untouched(run_dir):
    from grokinterp.io.runs import load_run

    run = load_run(run_dir)
    model = run.model(100)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(1234)
    expected_next = torch.rand(3)
    torch.manual_seed(1234)
    a = estimate_llc(model, run.dataset, FAST)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's RNG is restored
    b = estimate_llc(model, run.dataset, FAST)
    c = estimate_llc(model, run.dataset, FAST.replace(seed=1))  # chain c uses seed + c
    assert a.llc_mean == b.llc_mean and a.loss_traces == b.loss_traces and a.llc_traces == b.llc_traces
    assert c.llc_mean != a.llc_mean
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights untouched
    assert len(a.loss_traces) == FAST.num_chains and len(a.loss_traces[0]) == FAST.num_steps
    assert len(a.draw_losses[0]) == FAST.num_draws
    assert a.llc_traces[0][5] == pytest.approx(a.nbeta * (a.loss_traces[0][5] - a.init_loss))
    assert LLCEstimate.from_dict(json.loads(a.to_json())) == a


def test_memorised_model_has_a_larger_llc_than_random_init(run_dir):
    """Random init is not a minimum of the train loss: SGLD goes downhill and the estimate is near
    zero or negative. The memorised model sits at a minimum, and memorisation is expensive in
    effective parameters (devinterp's modular-addition example: the LLC rises during memorisation)."""
    from grokinterp.io.runs import load_run

    run = load_run(run_dir)
    init = estimate_llc(run.model(0), run.dataset, FAST)
    memorised = estimate_llc(run.model(100), run.dataset, FAST)
    assert memorised.init_loss < 0.1 < init.init_loss
    assert memorised.llc_mean > 5.0
    assert memorised.llc_mean > 5 * max(init.llc_mean, 0.1)


def test_save_metrics_records_devinterps_sgld_metrics(run_dir):
    from grokinterp.io.runs import load_run

    run = load_run(run_dir)
    cfg = FAST.replace(num_draws=8, num_burnin_steps=0, save_metrics=True)
    est = estimate_llc(run.model(100), run.dataset, cfg)
    assert set(est.metrics) == {"distance", "scaled_grad", "localization", "noise"}
    distance = est.metrics["distance"][0]
    assert len(distance) == cfg.num_steps and all(x >= 0 for x in distance)


# ----------------------------------------------------------------------------------------------
# Over a run, the analysis and the CLI
# ----------------------------------------------------------------------------------------------


def test_llc_over_run_writes_diagnostics_and_reuses_them(run_dir):
    cfg = FAST.replace(num_draws=10, num_burnin_steps=0)
    results = llc_over_run(run_dir, cfg, epochs=[0, 100], progress=False)
    assert sorted(results) == [0, 100]
    folder = run_dir / C.LLC_DIR
    assert LLCConfig.load(folder / C.LLC_CONFIG_FILE) == cfg
    saved = json.loads((folder / "epoch_000100.json").read_text())
    assert saved["epoch"] == 100 and saved["config"] == cfg.to_dict()
    assert len(saved["loss_traces"][0]) == cfg.num_steps and "stationary" in saved["checks"]
    assert load_llc(run_dir)[100].llc_mean == results[100].llc_mean
    assert not list(folder.glob(f".*{C.TMP_SUFFIX}"))  # atomic writes leave nothing behind
    from grokinterp.io.rundir import foreign_entries

    assert foreign_entries(run_dir) == []  # `train --force` may clear llc/ with the rest
    again = llc_over_run(run_dir, cfg, epochs=[100], progress=False)
    assert again[100].seconds == results[100].seconds  # read back, not sampled again
    llc_over_run(run_dir, cfg.replace(seed=5), epochs=[0], progress=False)
    assert sorted(load_llc(run_dir)) == [0]  # another config replaces the old estimates


def test_analyze_run_with_llc_adds_columns_and_figure(run_dir):
    from grokinterp.analysis.run_analysis import analyze_run
    from grokinterp.viz import make_all_figures, plot_llc

    cfg = FAST.replace(num_draws=10, num_burnin_steps=0)
    table, summary = analyze_run(run_dir, progress=False, llc=cfg)
    assert {"llc_mean", "llc_std"} <= set(table.columns)
    assert table["llc_mean"].notna().all()
    header = (run_dir / C.MEASURES_FILE).read_text().splitlines()[0].split(",")
    assert "llc_mean" in header and "llc_std" in header
    assert sorted(load_llc(run_dir)) == sorted(table["epoch"])
    assert any("llc" in note for note in summary["notes"])
    fig = plot_llc(table, phases=False)
    names = [t.name for t in fig.data]
    assert "LLC (train)" in names and "test loss" in names
    assert fig.layout.yaxis2.type == "log"
    paper = plot_llc(table, phases=False, style="paper")
    assert not paper.layout.title.text and paper.layout.yaxis2.type == "log"
    assert "llc" in make_all_figures(run_dir)
    plain, _ = analyze_run(run_dir, progress=False, write=False)
    assert "llc_mean" not in plain.columns


def test_cli_analyze_llc_flags(run_dir, tmp_path, capsys):
    from grokinterp.cli import main

    config = tmp_path / "llc.json"
    config.write_text(FAST.replace(num_draws=6, num_burnin_steps=0).to_json())
    assert main(["analyze", str(run_dir), "--no-progress", "--llc-config", str(config), "--llc-seed", "9"]) == 0
    out = capsys.readouterr().out
    assert "LLC (devinterp, train split)" in out
    assert LLCConfig.load(run_dir / C.LLC_DIR / C.LLC_CONFIG_FILE) == FAST.replace(
        num_draws=6, num_burnin_steps=0, seed=9
    )
    config.write_text('{"epsilon": -1}')
    assert main(["analyze", str(run_dir), "--no-progress", "--llc-config", str(config)]) == 2
    assert "epsilon must be positive" in capsys.readouterr().err

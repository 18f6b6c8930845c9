"""grokinterp.backend: one interface over TransformerLens 3.x and 4.x.

The tests run on the installed version; the ones that need the other major version's classes skip
with the reason. ``test_other_major_version_gives_the_same_run`` trains, analyses and plots a small
run here and in a second environment with the other major version (``.venv-other-tl``, made by
scripts/setup.sh, or ``GROKINTERP_OTHER_TL_PYTHON``: its python, with grokinterp importable from this
checkout) and compares the two.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from grokinterp import backend
from grokinterp.config import RunConfig
from grokinterp.forward import has_hooks, last_position_logits
from grokinterp.models import build_model

TL3 = pytest.mark.skipif(backend.TL_MAJOR >= 4, reason="needs TransformerLens 3.x (HookedTransformer)")
TL4 = pytest.mark.skipif(backend.TL_MAJOR < 4, reason="needs TransformerLens 4.x (TransformerBridge)")
ROOT = Path(__file__).resolve().parents[1]

CONFIGS = [
    dict(p=23),
    dict(p=23, n_layers=2, normalization_type="LN", model_seed=3),
    dict(p=17, normalization_type="LNPre", act_fn="gelu", d_model=32, n_heads=2, d_head=16, d_mlp=64, model_seed=11),
    dict(p=19, layout="a op b =", attention_dir="bidirectional", model_seed=7, freeze_biases=False),
]


def tokens_of(cfg: RunConfig) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, cfg.p, (64, cfg.n_ctx), generator=g)


@TL3
@pytest.mark.parametrize("kw", CONFIGS)
def test_pure_torch_init_is_hooked_transformers_bit_for_bit(kw):
    from transformer_lens import HookedTransformer

    cfg = RunConfig(**kw)
    with torch.random.fork_rng(devices=[]):
        ht = HookedTransformer(backend.transformer_config(cfg))  # seeds itself from cfg.model_seed
    ours = backend.init_state_3x(cfg)
    names = [n for n, _ in ht.named_parameters()]
    assert names == list(ours) == backend.param_names_3x(cfg.n_layers, ht.cfg.normalization_type)
    for name, param in ht.named_parameters():
        assert param.dtype == ours[name].dtype and torch.equal(param, ours[name]), name
    assert backend.attn_scale(ht, 0) == ht.blocks[0].attn.attn_scale


@pytest.mark.parametrize("kw", CONFIGS)
def test_state_round_trip_and_3x_names(kw):
    cfg = RunConfig(**kw)
    model = build_model(cfg)
    state = backend.state_dict_3x(model)
    expected = backend.param_names_3x(
        cfg.n_layers, None if cfg.normalization_type == "none" else cfg.normalization_type
    )
    assert [n for n, _ in backend.named_parameters_3x(model)] == expected
    assert [k for k in state if not k.endswith((".mask", ".IGNORE"))] == expected
    init = backend.init_state_3x(cfg)
    for name in expected:  # the same weights as the pure-torch 3.x scheme, in 3.x shapes
        assert torch.equal(state[name], init[name]), name
    # Freezing works on 3.x names: exactly the b_* parameters.
    frozen = {n for n, p in backend.named_parameters_3x(model) if not p.requires_grad}
    assert frozen == ({n for n in expected if ".b_" in n} if cfg.freeze_biases else set())
    # Load different weights, read them back.
    other = build_model(RunConfig(**{**kw, "model_seed": cfg.model_seed + 1}))
    backend.load_state_3x(other, state)
    assert all(torch.equal(v, state[k]) for k, v in backend.state_dict_3x(other).items())
    for name, leaf in backend.named_parameters_3x(model):
        assert torch.equal(backend.from_3x_layout(model, name, backend.to_3x_layout(model, name, leaf.detach())), leaf)


@pytest.mark.parametrize("kw", CONFIGS)
def test_3x_layout_is_the_models_own_view(kw):
    """``to_3x_layout`` gives what the model's own 3.x-named attributes (W_Q, W_in, W_U...) show."""
    cfg = RunConfig(**kw)
    model = build_model(cfg)
    params = backend.parameters_3x(model)
    for name, t in params.items():
        obj = model
        for part in name.split("."):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        assert torch.equal(obj, t), name


@TL4
def test_3x_layout_matches_transformer_lens_own_conversion():
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    cfg = RunConfig(p=23, n_layers=2, normalization_type="LN", model_seed=3)
    model = build_model(cfg)
    converted = convert_tl_checkpoint(backend.state_dict_3x(model), model.cfg)
    own = model.state_dict()
    assert set(converted) == set(own)
    assert all(torch.equal(converted[k], own[k]) for k in own)


@pytest.mark.parametrize("kw", CONFIGS)
def test_fused_forward_after_a_hooked_forward(kw):
    """4.x wires capture hooks on the first forward; they are not the caller's hooks."""
    cfg = RunConfig(**kw)
    model = build_model(cfg)
    t = tokens_of(cfg)
    full = model(t)[:, -1]
    assert not has_hooks(model)
    torch.testing.assert_close(last_position_logits(model, t), full, rtol=1e-5, atol=1e-5)


def test_callers_hooks_count_and_transformer_lens_own_do_not():
    cfg = RunConfig(p=23)
    model = build_model(cfg)
    t = tokens_of(cfg)
    model(t)  # 4.x wires its capture hooks here
    assert not has_hooks(model)
    with model.hooks(fwd_hooks=[("blocks.0.mlp.hook_post", lambda act, hook: act * 0)]):
        assert has_hooks(model)
        zeroed = last_position_logits(model, t)  # the hooked forward: every neuron silenced
    model.add_hook("hook_embed", lambda act, hook: act)
    assert has_hooks(model)
    model.reset_hooks()
    assert not has_hooks(model)
    # Silenced neurons leave the MLP's output at b_out: logits = (resid_mid + b_out) @ W_U + b_U.
    with torch.no_grad():
        _, cache = model.run_with_cache(t, names_filter=lambda n: n == "blocks.0.hook_resid_mid")
        mid = cache["blocks.0.hook_resid_mid"][:, -1]
        expected = (mid + model.blocks[0].mlp.b_out) @ model.unembed.W_U + model.unembed.b_U
    torch.testing.assert_close(zeroed, expected, rtol=1e-5, atol=1e-5)


def test_hook_names_are_3x():
    cfg = RunConfig(p=23, n_layers=2)
    model = build_model(cfg)
    points = backend.hook_points(model)
    used = ["hook_embed", "hook_pos_embed", "blocks.1.attn.hook_pattern", "blocks.0.mlp.hook_post",
            "blocks.0.mlp.hook_pre", "blocks.1.hook_resid_mid", "blocks.1.hook_resid_post"]  # fmt: skip
    for name in used:
        assert name in points, name
        assert backend.normalise_hook_name(points[name].name) == name
    # What hook.name reports inside a hook maps back to the 3.x name.
    seen = []
    model.run_with_hooks(
        tokens_of(cfg),
        fwd_hooks=[(n, lambda act, hook: seen.append(backend.normalise_hook_name(hook.name))) for n in used],
    )
    assert sorted(seen) == sorted(used)
    # Every 3.x alias 4.x keeps (none on 3.x, where each hook point has its own 3.x name).
    for name, point in points.items():
        if point.name != name:
            assert backend.normalise_hook_name(point.name) == name
    assert backend.normalise_hook_name("blocks.3.mlp.out.hook_in") == "blocks.3.mlp.hook_post"
    assert backend.normalise_hook_name("embed.hook_out") == "hook_embed"
    assert backend.normalise_hook_name("blocks.0.attn.hook_pattern") == "blocks.0.attn.hook_pattern"


def test_only_the_backend_imports_transformer_lens():
    import ast

    offenders = []
    for path in sorted((ROOT / "grokinterp").rglob("*.py")):
        if path.name == "backend.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            offenders += [f"{path.name}:{node.lineno}" for m in mods if m.split(".")[0] == "transformer_lens"]
    assert offenders == []


# ------------------------------------------------------------------------ the other major version
_SCRIPT = """
import json, sys
from grokinterp.cli import main
from grokinterp import backend
out, resume = sys.argv[1], sys.argv[2]
fast = ["--preset", "nanda-p113-fast", "--p", "23", "--no-progress"]
methods = [*fast, "--n-layers", "2", "--normalization-type", "LN", "--orthograd", "--grokfast", "ema"]
steps = [
    ["train", *fast, "--epochs", "150", "--eval-every", "10", "--out", out + "/run"],
    ["analyze", out + "/run", "--no-progress"],
    ["plot", out + "/run", "--format", "html", "--out", out + "/figures"],
    ["train", *methods, "--epochs", "40", "--out", out + "/methods"],
    # The other environment's 20-epoch run (its state.safetensors) continued here to 40.
    ["train", "--resume", resume, "--epochs", "40", "--no-progress"] if resume != "-" else
    ["train", *methods, "--epochs", "20", "--out", out + "/half"],
]
for argv in steps:
    code = main(argv)
    if code not in (0, None):
        raise SystemExit(f"{argv[0]} exited {code}")
print(json.dumps({"tl": backend.TL_VERSION}))
"""


def _run_here_and_there(python: str, out: Path, resume: str = "-") -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [python, "-c", _SCRIPT, str(out), resume], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["tl"]


@pytest.mark.slow
def test_other_major_version_gives_the_same_run(tmp_path):
    """train -> analyze -> plot under both TransformerLens majors: bit-identical checkpoints and
    resume state (also with 2 layers, LayerNorm, perp-Grad and Grokfast), the same measures.csv to
    1e-6, the same figures; and a run started on one major resumes exactly on the other."""
    # scripts/setup.sh makes .venv-other-tl (the other major) next to .venv; the variable overrides it.
    default = Path(__file__).parents[1] / ".venv-other-tl" / "bin" / "python"
    other = os.environ.get("GROKINTERP_OTHER_TL_PYTHON") or (str(default) if default.exists() else None)
    if not other:
        pytest.skip("no .venv-other-tl and GROKINTERP_OTHER_TL_PYTHON is not set (a python with the other TL major)")
    if not Path(other).exists():
        pytest.skip(f"GROKINTERP_OTHER_TL_PYTHON={other} does not exist")
    there_v = _run_here_and_there(other, tmp_path / "there")
    here_v = _run_here_and_there(sys.executable, tmp_path / "here", str(tmp_path / "there" / "half"))
    assert here_v.split(".")[0] != there_v.split(".")[0], f"both environments have TransformerLens {here_v}"
    from safetensors.torch import load_file

    def same_tensors(a_dir: Path, b_dir: Path) -> None:
        files = [*sorted(a_dir.glob("checkpoints/*.safetensors")), a_dir / "state.safetensors"]
        assert len(files) > 2
        for f in files:
            a, b = load_file(f), load_file(b_dir / f.relative_to(a_dir))
            assert set(a) == set(b), f.name
            for k in a:  # weights, optimizer moments, RNG and Grokfast state, all in 3.x names and layout
                assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), f"{f.name}: {k}"

    same_tensors(tmp_path / "here" / "run", tmp_path / "there" / "run")
    same_tensors(tmp_path / "here" / "methods", tmp_path / "there" / "methods")  # 2 layers, LN, perp-Grad, Grokfast
    same_tensors(tmp_path / "there" / "methods", tmp_path / "there" / "half")  # resumed here from there's state
    ma = pd.read_csv(tmp_path / "here" / "run" / "measures.csv")
    mb = pd.read_csv(tmp_path / "there" / "run" / "measures.csv")
    assert list(ma.columns) == list(mb.columns) and len(ma) == len(mb)
    num = ma.select_dtypes("number").columns
    pd.testing.assert_frame_equal(ma[num], mb[num], rtol=0, atol=1e-6, check_exact=False)
    figures = sorted(f.name for f in (tmp_path / "here" / "figures").glob("*.html"))
    assert figures and figures == sorted(f.name for f in (tmp_path / "there" / "figures").glob("*.html"))

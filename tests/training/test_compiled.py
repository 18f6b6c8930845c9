"""The compiled step (``RunConfig.compile``, ``grokinterp.training.compiled``) computes what the
eager step computes: in float64 to rounding (Inductor may order float operations differently),
for a single run and for an ensemble; and the AdamW update compiles only where its float32 step
counter cannot be seen (float32 weights, constant lr)."""

from __future__ import annotations

import pytest
import torch

from grokinterp.config import RunConfig
from grokinterp.forward import evaluate, last_position_logits
from grokinterp.training import compiled as compiled_module
from grokinterp.training import ensemble as ensemble_module
from grokinterp.training.compiled import compile_evaluation, compile_mode, compile_options, compiles_update
from grokinterp.training.ensemble import train_ensemble
from grokinterp.training.trainer import Trainer

pytestmark = pytest.mark.slow

TINY = dict(p=11, d_model=16, n_heads=2, d_head=8, d_mlp=32, epochs=12, eval_every=4, checkpoint_every=100)


def _max_rel(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(
        float((x - y).abs().max() / x.abs().max().clamp_min(1e-30))
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
        if x.is_floating_point() and x.abs().max() > 0
    )


def test_compiled_single_run_equals_eager_in_float64():
    cfg = RunConfig(**TINY, dtype="float64", lr=3e-3, device="cpu")
    eager = Trainer(cfg).run(progress=False)
    torch._dynamo.utils.counters.clear()
    trainer = Trainer(cfg.replace(compile=True))
    assert trainer.compiled_parts == ("loss", "evaluation")  # float64: the update stays eager
    compiled = trainer.run(progress=False)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2  # it did compile
    assert _max_rel(eager.model, compiled.model) < 1e-11
    for r, s in zip(eager.metrics, compiled.metrics, strict=True):
        assert r["epoch"] == s["epoch"]
        for k in ("train_loss", "test_loss"):
            assert s[k] == pytest.approx(r[k], rel=1e-11)
        assert (r["train_acc"], r["test_acc"]) == (s["train_acc"], s["test_acc"])


def test_compiled_ensemble_equals_eager_ensemble_in_float64(monkeypatch):
    cfgs = [RunConfig(**TINY, dtype="float64", lr=3e-3, device="cpu", model_seed=s, data_seed=s) for s in (0, 1)]
    eager = train_ensemble(cfgs, [None, None], progress=False)
    compiled_fns = []
    real = ensemble_module.compile_step

    def spy(fn, device, **kw):
        compiled_fns.append(fn.__name__)
        return real(fn, device, **kw)

    monkeypatch.setattr(ensemble_module, "compile_step", spy)
    monkeypatch.setattr(compiled_module, "compile_step", spy)  # compile_evaluation's
    compiled = train_ensemble([c.replace(compile=True) for c in cfgs], [None, None], progress=False)
    # The evaluation's forward and the step's loss compile; float64 weights keep the update eager.
    # (The members' own Trainers make their compiled evaluations too; the ensemble does not call them.)
    assert set(compiled_fns) - {"_eval_logits"} == {"_logits", "_member_losses"}
    for e, c in zip(eager, compiled, strict=True):
        assert _max_rel(e.model, c.model) < 1e-11
        for r, s in zip(e.metrics, c.metrics, strict=True):
            assert (r["epoch"], r["train_acc"], r["test_acc"]) == (s["epoch"], s["train_acc"], s["test_acc"])
            for k in ("train_loss", "test_loss"):
                assert s[k] == pytest.approx(r[k], rel=1e-11)


def test_which_updates_compile_and_how():
    base = RunConfig(**TINY, compile=True, device="cpu")
    assert compiles_update(base)
    assert Trainer(base).compiled_parts == ("loss", "update", "evaluation")
    assert Trainer(base.replace(compile=False)).compiled_parts == ()
    assert not compiles_update(base.replace(dtype="float64"))  # its float32 step counter would show
    assert not compiles_update(base.replace(warmup_steps=5))  # a new lr every step would recompile
    assert not compiles_update(base.replace(compile=False))
    assert compile_mode(torch.device("cuda")) == "reduce-overhead" and compile_mode(torch.device("cpu")) == "default"


def test_plain_cpu_builds_compile_without_vector_code(monkeypatch):
    """ATEN_CPU_CAPABILITY=default leaves out the SIMD headers Inductor's vector code includes."""
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    assert compile_options(torch.device("cpu")) == {"options": {"cpp.simdlen": 1}}
    assert compile_options(torch.device("cuda")) == {"mode": "reduce-overhead"}
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert compile_options(torch.device("cpu")) == {"mode": "default"}
    with pytest.raises(ValueError, match="compile does not support dropout"):
        RunConfig(**TINY, compile=True, dropout=0.1)


@pytest.mark.parametrize("n_layers", [1, 2])
def test_compiled_graphs_take_only_the_models_tensors_and_the_batch(n_layers):
    """A graph input that is not a weight or the batch lives on the CPU even when the model is on
    CUDA: a host-to-device copy every step, which splits the CUDA graph. TransformerLens 3.x keeps
    the attention scale as a numpy float64, which Dynamo lifted into such an input."""
    cfg = RunConfig(**TINY, n_layers=n_layers, device="cpu")
    trainer = Trainer(cfg)
    inputs: list[torch.Tensor] = []

    def recording_backend(gm, example_inputs):
        inputs.extend(x for x in example_inputs if isinstance(x, torch.Tensor))
        return gm.forward

    torch._dynamo.reset()
    tokens, labels = trainer.train_tokens, trainer.train_labels
    loss = torch.compile(trainer.minibatch_loss, backend=recording_backend)(tokens, labels)
    torch.compile(lambda t: last_position_logits(trainer.model, t), backend=recording_backend)(trainer.tokens)
    torch._dynamo.reset()
    allowed = {t.data_ptr() for t in trainer.model.state_dict().values()}
    allowed |= {t.data_ptr() for t in (tokens, labels, trainer.tokens)}
    assert inputs and all(x.data_ptr() in allowed for x in inputs), [tuple(x.shape) for x in inputs]
    assert loss.item() == pytest.approx(trainer.minibatch_loss(tokens, labels).item(), rel=1e-6)


@pytest.mark.parametrize("members", [1, 3])
def test_compiled_cpu_gathers_call_index_select_and_index_add(members):
    """Compiled on a CPU, the fused forward's gathers and their backward stay the eager kernels
    (``grokinterp::gather_rows`` / ``scatter_rows``): no scatter for Inductor to generate. The
    compiled gradients equal eager's in float64, for a single model and stacked members."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    from grokinterp.forward import stacked_last_position_logits

    cfg = RunConfig(**TINY, dtype="float64", freeze_biases=False)
    trainers = [Trainer(cfg.replace(model_seed=s)) for s in range(members)]
    model = trainers[0].model
    tokens = trainers[0].train_tokens
    graphs: dict[str, set[str]] = {"forward": set(), "backward": set()}

    def recorder(kind):
        def record(gm, example_inputs):
            graphs[kind] |= {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}
            return make_boxed_func(gm.forward)

        return record

    if members == 1:
        params = [p for p in model.parameters() if p.requires_grad]

        def loss_fn(t):
            return last_position_logits(model, t).logsumexp(-1).sum()

        args = (tokens,)
    else:
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        states = [dict(t.model.named_parameters()) | dict(t.model.named_buffers()) for t in trainers]
        stacked = {n: torch.stack([s[n].detach() for s in states]) for n in states[0]}
        params = [stacked[n].requires_grad_() for n in names]

        def loss_fn(t):
            return stacked_last_position_logits(model, stacked, t).logsumexp(-1).sum()

        args = (tokens.expand(members, *tokens.shape).contiguous(),)
    torch._dynamo.reset()
    try:
        backend = aot_autograd(fw_compiler=recorder("forward"), bw_compiler=recorder("backward"))
        compiled = torch.compile(loss_fn, backend=backend)
        got = torch.autograd.grad(compiled(*args), params)
    finally:
        torch._dynamo.reset()
    want = torch.autograd.grad(loss_fn(*args), params)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    forward, backward = graphs["forward"], graphs["backward"]
    assert "grokinterp.gather_rows.default" in forward and "aten.index_select.default" not in forward
    assert "grokinterp.scatter_rows.default" in backward
    assert not any("index_add" in op or "scatter" in op.replace("scatter_rows", "") for op in backward), backward


def test_compiled_evaluation_keeps_every_chunk_under_cuda_graphs(monkeypatch):
    """Under CUDA graphs each replay writes its outputs into the same static buffers: a chunked
    evaluation that held the first chunk's logits while the second ran would concatenate the last
    chunk twice. Simulated on the CPU: a stand-in for the compiled graph returns one static buffer."""

    made = []

    def graph_like(fn, **kwargs):
        static: dict[tuple, torch.Tensor] = {}  # one graph, and its output buffer, per shape

        def replay(*args):
            out = fn(*args)
            buf = static.setdefault(tuple(out.shape), torch.empty_like(out))
            return buf.copy_(out)

        made.append((replay, kwargs.get("mode")))
        return replay

    monkeypatch.setattr(torch, "compile", graph_like)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    trainer = Trainer(RunConfig(**TINY, device="cpu"))
    model, dataset = trainer.model, trainer.dataset
    eager = evaluate(model, dataset, chunk=40)  # 121 rows: 4 chunks, three of one shape
    forward = compile_evaluation(lambda t: last_position_logits(model, t), torch.device("cuda"))
    assert made[-1][1] == "reduce-overhead"
    assert evaluate(model, dataset, chunk=40, forward=forward) == eager
    # Without graphs nothing is copied: the compiled function comes back as it is.
    assert compile_evaluation(len, torch.device("cpu")) is made[-1][0] and made[-1][1] == "default"

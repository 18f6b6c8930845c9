"""Import/export of the TransformerLens Grokking demo's .pth file."""

from __future__ import annotations

import copy
import json
import math
import os

import pytest
import torch

from grokinterp.backend import TL_MAJOR

if TL_MAJOR >= 4:  # the demo files these tests write pickle 3.x's HookedTransformerConfig
    pytest.skip(
        "writes TL-demo files with TransformerLens 3.x classes; 4.x import needs a shipped fixture file",
        allow_module_level=True,
    )
from transformer_lens import HookedTransformer, HookedTransformerConfig

from grokinterp.cli import main
from grokinterp.config import RunConfig
from grokinterp.forward import evaluate
from grokinterp.io import rundir
from grokinterp.io.interop import export_tl_demo, import_tl_demo
from grokinterp.io.runs import load_run
from grokinterp.io.tl_demo import safe_globals
from grokinterp.training.trainer import train

P = 23
EPOCHS = 35
CHECKPOINT_EVERY = 15  # demo checkpoints after 15 and 30 steps; the final model is after 35


def _demo_training(path, *, epochs=EPOCHS, checkpoint_every=CHECKPOINT_EVERY, frac_train=0.3):
    """Train and save exactly as demos/Grokking_Demo.ipynb does, at p=23 and a few epochs."""
    p = P
    with torch.random.fork_rng(devices=[]):
        a_vector = torch.arange(p).repeat_interleave(p)
        b_vector = torch.arange(p).repeat(p)
        equals_vector = torch.full((p * p,), p)
        dataset = torch.stack([a_vector, b_vector, equals_vector], dim=1)
        labels = (dataset[:, 0] + dataset[:, 1]) % p
        torch.manual_seed(598)
        indices = torch.randperm(p * p)
        cutoff = int(p * p * frac_train)
        train_indices, test_indices = indices[:cutoff], indices[cutoff:]
        train_data, train_labels = dataset[train_indices], labels[train_indices]
        test_data, test_labels = dataset[test_indices], labels[test_indices]
        cfg = HookedTransformerConfig(
            n_layers=1, n_heads=4, d_model=32, d_head=8, d_mlp=64, act_fn="relu", normalization_type=None,
            d_vocab=p + 1, d_vocab_out=p, n_ctx=3, init_weights=True, device="cpu", seed=999,
        )  # fmt: skip
        model = HookedTransformer(cfg)
        for name, param in model.named_parameters():
            if "b_" in name:
                param.requires_grad = False
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1.0, betas=(0.9, 0.98))

        def loss_fn(logits, labels):
            logits = logits[:, -1].to(torch.float64)
            return -logits.log_softmax(dim=-1).gather(dim=-1, index=labels[:, None])[:, 0].mean()

        train_losses, test_losses, model_checkpoints, checkpoint_epochs = [], [], [], []
        for epoch in range(epochs):
            train_loss = loss_fn(model(train_data), train_labels)
            train_loss.backward()
            train_losses.append(train_loss.item())
            optimizer.step()
            optimizer.zero_grad()
            with torch.inference_mode():
                test_losses.append(loss_fn(model(test_data), test_labels).item())
            if ((epoch + 1) % checkpoint_every) == 0:
                checkpoint_epochs.append(epoch)
                model_checkpoints.append(copy.deepcopy(model.state_dict()))
        data = {
            "model": model.state_dict(),
            "config": model.cfg,
            "checkpoints": model_checkpoints,
            "checkpoint_epochs": checkpoint_epochs,
            "test_losses": test_losses,
            "train_losses": train_losses,
            "train_indices": train_indices,
            "test_indices": test_indices,
        }
        torch.save(data, path)
    return data


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "grokking_demo.pth"
    return path, _demo_training(path)


def _params_equal(state_a, state_b) -> bool:
    keys = [k for k in state_a if not k.endswith(("mask", "IGNORE"))]
    return all(torch.equal(state_a[k], state_b[k]) for k in keys)


def _one_error_line(capsys) -> str:
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("grokinterp: error:"), err
    assert "Traceback" not in err
    return lines[0]


def test_import_refuses_without_trust(demo, tmp_path, capsys):
    path, _ = demo
    with pytest.raises(ValueError, match="pickle") as e:
        import_tl_demo(path, tmp_path / "run")
    assert "--trust" in str(e.value) and "\n" not in str(e.value)
    assert main(["import", str(path), "--out", str(tmp_path / "run")]) == 2
    assert "arbitrary code" in _one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_import_reproduces_weights_split_and_losses(demo, tmp_path):
    path, data = demo
    out = import_tl_demo(path, tmp_path / "run", trust=True)
    assert sorted(os.listdir(tmp_path)) == ["run"]  # no temporary folder left behind
    run = load_run(out)
    cfg = run.config
    assert (cfg.p, cfg.layout, cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp) == (P, "a b =", 32, 4, 8, 64)
    assert cfg.model_seed == 999 and cfg.normalization_type == "none" and cfg.epochs == EPOCHS
    assert cfg.n_train == len(data["train_indices"])
    doc = json.loads((out / "config.json").read_text())
    assert doc["imported_from"]["loaded_with"] == "torch.load(weights_only=True)"

    # demo checkpoint_epochs are loop indices (14, 29): the weights after 15 and 30 steps
    assert run.checkpoint_epochs == [15, 30, EPOCHS]
    for epoch, state in zip([15, 30], data["checkpoints"], strict=True):
        assert _params_equal(state, run.model(epoch).state_dict())
    assert _params_equal(data["model"], run.state_dict(EPOCHS))
    assert torch.equal(run.dataset.train_indices, data["train_indices"])
    assert torch.equal(run.dataset.test_indices, data["test_indices"])

    rows = {r["epoch"]: r for r in run.metrics_rows}
    assert sorted(rows) == [10, 15, 20, 30, EPOCHS]
    for e in (10, 15, 20, 30):
        assert rows[e]["train_loss"] == data["train_losses"][e]  # measured before step e
        assert rows[e]["test_loss"] == data["test_losses"][e - 1]  # measured after step e
    for e in (15, 30, EPOCHS):  # accuracies where the weights are known
        assert 0.0 <= rows[e]["test_acc"] <= 1.0 and 0.0 <= rows[e]["train_acc"] <= 1.0
        measured = evaluate(run.model(e), run.dataset)
        assert math.isclose(measured["train_loss"], rows[e]["train_loss"], rel_tol=1e-4)
        assert math.isclose(measured["test_loss"], rows[e]["test_loss"], rel_tol=1e-4)
    assert "test_acc" not in rows[10]
    assert run.summary["final_epoch"] == EPOCHS and run.summary["final"]["epoch"] == EPOCHS
    assert run.summary["status"] == "finished" and run.summary["finished"] and run.summary["wall_clock_s"] is None
    assert run.summary["imported_from"] == str(path.resolve())


def test_round_trip_import_export_import(demo, tmp_path):
    path, data = demo
    run1 = load_run(import_tl_demo(path, tmp_path / "run1", trust=True))
    exported = export_tl_demo(run1.path, tmp_path / "out" / "exported.pth")
    assert sorted(os.listdir(tmp_path / "out")) == ["exported.pth"]

    # the exported file is the demo's layout: it loads weights-only and into a fresh HookedTransformer
    with torch.serialization.safe_globals(safe_globals()):
        loaded = torch.load(exported, map_location="cpu", weights_only=True)
    assert loaded["checkpoint_epochs"] == [14, 29, EPOCHS - 1]
    model = HookedTransformer(loaded["config"])
    model.load_state_dict(loaded["model"])
    assert _params_equal(data["model"], model.state_dict())
    assert torch.equal(loaded["train_indices"], data["train_indices"])

    run2 = load_run(import_tl_demo(exported, tmp_path / "run2", trust=True))
    assert run2.config == run1.config
    assert run2.checkpoint_epochs == run1.checkpoint_epochs
    for epoch in run1.checkpoint_epochs:
        assert _params_equal(run1.state_dict(epoch), run2.state_dict(epoch))
    assert torch.equal(run2.dataset.train_indices, run1.dataset.train_indices)
    assert torch.equal(run2.dataset.test_indices, run1.dataset.test_indices)
    assert run2.metrics_rows == run1.metrics_rows


def test_trained_run_round_trips_with_accuracies(tmp_path):
    cfg = RunConfig(p=P, d_model=32, d_head=8, d_mlp=64, epochs=20, eval_every=5, checkpoint_every=10, device="cpu")
    train(cfg, tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    export_tl_demo(run.path, tmp_path / "run.pth")
    back = load_run(import_tl_demo(tmp_path / "run.pth", tmp_path / "back", trust=True))
    assert back.config == run.config and back.checkpoint_epochs == [0, 10, 20]
    keys = ("epoch", "train_loss", "test_loss", "train_acc", "test_acc")
    assert [{k: r[k] for k in keys} for r in back.metrics_rows] == [{k: r[k] for k in keys} for r in run.metrics_rows]
    for epoch in run.checkpoint_epochs:
        assert _params_equal(run.state_dict(epoch), back.state_dict(epoch))


def test_export_refuses_to_overwrite_without_force(tmp_path):
    cfg = RunConfig(p=P, d_model=32, d_head=8, d_mlp=64, epochs=10, eval_every=5, checkpoint_every=10, device="cpu")
    train(cfg, tmp_path / "run", progress=False)
    out = tmp_path / "run.pth"
    out.write_bytes(b"keep me")
    with pytest.raises(ValueError, match="--force"):
        export_tl_demo(tmp_path / "run", out)
    assert out.read_bytes() == b"keep me"
    export_tl_demo(tmp_path / "run", out, force=True)
    assert load_run(import_tl_demo(out, tmp_path / "back", trust=True)).checkpoint_epochs == [0, 10]
    assert out.stat().st_mode & 0o044  # readable by others like any plain file, not mkstemp's 0600


def test_falls_back_to_full_unpickle_when_trusted(demo, tmp_path, caplog):
    """A file holding a type weights-only loading refuses still imports, with --trust, and says so."""
    import types

    path, data = demo
    odd = _variant(data, tmp_path / "odd.pth", config=types.SimpleNamespace(**vars(data["config"])))
    run = load_run(import_tl_demo(odd, tmp_path / "run", trust=True))
    assert "types.SimpleNamespace" in caplog.text and "full pickle" in caplog.text
    assert json.loads((run.path / "config.json").read_text())["imported_from"]["loaded_with"] == "full pickle (trusted)"
    assert _params_equal(data["model"], run.state_dict())


def test_old_transformer_lens_module_path_loads_weights_only(demo, tmp_path, monkeypatch):
    """TransformerLens < 3 pickled the config as transformer_lens.HookedTransformerConfig.HookedTransformerConfig."""
    import sys
    import types

    path, data = demo
    old_name = "transformer_lens.HookedTransformerConfig"
    module = types.ModuleType(old_name)
    module.HookedTransformerConfig = HookedTransformerConfig
    with monkeypatch.context() as m:
        m.setitem(sys.modules, old_name, module)
        m.setattr(HookedTransformerConfig, "__module__", old_name)
        _variant(data, tmp_path / "old.pth")
    assert f"{old_name}.HookedTransformerConfig" in torch.serialization.get_unsafe_globals_in_checkpoint(
        tmp_path / "old.pth"
    )
    run = load_run(import_tl_demo(tmp_path / "old.pth", tmp_path / "run", trust=True))
    assert json.loads((run.path / "config.json").read_text())["imported_from"]["loaded_with"].startswith("torch.load")


def _variant(data, path, **changes):
    bad = {**data, **changes}
    torch.save(bad, path)
    return path


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("random", "not a readable PyTorch .pth file"),
        ("truncated", "not a readable PyTorch .pth file"),
        ("empty", "empty file"),
        ("missing", "no such file"),
        ("foo", "missing key(s) model, config"),
        ("shape", "has shape (24, 16), expected (24, 32)"),
        ("epochs", "2 checkpoints but 1 checkpoint_epochs"),
        ("split", "must together be a permutation"),
        ("layout", "unsupported config"),
    ],
)
def test_bad_files_give_one_line(kind, needle, demo, tmp_path, capsys):
    path, data = demo
    bad = tmp_path / "bad.pth"
    if kind == "random":
        bad.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    elif kind == "truncated":
        raw = path.read_bytes()
        bad.write_bytes(raw[: len(raw) // 2])
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "missing":
        bad = tmp_path / "nope.pth"
    elif kind == "foo":
        torch.save({"foo": 1}, bad)
    elif kind == "shape":
        ckpts = [dict(data["checkpoints"][0]), data["checkpoints"][1]]
        ckpts[0]["embed.W_E"] = torch.zeros(P + 1, 16)
        _variant(data, bad, checkpoints=ckpts)
    elif kind == "epochs":
        _variant(data, bad, checkpoint_epochs=[14])
    elif kind == "split":
        test_indices = data["test_indices"].clone()
        test_indices[0] = data["train_indices"][0]  # one row in both splits, another in neither
        _variant(data, bad, test_indices=test_indices)
    elif kind == "layout":
        cfg = copy.copy(data["config"])
        cfg.n_ctx = 5
        _variant(data, bad, config=cfg)
    out = tmp_path / "run"
    with pytest.raises(ValueError) as e:
        import_tl_demo(bad, out, trust=True)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert not out.exists()
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no half-written folder
    assert main(["import", str(bad), "--out", str(out), "--trust"]) == 2
    assert needle in _one_error_line(capsys)
    assert not out.exists()


def test_cli_import_force_and_analyze(demo, tmp_path, capsys):
    path, _ = demo
    out = tmp_path / "run"
    assert main(["import", str(path), "--out", str(out), "--trust"]) == 0
    assert "imported" in capsys.readouterr().out
    before = (out / "metrics.jsonl").read_text()
    assert main(["import", str(path), "--out", str(out), "--trust"]) == 2
    assert "--force" in _one_error_line(capsys)
    # a failed forced import leaves the existing run as it was
    bad = tmp_path / "bad.pth"
    torch.save({"foo": 1}, bad)
    assert main(["import", str(bad), "--out", str(out), "--trust", "--force"]) == 2
    _one_error_line(capsys)
    assert (out / "metrics.jsonl").read_text() == before
    assert main(["import", str(path), "--out", str(out), "--trust", "--force"]) == 0
    assert sorted(f for f in os.listdir(tmp_path) if f.startswith(".")) == []
    capsys.readouterr()
    assert main(["analyze", str(out), "--no-progress"]) == 0
    assert "checkpoints analysed" in capsys.readouterr().out
    assert json.loads((out / "analysis.json").read_text())["n_checkpoints"] == 3
    assert main(["export", str(out), "--out", str(tmp_path / "x.pth")]) == 0
    assert (tmp_path / "x.pth").is_file()


def test_export_refuses_mlp_runs(tmp_path):
    rundir.write_run_config(tmp_path / "mlp", RunConfig(p=P, arch="mlp"))
    with pytest.raises(ValueError, match="only transformer runs"):
        export_tl_demo(tmp_path / "mlp", tmp_path / "mlp.pth")
    assert not (tmp_path / "mlp.pth").exists()

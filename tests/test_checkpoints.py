import pytest
import torch

from grokinterp.config import RunConfig
from grokinterp.io import checkpoints as ckpt
from grokinterp.training.trainer import Trainer


def test_checkpoint_is_self_describing(tmp_path):
    cfg = RunConfig(p=23, epochs=20, checkpoint_every=10)
    res = Trainer(cfg, tmp_path / "r").run(progress=False)
    assert ckpt.checkpoint_epochs(tmp_path / "r") == [0, 10, 20]
    path = tmp_path / "r" / "checkpoints" / "epoch_000020.safetensors"
    assert path.is_file()
    c = ckpt.load_checkpoint(path)  # no run directory needed: config is in the file
    assert c.config == cfg and c.epoch == 20
    model = c.model()
    tokens = torch.tensor([[1, 2, 23]])
    torch.testing.assert_close(model(tokens), res.model(tokens))


def test_corrupt_checkpoint_gives_clear_error(tmp_path):
    bad = tmp_path / "epoch_000001.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ckpt.RunDirError, match="not a readable safetensors"):
        ckpt.load_checkpoint(bad)
    with pytest.raises(ckpt.RunDirError, match="no such file"):
        ckpt.load_checkpoint(tmp_path / "missing.safetensors")


def test_atomic_write_leaves_no_temp_files(tmp_path):
    ckpt.atomic_write_text(tmp_path / "a.txt", "x")
    ckpt.atomic_write_text(tmp_path / "a.txt", "y")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert (tmp_path / "a.txt").read_text() == "y"

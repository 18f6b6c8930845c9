import pytest
import torch

from grokinterp.config import RunConfig
from grokinterp.errors import RunDirError
from grokinterp.io import rundir
from grokinterp.io.checkpoints import load_checkpoint
from grokinterp.io.files import atomic_write_text
from grokinterp.training.trainer import Trainer


def test_checkpoint_is_self_describing(tmp_path):
    cfg = RunConfig(p=23, epochs=20, checkpoint_every=10)
    res = Trainer(cfg, tmp_path / "r").run(progress=False)
    assert rundir.checkpoint_epochs(tmp_path / "r") == [0, 10, 20]
    path = tmp_path / "r" / "checkpoints" / "epoch_000020.safetensors"
    assert path.is_file()
    c = load_checkpoint(path)  # no run directory needed: config is in the file
    assert c.config == cfg and c.epoch == 20
    model = c.model()
    tokens = torch.tensor([[1, 2, 23]])
    torch.testing.assert_close(model(tokens), res.model(tokens))


def test_corrupt_checkpoint_gives_clear_error(tmp_path):
    bad = tmp_path / "epoch_000001.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(RunDirError, match="not a readable safetensors"):
        load_checkpoint(bad)
    with pytest.raises(RunDirError, match="no such file"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "x")
    atomic_write_text(tmp_path / "a.txt", "y")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert (tmp_path / "a.txt").read_text() == "y"

import io

from grokinterp.progress import progress_enabled


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bar_off_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert progress_enabled(True) is False


def test_bar_on_a_terminal_unless_turned_off(monkeypatch):
    monkeypatch.setattr("sys.stderr", _Terminal())
    assert progress_enabled(True) is True
    assert progress_enabled(False) is False


def test_analyze_writes_no_bar_to_a_log(tmp_path):
    # `grokinterp analyze RUN > log 2>&1` on the shipped run's first checkpoints: no tqdm line.
    import shutil
    import subprocess
    import sys

    run = tmp_path / "run"
    shutil.copytree("checkpoints/nanda-p113", run)
    for f in ("measures.csv", "analysis.json"):
        (run / f).unlink()
    for ckpt in sorted((run / "checkpoints").iterdir())[3:]:
        ckpt.unlink()
    out = subprocess.run(
        [sys.executable, "-m", "grokinterp.cli", "analyze", str(run)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "\r" not in out.stderr and "ckpt/s" not in out.stderr, out.stderr
    assert (run / "measures.csv").is_file()

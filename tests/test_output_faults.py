"""Issue 17, outputs, figures and messages: every bad ``--out``, flag value or input file is one
line naming what is wrong, and nothing is overwritten or left half-written (faults 2, 5, 15, 21,
22, 23, 24, 25, 27, 28, 29, 32, and figures written into a run directory)."""

from __future__ import annotations

import math
import os
import shutil

import pytest

from grokinterp.backend import TL_MAJOR
from grokinterp.cli import main

SMALL = ["--preset", "nanda-p113-fast", "--p", "23", "--d-model", "32", "--d-mlp", "64", "--n-heads", "2",
         "--d-head", "16", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A small analysed run (60 epochs)."""
    out = tmp_path_factory.mktemp("out") / "run"
    assert main(["train", *SMALL, "--epochs", "60", "--out", str(out)]) == 0
    assert main(["analyze", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    """A run that diverged at its first evaluation (null losses in metrics.jsonl)."""
    out = tmp_path_factory.mktemp("div") / "run"
    assert main(["train", *SMALL, "--epochs", "60", "--lr", "1e4", "--out", str(out)]) == 3
    return out


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_report_refuses_existing_file_and_run_files(run, tmp_path, capsys):
    """Fault 2: an existing --out needs --force; a run's own file is refused even with --force."""
    thesis = tmp_path / "thesis.tex"
    thesis.write_text("my thesis")
    assert main(["report", str(run), "--out", str(thesis), "--no-progress"]) == 2
    assert "--force" in _err(capsys)
    assert thesis.read_text() == "my thesis"
    config = (run / "config.json").read_bytes()
    for target in (run / "config.json", run / "checkpoints" / "epoch_000000.safetensors"):
        assert main(["report", str(run), "--out", str(target), "--force", "--no-progress"]) == 2
        assert "file of the run" in _err(capsys)
    assert (run / "config.json").read_bytes() == config


def test_figures_never_half_written_under_final_names(tmp_path, monkeypatch):
    """Fault 5: a figure is rendered to a temporary name and renamed last; an interrupt leaves
    neither an empty file under a final name nor the temporary files."""
    import plotly.graph_objects as go

    from grokinterp.viz import export

    calls = []

    def torn_write(self, path, **kw):
        calls.append(path)
        open(path, "wb").close()  # the renderer opened the file, then was killed
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(go.Figure, "write_html", torn_write)
    figs = {"a": go.Figure(), "b": go.Figure(), "c": go.Figure()}
    with pytest.raises(KeyboardInterrupt):
        export.export_figures(figs, tmp_path / "figs", "html")
    assert sorted(os.listdir(tmp_path / "figs")) == []


@pytest.mark.parametrize("value", [",", "3,3", "0", "-2"])
def test_analyze_key_freqs_checked_at_parse_time(run, value, capsys):
    """Fault 15: an empty, repeated or non-positive --key-freqs fails naming the flag, and
    analysis.json is untouched."""
    before = (run / "analysis.json").read_bytes()
    assert main(["analyze", str(run), f"--key-freqs={value}", "--no-progress"]) == 2
    assert "--key-freqs" in _err(capsys)
    assert (run / "analysis.json").read_bytes() == before


def test_analyze_key_freqs_out_of_range_names_flag(run, capsys):
    """Fault 15: a frequency beyond the task's range names the flag; nothing written."""
    before = (run / "analysis.json").read_bytes()
    assert main(["analyze", str(run), "--key-freqs", "50", "--no-progress"]) == 2
    assert "--key-freqs" in _err(capsys)
    assert (run / "analysis.json").read_bytes() == before


@pytest.mark.skipif(TL_MAJOR >= 4, reason="exporting a TL-demo .pth needs TransformerLens 3.x")
def test_export_diverged_run(diverged, tmp_path, capsys):
    """Fault 21: a diverged run (null losses) exports up to its last good checkpoint."""
    out = tmp_path / "div.pth"
    assert main(["export", str(diverged), "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    assert "last good checkpoint" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "why"),
    [("[]", "a JSON list"), ('{"run": "a\x01"}', "not JSON"), ('{"phases": [], "layers": {}}', "unexpected")],
)
def test_bad_analysis_json_names_the_file(tmp_path, text, why):
    """Faults 22 and 25: an analysis.json of another shape, or corrupt, is one error naming the file
    and the fix."""
    from grokinterp.analysis.run_analysis import load_analysis
    from grokinterp.errors import RunDirError

    (tmp_path / "analysis.json").write_text(text)
    with pytest.raises(RunDirError, match=r"analysis\.json is not a grokinterp analysis") as e:
        load_analysis(tmp_path)
    assert why in str(e.value) and "grokinterp analyze" in str(e.value)


def test_plot_with_list_analysis_is_one_line(run, tmp_path, capsys):
    """Fault 22 through the CLI: ``echo '[]' > RUN/analysis.json; grokinterp plot RUN``."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "analysis.json").write_text("[]\n")
    assert main(["plot", str(copy), "--out", str(tmp_path / "figs"), "--format", "html"]) == 2
    assert "analysis.json is not a grokinterp analysis" in _err(capsys)


@pytest.mark.parametrize(
    ("flag", "value"), [("--llc-epsilon", "1e3"), ("--llc-seed", "-1"), ("--llc-chains", "0")]
)  # fmt: skip
def test_llc_flags_checked_at_parse_time(run, flag, value, capsys, monkeypatch):
    """Faults 23 and 24: LLCConfig's limits are checked where the flag is parsed, before any work."""
    import grokinterp.analysis.run_analysis as ra

    monkeypatch.setattr(ra, "analyze_run", lambda *a, **k: pytest.fail("analysis started"))
    assert main(["analyze", str(run), "--llc", f"{flag}={value}", "--no-progress"]) == 2
    assert flag in _err(capsys)


def test_llc_diverged_chains_write_nothing(run, tmp_path, monkeypatch):
    """Fault 23: when every chain diverges, the LLC run says so and writes nothing."""
    from grokinterp.analysis import llc

    def diverged_estimate(model, dataset, cfg):
        nan = math.nan
        return llc.LLCEstimate(nan, nan, [nan], nan, 1.0, 1.0, 10, 10, [[nan]], [[nan]], [[nan]], {})

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    monkeypatch.setattr(llc, "estimate_llc", diverged_estimate)
    with pytest.raises(ValueError, match="diverged"):
        llc.llc_over_run(copy, llc.LLCConfig(), progress=False)
    assert not (copy / "llc").exists() or not any((copy / "llc").iterdir())


def test_os_error_is_one_line_with_its_file(monkeypatch, capsys):
    """Fault 27: an OSError prints its reason and its file once, no double colon."""
    from grokinterp.cli import commands

    def full(args):
        raise OSError(28, "No space left on device", "/runs/x/metrics.jsonl")

    monkeypatch.setattr(commands, "cmd_presets", full)
    assert main(["presets"]) == 2
    assert _err(capsys) == "grokinterp: error: No space left on device: /runs/x/metrics.jsonl"


def test_out_paths_say_what_is_wrong(run, tmp_path, capsys):
    """Fault 28: --out that is a file (plot) or lies under a file (export) says so."""
    afile = tmp_path / "small.pth"
    afile.write_bytes(b"x")
    assert main(["plot", str(run), "--out", str(afile), "--format", "html"]) == 2
    assert "is a file, not a folder" in _err(capsys)
    assert main(["export", str(run), "--out", str(afile / "x.pth")]) == 2
    assert "is a file, not a folder" in _err(capsys)
    assert afile.read_bytes() == b"x"


def test_import_trust_names_the_refused_global(tmp_path, capsys):
    """Fault 29: --trust never runs a blocked callable; the error names it and why."""
    import torch

    class Calls:
        def __reduce__(self):
            return (os.getcwd, ())

    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "x": Calls()}, path)
    assert main(["import", str(path), "--out", str(tmp_path / "imp"), "--trust"]) == 2
    err = _err(capsys)
    assert "getcwd" in err and "--trust allows only" in err
    assert not (tmp_path / "imp").exists()


def test_plot_width_needs_paper_style(run, tmp_path, capsys):
    """Fault 32: --width without --style paper is refused, not ignored."""
    assert main(["plot", str(run), "--out", str(tmp_path / "f"), "--width", "double"]) == 2
    assert "--style paper" in _err(capsys)
    assert not (tmp_path / "f").exists()


def test_plot_refuses_a_run_directory_as_out(run, capsys):
    """Extra fault: ``plot RUN --out RUN`` would put figures among the run's files (then ``train
    --force`` refuses the run as holding foreign files); refused before any work."""
    before = sorted(os.listdir(run))
    assert main(["plot", str(run), "--out", str(run), "--format", "html"]) == 2
    assert "run directory" in _err(capsys)
    assert sorted(os.listdir(run)) == before

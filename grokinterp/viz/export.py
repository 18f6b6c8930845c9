"""Writing figures to files: static export through kaleido, HTML otherwise, and captions.md.

Static export (png, pdf, svg) goes through kaleido 1.x, which drives a Chromium: all figures of one
``export_figures`` call (``write_all_figures`` included) are rendered in ONE browser session.
MathJax, for the LaTeX labels, is only ever loaded from a local copy (``$GROKINTERP_MATHJAX`` or
``.mathjax/node_modules/mathjax/es5/tex-svg.js`` in the repository, installed by
``scripts/setup.sh``); without one, labels stay plain text. Without a Chromium the figures are
written as self-contained HTML instead (plotly.js next to them, no network needed).

>>> export_figures({"loss": plot_loss(run)}, "figures", "pdf")
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from grokinterp.viz.style import HEIGHT, WIDTH, figure_caption

__all__ = ["STATIC_FORMATS", "export_figures", "find_browser", "find_mathjax", "write_captions"]

log = logging.getLogger(__name__)


def find_browser() -> str | None:
    """The Chromium kaleido would use (``$BROWSER_PATH``, kaleido's own download, or chromium /
    chrome on PATH), or None."""
    try:
        from choreographer.browsers.chromium import Chromium

        path = Chromium.find_browser(skip_local=False)
        if path:
            return str(path)
    except Exception:  # best effort: fall back to PATH
        pass
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        if path := shutil.which(name):
            return path
    return None


def find_mathjax() -> Path | None:
    """A local MathJax 3 ``tex-svg.js``: ``$GROKINTERP_MATHJAX`` or the repository's ``.mathjax``
    (never a CDN), or None."""
    candidates = []
    if env := os.environ.get("GROKINTERP_MATHJAX"):
        candidates.append(Path(env))
    root = Path(__file__).resolve().parents[2]  # the repository (grokinterp/viz/export.py)
    candidates += [
        root / ".mathjax/node_modules/mathjax/es5/tex-svg.js",
        Path.cwd() / ".mathjax/node_modules/mathjax/es5/tex-svg.js",
    ]
    return next((c.resolve() for c in candidates if c.is_file()), None)


#: The static formats, rendered by kaleido (Chromium); the other format is "html".
STATIC_FORMATS = ("png", "pdf", "svg")
_NO_BROWSER = (
    "no Chromium found for static figure export (kaleido 1.x needs one); writing HTML instead. "
    "Install it with: apt-get install -y chromium"
)


@contextlib.contextmanager
def _quiet_kaleido():
    """kaleido and choreographer log every tab at INFO (and Chromium's stderr at DEBUG): keep them
    to warnings unless this module's logger (grokinterp.viz.export) is at DEBUG."""
    names = ("kaleido", "choreographer", "browser_proc")
    saved = {n: logging.getLogger(n).level for n in names}
    if not log.isEnabledFor(logging.DEBUG):
        for n in names:
            logging.getLogger(n).setLevel(logging.WARNING)
        tmp = logging.getLogger("choreographer.utils._tmpfile")  # also logs its cleanup at exit
        if tmp.level == logging.NOTSET:
            tmp.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def export_figures(
    figs: Mapping[str, go.Figure],
    out_dir: str | Path,
    fmt: str = "png",
    *,
    scale: float = 1.0,
    browser: str | None = None,
) -> list[Path]:
    """Write ``{name: figure}`` to ``out_dir/name.fmt``. Static formats are rendered in one kaleido
    (Chromium) session for the whole batch, with the local MathJax if there is one; ``html``, or
    any format when no Chromium is found (one warning), writes HTML with plotly.js saved once next
    to the files (``include_plotlyjs="directory"``: works offline)."""
    fmt = fmt.lower()
    if fmt not in (*STATIC_FORMATS, "html"):
        raise ValueError(f"format must be one of png, pdf, svg, html (got {fmt!r})")
    from grokinterp.io.rundir import check_out_path

    out = check_out_path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not figs:
        return []
    if fmt in STATIC_FORMATS:
        browser = browser or find_browser()
        if browser is None:
            log.warning(_NO_BROWSER)
            fmt = "html"
    paths = [out / f"{name}.{fmt}" for name in figs]
    with _renamed_last(paths) as tmps:
        if fmt == "html":
            for fig, tmp in zip(figs.values(), tmps, strict=True):
                fig.write_html(tmp, include_plotlyjs="directory", include_mathjax=False, full_html=True)
        else:
            _render_static(figs, tmps, fmt, scale, browser)
    return paths


@contextlib.contextmanager
def _renamed_last(paths: Sequence[Path]):
    """Yield a temporary name beside each of ``paths`` (same suffix, so kaleido keeps the format);
    when the block succeeds, rename each over its path; on any failure or interrupt remove them:
    a figure is never seen half-written under its final name."""
    token = f"{os.getpid()}-{time.monotonic_ns()}"
    tmps = [p.with_name(f".{p.stem}.{token}.tmp{p.suffix}") for p in paths]
    try:
        yield tmps
        for tmp, path in zip(tmps, paths, strict=True):
            if not tmp.is_file() or tmp.stat().st_size == 0:
                raise OSError(f"figure export wrote nothing for {path}")
        for tmp, path in zip(tmps, paths, strict=True):
            os.replace(tmp, path)
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)


# kaleido prints a PDF with Chromium's ``Page.printToPDF`` and margins of 0.1 in: the figure is
# shrunk to the printable width (3-6 %) and shifted by the margin, and its bottom ~12 px fall off
# the page (the paper legends were cut in half). A CSS ``@page`` margin overrides those margins.
_PAGE_STYLE = "<style>@page { margin: 0 }</style>"


def _page_generator(mathjax: Path | None):
    """kaleido's page with the local MathJax (or none) and no print margins (``_PAGE_STYLE``): a
    PDF page is the figure, at 0.75 pt per px, nothing shrunk or cut."""
    import kaleido

    page = kaleido.PageGenerator(mathjax=mathjax.as_uri() if mathjax else False)
    if "<head>" not in page.header:
        raise RuntimeError("kaleido's page has no <head>: cannot set the PDF page margins")
    page.header = page.header.replace("<head>", f"<head>\n{_PAGE_STYLE}", 1)
    return page


def _render_static(figs: Mapping[str, go.Figure], paths: Sequence[Path], fmt: str, scale: float, browser: str) -> None:
    """Render ``figs`` to ``paths`` as ``fmt`` in one kaleido (Chromium) session."""

    import kaleido

    mathjax = find_mathjax()
    specs = [
        {
            "fig": fig,
            "path": path,
            "opts": {
                "format": fmt,
                "width": fig.layout.width or WIDTH,
                "height": fig.layout.height or HEIGHT,
                "scale": scale,
            },
        }
        for fig, path in zip(figs.values(), paths, strict=True)
    ]
    kopts: dict[str, Any] = {"page_generator": _page_generator(mathjax), "path": browser}
    start = time.perf_counter()
    with _quiet_kaleido():
        kaleido.write_fig_from_object_sync(specs, kopts=kopts, cancel_on_error=True)
    log.debug("rendered %d %s figures in %.1f s", len(specs), fmt, time.perf_counter() - start)


def write_captions(
    figs: Mapping[str, go.Figure], paths: Sequence[Path], out_dir: str | Path, skipped: Mapping[str, str] | None = None
) -> Path:
    """Write ``out_dir/captions.md``: one entry per figure file (its name and caption), then the
    figures left out and why (atomically)."""
    from grokinterp.io.files import atomic_write_text

    lines = ["# Figure captions", ""]
    for path, fig in zip(paths, figs.values(), strict=True):
        lines += [f"## {Path(path).name}", "", figure_caption(fig), ""]
    if skipped:
        lines += ["## Not drawn", ""]
        lines += [f"- `{name}`: {reason}." for name, reason in skipped.items()]
        lines.append("")
    out = Path(out_dir) / "captions.md"
    atomic_write_text(out, "\n".join(lines))
    return out

#!/usr/bin/env bash
# Set up grokinterp on a fresh machine: a venv with the package and its dev tools, Debian's
# Chromium for static figure export (kaleido 1.x), and a local MathJax for LaTeX labels.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: no chromium found; figures fall back to HTML (install it with: apt-get install -y chromium)"
  fi
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
# torch>=2.6,<2.14 in pyproject lets pip take the CPU wheel on disk rather than a CUDA build.
.venv/bin/pip install -q -e '.[dev]'

if command -v npm >/dev/null 2>&1 && [ ! -f .mathjax/node_modules/mathjax/es5/tex-svg.js ]; then
  mkdir -p .mathjax
  (cd .mathjax && npm install --silent --no-audit --no-fund mathjax@3 >/dev/null) \
    || echo "note: MathJax not installed; LaTeX labels render as plain text"
fi
# The notebooks' runtime (nbclient + ipykernel, from the 'notebooks' extra that 'dev' includes): the test
# suite and scripts/execute_notebooks.py run the notebooks with it.
.venv/bin/python -c "import grokinterp, torch, transformer_lens, nbclient, ipykernel, jupytext; print('grokinterp ready: torch', torch.__version__, '| notebooks: nbclient', nbclient.__version__, 'ipykernel', ipykernel.__version__)"

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
# grokinterp runs on TransformerLens 3.x and 4.x (grokinterp/backend.py); the development venv
# keeps 3.x, and .venv-other-tl holds 4.x for the test that trains, analyses and plots on both
# and compares them (tests/test_backend.py). GROKINTERP_SKIP_OTHER_TL=1 leaves it out.
.venv/bin/pip install -q -e '.[dev]' 'transformer-lens>=3.8,<4'
if [ "${GROKINTERP_SKIP_OTHER_TL:-0}" != 1 ] && [ ! -x .venv-other-tl/bin/python ]; then
  python3 -m venv .venv-other-tl
  .venv-other-tl/bin/pip install -q --upgrade pip
  .venv-other-tl/bin/pip install -q -e . 'transformer-lens>=4.3,<5' \
    || { rm -rf .venv-other-tl; echo "note: the TransformerLens 4 environment did not install; its test will skip"; }
fi

if command -v npm >/dev/null 2>&1 && [ ! -f .mathjax/node_modules/mathjax/es5/tex-svg.js ]; then
  mkdir -p .mathjax
  (cd .mathjax && npm install --silent --no-audit --no-fund mathjax@3 >/dev/null) \
    || echo "note: MathJax not installed; LaTeX labels render as plain text"
fi
# The notebooks' runtime (nbclient + ipykernel, from the 'notebooks' extra that 'dev' includes): the test
# suite and scripts/execute_notebooks.py run the notebooks with it.
.venv/bin/python -c "import grokinterp, torch, transformer_lens, nbclient, ipykernel, jupytext; print('grokinterp ready: torch', torch.__version__, '| notebooks: nbclient', nbclient.__version__, 'ipykernel', ipykernel.__version__)"

#!/usr/bin/env bash
# Install the harness into ./.venv, offline except package registries.
# Why a script: `mup` declares a CUDA torchvision that breaks `import transformers` beside the
# CPU torch, so it is installed with --no-deps; pip cannot express that in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e .
.venv/bin/pip install -q --no-deps mup==1.0.0
.venv/bin/pip uninstall -q -y torchvision 2>/dev/null || true
.venv/bin/python -c "import mup; from transformers import LlamaForCausalLM"  # fails loudly if broken
# analytics off: nothing may phone home
.venv/bin/dvc config --global core.analytics false >/dev/null 2>&1 || true
.venv/bin/harness bootstrap

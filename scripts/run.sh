#!/usr/bin/env bash
# Set everything up, then run the pipeline on the embedded offline models (generate, ensemble, stats).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/curate demo "$@"

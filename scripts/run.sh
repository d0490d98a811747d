#!/usr/bin/env bash
# Set everything up, then start the app on the embedded offline models: http://127.0.0.1:7860.
# Extra arguments go to app.py (--db PATH, --port N, --host H, --auth user:pass, --config FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python app.py "$@"

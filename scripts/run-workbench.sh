#!/usr/bin/env bash
# Start the training worker and the Streamlit app together; stopping the app stops the worker.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-8501}
.venv/bin/fakevoice worker &
worker=$!
trap 'kill "$worker" 2>/dev/null; wait "$worker" 2>/dev/null' EXIT INT TERM
echo "Fake Voice Workbench: http://localhost:${port}  (worker pid ${worker})"
.venv/bin/streamlit run app.py --server.port "$port" --server.headless true \
  --browser.gatherUsageStats false

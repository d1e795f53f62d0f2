#!/usr/bin/env bash
# Start the training worker and the Streamlit app together. Stopping either (Ctrl-C, a SIGTERM
# from a supervisor to this script, one of them ending) stops both: the worker then marks its
# running jobs interrupted, and the next start resumes them.
#   PORT     the app's port (8501)
#   ADDRESS  the address it listens on: 127.0.0.1 (this machine only, as the API by default);
#            0.0.0.0 to serve the network, behind TLS
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-8501}
address=${ADDRESS:-127.0.0.1}
worker="" app=""
stop() {
  trap - EXIT INT TERM
  for pid in $app $worker; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $app $worker; do wait "$pid" 2>/dev/null || true; done
}
trap stop EXIT INT TERM  # before the first start: a SIGTERM at any moment leaves no orphan
.venv/bin/fakevoice worker &
worker=$!
.venv/bin/streamlit run app.py --server.port "$port" --server.address "$address" \
  --server.headless true --browser.gatherUsageStats false &
app=$!
echo "Fake Voice Workbench: http://${address}:${port}  (worker pid ${worker}, app pid ${app})"
# Bash runs a trap only between commands: waiting here (not running the app in the foreground)
# lets a SIGTERM stop both at once. The first of the two to end stops the other.
wait -n "$app" "$worker" || true

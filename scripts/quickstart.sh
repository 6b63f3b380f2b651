#!/usr/bin/env bash
# Sets everything up, starts the gateway on the embedded default model with the demo
# adapter, shows one classification request succeeding, then keeps serving (Ctrl-C stops).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m gateway.cli model pull

HOST=${GATEWAY_HOST:-127.0.0.1}
PORT=${GATEWAY_PORT:-8000}
URL="http://$HOST:$PORT"
export GATEWAY_HOST=$HOST GATEWAY_PORT=$PORT

.venv/bin/python -m gateway.cli serve &  # serves the demo adapter by default
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' INT TERM EXIT

echo "quickstart: waiting for the engine to load (about a minute) ..."
until curl -sf "$URL/ready" >/dev/null; do
  kill -0 $SERVER 2>/dev/null || { echo "quickstart: the gateway exited during start-up" >&2; exit 1; }
  sleep 2
done

BODY='{"text": "I was charged twice for my subscription this month", "adapter": "demo"}'
echo "quickstart: POST $URL/v1/classify $BODY"
curl -sf "$URL/v1/classify" -H 'Content-Type: application/json' -d "$BODY" | .venv/bin/python -m json.tool
echo
echo "quickstart: the gateway keeps serving on $URL (OpenAI base URL $URL/v1); Ctrl-C stops it."
wait $SERVER

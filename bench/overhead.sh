#!/usr/bin/env bash
# The gateway-overhead benchmark: herder (defaults: cache_aware, metrics on) and herder round_robin, against
# direct access and SMG, in one interleaved run of ../shared/bench/run.sh. Needs ../shared/bench/setup.sh once.
# Extra arguments go to run.py (e.g. --rounds 1 --duration 2, --itl-ms 1, --tests chat_c64).
set -euo pipefail
cd "$(dirname "$0")/.."
HERDER="${HERDER:-$(command -v herder || echo .venv/bin/herder)}"
exec ../shared/bench/run.sh --smg \
  --gateway "herder=$HERDER launch --host 127.0.0.1 --port {port} --worker-urls {workers} --prometheus-host 127.0.0.1 --prometheus-port {aux_port} --log-level warning" \
  --gateway "herder-rr=$HERDER launch --host 127.0.0.1 --port {port} --worker-urls {workers} --policy round_robin --prometheus-host 127.0.0.1 --prometheus-port {aux_port} --log-level warning" \
  "$@"

#!/usr/bin/env bash
# Profile herder's gateway process under wrk load (non-streamed chat, the shared harness's mock workers and body):
# prints gateway CPU per request, and with PROFILE=1 records a py-spy profile and prints the functions with the
# most self and total samples. Needs ../shared/bench/setup.sh once (wrk) and py-spy for PROFILE=1.
#   bench/profile_gateway.sh [concurrency=64] [seconds=10] [extra herder launch flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
CONC="${1:-64}"; SECS="${2:-10}"; shift $(( $# > 2 ? 2 : $# )) || true
BENCH=../shared/bench
PY=.venv/bin/python
OUT="${OUT:-/tmp/herder-profile}"
mkdir -p "$OUT"
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
W1=$(free_port); W2=$(free_port); GW=$(free_port); MP=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
$PY $BENCH/mock_worker.py --port "$W1" > "$OUT/w1.log" 2>&1 & pids+=($!)
$PY $BENCH/mock_worker.py --port "$W2" > "$OUT/w2.log" 2>&1 & pids+=($!)
sleep 0.5
.venv/bin/herder launch --host 127.0.0.1 --port "$GW" --worker-urls "http://127.0.0.1:$W1" "http://127.0.0.1:$W2" \
  --prometheus-host 127.0.0.1 --prometheus-port "$MP" --log-level warning "$@" > "$OUT/gw.log" 2>&1 &
GPID=$!; pids+=($GPID)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GW/readiness" > /dev/null && break; sleep 0.1; done
printf '%s' '{"model":"mock-model","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":16}' > "$OUT/body.json"
export WRK_BODY_FILE="$OUT/body.json" WRK_PATH=/v1/chat/completions
THREADS=$(( CONC < 2 ? 1 : 2 ))
wrk -t "$THREADS" -c "$CONC" -d 2s -s $BENCH/wrk_post.lua "http://127.0.0.1:$GW/v1/chat/completions" > /dev/null
cpu() { awk '{print $14 + $15}' "/proc/$GPID/stat"; }
if [ "${PROFILE:-0}" = 1 ]; then
  py-spy record --pid "$GPID" --rate ${SPY_RATE:-1000} --format raw --output "$OUT/profile.txt" --duration "$SECS" ${SPY_FLAGS:-} ${SPY_BLOCK---nonblocking} > "$OUT/spy.log" 2>&1 &
  SPY=$!
fi
C0=$(cpu)
RES=$(wrk -t "$THREADS" -c "$CONC" -d "${SECS}s" -s $BENCH/wrk_post.lua "http://127.0.0.1:$GW/v1/chat/completions" | grep WRK_JSON | cut -c10-)
C1=$(cpu)
[ "${PROFILE:-0}" = 1 ] && wait "$SPY" || true
$PY - "$RES" "$C0" "$C1" <<'EOF'
import json, os, sys
r = json.loads(sys.argv[1]); ticks = int(sys.argv[3]) - int(sys.argv[2]); hz = os.sysconf("SC_CLK_TCK")
n = r["requests"]; dur = r["duration_us"] / 1e6
print(f"requests/s {n / dur:.0f}  p50 {r['lat_p50_us']} us  p99 {r['lat_p99_us']} us  "
      f"gateway CPU {ticks / hz / n * 1e6:.1f} us/req  errors {r['err_status'] + r['err_read'] + r['err_connect']}")
EOF
if [ "${PROFILE:-0}" = 1 ]; then
  $PY - "$OUT/profile.txt" <<'EOF'
import collections, sys
self_c, total_c, n = collections.Counter(), collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, _, count = line.rstrip().rpartition(" ")
    c = int(count); n += c
    frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].split("/")[-1] + ")" if " (" in f else f
              for f in stack.split(";")]
    self_c[frames[-1]] += c
    for f in set(frames):
        total_c[f] += c
print(f"{n} samples")
print("-- self --")
for f, c in self_c.most_common(30): print(f"{100 * c / n:5.1f}%  {f}")
print("-- total --")
for f, c in total_c.most_common(40): print(f"{100 * c / n:5.1f}%  {f}")
EOF
fi

#!/usr/bin/env bash
# Session affinity at scale: SESSIONS new sessions (default 100,000) made through node 1 of a
# 3-node cluster (hocon/node1-3.conf, header affinity); reports how long until every node holds
# all of them, each node's RSS before and after, how long node 3 takes to hold them all again after
# kill -9 and a restart, and whether the logs show oversized payloads or gossip errors. Not a test: it prints numbers. Needs wrk (apt-get install wrk).
#   bash bench/affinity-scale.sh            SESSIONS=20000 WRITE=majority bash bench/affinity-scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${SESSIONS:-100000}
WRITE=${WRITE:-local}
BUCKETS=${BUCKETS:-auto}
# New sessions per second: a busy site, not a flood (each of the 8 connections waits 8000/RATE ms).
RATE=${RATE:-1000}
OUT=bench/results/affinity-scale-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
command -v wrk >/dev/null || { echo "affinity-scale: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
[ -n "${NO_BUILD:-}" ] || dotnet build -c Release Balancer.Node -v q -nologo >/dev/null
BALANCER=Balancer.Node/bin/Release/net10.0/balancer

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

NAMES=(a b c)
for n in 1 2 3; do
  "$BALANCER" backend --port $((9000 + n)) --name "${NAMES[$((n - 1))]}" > "$OUT/backend$n.log" 2>&1 &
  PIDS+=($!)
done
start_node() { # n log
  "$BALANCER" run --config hocon/node$1.conf \
    --set "balancer.pools.app.affinity.mode=\"header:X-Session\"" \
    --set "balancer.pools.app.affinity.write=$WRITE" \
    --set "balancer.pools.app.affinity.buckets=$BUCKETS" \
    --set "balancer.pools.app.affinity.max-entries=$((SESSIONS * 2))" \
    --set "balancer.pools.app.affinity.new-sessions-per-client=0" \
    --set "balancer.node.data-dir=$OUT/data/node$1" > "$2" 2>&1 &
  PIDS+=($!)
  NODE_PID[$1]=$!
}
for n in 1 2 3; do start_node $n "$OUT/node$n.log"; done
for n in 1 2 3; do
  for _ in $(seq 600); do grep -q "(3 up)" "$OUT/node$n.log" && grep -q "frontend web listening" "$OUT/node$n.log" && break; sleep 0.1; done
  grep -q "(3 up)" "$OUT/node$n.log" || { echo "node $n did not join the cluster; see $OUT/node$n.log" >&2; exit 1; }
done

# VmRSS in kB.
rss() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }
entries() { curl -s "http://127.0.0.1:$((9109 + $1))/api/pools/app/affinity?limit=0" | sed -n 's/.*"entries":\([0-9]*\).*/\1/p'; }
sleep 3
for n in 1 2 3; do RSS_BEFORE[$n]=$(rss "${NODE_PID[$n]}"); done

cat > "$OUT/sessions.lua" <<LUA
local threads = 0
function setup(thread) thread:set("id", threads); threads = threads + 1 end
local counter = 0
local per_thread = $((SESSIONS / 2))
function request()
  -- Past its share a thread repeats its sessions (no new ones) until the script stops wrk.
  counter = counter + 1
  return wrk.format("GET", "/", { ["X-Session"] = "s" .. id .. "-" .. ((counter - 1) % per_thread + 1) })
end
function delay()
  return $((8000 / RATE))
end
LUA
echo "making $SESSIONS sessions through node 1 at about $RATE/s (write = $WRITE, $BUCKETS buckets)..."
LOAD_START=$(date +%s.%N)
wrk -t2 -c8 -d3600s -s "$OUT/sessions.lua" http://127.0.0.1:8081/ > "$OUT/wrk.txt" &
WRK_PID=$!
PIDS+=("$WRK_PID")
# Every 10 s: how many sessions each node holds, to show how far the followers trail the writer.
echo "seconds node1 node2 node3" > "$OUT/progress.txt"
TICK=0
while kill -0 "$WRK_PID" 2>/dev/null; do
  e1=$(entries 1)
  if [ $((TICK % 10)) -eq 0 ]; then echo "$TICK ${e1:-?} $(entries 2) $(entries 3)" | tee -a "$OUT/progress.txt"; fi
  [ "${e1:-0}" -ge "$SESSIONS" ] && break
  sleep 1
  TICK=$((TICK + 1))
done
kill -INT "$WRK_PID" 2>/dev/null || true
wait "$WRK_PID" 2>/dev/null || true
LOAD_END=$(date +%s.%N)
TARGET=$(entries 1)
echo "node 1 holds $TARGET sessions after $(echo "$LOAD_END - $LOAD_START" | bc) s of load"
CONVERGED=""
for _ in $(seq 1200); do
  e2=$(entries 2); e3=$(entries 3)
  if [ "${e2:-0}" -ge "$TARGET" ] && [ "${e3:-0}" -ge "$TARGET" ]; then CONVERGED=$(date +%s.%N); break; fi
  sleep 0.25
done
for n in 1 2 3; do RSS_AFTER[$n]=$(rss "${NODE_PID[$n]}"); done
for n in 1 2 3; do HEAP[$n]=$(curl -s "http://127.0.0.1:$((9109 + n))/metrics" | awk '/^balancer_process_gc_heap_bytes/ { printf "%.0f", $2 / 1048576 }'); done

# A node that dies and comes back: kill -9 node 3, start it again once the others have downed it,
# and time until it opens its frontends and until it holds every session.
echo "kill -9 node 3, then start it again..."
kill -9 "${NODE_PID[3]}"
wait "${NODE_PID[3]}" 2>/dev/null || true
for _ in $(seq 300); do curl -s http://127.0.0.1:9110/api/cluster | grep -q ":4055" || break; sleep 0.1; done
RESTART_START=$(date +%s.%N)
start_node 3 "$OUT/node3-restarted.log"
RESTART_READY=""; RESTART_HELD=""
for _ in $(seq 1200); do
  [ -z "$RESTART_READY" ] && grep -q "frontend web listening" "$OUT/node3-restarted.log" && RESTART_READY=$(date +%s.%N)
  if [ -n "$RESTART_READY" ] && [ "$(entries 3)" -ge "$TARGET" ] 2>/dev/null; then RESTART_HELD=$(date +%s.%N); break; fi
  sleep 0.1
done
# The replicator's and the stores' start lines name the frame size; anything else naming it is a problem.
PROBLEMS=$(grep -i -E "oversized|payload size|exceeds|discarding|frame|gossip.*(fail|error)" "$OUT"/node*.log | grep -v -E "ready|remoting frame$" | head -5 || true)
{
  echo "sessions made: $SESSIONS requested, node 1 holds $TARGET (write = $WRITE, buckets = $BUCKETS)"
  echo "load: $(grep -E 'Requests/sec' "$OUT/wrk.txt" | tr -s ' ') over $(echo "$LOAD_END - $LOAD_START" | bc | cut -c1-6) s"
  if [ -n "$CONVERGED" ]; then
    echo "converged: nodes 2 and 3 hold every session $(echo "$CONVERGED - $LOAD_END" | bc | cut -c1-6) s after the load ended ($(echo "$CONVERGED - $LOAD_START" | bc | cut -c1-6) s after it started)"
  else
    echo "NOT converged within 300 s: node 2 $(entries 2), node 3 $(entries 3) of $TARGET"
  fi
  for n in 1 2 3; do
    echo "node $n RSS: $(( RSS_BEFORE[$n] / 1024 )) MB before, $(( RSS_AFTER[$n] / 1024 )) MB after ($(( (RSS_AFTER[$n] - RSS_BEFORE[$n]) / 1024 )) MB for $TARGET sessions, $(( (RSS_AFTER[$n] - RSS_BEFORE[$n]) * 1024 / (TARGET > 0 ? TARGET : 1) )) bytes a session; managed heap ${HEAP[$n]} MB)"
  done
  if [ -n "$RESTART_HELD" ]; then
    echo "node 3 restarted after kill -9: frontends open $(echo "$RESTART_READY - $RESTART_START" | bc | cut -c1-5) s after start, every session held $(echo "$RESTART_HELD - $RESTART_START" | bc | cut -c1-5) s after start"
  else
    echo "node 3 restarted after kill -9: NOT holding every session within 120 s (ready: ${RESTART_READY:-no}, holds $(entries 3) of $TARGET)"
  fi
  if [ -n "$PROBLEMS" ]; then echo "log problems:"; echo "$PROBLEMS"; else echo "logs: no oversized payload or gossip errors"; fi
} | tee "$OUT/summary.txt"

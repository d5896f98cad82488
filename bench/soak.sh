#!/usr/bin/env bash
# Chaos soak (not in CI): the demo cluster of 3 nodes under a steady load of sticky sessions while
# one node is killed with SIGKILL and restarted every INTERVAL, for DURATION; then prints the totals
# (requests, failures in flight at a kill and others, sessions kept or moved, kills).
#   bash bench/soak.sh                    DURATION=1800 INTERVAL=20s bash bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-660}
INTERVAL=${INTERVAL:-15s}
OUT=bench/results/soak-$(date +%Y%m%d-%H%M%S).log
mkdir -p bench/results
[ -n "${NO_BUILD:-}" ] || dotnet build -c Release Balancer.Node -v q -nologo >/dev/null
echo "soak: ${DURATION}s of chaos every $INTERVAL; log in $OUT"
# SIGINT after DURATION: the demo stops its children (nodes leave first) and prints the totals.
timeout -s INT -k 60 "$DURATION" Balancer.Node/bin/Release/net10.0/balancer demo --nodes 3 --chaos "$INTERVAL" > "$OUT" 2>&1 || true
grep -E "^chaos: kill|restarted|MOVED|away from any kill" "$OUT" | tail -n 40
grep "chaos totals" "$OUT"

#!/usr/bin/env bash
# Where a proxied HTTP request's CPU goes: one Balancer node with an HTTP frontend in front of two
# nginx backends, loaded as bench/run.sh loads it (wrk -t2 -c64 keep-alive, wrk on core 0, the
# node and nginx on core 1), warmed up, then sampled on-CPU with perf (kernel included) while the
# load runs. The samples are folded into the parts of the request path (bench/fold-profile.py) and
# divided into CPU microseconds per request. HAProxy (mode http, nbthread 1) then takes the same
# load, and both are counted for CPU, system calls and context switches a request, side by side.
# See bench/README.md, "Where an HTTP request's CPU goes".
#
#   bash bench/profile.sh                   # WARMUP=40 SECONDS_SAMPLED=20, about 2.5 minutes
#   MODE=tcp bash bench/profile.sh          # the TCP frontend (splice) against HAProxy mode tcp
#
# Knobs (environment): MODE=http (or tcp: the frontend and HAProxy splice), WARMUP=40 (s of load before sampling), SECONDS_SAMPLED=20, FREQUENCY=999
# (samples a second), CONNECTIONS=64 THREADS=2, INLINE_COMPLETIONS=1, POOL_EXTRA (HOCON inside the
# pool, e.g. 'affinity { mode = header, key = X-Session }'), BALANCER_BIN, KEEP=1 (keep the raw
# perf data and the node's perf map in bench/results/profile-*/).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH_DIR")"
WARMUP="${WARMUP:-40}"
SECONDS_SAMPLED="${SECONDS_SAMPLED:-20}"
FREQUENCY="${FREQUENCY:-999}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
INLINE_COMPLETIONS="${INLINE_COMPLETIONS:-1}"
POOL_EXTRA="${POOL_EXTRA:-}"
KEEP="${KEEP:-0}"
MODE="${MODE:-http}"
[[ "$MODE" == http || "$MODE" == tcp ]] || { echo "profile: MODE must be http or tcp, not $MODE" >&2; exit 2; }
BALANCER="${BALANCER_BIN:-$ROOT/Balancer.Node/bin/Release/net10.0/balancer}"
BACKEND_PORTS=(19201 19202)
P_HTTP=18280
P_ADMIN=19280
P_HAPROXY=17280
PIN_SERVER=(taskset -c 1)

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
NODE=""
cleanup_more() { [[ -n "$NODE" ]] && rm -f "/tmp/perf-$NODE.map" "/tmp/perfinfo-$NODE.map"; }

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v perf >/dev/null 2>&1 || need+=(linux-perf)
command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || need+=(haproxy)
if ((${#need[@]})); then
  log "installing ${need[*]} from Debian"
  SUDO=""; [[ "$(id -u)" != 0 ]] && SUDO="sudo"
  timeout 600 $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 900 $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin:/sbin"
[[ -x "$BALANCER" ]] || die "$BALANCER does not exist (build: dotnet build -c Release Balancer.Node)"
(( $(nproc) >= 2 )) || die "needs 2 cores (wrk on one, the node on the other)"

TMP="$(mktemp -d /tmp/balancer-profile.XXXXXX)"
RESULTS="$BENCH_DIR/results/profile-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RESULTS"

start_backends
dotnet_env

cat >"$TMP/node.conf" <<CONF
balancer {
  node.admin.bind = "127.0.0.1:$P_ADMIN"
  frontends.web { mode = $MODE, bind = ["127.0.0.1:$P_HTTP"], pool = app }
  pools.app {
    algorithm = round-robin
    health-check.kind = none
    backends { a = "127.0.0.1:${BACKEND_PORTS[0]}", b = "127.0.0.1:${BACKEND_PORTS[1]}" }
    $POOL_EXTRA
  }
}
akka.remote.dot-netty.tcp.port = 0
CONF
mkdir -p "$TMP/node"
# The perf map names the JIT-compiled code for perf; precompiled (ReadyToRun) code that was not
# recompiled shows under its assembly's name. perf cannot read code that the runtime maps twice
# (write-xor-execute, a memfd), so that is off here.
(cd "$TMP/node" && exec env "${DOTNET_ENV[@]}" DOTNET_PerfMapEnabled=3 DOTNET_EnableWriteXorExecute=0 \
  "${PIN_SERVER[@]}" "$BALANCER" run --config "$TMP/node.conf") >"$TMP/node.log" 2>&1 &
NODE=$!; PIDS+=("$NODE")
wait_port "$P_HTTP" "$NODE" 30 || { tail -20 "$TMP/node.log" >&2; die "the node did not listen on $P_HTTP"; }
[[ "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$P_HTTP/" -H 'X-Session: s1')" == 200 ]] || die "no 200 through the node"

wrk_run() { # seconds [port] -> output in $TMP/wrk.out
  taskset -c 0 timeout -k 5 $(($1 + 30)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"$1"s \
    -s "$TMP/sessions.lua" "http://127.0.0.1:${2:-$P_HTTP}/" >"$TMP/wrk.out" 2>&1 &
  local p=$!; PIDS+=("$p"); wait_pid "$p"
}
wrk_requests() { awk '/requests in/ { print $1 }' "$TMP/wrk.out"; }
# counts PID PORT: "SYSCALLS SWITCHES KINDS" a request over 10 s of load (perf stat), into $TMP/counts.
counts() {
  local kinds=sendto,recvfrom,sendmsg,recvmsg,write,writev,read,readv,epoll_wait,epoll_ctl,futex events=raw_syscalls:sys_enter,context-switches k
  for k in ${kinds//,/ }; do events+=",syscalls:sys_enter_$k"; done
  taskset -c 0 timeout -k 5 60 perf stat -x, -e "$events" -p "$1" -o "$TMP/stat.out" -- sleep 10.5 &
  local p=$!; PIDS+=("$p")
  sleep 0.2
  wrk_run 10 "$2"
  wait_pid "$p" || die "perf stat: $(cat "$TMP/stat.out" 2>/dev/null)"
  awk -F, -v n="$(wrk_requests)" '$3 == "raw_syscalls:sys_enter" { s = $1 } $3 == "context-switches" { c = $1 }
    $3 ~ /^syscalls:sys_enter_/ && $1 / n >= 0.05 { sub(/^syscalls:sys_enter_/, "", $3); kinds = kinds sprintf("%s%s %.2f", kinds == "" ? "" : ", ", $3, $1 / n) }
    END { printf "%.1f %.2f %s\n", s / n, c / n, kinds }' "$TMP/stat.out" >"$TMP/counts"
}
# Every connection sends its own session key (used only when POOL_EXTRA turns affinity on).
cat >"$TMP/sessions.lua" <<'LUA'
local n = 0
function setup(thread) n = n + 1; thread:set("id", n) end
function init() key = "s" .. id .. "-" .. math.random(1, 1000000) end
function request() return wrk.format(nil, nil, { ["X-Session"] = key }) end
LUA

per_request() { # ticks requests -> CPU µs a request
  awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v n="$2" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }'
}
# cpu_split PID PORT: "TOTAL USER" CPU µs a request over 10 s of load, into $TMP/cpu.
cpu_split() {
  local before user_before requests
  before="$(cpu_ticks "$1")"; user_before="$(cpu_ticks --user "$1")"
  wrk_run 10 "$2"
  requests="$(wrk_requests)"
  [[ "${requests:-0}" -gt 0 ]] || die "wrk made no requests: $(cat "$TMP/wrk.out")"
  echo "$(per_request $(($(cpu_ticks "$1") - before)) "$requests") $(per_request $(($(cpu_ticks --user "$1") - user_before)) "$requests")" >"$TMP/cpu"
}
log "warming up for ${WARMUP}s"
wrk_run "$WARMUP"
# The same load without perf, for the figure perf's sampling adds to.
cpu_split "$NODE" "$P_HTTP"; read -r plain_us plain_user <"$TMP/cpu"
log "without sampling: $plain_us CPU µs a request, $plain_user of them in user mode"
counts "$NODE" "$P_HTTP"; read -r node_syscalls node_switches node_kinds <"$TMP/counts"
log "system calls a request: $node_syscalls ($node_kinds), context switches a request: $node_switches"
log "sampling for ${SECONDS_SAMPLED}s at ${FREQUENCY} Hz"
before="$(cpu_ticks "$NODE")"
taskset -c 0 timeout -k 5 $((SECONDS_SAMPLED + 60)) perf record -q -F "$FREQUENCY" -g -p "$NODE" -o "$TMP/perf.data" -- sleep "$((SECONDS_SAMPLED + 1))" 2>"$TMP/perf.err" &
PERF=$!; PIDS+=("$PERF")
sleep 0.5
wrk_run "$SECONDS_SAMPLED"
after="$(cpu_ticks "$NODE")"
wait_pid "$PERF" || die "perf record: $(cat "$TMP/perf.err")"
requests="$(wrk_requests)"
errors="$(awk '/Socket errors|Non-2xx/ { n++ } END { print n + 0 }' "$TMP/wrk.out")"
cpu_us="$(per_request $((after - before)) "$requests")"
log "$requests requests, $cpu_us CPU µs a request (the node's user+sys), $errors error line(s) from wrk"

perf script -i "$TMP/perf.data" -F comm,tid,ip,sym,dso 2>"$TMP/perf-script.err" >"$TMP/perf.txt" || die "perf script: $(tail -3 "$TMP/perf-script.err")"
stop_pid "$NODE"

# HAProxy on the same core, the same backends and the same load.
start_haproxy haproxy "$P_HAPROXY" "$MODE" 1 || die "HAProxy did not start"
HAPROXY=$HP_PID
wrk_run 3 "$P_HAPROXY"
cpu_split "$HAPROXY" "$P_HAPROXY"; read -r haproxy_us haproxy_user <"$TMP/cpu"
counts "$HAPROXY" "$P_HAPROXY"; read -r haproxy_syscalls haproxy_switches haproxy_kinds <"$TMP/counts"
log "HAProxy: $haproxy_us CPU µs a request, $haproxy_syscalls system calls ($haproxy_kinds), $haproxy_switches context switches"
{
  echo "Balancer $MODE frontend, wrk -t$THREADS -c$CONNECTIONS keep-alive, ${WARMUP}s warm-up, ${SECONDS_SAMPLED}s sampled at ${FREQUENCY} Hz, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "pool extra: ${POOL_EXTRA:-none}; inline socket completions: $INLINE_COMPLETIONS"
  echo "$requests requests sampled, $cpu_us CPU µs a request while sampled (perf's own cost included; $plain_us without)"
  echo
  echo "| proxy | CPU µs/request | ratio | user / kernel µs | system calls/request | context switches/request |"
  echo "|---|---|---|---|---|---|"
  echo "| HAProxy $MODE, nbthread 1 | $haproxy_us | 1.00 | $haproxy_user / $(awk -v a="$haproxy_us" -v u="$haproxy_user" 'BEGIN { printf "%.2f", a - u }') | $haproxy_syscalls ($haproxy_kinds) | $haproxy_switches |"
  echo "| Balancer $MODE frontend | $plain_us | $(awk -v a="$plain_us" -v b="$haproxy_us" 'BEGIN { printf "%.2f", a / b }') | $plain_user / $(awk -v a="$plain_us" -v u="$plain_user" 'BEGIN { printf "%.2f", a - u }') | $node_syscalls ($node_kinds) | $node_switches |"
  echo
  python3 "$BENCH_DIR/fold-profile.py" "$TMP/perf.txt" "$cpu_us"
} | tee "$RESULTS/summary.txt"
if [[ "$KEEP" == 1 ]]; then cp "$TMP/perf.data" "$TMP/perf.txt" "$RESULTS/"; cp /tmp/perf-"$NODE".map "$RESULTS/" 2>/dev/null || true; fi

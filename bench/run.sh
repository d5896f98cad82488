#!/usr/bin/env bash
# Proxy benchmark: the Balancer's http and tcp frontends against HAProxy, plain YARP and the
# backends themselves, with wrk on loopback. Method: /work/shared/BENCH-NOTES.md (CPU time per
# request is the figure to rank by; ratios only within one run). See bench/README.md.
#
#   bash bench/run.sh                       # defaults: RUNS=3 DURATION=10, ~7.5 min with everything built
#   RUNS=5 BUDGET=600 bash bench/run.sh     # longer, steadier
#   PIN=1 bash bench/run.sh                 # wrk on core 0, proxy + backends on core 1
#
# Knobs (environment):
#   RUNS=3               measured wrk runs per target (median reported)
#   DURATION=10          seconds per measured run
#   WARMUP_DOTNET=40     warm-up seconds for a .NET proxy (PlainYarp, Balancer http frontend)
#   WARMUP_DOTNET2=5     warm-up for the Balancer rows after the http one (header affinity, tcp,
#                        h2c: the same process, already warm)
#   WARMUP_NATIVE=1      warm-up seconds for nginx / HAProxy targets
#   CONNECTIONS=64 THREADS=2
#   INLINE_COMPLETIONS=1 sets DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS for the .NET proxies (0 = off)
#   PIN=1                1 = taskset wrk to core 0, proxy and backends to core 1 (0 = none)
#   BUDGET=520           seconds for the measurement phase (after install/build); a target that
#                        would not fit in what is left is skipped and reported as such
#   BUILD_BALANCER=1     build Balancer.Node if its binary is missing (0 = never, always = every time)
#   BALANCER_BIN=path    run this executable instead of Balancer.Node/bin/Release/net10.0/balancer
#   OTHER_WARN=3         warn when processes outside the bench took more than this % of the machine
#   TARGETS="..."        space-separated subset of: direct haproxy-http1 haproxy-http1-affinity
#                        haproxy-http2 haproxy-tcp plainyarp balancer-http balancer-http-affinity
#                        balancer-tcp balancer-http-otel haproxy-h2c balancer-h2c
#                        (the two affinity rows take the same load, a wrk script naming one of 10,000
#                        sessions in X-Session; HAProxy picks the server by that header's hash,
#                        balance hdr(X-Session), and is the Balancer affinity row's ratio base)
#                        (the h2c rows: clients speak cleartext HTTP/2 with prior knowledge, load from
#                        h2load -c CONNECTIONS -m H2_STREAMS; the proxies speak HTTP/1.1 to nginx)
#   H2_STREAMS=10        concurrent streams per HTTP/2 connection (h2load -m)
#   OTEL_SAMPLING=1%     sampling of the balancer-http-otel row (OpenTelemetry export on, to a sink)
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH_DIR")"

RUNS="${RUNS:-3}"
DURATION="${DURATION:-10}"
WARMUP_DOTNET="${WARMUP_DOTNET:-40}"
WARMUP_DOTNET2="${WARMUP_DOTNET2:-5}"
WARMUP_NATIVE="${WARMUP_NATIVE:-1}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
INLINE_COMPLETIONS="${INLINE_COMPLETIONS:-1}"
PIN="${PIN:-1}"
BUDGET="${BUDGET:-520}"
BUILD_BALANCER="${BUILD_BALANCER:-1}"
TARGETS="${TARGETS:-direct haproxy-http1 haproxy-http1-affinity haproxy-http2 haproxy-tcp plainyarp balancer-http balancer-http-affinity balancer-tcp balancer-http-otel haproxy-h2c balancer-h2c}"
H2_STREAMS="${H2_STREAMS:-10}"
OTEL_SAMPLING="${OTEL_SAMPLING:-1%}"

# Ports: all on 127.0.0.1, 17000-19999.
BACKEND_PORTS=(19001 19002)
P_HAPROXY_HTTP1=17081
P_HAPROXY_AFFINITY=17084
P_HAPROXY_HTTP2=17082
P_HAPROXY_TCP=17071
P_PLAINYARP=18090
P_BALANCER_HTTP=18080
P_BALANCER_TCP=17070
P_HAPROXY_H2C=17083
P_BALANCER_H2C=18082
P_BALANCER_AFFINITY=18083
P_BALANCER_ADMIN=19110
P_BALANCER_OTEL_HTTP=18081
P_BALANCER_OTEL_ADMIN=19111
P_OTLP_SINK=19003

PLAINYARP="$BENCH_DIR/PlainYarp/bin/Release/net10.0/PlainYarp"
BALANCER="${BALANCER_BIN:-$ROOT/Balancer.Node/bin/Release/net10.0/balancer}"
RESULTS_DIR="$BENCH_DIR/results"
CLK_TCK="$(getconf CLK_TCK)"
SCRIPT_START=$SECONDS
OTHER_WARN="${OTHER_WARN:-3}"
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

# ---------------------------------------------------------------- setup
need_pkgs=()
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || need_pkgs+=(haproxy)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_pkgs+=(nginx)
if [[ " ${TARGETS} " == *" haproxy-h2c "* || " ${TARGETS} " == *" balancer-h2c "* ]]; then
  command -v h2load >/dev/null 2>&1 || need_pkgs+=(nghttp2-client)
fi
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]} from Debian"
  SUDO=""; [[ "$(id -u)" != 0 ]] && SUDO="sudo"
  timeout 600 $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 900 $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin:/sbin"
command -v wrk >/dev/null && command -v haproxy >/dev/null && command -v nginx >/dev/null \
  || die "wrk, haproxy and nginx are needed"

if [[ "$PIN" == 1 && "$(nproc)" -lt 2 ]]; then log "PIN=1 needs 2 cores; pinning off"; PIN=0; fi
PIN_LOAD=(); PIN_SERVER=()
if [[ "$PIN" == 1 ]]; then PIN_LOAD=(taskset -c 0); PIN_SERVER=(taskset -c 1); fi

want() { [[ " $TARGETS " == *" $1 "* ]]; }

if want plainyarp; then
  log "building bench/PlainYarp (Release)"
  timeout 900 dotnet build -c Release "$BENCH_DIR/PlainYarp" -nologo -v q >/dev/null \
    || die "bench/PlainYarp did not build (run: dotnet build -c Release bench/PlainYarp)"
fi

BALANCER_NOTE=""
if want balancer-http || want balancer-http-affinity || want balancer-tcp || want balancer-http-otel; then
  if [[ "$BUILD_BALANCER" == always || ( "$BUILD_BALANCER" == 1 && ! -x "$BALANCER" ) ]]; then
    log "building Balancer.Node (Release)"
    if ! (cd "$ROOT" && timeout 1200 dotnet build -c Release Balancer.Node -nologo -v q >/dev/null); then
      log "Balancer.Node did not build"
    fi
  fi
  if [[ ! -x "$BALANCER" ]]; then
    BALANCER_NOTE="Balancer rows skipped: $BALANCER does not exist (build: dotnet build -c Release Balancer.Node)"
    log "$BALANCER_NOTE"
  fi
fi

TMP="$(mktemp -d /tmp/balancer-bench.XXXXXX)"
mkdir -p "$RESULTS_DIR"
MEASURE_START=$SECONDS
DEADLINE=$((MEASURE_START + BUDGET))

# ---------------------------------------------------------------- helpers
# This script's own CPU ticks plus those of its reaped children (wrk, timeout, awk, ...).
self_ticks() {
  local s rest f
  s="$(cat "/proc/$$/stat")"; rest="${s##*) }"; read -r -a f <<<"$rest"
  echo $((f[11] + f[12] + f[13] + f[14]))
}

# Whole machine from /proc/stat: "busy total" ticks; busy = user+nice+system+irq+softirq+steal
# (a process's stime includes the softirq ticks that land on it; steal is time taken by other VMs).
machine_ticks() { awk '$1 == "cpu" { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat; }

# One request must answer 200 (over HTTP/2 with prior knowledge when the second argument is h2).
smoke() {
  local code flags=()
  [[ "${2:-}" == h2 ]] && flags=(--http2-prior-knowledge)
  code="$(curl -s "${flags[@]}" -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$1/" || true)"
  [[ "$code" == 200 ]] || { log "smoke request to :$1 answered '${code:-nothing}'"; return 1; }
}

# wrk runs in the background and is waited for, so INT/TERM reach the trap at once.
# Not to be called in $(...): the PID must be recorded in this shell.
run_wrk() { # port seconds [wrk script] -> wrk output in $TMP/wrk.out
  local out="$TMP/wrk.out" p rc=0 script=()
  [[ -z "${3:-}" ]] || script=(-s "$3")
  "${PIN_LOAD[@]}" timeout -k 5 $(($2 + 30)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"$2"s --latency "${script[@]}" \
    "http://127.0.0.1:$1/" >"$out" 2>&1 &
  p=$!; PIDS+=("$p")
  wait "$p" || rc=$?
  forget_pid "$p"
  return "$rc"
}

# h2load over cleartext HTTP/2 (prior knowledge), written as wrk would report it into $TMP/wrk.out
# (requests, req/s, 50% and 99% latency from h2load's per-request log, socket errors), so that
# measure() reads both alike. Not to be called in $(...), as run_wrk.
run_h2load() { # port seconds
  local out="$TMP/h2load.out" log="$TMP/h2load.log" p rc=0
  rm -f "$log"
  "${PIN_LOAD[@]}" timeout -k 5 $(($2 + 30)) h2load -t"$THREADS" -c"$CONNECTIONS" -m"$H2_STREAMS" -D"$2" \
    --log-file="$log" "http://127.0.0.1:$1/" >"$out" 2>&1 &
  p=$!; PIDS+=("$p")
  wait "$p" || rc=$?
  forget_pid "$p"
  ((rc == 0)) || return "$rc"
  local done rps failed non2xx p50 p99
  done="$(awk '/^requests:/ { print $6 }' "$out")"
  rps="$(awk '/^finished in/ { print $4 }' "$out")"
  failed="$(awk '/^requests:/ { print $10 + $12 + $14 }' "$out")"
  non2xx="$(awk '/^status codes:/ { print $5 + $7 + $9 }' "$out")"
  read -r p50 p99 < <(awk '{ print $3 }' "$log" 2>/dev/null | sort -n | awk '{ a[NR] = $1 } END {
    if (NR == 0) print "-1 -1"; else printf "%d %d\n", a[int(NR * 0.5) + (NR * 0.5 > int(NR * 0.5))], a[int(NR * 0.99) + (NR * 0.99 > int(NR * 0.99))] }')
  {
    echo "  ${done:-0} requests in ${2}s"
    echo "Requests/sec: ${rps:-0}"
    echo "     50% ${p50}us"
    echo "     99% ${p99}us"
    echo "  Socket errors: connect 0, read ${failed:-0}, write 0, timeout 0"
    ((${non2xx:-0} > 0)) && echo "  Non-2xx or 3xx responses: $non2xx"
    true
  } >"$TMP/wrk.out"
}

# The load generator of TARGET: h2load for the h2c rows, wrk for the others.
run_load() { # target port seconds
  if [[ "${MODE[$1]}" == h2c ]]; then run_h2load "$2" "$3"; else run_wrk "$2" "$3" "${SCRIPT[$1]:-}"; fi
}

# wrk latency ("123.45us", "1.2ms", "1.01s") -> microseconds
to_us() { awk -v v="$1" 'BEGIN {
  if (v ~ /us$/) { sub(/us$/, "", v); x = v }
  else if (v ~ /ms$/) { sub(/ms$/, "", v); x = v * 1000 }
  else if (v ~ /m$/) { sub(/m$/, "", v); x = v * 60e6 }
  else if (v ~ /s$/) { sub(/s$/, "", v); x = v * 1e6 }
  else x = -1
  printf "%.1f", x }'; }

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

fmt_lat() { # us -> human
  awk -v u="$1" 'BEGIN { if (u == "-" || u < 0) print "-"; else if (u >= 1000) printf "%.2fms", u / 1000; else printf "%.0fus", u }'; }

declare -A R_RPS R_P50 R_P99 R_CPU R_RSS R_IDLE R_ERR R_OTH R_NOTE
# The RSS of a process before its first load, 2 s after its first answer (targets that share a
# process, such as the Balancer's frontends, report the figure taken before the first of them).
declare -A IDLE_OF
ORDER=(direct haproxy-http1 haproxy-http1-affinity haproxy-http2 haproxy-tcp plainyarp balancer-http balancer-http-affinity balancer-tcp balancer-http-otel haproxy-h2c balancer-h2c)
declare -A LABEL=(
  [direct]="backend direct (nginx x2)"
  [haproxy-http1]="HAProxy http nbthread 1"
  [haproxy-http1-affinity]="HAProxy http, balance hdr"
  [haproxy-http2]="HAProxy http nbthread 2"
  [haproxy-tcp]="HAProxy tcp nbthread 1"
  [plainyarp]="plain YARP (IHttpForwarder)"
  [balancer-http]="Balancer http frontend"
  [balancer-http-affinity]="Balancer http, header affinity"
  [balancer-tcp]="Balancer tcp frontend"
  [balancer-http-otel]="Balancer http, OTLP $OTEL_SAMPLING"
  [haproxy-h2c]="HAProxy h2c nbthread 1 (h2load)"
  [balancer-h2c]="Balancer h2c frontend (h2load)"
)
declare -A MODE=([direct]=- [haproxy-http1]=http [haproxy-http1-affinity]=http [haproxy-http2]=http [haproxy-tcp]=tcp
  [plainyarp]=http [balancer-http]=http [balancer-http-affinity]=http [balancer-tcp]=tcp [balancer-http-otel]=http [haproxy-h2c]=h2c [balancer-h2c]=h2c)
# Header affinity: each request carries one of 10,000 session keys in turn (X-Session), so the
# table holds 10,000 sessions and every request is a lookup that hits.
cat >"$TMP/sessions.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, { ["X-Session"] = "session-" .. (n % 10000) })
end
LUA
declare -A SCRIPT=([balancer-http-affinity]="$TMP/sessions.lua" [haproxy-http1-affinity]="$TMP/sessions.lua")
declare -A WARM=([direct]=$WARMUP_NATIVE [haproxy-http1]=$WARMUP_NATIVE [haproxy-http1-affinity]=$WARMUP_NATIVE [haproxy-http2]=$WARMUP_NATIVE
  [haproxy-tcp]=$WARMUP_NATIVE [plainyarp]=$WARMUP_DOTNET [balancer-http]=$WARMUP_DOTNET [balancer-http-affinity]=$WARMUP_DOTNET2
  [balancer-tcp]=$WARMUP_DOTNET2 [balancer-http-otel]=$WARMUP_DOTNET [haproxy-h2c]=$WARMUP_NATIVE [balancer-h2c]=$WARMUP_DOTNET2)

fits() { # target -> 0 if warm-up + runs fit in what is left of the budget
  local need=$((WARM[$1] + RUNS * DURATION + 3))
  if ((SECONDS + need > DEADLINE)); then
    R_NOTE[$1]="skipped: time budget (BUDGET=$BUDGET s)"
    log "${LABEL[$1]}: skipped, needs ~${need}s, $((DEADLINE - SECONDS))s left of BUDGET"
    return 1
  fi
}

# measure TARGET PORT CPU_PIDS... : warm-up, RUNS x wrk, CPU/request of CPU_PIDS, peak RSS.
measure() {
  local target="$1" port="$2"; shift 2
  local pids=("$@") out reqs t0 t1 lat50 lat99 rps errs i other
  local rps_l=() p50_l=() p99_l=() cpu_l=() oth_l=() err_total=0
  local m0 m1 s0 s1 o0 o1 p
  local -A seen=()
  local ours=()
  for p in "${pids[@]}" "${BACKEND_PIDS[@]}"; do [[ -n "${seen[$p]:-}" ]] || { seen[$p]=1; ours+=("$p"); }; done
  smoke "$port" "${MODE[$target]%c}" || { R_NOTE[$target]="FAILED: no 200 answer"; return 0; }
  if [[ -z "${IDLE_OF[${pids[*]}]:-}" ]]; then
    sleep 2
    IDLE_OF[${pids[*]}]="$(rss_mb VmRSS "${pids[@]}")"
  fi
  R_IDLE[$target]="${IDLE_OF[${pids[*]}]}"
  if ((WARM[$target] > 0)); then
    log "${LABEL[$target]}: warm-up ${WARM[$target]}s"
    run_load "$target" "$port" "${WARM[$target]}" || true
  fi
  for ((i = 1; i <= RUNS; i++)); do
    m0="$(machine_ticks)"; s0="$(self_ticks)"; o0="$(cpu_ticks "${ours[@]}")"
    t0="$(cpu_ticks "${pids[@]}")"
    run_load "$target" "$port" "$DURATION" || { R_NOTE[$target]="FAILED: load generator exit"; return 0; }
    t1="$(cpu_ticks "${pids[@]}")"
    o1="$(cpu_ticks "${ours[@]}")"; s1="$(self_ticks)"; m1="$(machine_ticks)"
    out="$(cat "$TMP/wrk.out")"
    # CPU of processes outside this bench (other builds, ...), in % of the whole machine.
    other="$(awk -v a="$m0" -v b="$m1" -v ours=$((o1 - o0 + s1 - s0)) 'BEGIN {
      split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; o = (y[1] - x[1] - ours) / (t > 0 ? t : 1) * 100
      printf "%.1f", (o < 0 ? 0 : o) }')"
    oth_l+=("$other")
    reqs="$(awk '/requests in/ { print $1 }' <<<"$out")"
    rps="$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")"
    lat50="$(awk '$1 == "50%" { print $2 }' <<<"$out")"
    lat99="$(awk '$1 == "99%" { print $2 }' <<<"$out")"
    errs="$(awk '/Socket errors:/ { gsub(",", ""); s += $4 + $6 + $8 + $10 } /Non-2xx/ { s += $NF } END { print s + 0 }' <<<"$out")"
    if [[ -z "$reqs" || "$reqs" == 0 ]]; then R_NOTE[$target]="FAILED: no requests"; return 0; fi
    rps_l+=("$rps"); p50_l+=("$(to_us "$lat50")"); p99_l+=("$(to_us "$lat99")")
    cpu_l+=("$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.2f", d / hz / n * 1e6 }')")
    err_total=$((err_total + errs))
    log "${LABEL[$target]}: run $i/$RUNS: $rps req/s, p99 $lat99, CPU ${cpu_l[-1]} us/req, errors $errs, other load ${other}%"
  done
  R_RPS[$target]="$(median "${rps_l[@]}")"
  R_P50[$target]="$(median "${p50_l[@]}")"
  R_P99[$target]="$(median "${p99_l[@]}")"
  R_CPU[$target]="$(median "${cpu_l[@]}")"
  R_RSS[$target]="$(rss_mb VmHWM "${pids[@]}")"
  R_ERR[$target]="$err_total"
  R_OTH[$target]="$(median "${oth_l[@]}")"
  for i in "${pids[@]}"; do kill -0 "$i" 2>/dev/null || R_NOTE[$target]="process $i died during the runs"; done
}

# start_balancer NAME ADMIN_PORT FRONTENDS [EXTRA]: writes $TMP/NAME.conf (FRONTENDS inside
# balancer.frontends, EXTRA inside balancer, the bench's pool app), runs the Balancer on it in
# $TMP/NAME with its output in $TMP/NAME.log, and sets STARTED_PID.
start_balancer() {
  local name="$1" admin="$2" frontends="$3" extra="${4:-}"
  mkdir -p "$TMP/$name"
  cat >"$TMP/$name.conf" <<EOF
balancer {
  node.admin.bind = "127.0.0.1:$admin"
  $extra
  frontends {
    $frontends
  }
  pools.app {
    algorithm = round-robin
    health-check.kind = none
    backends { a = "127.0.0.1:${BACKEND_PORTS[0]}", b = "127.0.0.1:${BACKEND_PORTS[1]}" }
  }
  pools.sticky {
    algorithm = round-robin
    health-check.kind = none
    backends { a = "127.0.0.1:${BACKEND_PORTS[0]}", b = "127.0.0.1:${BACKEND_PORTS[1]}" }
    affinity.mode = "header:X-Session"
  }
}
akka.remote.dot-netty.tcp.port = 0
EOF
  (cd "$TMP/$name" && exec env "${DOTNET_ENV[@]}" "${PIN_SERVER[@]}" "$BALANCER" run --config "$TMP/$name.conf") \
    >"$TMP/$name.log" 2>&1 &
  STARTED_PID=$!; PIDS+=("$STARTED_PID")
}

# ---------------------------------------------------------------- backends: nginx x2, fixed 100-byte body
start_backends

# ---------------------------------------------------------------- targets
dotnet_env

run_haproxy_target() { # target port mode nbthread [bind options] [balance algorithm]
  want "$1" || return 0
  fits "$1" || return 0
  log "${LABEL[$1]}: starting"
  if start_haproxy "$1" "$2" "$3" "$4" "${5:-}" "${6:-roundrobin}"; then
    measure "$1" "$2" "$HP_PID"
  else
    R_NOTE[$1]="FAILED: did not start"
  fi
  stop_pid "$HP_PID"
}

# Execution order puts the rows the ratios need first, the Balancer next.
run_haproxy_target haproxy-http1 "$P_HAPROXY_HTTP1" http 1
run_haproxy_target haproxy-http1-affinity "$P_HAPROXY_AFFINITY" http 1 "" "hdr(X-Session)"
run_haproxy_target haproxy-tcp "$P_HAPROXY_TCP" tcp 1
run_haproxy_target haproxy-h2c "$P_HAPROXY_H2C" http 1 "proto h2"

if want balancer-http-otel && [[ -n "$BALANCER_NOTE" ]]; then
  R_NOTE[balancer-http-otel]="skipped: binary missing"
elif want balancer-http-otel && fits balancer-http-otel; then
  # The same node with OpenTelemetry export on: spans of OTEL_SAMPLING of the requests and the
  # meter, every second, to an OTLP/HTTP sink (an nginx answering 200; its CPU shows in other%).
  d="$TMP/otlp-sink"
  nginx_conf "$d" 64 "listen 127.0.0.1:$P_OTLP_SINK; location / { client_max_body_size 16m; return 200; }"
  nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" >"$d/stdout.log" 2>&1 &
  SINK_PID=$!; PIDS+=("$SINK_PID")
  log "Balancer with OTLP export: starting"
  start_balancer balancer-otel "$P_BALANCER_OTEL_ADMIN" \
    "web { mode = http, bind = [\"127.0.0.1:$P_BALANCER_OTEL_HTTP\"], pool = app }" \
    "telemetry.otlp { endpoint = \"http://127.0.0.1:$P_OTLP_SINK\", sampling = \"$OTEL_SAMPLING\", export-interval = 1s }"
  OTEL_PID=$STARTED_PID
  if wait_port "$P_OTLP_SINK" "$SINK_PID" 10 && wait_port "$P_BALANCER_OTEL_HTTP" "$OTEL_PID" 30; then
    measure balancer-http-otel "$P_BALANCER_OTEL_HTTP" "$OTEL_PID"
  else
    R_NOTE[balancer-http-otel]="FAILED: did not listen"; tail -n 20 "$TMP/balancer-otel.log" >&2 || true
  fi
  stop_pid "$OTEL_PID"; stop_pid "$SINK_PID"
fi

if (want balancer-http || want balancer-http-affinity || want balancer-tcp || want balancer-h2c) && [[ -n "$BALANCER_NOTE" ]]; then
  for t in balancer-http balancer-http-affinity balancer-tcp balancer-h2c; do R_NOTE[$t]="skipped: binary missing"; done
elif want balancer-http || want balancer-http-affinity || want balancer-tcp || want balancer-h2c; then
  log "Balancer: starting $BALANCER run --config $TMP/balancer.conf"
  start_balancer balancer "$P_BALANCER_ADMIN" \
    "web { mode = http, bind = [\"127.0.0.1:$P_BALANCER_HTTP\"], pool = app }
    raw { mode = tcp,  bind = [\"127.0.0.1:$P_BALANCER_TCP\"], pool = app }
    h2c { mode = http, bind = [\"127.0.0.1:$P_BALANCER_H2C\"], pool = app, protocols = http2 }
    sticky { mode = http, bind = [\"127.0.0.1:$P_BALANCER_AFFINITY\"], pool = sticky }"
  BAL_PID=$STARTED_PID
  if wait_port "$P_BALANCER_HTTP" "$BAL_PID" 30 && wait_port "$P_BALANCER_TCP" "$BAL_PID" 30 && wait_port "$P_BALANCER_H2C" "$BAL_PID" 30 \
    && wait_port "$P_BALANCER_AFFINITY" "$BAL_PID" 30; then
    if want balancer-http && fits balancer-http; then measure balancer-http "$P_BALANCER_HTTP" "$BAL_PID"; fi
    if want balancer-http-affinity && fits balancer-http-affinity; then measure balancer-http-affinity "$P_BALANCER_AFFINITY" "$BAL_PID"; fi
    if want balancer-tcp && fits balancer-tcp; then measure balancer-tcp "$P_BALANCER_TCP" "$BAL_PID"; fi
    if want balancer-h2c && fits balancer-h2c; then measure balancer-h2c "$P_BALANCER_H2C" "$BAL_PID"; fi
  else
    for t in balancer-http balancer-http-affinity balancer-tcp balancer-h2c; do R_NOTE[$t]="FAILED: did not listen within 30s"; done
    log "balancer log (last lines):"; tail -n 20 "$TMP/balancer.log" >&2 || true
  fi
  stop_pid "$BAL_PID"
  cp "$TMP/balancer.log" "$RESULTS_DIR/balancer.log" 2>/dev/null || true
fi

if want plainyarp && fits plainyarp; then
  log "${LABEL[plainyarp]}: starting"
  env "${DOTNET_ENV[@]}" "${PIN_SERVER[@]}" "$PLAINYARP" --listen "127.0.0.1:$P_PLAINYARP" \
    --backend "http://127.0.0.1:${BACKEND_PORTS[0]}" --backend "http://127.0.0.1:${BACKEND_PORTS[1]}" \
    >"$TMP/plainyarp.log" 2>&1 &
  PY_PID=$!; PIDS+=("$PY_PID")
  if wait_port "$P_PLAINYARP" "$PY_PID" 30; then
    measure plainyarp "$P_PLAINYARP" "$PY_PID"
  else
    R_NOTE[plainyarp]="FAILED: did not listen"; tail -n 20 "$TMP/plainyarp.log" >&2 || true
  fi
  stop_pid "$PY_PID"
fi

run_haproxy_target haproxy-http2 "$P_HAPROXY_HTTP2" http 2

if want direct && fits direct; then
  log "${LABEL[direct]}: starting"
  measure direct "${BACKEND_PORTS[0]}" "${BACKEND_PIDS[@]}"
  R_NOTE[direct]="${R_NOTE[direct]:-CPU and RSS: both nginx backends; wrk hits :${BACKEND_PORTS[0]} only}"
fi

for pid in "${BACKEND_PIDS[@]}"; do stop_pid "$pid"; done

# ---------------------------------------------------------------- table
ratio() { # target
  local t="$1" base
  case "${MODE[$t]}" in http) base=haproxy-http1 ;; tcp) base=haproxy-tcp ;; h2c) base=haproxy-h2c ;; *) echo "-"; return ;; esac
  # The affinity row against HAProxy under the same load and the same header, when measured.
  [[ "$t" == balancer-http-affinity && -n "${R_CPU[haproxy-http1-affinity]:-}" ]] && base=haproxy-http1-affinity
  if [[ -n "${R_CPU[$t]:-}" && -n "${R_CPU[$base]:-}" ]]; then
    awk -v a="${R_CPU[$t]}" -v b="${R_CPU[$base]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'
  else echo "-"; fi
}

{
  echo "Balancer proxy bench — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r)"
  echo "versions: $(haproxy -v 2>/dev/null | head -1 | awk '{print "HAProxy " $3}'), $(nginx -v 2>&1 | sed 's#.*/#nginx #'), $(wrk -v 2>&1 | head -1 | awk '{print "wrk " $2}'), .NET $(dotnet --list-runtimes 2>/dev/null | awk '/Microsoft.NETCore.App/ {v = $2} END {print v}')"
  echo "load: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, keep-alive, $RUNS runs per target, medians;" \
    "nginx x2 backends returning ${#BODY} bytes"
  echo "warm-up: .NET ${WARMUP_DOTNET}s (Balancer tcp and h2c frontends ${WARMUP_DOTNET2}s, in the process the http one warmed), native ${WARMUP_NATIVE}s;" \
    ".NET env: gcServer=0 TieredPGO=1 TC_DelaySingleProcMultiplier=1 SOCKETS_INLINE_COMPLETIONS=$INLINE_COMPLETIONS"
  echo "pinning: $([[ "$PIN" == 1 ]] && echo 'wrk core 0, proxy+backends core 1' || echo 'none (shared cores)')"
  echo "CPU = proxy process user+sys per request; ratio = CPU/request ÷ HAProxy http nbthread 1 (http rows; the header-affinity row ÷ HAProxy balance hdr under the same script when measured), ÷ HAProxy tcp (tcp rows), ÷ HAProxy h2c (h2c rows), same run"
  echo "h2c rows: h2load -t$THREADS -c$CONNECTIONS -m$H2_STREAMS -D${DURATION}, cleartext HTTP/2 with prior knowledge to the proxy, HTTP/1.1 from it to nginx"
  echo "other% = CPU of processes outside the bench during the runs, share of the whole machine (median); load at start: $LOAD_AT_START"
  echo
  printf '%-30s %-5s %9s %8s %8s %10s %6s %8s %8s %6s %6s  %s\n' target mode "req/s" p50 p99 "CPU us/req" ratio "idleRSS" "peakRSS" errors other% note
  printf '%-30s %-5s %9s %8s %8s %10s %6s %8s %8s %6s %6s  %s\n' ------ ---- ----- --- --- ---------- ----- ------- ------- ------ ------ ----
  disturbed=""
  for t in "${ORDER[@]}"; do
    want "$t" || continue
    if [[ -n "${R_CPU[$t]:-}" ]]; then
      printf '%-30s %-5s %9.0f %8s %8s %10s %6s %7sM %7sM %6s %6s  %s\n' "${LABEL[$t]}" "${MODE[$t]}" "${R_RPS[$t]}" \
        "$(fmt_lat "${R_P50[$t]}")" "$(fmt_lat "${R_P99[$t]}")" "${R_CPU[$t]}" "$(ratio "$t")" "${R_IDLE[$t]}" "${R_RSS[$t]}" \
        "${R_ERR[$t]}" "${R_OTH[$t]}" "${R_NOTE[$t]:-}"
      awk -v o="${R_OTH[$t]}" -v m="$OTHER_WARN" 'BEGIN { exit !(o > m) }' && disturbed+=" ${t}"
    else
      printf '%-30s %-5s %9s %8s %8s %10s %6s %8s %8s %6s %6s  %s\n' "${LABEL[$t]}" "${MODE[$t]}" - - - - - - - - - "${R_NOTE[$t]:-not run}"
    fi
  done
  if [[ -n "$disturbed" ]]; then
    echo
    echo "WARNING: other processes used more than ${OTHER_WARN}% of the machine during:${disturbed}; those rows are disturbed, rerun on an idle machine"
  fi
  [[ -n "$BALANCER_NOTE" ]] && { echo; echo "$BALANCER_NOTE"; }
  echo
  echo "total time: $((SECONDS - SCRIPT_START))s (measurement phase $((SECONDS - MEASURE_START))s, BUDGET=${BUDGET}s)"
} >"$TMP/table.txt"

cp "$TMP/table.txt" "$RESULTS_DIR/latest.txt"
echo
cat "$RESULTS_DIR/latest.txt"

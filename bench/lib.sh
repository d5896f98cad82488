# Shared by bench/run.sh and bench/profile.sh (sourced, not run): logging, cleanup of every
# process started (by PID only), the nginx backends, HAProxy, and the .NET environment of the
# proxies, so that both scripts load and measure the same setup.
# Expects BACKEND_PORTS, INLINE_COMPLETIONS, PIN_SERVER (an array, maybe empty) and TMP (set
# before starting anything).

SCRIPT_START="${SCRIPT_START:-$SECONDS}"
log() { printf '[%4ds] %s\n' "$((SECONDS - SCRIPT_START))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup: by PID only
PIDS=()
TMP=""
# A script may define cleanup_more to remove what it made besides processes and $TMP.
cleanup() {
  local pid i
  trap - EXIT INT TERM
  for pid in "${PIDS[@]:-}"; do
    [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [[ -z "$pid" ]] && continue
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if declare -F cleanup_more >/dev/null; then cleanup_more; fi
  [[ -n "$TMP" && -d "$TMP" ]] && rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Stops one PID we started (TERM, up to 5 s, then KILL) and forgets it.
stop_pid() {
  local pid="$1" i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}
# Forgets a PID that has been waited for, so that cleanup never signals a PID that was reused.
forget_pid() {
  local kept=() p
  for p in "${PIDS[@]:-}"; do [[ -n "$p" && "$p" != "$1" ]] && kept+=("$p"); done
  PIDS=("${kept[@]:-}")
}
# Waits for one PID we started, forgets it, and returns its exit status.
wait_pid() {
  local rc=0
  wait "$1" || rc=$?
  forget_pid "$1"
  return "$rc"
}

# CPU ticks (utime + stime, /proc/PID/stat fields 14 and 15; utime alone with --user) of a list
# of PIDs; comm may hold spaces.
cpu_ticks() {
  local total=0 user=0 pid s rest f
  [[ "${1:-}" == --user ]] && { user=1; shift; }
  for pid in "$@"; do
    s="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
    rest="${s##*) }" # fields 3.. ; field N is word N-2 of rest
    read -r -a f <<<"$rest"
    total=$((total + f[11] + (user ? 0 : f[12])))
  done
  echo "$total"
}

# rss_mb FIELD PID...: the sum of /proc/PID/status FIELD (VmRSS: now, VmHWM: peak) in MB.
rss_mb() {
  local field="$1" kb=0 pid v; shift
  for pid in "$@"; do
    v="$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/status" 2>/dev/null)" || v=""
    kb=$((kb + ${v:-0}))
  done
  awk -v kb="$kb" 'BEGIN { printf "%.0f", kb / 1024 }'
}

# Waits (bounded) until 127.0.0.1:PORT accepts a connection; fails if PID died meanwhile.
wait_port() {
  local port="$1" pid="$2" limit="${3:-30}" start=$SECONDS
  while ((SECONDS - start < limit)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { log "process $pid exited before listening on $port"; return 1; }
    sleep 0.2
  done
  log "port $port not listening after ${limit}s"
  return 1
}

# nginx_conf DIR CONNECTIONS SERVER [HTTP]: a foreground nginx whose every file stays in DIR
# (nothing under /var/lib/nginx), serving SERVER (the server block's body).
nginx_conf() {
  local d="$1" connections="$2" server="$3" http="${4:-}"
  mkdir -p "$d"
  cat >"$d/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections $connections; }
http {
  access_log off;
  client_body_temp_path $d/body;
  proxy_temp_path $d/proxy;
  fastcgi_temp_path $d/fastcgi;
  uwsgi_temp_path $d/uwsgi;
  scgi_temp_path $d/scgi;
  $http
  server { $server }
}
CONF
}

# The backends: one nginx on each of BACKEND_PORTS answering a fixed 100-byte body (BODY), on
# PIN_SERVER's core; sets BACKEND_PIDS.
start_backends() {
  local port d i
  BODY="$(printf 'balancer-bench-backend-%s' "$(printf 'x%.0s' $(seq 1 77))")" # 100 bytes
  BACKEND_PIDS=()
  for port in "${BACKEND_PORTS[@]}"; do
    d="$TMP/nginx-$port"
    nginx_conf "$d" 4096 "listen 127.0.0.1:$port; location / { default_type text/plain; return 200 \"$BODY\"; }" \
      "keepalive_requests 1000000; keepalive_timeout 75s; server_tokens off;"
    "${PIN_SERVER[@]}" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" >"$d/stdout.log" 2>&1 &
    PIDS+=($!); BACKEND_PIDS+=($!)
  done
  for i in "${!BACKEND_PORTS[@]}"; do
    wait_port "${BACKEND_PORTS[$i]}" "${BACKEND_PIDS[$i]}" 10 || die "nginx backend on ${BACKEND_PORTS[$i]} did not start: $(cat "$TMP/nginx-${BACKEND_PORTS[$i]}/error.log" 2>/dev/null)"
  done
  log "backends: nginx pids ${BACKEND_PIDS[*]} on ${BACKEND_PORTS[*]}"
}

# start_haproxy NAME PORT MODE NBTHREAD [BIND OPTIONS]: HAProxy round-robin over the backends,
# on PIN_SERVER's core; sets HP_PID.
start_haproxy() { # name port mode nbthread [bind options] [balance algorithm]
  local name="$1" port="$2" mode="$3" nbt="$4" bind_options="${5:-}" balance="${6:-roundrobin}" cfg="$TMP/$1.cfg"
  cat >"$cfg" <<CONF
global
  nbthread $nbt
  maxconn 4096
defaults
  mode $mode
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:$port $bind_options
  default_backend be
backend be
  balance $balance
  server a 127.0.0.1:${BACKEND_PORTS[0]}
  server b 127.0.0.1:${BACKEND_PORTS[1]}
CONF
  "${PIN_SERVER[@]}" haproxy -db -f "$cfg" >"$TMP/$name.log" 2>&1 &
  HP_PID=$!; PIDS+=("$HP_PID")
  wait_port "$port" "$HP_PID" 10 || { log "haproxy: $(cat "$TMP/$name.log")"; return 1; }
}

# The environment the .NET proxies run in.
dotnet_env() {
  DOTNET_ENV=(
    DOTNET_gcServer=0
    DOTNET_TieredPGO=1
    DOTNET_TC_DelaySingleProcMultiplier=1
    DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS="$INLINE_COMPLETIONS"
    DOTNET_CLI_TELEMETRY_OPTOUT=1
    ASPNETCORE_ENVIRONMENT=Production
  )
}

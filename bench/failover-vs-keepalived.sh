#!/usr/bin/env bash
# Failover of a virtual IP, side by side: keepalived (VRRP, the usual companion of HAProxy) on two
# hosts against Balancer in active-passive mode on three, its on-active / on-passive hooks moving
# the same VIP (ip addr add|del, gratuitous ARP). Hosts are Linux network namespaces on one bridge
# (198.18.0.0/24, VIP 198.18.0.100); a client host polls http://VIP:8080/ every 20 ms.
# For each: how long after the VIP holder's host drops off the network (its link down) a client is
# served again, and for how long two hosts hold the VIP while the first holder is cut from the
# others (the client still reaching every host) for PARTITION seconds. Not a test: it prints a
# table. Needs root; installs keepalived and arping (Debian) when missing.
#   sudo bash bench/failover-vs-keepalived.sh          RUNS=5 PARTITION=20 sudo bash bench/failover-vs-keepalived.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
PARTITION=${PARTITION:-20}
VIP=198.18.0.100
OUT=$PWD/bench/results/failover-vs-keepalived-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
[ "$(id -u)" -eq 0 ] || { echo "failover-vs-keepalived: needs root (network namespaces, addresses)" >&2; exit 1; }
missing=()
command -v keepalived >/dev/null || missing+=(keepalived)
command -v arping >/dev/null || missing+=(iputils-arping)
command -v nft >/dev/null || missing+=(nftables)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -n "${NO_BUILD:-}" ] || dotnet build -c Release Balancer.Node -v q -nologo >/dev/null
BALANCER=$PWD/Balancer.Node/bin/Release/net10.0/balancer

# Everything this run makes is named after its PID, and removed by name on exit.
TAG=fk$(( $$ % 100000 ))
NAMESPACES=()
# Every process this run started lives in one of its namespaces: killed by the namespace's PID list.
kill_in_namespaces() {
  for ns in "${NAMESPACES[@]}"; do ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true; done
}
cleanup() {
  kill_in_namespaces
  sleep 0.5
  for ns in "${NAMESPACES[@]}"; do ip netns delete "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ns() { echo "$TAG-$1"; }
in_ns() { local host=$1; shift; ip netns exec "$(ns "$host")" "$@"; }
addr() { echo "198.18.0.$1"; }
dev() { echo "${TAG}h$1"; }

make_network() { # hosts...
  ip netns add "$(ns switch)"; NAMESPACES+=("$(ns switch)")
  in_ns switch ip link add br0 type bridge
  in_ns switch ip link set br0 up
  for host in "$@"; do
    ip netns add "$(ns "$host")"; NAMESPACES+=("$(ns "$host")")
    ip link add "$(dev "$host")" type veth peer name "$(dev "$host")p"
    ip link set "$(dev "$host")" netns "$(ns "$host")"
    ip link set "$(dev "$host")p" netns "$(ns switch)"
    in_ns switch ip link set "$(dev "$host")p" master br0 up
    in_ns "$host" ip link set lo up
    in_ns "$host" ip addr add "$(addr "$host")/24" dev "$(dev "$host")"
    in_ns "$host" ip link set "$(dev "$host")" up
  done
}

remove_network() {
  for ns in "${NAMESPACES[@]}"; do ip netns delete "$ns" 2>/dev/null || true; done
  NAMESPACES=()
}

stop_processes() {
  kill_in_namespaces
  sleep 0.5
}

# Which of the hosts hold the VIP now, e.g. "1" or "1 2".
holders() {
  local held=()
  for host in "$@"; do
    in_ns "$host" ip -o addr show dev "$(dev "$host")" 2>/dev/null | grep -q " $VIP/" && held+=("$host")
  done
  echo "${held[*]:-}"
}

# Seconds until the client (host 254) is answered on VIP:8080 again, polling every 20 ms; at most 30 s.
poll_until_served() {
  in_ns 254 python3 - "$VIP" <<'PY'
import socket, sys, time
vip = sys.argv[1]
start = time.monotonic()
while time.monotonic() - start < 30:
    try:
        with socket.create_connection((vip, 8080), timeout=0.2) as s:
            s.settimeout(0.5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
            if s.recv(12).startswith(b"HTTP/1.1 200"):
                print(f"{time.monotonic() - start:.2f}")
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.02)
print("none")
PY
}

# Seconds during which two or more of HOSTS held the VIP, sampled every 100 ms for PARTITION seconds.
measure_split() { # hosts...
  local start=$EPOCHREALTIME both=0 last=$EPOCHREALTIME
  while awk -v s="$start" -v now="$EPOCHREALTIME" -v p="$PARTITION" 'BEGIN { exit !(now - s < p) }'; do
    local held now=$EPOCHREALTIME
    held=$(holders "$@")
    [ "$(wc -w <<< "$held")" -ge 2 ] && both=$(awk -v b="$both" -v now="$now" -v last="$last" 'BEGIN { print b + now - last }')
    last=$now
    sleep 0.1
  done
  awk -v b="$both" 'BEGIN { printf "%.1f", b }'
}

one_holder() { [ "$(wc -w <<< "$(holders "$@")")" -eq 1 ]; }

wait_for() { # seconds description command...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "failover-vs-keepalived: not within $seconds s: $what (logs in $OUT)" >&2
  exit 1
}

holder_is() { [ "$(holders "${@:2}")" = "$1" ]; }

# The VIP holder's host drops off the network (its link down): RESULT is how long until the client
# is served again, and SPLIT; the run's processes and namespaces are removed.
take_over() { # name holder split
  in_ns "$2" ip link set "$(dev "$2")" down
  local takeover
  takeover=$(poll_until_served)
  [ "$takeover" != none ] || { echo "$1: the VIP was not served again within 30 s (logs in $OUT)" >&2; exit 1; }
  stop_processes
  remove_network
  RESULT=("$takeover" "$3")
}

# keepalived on hosts 1 and 2 in front of a demo HTTP server on each (port 8080 on every address).
keepalived_run() { # run
  local run=$1
  make_network 1 2 254
  for host in 1 2; do
    local conf="$OUT/keepalived-$host.conf"
    cat > "$conf" <<CONF
vrrp_instance balancer_bench {
  state BACKUP
  interface $(dev "$host")
  virtual_router_id 51
  priority $((200 - host * 50))
  advert_int 1
  virtual_ipaddress {
    $VIP/24
  }
}
CONF
    ip netns exec "$(ns "$host")" "$BALANCER" backend --port 8080 --name "host$host" --bind 0.0.0.0 > "$OUT/keepalived-run$run-server$host.log" 2>&1 &
    ip netns exec "$(ns "$host")" keepalived --dont-fork --log-console --vrrp --use-file "$conf" \
      --pid "$OUT/keepalived-$host.pid" --vrrp_pid "$OUT/keepalived-vrrp-$host.pid" > "$OUT/keepalived-run$run-$host.log" 2>&1 &
  done
  wait_for 20 "keepalived: host 1 holds the VIP" holder_is 1 1 2
  [ "$(poll_until_served)" != none ] || { echo "keepalived: VIP not served" >&2; exit 1; }

  # The first holder cut from the other (VRRP adverts dropped both ways; the client reaches both).
  in_ns 1 nft add table inet bench
  in_ns 1 nft add chain inet bench in '{ type filter hook input priority 0; }'
  in_ns 1 nft add rule inet bench in ip saddr "$(addr 2)" drop
  in_ns 2 nft add table inet bench
  in_ns 2 nft add chain inet bench in '{ type filter hook input priority 0; }'
  in_ns 2 nft add rule inet bench in ip saddr "$(addr 1)" drop
  local split
  split=$(measure_split 1 2)
  in_ns 1 nft delete table inet bench
  in_ns 2 nft delete table inet bench
  wait_for 20 "keepalived: one holder after the heal" holder_is 1 1 2

  # The holder's host drops off the network.
  take_over keepalived 1 "$split"
}

# Node 2 sees three members up.
whole_again() { [ "$(in_ns 2 curl -s "http://$(addr 2):9110/api/cluster" | grep -o '"status":"up"' | wc -l)" -eq 3 ]; }

# Balancer active-passive on hosts 1-3, demo backends on host 10, the hooks moving the VIP.
balancer_run() { # run
  local run=$1
  make_network 1 2 3 10 254
  for port in 9001 9002 9003; do
    ip netns exec "$(ns 10)" "$BALANCER" backend --port "$port" --name "b$port" --bind "$(addr 10)" > "$OUT/balancer-run$run-backend$port.log" 2>&1 &
  done
  for host in 1 2 3; do
    cat > "$OUT/balancer-$host.conf" <<CONF
akka.remote.dot-netty.tcp { hostname = "$(addr "$host")", port = 4053 }
akka.cluster.seed-nodes = ["akka.tcp://balancer@$(addr 1):4053", "akka.tcp://balancer@$(addr 2):4053", "akka.tcp://balancer@$(addr 3):4053"]
balancer {
  node.mode = active-passive
  node.admin.bind = "$(addr "$host"):9110"
  node.data-dir = "$OUT/balancer-run$run-data$host"
  node.hooks {
    on-active = "ip addr add $VIP/24 dev $(dev "$host") && arping -q -U -c 2 -I $(dev "$host") $VIP"
    on-passive = "ip addr del $VIP/24 dev $(dev "$host") || true"
  }
  frontends.web { mode = http, bind = ["0.0.0.0:8080"], pool = app }
  pools.app {
    health-check { kind = http, path = "/healthz" }
    backends { a = "$(addr 10):9001", b = "$(addr 10):9002", c = "$(addr 10):9003" }
  }
}
CONF
    ip netns exec "$(ns "$host")" "$BALANCER" run --config "$OUT/balancer-$host.conf" > "$OUT/balancer-run$run-node$host.log" 2>&1 &
  done
  for host in 1 2 3; do
    wait_for 60 "balancer: node $host sees three up" grep -q "(3 up)" "$OUT/balancer-run$run-node$host.log"
  done
  wait_for 20 "balancer: host 1 holds the VIP" holder_is 1 1 2 3
  [ "$(poll_until_served)" != none ] || { echo "balancer: VIP not served" >&2; exit 1; }

  # The first holder cut from the other nodes (both ways; the client reaches every host).
  for other in 2 3; do
    in_ns 1 ip route add blackhole "$(addr "$other")/32"
    in_ns "$other" ip route add blackhole "$(addr 1)/32"
  done
  local split
  split=$(measure_split 1 2 3)
  for other in 2 3; do
    in_ns 1 ip route del blackhole "$(addr "$other")/32"
    in_ns "$other" ip route del blackhole "$(addr 1)/32"
  done
  wait_for 30 "balancer: one holder after the heal" one_holder 1 2 3
  wait_for 30 "balancer: whole again after the heal" whole_again

  # The holder's host drops off the network.
  # The duty may still move once after the heal (the rejoined node's hooks): one holder, settled.
  local holder=""
  for _ in $(seq 200); do
    holder=$(holders 1 2 3)
    [ "$(wc -w <<< "$holder")" -eq 1 ] && sleep 2 && [ "$(holders 1 2 3)" = "$holder" ] && break
    holder=""
    sleep 0.1
  done
  [ -n "$holder" ] || { echo "balancer: no single VIP holder after the heal (logs in $OUT)" >&2; exit 1; }
  take_over balancer "$holder" "$split"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -a KA_TAKEOVER KA_SPLIT BA_TAKEOVER BA_SPLIT
for run in $(seq "$RUNS"); do
  keepalived_run "$run"; KA_TAKEOVER+=("${RESULT[0]}"); KA_SPLIT+=("${RESULT[1]}")
  echo "run $run keepalived: served again ${RESULT[0]} s after the holder dropped off; two holders for ${RESULT[1]} s of a ${PARTITION} s partition" >&2
  balancer_run "$run"; BA_TAKEOVER+=("${RESULT[0]}"); BA_SPLIT+=("${RESULT[1]}")
  echo "run $run balancer: served again ${RESULT[0]} s after the holder dropped off; two holders for ${RESULT[1]} s of a ${PARTITION} s partition" >&2
done

{
  echo "VIP failover, $RUNS runs (medians; all runs in brackets), $(date -u +%Y-%m-%d)"
  echo
  echo "| | keepalived 2 hosts (VRRP, advert_int 1 s) | Balancer active-passive, 3 hosts |"
  echo "|---|---|---|"
  echo "| served again after the VIP holder's host drops off | $(printf '%s\n' "${KA_TAKEOVER[@]}" | median) s [${KA_TAKEOVER[*]}] | $(printf '%s\n' "${BA_TAKEOVER[@]}" | median) s [${BA_TAKEOVER[*]}] |"
  echo "| two hosts holding the VIP during a ${PARTITION} s partition | $(printf '%s\n' "${KA_SPLIT[@]}" | median) s [${KA_SPLIT[*]}] | $(printf '%s\n' "${BA_SPLIT[@]}" | median) s [${BA_SPLIT[*]}] |"
} | tee "$OUT/table.md"

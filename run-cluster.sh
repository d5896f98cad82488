#!/usr/bin/env bash
# Starts the local demo cluster (`balancer demo`): demo backends and N balancer nodes as separate
# processes. Every argument goes to `balancer demo`; Ctrl+C stops everything.
#   ./run-cluster.sh [--nodes 1..9] [--backends 1..9] [--mode active-active|active-passive] [--chaos 20s [--kills N]] [--logs] [--keep-state]
set -euo pipefail
cd "$(dirname "$0")"
exec dotnet run --project Balancer.Node -c Release -- demo "$@"

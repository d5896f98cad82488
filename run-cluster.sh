#!/usr/bin/env bash
# Starts the local demo cluster (`balancer demo`): demo backends and N balancer nodes as separate
# processes. Usage: ./run-cluster.sh [--nodes 1..3]   (Ctrl+C stops everything)
set -euo pipefail
cd "$(dirname "$0")"
exec dotnet run --project Balancer.Node -c Release -- demo "$@"

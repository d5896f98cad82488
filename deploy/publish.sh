#!/usr/bin/env bash
# Publishes `balancer` as one self-contained executable (no .NET install needed where it runs),
# with hocon/ beside it so that `./balancer demo` works from the output folder.
#   deploy/publish.sh [OUTPUT_DIR] [RUNTIME]      (defaults: deploy/out, linux-x64)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(realpath -m "${1:-$root/deploy/out}")"
runtime="${2:-linux-x64}"
dotnet publish "$root/Balancer.Node/Balancer.Node.csproj" -c Release -r "$runtime" --self-contained \
    -p:PublishSingleFile=true -p:IncludeNativeLibrariesForSelfExtract=true -p:DebugType=none \
    -nodeReuse:false -o "$out"
# API documentation is for package users, not for the installed node.
rm -f "$out"/*.xml
mkdir -p "$out/hocon"
cp "$root"/hocon/*.conf "$out/hocon/"
echo "published $out/balancer ($(du -h "$out/balancer" | cut -f1)); try: $out/balancer demo"

#!/usr/bin/env pwsh
# Starts the local demo cluster (`balancer demo`): demo backends and N balancer nodes as separate
# processes. PowerShell 7 on Linux, macOS or Windows. Usage: ./run-cluster.ps1 [-Nodes 3]
param(
    [ValidateRange(1, 3)][int]$Nodes = 3
)
$ErrorActionPreference = 'Stop'
Set-Location $PSScriptRoot
& dotnet run --project Balancer.Node -c Release -- demo --nodes $Nodes
exit $LASTEXITCODE

#!/usr/bin/env pwsh
# Starts the local demo cluster (`balancer demo`): demo backends and N balancer nodes as separate
# processes. PowerShell 7 on Linux, macOS or Windows; Ctrl+C stops everything.
#   ./run-cluster.ps1 [-Nodes 3] [-Backends 3] [-Mode active-active|active-passive] [-Chaos 20s [-Kills N]] [-Logs] [-KeepState]
param(
    [ValidateRange(1, 9)][int]$Nodes = 3,
    [ValidateRange(1, 9)][int]$Backends = 3,
    [ValidateSet('active-active', 'active-passive')][string]$Mode = 'active-active',
    [string]$Chaos = '',
    [ValidateRange(0, 1000000)][int]$Kills = 0,
    [switch]$Logs,
    [switch]$KeepState
)
$ErrorActionPreference = 'Stop'
Set-Location $PSScriptRoot
$demo = @('demo', '--nodes', $Nodes, '--backends', $Backends, '--mode', $Mode)
if ($Chaos) { $demo += @('--chaos', $Chaos) }
if ($Kills -gt 0) { $demo += @('--kills', $Kills) }
if ($Logs) { $demo += '--logs' }
if ($KeepState) { $demo += '--keep-state' }
& dotnet run --project Balancer.Node -c Release -- @demo
exit $LASTEXITCODE
